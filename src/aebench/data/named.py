"""What the named colour sets (:mod:`.cifar`, :mod:`.svhn`, :mod:`.stl10`) share: find their files in
torchvision's layout under the data root, fetch them with torchvision's own download where missing,
verify them against their md5s, and decode them once into the uint8 cache.

The raw files are verified when a cache entry is built, not on every run: the entry's key holds the
md5s the files had to match (so other files can never hit an entry made from the right ones), and
its ``meta.json`` records ``verified_md5: true``.  Runs then memory-map the entry and never read the
raw files again.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import DataError, squashed
from . import cache
from .base import check_writable, md5_of, torchvision_download

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT = 5.0  # seconds per socket operation of torchvision's download: an offline machine fails fast
CHUNK = 4096  # images per write into the cache


@dataclass(frozen=True)
class Layout:
    """Where a named set's raw files live under the data root, and how to get them."""

    title: str  # "CIFAR-10"
    folder: str  # torchvision's folder under the root ("" for files directly in it)
    fetch: Callable[[str, list[str]], Any]  # torchvision's download of (at least) the missing files into a folder
    fix: str  # how to get them by hand; {root} and {folder} are filled in


def where(layout: Layout, root: Path) -> Path:
    return root / layout.folder if layout.folder else root


def decoded(name: str, label: str, layout: Layout, root: Path, files: Sequence[str], md5: dict[str, str],
            download: bool, decode: Callable[[Path, Path], dict[str, Any]],
            check: Callable[[], None] | None = None) -> tuple[Path, dict[str, Any]]:
    """The cache entry of ``files`` (decoded by ``decode(raw folder, entry folder)``); (entry folder, meta).

    Only when the entry is missing: ``check()`` (what decoding needs, e.g. an optional package), then the
    files are fetched if missing (``download``) and verified against ``md5``, then decoded.
    """
    fields = {"source": name, "md5": {f: md5[f] for f in files}}

    def build(out: Path) -> dict[str, Any]:
        if check is not None:
            check()
        raw = ensure(layout, root, files, md5, download)
        meta = decode(raw, out)
        return {"source": name, "raw": [str(raw / f) for f in files], "verified_md5": True, **meta}

    return cache.entry(root, label, fields, build)


def ensure(layout: Layout, root: Path, files: Sequence[str], md5: dict[str, str], download: bool) -> Path:
    """The folder holding ``files``, each verified against ``md5``: fetched with torchvision's download
    where missing (when ``download``), else a one-line DataError saying where to put them."""
    raw = where(layout, root)
    missing = [f for f in files if not (raw / f).is_file()]
    verified: set[str] = set()
    tried = ""
    if missing and download:
        log.info("%s: %s missing under %s; trying torchvision's download", layout.title, ", ".join(missing), raw)
        try:
            verified = _fetch(layout, root, missing, md5)
        except Exception as e:  # noqa: BLE001 - offline, refused, a bad archive: all reported below
            tried = f"torchvision's download failed ({squashed(e, 100)}); "
        missing = [f for f in files if not (raw / f).is_file()]
        if missing and not tried:
            tried = "torchvision's download gave no copy of them that matches its md5; "
    if missing:
        off = "" if download else "data.download=false; "
        raise DataError(f"{layout.title} is not under {raw} (missing: {', '.join(missing)}); {off}{tried}"
                        f"{layout.fix.format(root=root, folder=raw)}")
    for f in files:
        if f not in verified and md5_of(raw / f) != md5[f]:
            raise DataError(f"{raw / f} fails its md5 checksum (truncated or altered); delete it and fetch it again: "
                            f"{layout.fix.format(root=root, folder=raw)}")
    return raw


def _fetch(layout: Layout, root: Path, missing: list[str], md5: dict[str, str]) -> set[str]:
    """torchvision's download into a scratch folder under ``root``; the missing files whose md5 matches are
    moved into place (a rename: atomic, nothing half-written is ever there); the scratch folder goes."""
    check_writable(root)
    scratch = torchvision_download(lambda folder: layout.fetch(folder, missing), root, DOWNLOAD_TIMEOUT)
    moved = set()
    try:
        got = where(layout, scratch)
        dest = where(layout, root)
        dest.mkdir(parents=True, exist_ok=True)
        for f in missing:
            if (got / f).is_file() and md5_of(got / f) == md5[f]:
                os.replace(got / f, dest / f)
                moved.add(f)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return moved


def add_chunks(writer: cache.Writer, images: Any, labels: Any = None) -> None:
    """Add (possibly memory-mapped, possibly transposed) arrays to a cache split, ``CHUNK`` images at a time:
    memory holds one chunk, however large the file."""
    for start in range(0, len(images), CHUNK):
        stop = start + CHUNK
        writer.add(images[start:stop], labels[start:stop] if labels is not None else None)
