#!/usr/bin/env python
"""Write MNIST (or Fashion-MNIST) out as PNG files in torchvision's ImageFolder layout.

    python scripts/mnist_to_folder.py OUT [--dataset mnist] [--train N] [--test N]

gives OUT/train/<class>/<index>.png and OUT/test/<class>/<index>.png, one grey 28x28 PNG per image,
byte-for-byte the pixels of the prepared IDX files (under the aebench data root).  With it,
``aebench data=folder data.path=OUT`` trains on exactly the images ``aebench data=mnist`` does, read
through the folder reader and its cache instead: the check that the folder path is faithful.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from aebench import data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the folder to write (must not exist yet)")
    parser.add_argument("--dataset", default="mnist", choices=sorted(data.SPECS))
    parser.add_argument("--train", type=int, default=None, help="the first N train images only")
    parser.add_argument("--test", type=int, default=None, help="the first N test images only")
    args = parser.parse_args(argv)
    if args.out.exists():
        sys.exit(f"mnist_to_folder: error: {args.out} exists; give a new folder")
    raw = data.prepare(args.dataset, data.resolve_root(None))
    spec = data.spec_for(args.dataset)
    for split, prefix, limit in (("train", "train", args.train), ("test", "t10k", args.test)):
        images, labels = data.idx.read_split(raw, prefix)
        for i, (image, label) in enumerate(zip(images[:limit], labels[:limit])):
            folder = args.out / split / spec.classes[label].replace("/", "-")
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.ascontiguousarray(image[0]), mode="L").save(folder / f"{i:05d}.png", compress_level=1)
    print(f"wrote {args.out}/train and {args.out}/test")


if __name__ == "__main__":
    main()
