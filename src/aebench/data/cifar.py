"""CIFAR-10 (``data=cifar10``): 50 000 train and 10 000 test colour images, 32x32, 10 classes.

torchvision's layout: ``<root>/cifar-10-batches-py/`` with the pickle batches ``data_batch_1..5``,
``test_batch`` and ``batches.meta``, so ``torchvision.datasets.CIFAR10(root)`` reads the same files.
A batch is a dict: ``data`` N x 3072 uint8 (the R, G and B planes of a 32x32 image, row by row),
``labels`` a list; ``batches.meta`` holds the class names (``label_names``).  The batches are
unpickled through :class:`~.base.NumpyOnlyUnpickler`: a file cannot run code.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from ..errors import DataError, squashed
from . import cache, named
from .base import Arrays, NumpyOnlyUnpickler

FOLDER = "cifar-10-batches-py"
TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST = ("test_batch",)
META = "batches.meta"
FILES = (*TRAIN, *TEST, META)
MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}


def _fetch(folder: str, missing: list[str]) -> None:
    import torchvision.datasets as tvd

    tvd.CIFAR10(folder, train=False, download=True)  # one archive holds every batch


LAYOUT = named.Layout(
    title="CIFAR-10",
    folder=FOLDER,
    fetch=_fetch,
    fix="download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and extract it into {root}, "
        "so that {folder}/data_batch_1..5, test_batch and batches.meta exist",
)


def _unpickle(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            out = NumpyOnlyUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise DataError(f"{path} is not a CIFAR-10 pickle batch ({squashed(e, 100)}); delete it and fetch it again") \
            from None
    if not isinstance(out, dict):
        raise DataError(f"{path} is not a CIFAR-10 pickle batch (no dict inside); delete it and fetch it again")
    return out


def _batch(path: Path, classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    data, labels = batch.get("data"), np.asarray(batch.get("labels", []), dtype=np.int64)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 \
            or len(data) != len(labels) or (len(labels) and not 0 <= labels.min() <= labels.max() < classes):
        raise DataError(f"{path} does not hold N x 3072 uint8 images with N labels 0..{classes - 1}; "
                        "delete it and fetch it again")
    return data.reshape(-1, 3, 32, 32), labels


def _decode(raw: Path, out: Path) -> dict[str, Any]:
    classes = _unpickle(raw / META).get("label_names")
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise DataError(f"{raw / META} holds no class names (label_names); delete it and fetch it again")
    for split, names in (("train", TRAIN), ("test", TEST)):
        parts = [_batch(raw / n, len(classes)) for n in names]
        writer = cache.Writer(out, split, sum(len(y) for _, y in parts), (3, 32, 32), labelled=True)
        for x, y in parts:
            named.add_chunks(writer, x, y)
        writer.close()
    return {"classes": classes}


def arrays(cfg: DictConfig, root: Path, splits: tuple[str, ...] = ("train", "test")) -> Arrays:
    folder, meta = named.decoded("cifar10", "cifar10", LAYOUT, root, FILES, MD5, cfg.get("download", True), _decode)
    notes = {"cache": str(folder), "verified_md5": bool(meta.get("verified_md5"))}
    return Arrays("cifar10", "CIFAR-10", "cifar10", "cifar10", tuple(meta["classes"]), cache.read(folder, splits),
                  notes=notes)
