"""The uint8 array cache: a source's images decoded once, then memory-mapped by every run.

A cache entry is a folder ``<data root>/cache/<label>-<key>/`` holding, per split,
``<split>_x.npy`` (uint8, N x C x H x W), ``<split>_y.npy`` (int64, when labelled) and
``<split>_f.npy`` (int64, N x K: each image's class of every known factor, for the sources that
have factors), and ``meta.json`` (what was decoded and from where).  ``key`` hashes the source, its identity
(files and their checksums or sizes and times) and the preprocessing (image size,
channels), so a changed folder or another size gets an entry of its own.

An entry is built in a temporary folder beside it, under a lock file, and renamed into
place when complete: a run never sees half an entry, parallel jobs build it once, and an
interrupted build leaves only a temporary folder that the next build removes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from .. import atomic
from ..errors import DataError

log = logging.getLogger(__name__)

FORMAT = 1  # bump when an entry would be written differently
META = "meta.json"


def key_of(fields: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps({**fields, "format": FORMAT}, sort_keys=True).encode()).hexdigest()[:16]


class Writer:
    """Fills one split's arrays in a building entry, chunk by chunk (memory stays at one chunk).

    ``factors``: the number of known factors (K) when the images have them, else 0 (no factor file).
    """

    def __init__(self, folder: Path, split: str, count: int, shape: tuple[int, int, int], labelled: bool,
                 factors: int = 0):
        self.x = np.lib.format.open_memmap(folder / f"{split}_x.npy", mode="w+", dtype=np.uint8, shape=(count, *shape))
        self.y = np.lib.format.open_memmap(folder / f"{split}_y.npy", mode="w+", dtype=np.int64, shape=(count,)) \
            if labelled else None
        self.f = np.lib.format.open_memmap(folder / f"{split}_f.npy", mode="w+", dtype=np.int64,
                                           shape=(count, factors)) if factors else None
        self.filled = 0

    def add(self, images: np.ndarray, labels: np.ndarray | None = None, factors: np.ndarray | None = None) -> None:
        n = len(images)
        self.x[self.filled : self.filled + n] = images
        if self.y is not None:
            self.y[self.filled : self.filled + n] = labels
        if self.f is not None:
            self.f[self.filled : self.filled + n] = factors
        self.filled += n

    def close(self) -> None:
        if self.filled != len(self.x):
            raise RuntimeError(f"cache split filled with {self.filled} of {len(self.x)} images")
        for array in (self.x, self.y, self.f):
            if array is not None:
                array.flush()
        del self.x, self.y, self.f


def entry(root: Path, label: str, fields: dict[str, Any], build: Callable[[Path], dict[str, Any]],
          same_source: Callable[[dict[str, Any]], bool] | None = None) -> tuple[Path, dict[str, Any]]:
    """The cache entry for ``fields`` under ``root``, built by ``build(folder)`` if missing; (folder, meta).

    ``build`` writes the split files into ``folder`` (with :class:`Writer`) and returns the meta data
    to keep.  ``same_source(meta)`` tells stale entries of the same source (a folder that changed since)
    so they are removed once the new one is complete.
    """
    cache = Path(root) / "cache"
    name = f"{label}-{key_of(fields)}"
    final = cache / name
    meta = _read_meta(final)
    if meta is not None:
        return final, meta
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot write the image cache under {cache} ({e.strerror or e}); "
                        "set data.root=<a writable folder> or the environment variable AEBENCH_DATA") from None
    with atomic.file_lock(cache / f".{name}.lock"):
        meta = _read_meta(final)  # another process may have built it while we waited
        if meta is not None:
            return final, meta
        building = cache / f".{name}.building"
        shutil.rmtree(building, ignore_errors=True)  # what an interrupted build left
        building.mkdir()
        try:
            meta = {**build(building), "fields": fields, "format": FORMAT}
            atomic.write_json(building / META, meta)
            _fsync_dir(building)
            if final.exists():  # a damaged entry (no readable meta.json): replaced whole
                shutil.rmtree(final)
            os.rename(building, final)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
    if same_source is not None:
        _remove_stale(cache, final, same_source)
    log.info("cached %s (%.1f MB) in %s", label, size_mb(final), final)
    return final, meta


def read(folder: Path, splits: Iterable[str]) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """The entry's splits, memory-mapped read-only: (images, labels or None)."""
    out = {}
    for split in splits:
        x = np.load(folder / f"{split}_x.npy", mmap_mode="r")
        y_path = folder / f"{split}_y.npy"
        out[split] = (x, np.load(y_path) if y_path.is_file() else None)
    return out


def read_factors(folder: Path, splits: Iterable[str]) -> dict[str, np.ndarray]:
    """The entry's factor classes, (N, K) int64 per split, for the splits that have them (read whole: N x K is small)."""
    return {split: np.load(folder / f"{split}_f.npy") for split in splits if (folder / f"{split}_f.npy").is_file()}


def size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.iterdir()) / 2**20


def _read_meta(folder: Path) -> dict[str, Any] | None:
    with contextlib.suppress(OSError, ValueError):
        return json.loads((folder / META).read_text())
    return None


def _fsync_dir(folder: Path) -> None:
    for path in folder.iterdir():
        with open(path, "rb+") as f:
            os.fsync(f.fileno())


def _remove_stale(cache: Path, keep: Path, same_source: Callable[[dict[str, Any]], bool]) -> None:
    for other in cache.iterdir():
        if other == keep or other.name.startswith(".") or not other.is_dir():
            continue
        meta = _read_meta(other)
        if meta is not None and same_source(meta):
            log.info("removing the cache of an earlier state of the same images: %s", other)
            shutil.rmtree(other, ignore_errors=True)
