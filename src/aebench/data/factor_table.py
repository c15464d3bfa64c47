"""Known factors for a folder of images: ``DIR/factors.csv`` (``data=folder data.path=DIR``).

One row per image of the folder: a ``file`` column (the image's path relative to ``DIR``, with ``/``,
e.g. ``red/0001.png`` or ``train/red/0001.png``) and one column per factor, holding its value for that
image: numbers or names.  A factor's classes are its distinct values (numbers in increasing order,
names in alphabetical order); a numeric factor with more than ``MAX_CLASSES`` distinct values is
binned into ``MAX_CLASSES`` equal-width bins between its smallest and largest value (as MIG discretises
codes), each class's value then being its bin's centre.

Every image of the folder needs a row, every row an image and a value for every factor: anything
else is one line naming the row or the file.
"""

from __future__ import annotations

import csv
import hashlib
import math
import posixpath
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from .base import Factor

FILE = "factors.csv"
FILE_COLUMN = "file"
MAX_CLASSES = 20  # a numeric factor with more distinct values is binned into this many equal-width bins


@dataclass(frozen=True)
class FactorTable:
    """A folder's factors: what each column is, and each image's classes (keyed by its path relative to the folder)."""

    factors: tuple[Factor, ...]
    classes: dict[str, np.ndarray]  # relative posix path -> (K,) int64
    digest: str  # sha1 of the csv's bytes: the folder's cache entry keys on it

    def of(self, files: list[Path], folder: Path) -> np.ndarray:
        """The (n, K) classes of ``files`` (paths under ``folder``), row for row."""
        return np.stack([self.classes[f.relative_to(folder).as_posix()] for f in files])


def read(folder: Path, images: list[Path]) -> FactorTable | None:
    """``folder``'s factors.csv, checked against its ``images`` (None when the folder has no factors.csv)."""
    path = folder / FILE
    if not path.is_file():
        return None
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text (byte {e.start}); save it as UTF-8 CSV") from None
    rows = csv.reader(text.splitlines())
    header = [h.strip() for h in next(rows, [])]
    if FILE_COLUMN not in header:
        raise DataError(f"{path} has no '{FILE_COLUMN}' column (its header: {', '.join(header) or 'none'}); give a "
                        f"'{FILE_COLUMN}' column (each image's path relative to the folder) and one column per factor")
    names = [h for h in header if h != FILE_COLUMN]
    if not names or any(not n for n in names) or len(set(header)) != len(header):
        raise DataError(f"{path}'s header ({', '.join(header)}) needs one '{FILE_COLUMN}' column and one named column "
                        "per factor, each name once")
    where = header.index(FILE_COLUMN)
    known = {f.relative_to(folder).as_posix(): f for f in images}
    seen: dict[str, int] = {}
    values: list[list[str]] = [[] for _ in names]
    for row in rows:
        line = rows.line_num
        if not any(cell.strip() for cell in row):
            continue  # a blank line
        if len(row) != len(header):
            raise DataError(f"{path} line {line} has {len(row)} fields, its header {len(header)}; give every row "
                            f"a value for each of: {', '.join(header)}")
        name = posixpath.normpath(row[where].strip())
        if name not in known:
            raise DataError(f"{path} line {line} names {row[where].strip() or 'no file'}, which is not an image in "
                            f"{folder}; give each image's path relative to the folder (e.g. "
                            f"{next(iter(known), 'class/0001.png')})")
        if name in seen:
            raise DataError(f"{path} lines {seen[name]} and {line} both name {name}; give each image one row")
        seen[name] = line
        cells = [cell.strip() for i, cell in enumerate(row) if i != where]
        for factor, cell, column in zip(names, cells, values):
            if not cell:
                raise DataError(f"{path} line {line} ({name}) has no value for the factor '{factor}'; give every "
                                "image a value for every factor")
            column.append(cell)
    missing = [f for rel, f in known.items() if rel not in seen]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(f"{missing[0]} has no row in {path}{more}; give every image of the folder a row")
    order = list(seen)
    factors, columns = zip(*(_classes(factor, column, path) for factor, column in zip(names, values)))
    table = np.stack(columns, axis=1)
    return FactorTable(tuple(factors), {rel: table[i] for i, rel in enumerate(order)}, hashlib.sha1(raw).hexdigest())


def _classes(name: str, cells: list[str], path: Path) -> tuple[Factor, np.ndarray]:
    """A column's factor and each row's class: numbers in order (binned beyond MAX_CLASSES), else names in order."""
    try:
        numbers = np.array([float(c) for c in cells])
    except ValueError:
        distinct = sorted(set(cells))
        lookup = {v: i for i, v in enumerate(distinct)}
        return Factor(name, tuple(distinct)), np.array([lookup[c] for c in cells], dtype=np.int64)
    bad = np.flatnonzero(~np.isfinite(numbers))
    if len(bad):
        raise DataError(f"{path}: the factor '{name}' has the value {cells[bad[0]]}; give finite numbers or names")
    distinct = np.unique(numbers)
    if len(distinct) <= MAX_CLASSES:
        return Factor(name, tuple(float(v) for v in distinct)), np.searchsorted(distinct, numbers).astype(np.int64)
    edges = np.histogram_bin_edges(numbers, bins=MAX_CLASSES)
    classes = np.clip(np.digitize(numbers, edges[:-1]) - 1, 0, MAX_CLASSES - 1).astype(np.int64)
    centres = tuple(float(v) for v in (edges[:-1] + edges[1:]) / 2)
    note = (f"{len(distinct)} distinct values binned into {MAX_CLASSES} equal-width bins over "
            f"[{_short(distinct[0])}, {_short(distinct[-1])}]; a class's value is its bin's centre")
    return Factor(name, centres, note), classes


def _short(v: float) -> str:
    return f"{v:g}" if math.isfinite(v) else str(v)
