"""STL-10 (``data=stl10``): 96x96 colour images, 5 000 train and 8 000 test in 10 classes, and
100 000 unlabelled images (``data.unlabeled=true``: the autoencoder pretrains on train + unlabelled;
the read-outs still see train and test only).

torchvision's layout: ``<root>/stl10_binary/`` with ``train_X.bin``, ``train_y.bin``, ``test_X.bin``,
``test_y.bin`` and ``unlabeled_X.bin``, so ``torchvision.datasets.STL10(root)`` reads the same files.
Images are raw uint8, 3 x 96 x 96 each, every channel stored column by column (torchvision reshapes
to (N, 3, 96, 96) and swaps the last two axes); labels are one byte each, 1..10.

The labelled splits and the unlabelled images are two cache entries: a run without the unlabelled
images never needs (or verifies) their 2.8 GB file, and that file is decoded chunk by chunk from a
memory map, never whole in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from ..errors import DataError
from . import cache, named
from .base import Arrays

FOLDER = "stl10_binary"
LABELLED = ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin")
UNLABELED = ("unlabeled_X.bin",)
MD5 = {
    "train_X.bin": "918c2871b30a85fa023e0c44e0bee87f",
    "train_y.bin": "5a34089d4802c674881badbb80307741",
    "test_X.bin": "7f263ba9f9e0b06b93213547f721ac82",
    "test_y.bin": "36f9794fa4beb8a2c72628de14fa638e",
    "unlabeled_X.bin": "5242ba1fed5e4be9e1e742405eb56ca4",
}
CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")
SHAPE = (3, 96, 96)


def _fetch(folder: str, missing: list[str]) -> None:
    import torchvision.datasets as tvd

    tvd.STL10(folder, split="test", download=True)  # one archive holds every file


LAYOUT = named.Layout(
    title="STL-10",
    folder=FOLDER,
    fetch=_fetch,
    fix="download stl10_binary.tar.gz from https://cs.stanford.edu/~acoates/stl10/ and extract it into {root}, "
        "so that {folder}/train_X.bin, train_y.bin, test_X.bin, test_y.bin (and unlabeled_X.bin) exist",
)


def _images(path: Path) -> np.ndarray:
    """The images of a ``*_X.bin`` file as (N, 3, 96, 96), memory-mapped (a view: nothing read yet)."""
    size = path.stat().st_size
    per = int(np.prod(SHAPE))
    if size == 0 or size % per:
        raise DataError(f"{path} is {size} bytes, not a whole number of 3x96x96 images; delete it and fetch it again")
    raw = np.memmap(path, dtype=np.uint8, mode="r", shape=(size // per, SHAPE[0], SHAPE[2], SHAPE[1]))
    return raw.transpose(0, 1, 3, 2)  # column-major channels -> (C, H, W)


def _labels(path: Path, count: int) -> np.ndarray:
    y = np.fromfile(path, dtype=np.uint8).astype(np.int64)
    if len(y) != count or (len(y) and not 1 <= y.min() <= y.max() <= 10):
        raise DataError(f"{path} does not hold {count} labels 1..10 (one for each image); delete it and fetch it again")
    return y - 1


def _decode_labelled(raw: Path, out: Path) -> dict[str, Any]:
    for split in ("train", "test"):
        x = _images(raw / f"{split}_X.bin")
        writer = cache.Writer(out, split, len(x), SHAPE, labelled=True)
        named.add_chunks(writer, x, _labels(raw / f"{split}_y.bin", len(x)))
        writer.close()
    return {}


def _decode_unlabeled(raw: Path, out: Path) -> dict[str, Any]:
    x = _images(raw / "unlabeled_X.bin")
    writer = cache.Writer(out, "unlabeled", len(x), SHAPE, labelled=False)
    named.add_chunks(writer, x)
    writer.close()
    return {}


def arrays(cfg: DictConfig, root: Path, splits: tuple[str, ...] = ("train", "test")) -> Arrays:
    download = cfg.get("download", True)
    folder, meta = named.decoded("stl10", "stl10", LAYOUT, root, LABELLED, MD5, download, _decode_labelled)
    read = cache.read(folder, [s for s in splits if s != "unlabeled"])
    notes: dict[str, Any] = {"cache": str(folder), "verified_md5": bool(meta.get("verified_md5"))}
    label = "stl10"
    if "unlabeled" in splits:
        more, more_meta = named.decoded("stl10-unlabeled", "stl10-unlabeled", LAYOUT, root, UNLABELED, MD5, download,
                                        _decode_unlabeled)
        read.update(cache.read(more, ["unlabeled"]))
        notes.update(unlabeled_cache=str(more), pretrain="train + unlabeled",
                     verified_md5=notes["verified_md5"] and bool(more_meta.get("verified_md5")))
        label = "stl10+unlabeled"
    # the identity keys cached baselines, which read train and test only: the unlabelled images do not change it
    return Arrays("stl10", "STL-10", label, "stl10", CLASSES, read, notes=notes)
