"""SVHN (``data=svhn``): house-number digits cropped to 32x32 colour images; 73 257 train, 26 032 test.

torchvision's layout: ``<root>/train_32x32.mat`` and ``<root>/test_32x32.mat``, so
``torchvision.datasets.SVHN(root)`` reads the same files.  Each holds ``X`` (H x W x C x N uint8) and
``y`` (N x 1, with 10 for the digit 0, which becomes label 0).  Reading .mat files needs scipy, an
optional dependency: ``pip install 'aebench[svhn]'``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
from omegaconf import DictConfig

from ..errors import DataError, squashed
from . import cache, named
from .base import Arrays

SPLITS = {"train": "train_32x32.mat", "test": "test_32x32.mat"}
FILES = tuple(SPLITS.values())
MD5 = {
    "train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373",
    "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3",
}
CLASSES = tuple(str(d) for d in range(10))


def _loadmat() -> Callable[..., dict[str, Any]]:
    try:
        from scipy.io import loadmat
    except ImportError:
        raise DataError("data=svhn reads .mat files with scipy, which is not installed: pip install 'aebench[svhn]'") \
            from None
    return loadmat


def _fetch(folder: str, missing: list[str]) -> None:
    import torchvision.datasets as tvd

    for split, name in SPLITS.items():
        if name in missing:
            tvd.SVHN(folder, split=split, download=True)


LAYOUT = named.Layout(
    title="SVHN",
    folder="",
    fetch=_fetch,
    fix="download train_32x32.mat and test_32x32.mat (format 2, cropped digits) from "
        "http://ufldl.stanford.edu/housenumbers/ into {root}",
)


def _read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        mat = _loadmat()(str(path))
        x, y = mat["X"], np.asarray(mat["y"]).astype(np.int64).reshape(-1)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - scipy's many ways of saying "not a .mat file"
        raise DataError(f"{path} is not SVHN's .mat file ({squashed(e, 100)}); delete it and fetch it again") from None
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[2] != 3 or x.shape[3] != len(y) or \
            (len(y) and not 1 <= y.min() <= y.max() <= 10):
        raise DataError(f"{path} does not hold X (H x W x 3 x N uint8) and y (N labels 1..10); "
                        "delete it and fetch it again")
    y[y == 10] = 0  # the digit 0 is stored as 10
    return x.transpose(3, 2, 0, 1), y  # (N, C, H, W), as torchvision's SVHN


def _decode(raw: Path, out: Path) -> dict[str, Any]:
    for split, name in SPLITS.items():
        x, y = _read(raw / name)
        writer = cache.Writer(out, split, len(x), tuple(x.shape[1:]), labelled=True)
        named.add_chunks(writer, x, y)
        writer.close()
    return {}


def arrays(cfg: DictConfig, root: Path, splits: tuple[str, ...] = ("train", "test")) -> Arrays:
    folder, meta = named.decoded("svhn", "svhn", LAYOUT, root, FILES, MD5, cfg.get("download", True), _decode,
                                 check=_loadmat)
    notes = {"cache": str(folder), "verified_md5": bool(meta.get("verified_md5"))}
    return Arrays("svhn", "SVHN", "svhn", "svhn", CLASSES, cache.read(folder, splits), notes=notes)
