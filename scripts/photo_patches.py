#!/usr/bin/env python
"""Cut real colour photographs into patches, one class per photograph, in the ImageFolder layout.

    python scripts/photo_patches.py OUT [--per-class 200] [--seed 0]

The photographs are the ones installed packages ship: matplotlib's ``grace_hopper.jpg`` and
scikit-learn's ``china.jpg`` and ``flower.jpg`` (where scikit-learn is installed: it comes with
the tracking extra).  Each patch is a square of a random side (40-96 pixels) at a random place,
saved as JPEG, so the folder has mixed sizes: run it with ``data.image_size=32``.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def photographs() -> dict[str, Path]:
    import matplotlib

    found = {"grace_hopper": Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"}
    spec = importlib.util.find_spec("sklearn")
    if spec is not None and spec.origin:
        images = Path(spec.origin).parent / "datasets" / "images"
        found.update({name: images / f"{name}.jpg" for name in ("china", "flower")})
    return {name: path for name, path in found.items() if path.is_file()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the folder to write (must not exist yet)")
    parser.add_argument("--per-class", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.out.exists():
        sys.exit(f"photo_patches: error: {args.out} exists; give a new folder")
    rng = np.random.default_rng(args.seed)
    photos = photographs()
    for name, path in photos.items():
        with Image.open(path) as photo:
            photo = photo.convert("RGB")
            w, h = photo.size
            (args.out / name).mkdir(parents=True)
            for i in range(args.per_class):
                side = int(rng.integers(40, 97))
                left, top = int(rng.integers(0, w - side)), int(rng.integers(0, h - side))
                photo.crop((left, top, left + side, top + side)).save(args.out / name / f"{i:04d}.jpg", quality=90)
    print(f"wrote {args.per_class} patches of each of {', '.join(photos)} into {args.out}")


if __name__ == "__main__":
    main()
