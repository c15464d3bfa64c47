"""dSprites (``data=dsprites``): the published file, read into the cache.

``<root>/dsprites/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`` (disentanglement_lib's layout under
its data folder), from the deepmind/dsprites-dataset GitHub repository.  It holds ``imgs``
(737 280 x 64 x 64 uint8, 0 and 1), ``latents_classes`` and ``latents_values`` (737 280 x 6: color,
shape, scale, orientation, posX, posY), and a pickled ``metadata`` dict that is never read (no code
from a data file runs).  Colour is constant: dropped, the other five are the factors, shape the label.

What is read is checked (the keys, the shapes agreeing, pixels 0 or 1, one colour, every class with one
value), each problem one line.  The images are streamed out of the compressed file chunk by chunk, so
memory holds a chunk, never the 3 GB of pixels.  ``data.scales``, ``data.orientations`` and
``data.positions`` keep evenly spread classes of a factor (:func:`.grid.kept_classes`);
``data.image_size`` resamples by area (a pixel is on where at least half of it was);
``data.variant`` paints them as :mod:`.sprites` does.
"""

from __future__ import annotations

import logging
import time
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from omegaconf import DictConfig

from ..errors import DataError, squashed
from . import cache, grid
from .base import Arrays, Factor, label_of, md5_of

log = logging.getLogger(__name__)

FOLDER = "dsprites"
FILE = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
COLUMNS = ("color", *grid.NAMES)  # latents_classes / latents_values columns, in the file's order
CHUNK = 8192  # images decompressed and written at a time
WHERE = "https://github.com/deepmind/dsprites-dataset"


def path_of(root: Path) -> Path:
    return root / FOLDER / FILE


def _bad(path: Path, what: str) -> DataError:
    return DataError(f"{path} is not the dSprites file: {what}; fetch {FILE} again from {WHERE}")


def _latents(npz: Any, path: Path) -> tuple[np.ndarray, np.ndarray]:
    for key in ("imgs", "latents_classes", "latents_values"):
        if key not in npz.files:
            raise _bad(path, f"it has no '{key}' array (it has: {', '.join(npz.files)})")
    try:
        classes, values = npz["latents_classes"], npz["latents_values"]
    except ValueError as e:  # an object array (pickled): refused
        raise _bad(path, f"its latents cannot be read without unpickling ({squashed(e, 80)})") from None
    for name, a in (("latents_classes", classes), ("latents_values", values)):
        if a.ndim != 2 or a.shape[1] != len(COLUMNS):
            raise _bad(path, f"{name} is {'x'.join(map(str, a.shape))}, not N x 6 ({', '.join(COLUMNS)})")
    if len(classes) != len(values):
        raise _bad(path, f"latents_classes has {len(classes)} rows and latents_values {len(values)}")
    if not np.issubdtype(classes.dtype, np.integer) or classes.min(initial=0) < 0:
        raise _bad(path, f"latents_classes holds {classes.dtype} values, not classes 0, 1, 2, ...")
    if not np.issubdtype(values.dtype, np.number):
        raise _bad(path, f"latents_values holds {values.dtype} values, not numbers")
    return classes.astype(np.int64), values.astype(np.float64)


def _factor_values(classes: np.ndarray, values: np.ndarray, path: Path) -> tuple[tuple[Any, ...], ...]:
    """Each factor's value for each of its classes, checked: one value per class, every class present."""
    if len(np.unique(classes[:, 0])) != 1:
        raise _bad(path, f"its color column holds {len(np.unique(classes[:, 0]))} classes; dSprites has one")
    out = []
    for column, name in enumerate(COLUMNS[1:], start=1):
        pairs = np.unique(np.stack([classes[:, column], values[:, column]]), axis=1)
        n = int(classes[:, column].max()) + 1
        if pairs.shape[1] != n or not np.array_equal(pairs[0], np.arange(n)):
            raise _bad(path, f"its {name} classes 0..{n - 1} do not each have one value in latents_values")
        out.append(grid.SHAPES if name == "shape" and n == len(grid.SHAPES) else tuple(float(v) for v in pairs[1]))
    return tuple(out)


def _images(path: Path) -> tuple[zipfile.ZipFile, Any, tuple[int, ...]]:
    """The npz's ``imgs`` member opened as a stream past its header: (zip, stream, shape)."""
    archive = zipfile.ZipFile(path)
    stream = archive.open("imgs.npy")
    try:
        version = np.lib.format.read_magic(stream)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"npy format version {version}")
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(stream)
    except (ValueError, OSError) as e:
        archive.close()
        raise _bad(path, f"its imgs array cannot be read ({squashed(e, 80)})") from None
    if dtype != np.uint8 or fortran or len(shape) != 3 or shape[1:] != (grid.IMAGE_SIZE, grid.IMAGE_SIZE):
        archive.close()
        raise _bad(path, f"imgs is {'x'.join(map(str, shape))} {dtype}, not N x 64 x 64 uint8")
    return archive, stream, shape


def _blocks(stream: Any, count: int, rows: np.ndarray, classes: np.ndarray, size: int,
            path: Path) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The kept ``rows`` (sorted) of the file's ``count`` images, chunk by chunk: (n, 1, size, size) 0/255 and classes."""
    per = grid.IMAGE_SIZE * grid.IMAGE_SIZE
    for start in range(0, count, CHUNK):
        n = min(CHUNK, count - start)
        data = stream.read(n * per)
        if len(data) != n * per:
            raise _bad(path, f"imgs ends after {start + len(data) // per} of {count} images (truncated)")
        chunk = np.frombuffer(data, dtype=np.uint8).reshape(n, grid.IMAGE_SIZE, grid.IMAGE_SIZE)
        if chunk.max(initial=0) > 1:
            raise _bad(path, f"imgs holds the value {int(chunk.max())} (image {start + int(np.argmax(chunk.max(axis=(1, 2))))}); "
                             "dSprites' pixels are 0 and 1")
        keep = rows[(rows >= start) & (rows < start + n)]
        if len(keep):
            binary = grid.resize_binary(chunk[keep - start], size)
            yield binary[:, None] * np.uint8(255), classes[keep]


def arrays(cfg: DictConfig, root: Path, splits: tuple[str, ...] = ("train", "test")) -> Arrays:
    path = path_of(root)
    if not path.is_file():
        raise DataError(f"dSprites is not at {path}: put {FILE} there (published in {WHERE}; aebench does not download it)")
    size, variant = grid.image_size(cfg), cfg.get("variant", "binary")
    # how many classes of scale, orientation, posX and posY to keep (None: all the file has; shape: all three)
    wanted = [cfg.get("scales"), cfg.get("orientations"), cfg.get("positions"), cfg.get("positions")]
    fields = {"source": "dsprites", "md5": md5_of(path), "grid": list(wanted), "image_size": size,
              "variant": variant, "test_fraction": cfg.test_fraction}

    def build(folder: Path) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            npz = np.load(path, allow_pickle=False)
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise _bad(path, f"it cannot be opened as an .npz ({squashed(e, 80)})") from None
        with npz:
            file_classes, file_values = _latents(npz, path)
        full = _factor_values(file_classes, file_values, path)
        classes = file_classes[:, 1:]
        # the kept classes of each factor, renumbered 0..n-1 (shape: every class)
        for name, v, n in zip(grid.NAMES[1:], full[1:], wanted):
            if n is not None and n > len(v):
                raise DataError(f"data.{_count_key(name)}={n} is more than the {len(v)} values of {name} in {path}")
        kept = [np.arange(len(full[0]))] + [grid.kept_classes(len(v), n or len(v)) for v, n in zip(full[1:], wanted)]
        renumber = [np.full(len(v), -1, dtype=np.int64) for v in full]
        for r, k in zip(renumber, kept):
            r[k] = np.arange(len(k))
        mapped = np.stack([r[classes[:, i]] for i, r in enumerate(renumber)], axis=1)
        rows = np.flatnonzero((mapped >= 0).all(axis=1))
        archive, stream, shape = _images(path)
        with archive, stream:
            if shape[0] != len(classes):
                raise _bad(path, f"imgs has {shape[0]} images and latents_classes {len(classes)} rows")
            log.info("reading %d of the %d dSprites images into the cache, once", len(rows), len(classes))
            counts = grid.write(folder, _blocks(stream, shape[0], rows, mapped, size, path), len(rows), size, variant,
                                grid.holdout(len(rows), cfg.test_fraction))
        values = [[v[i] for i in k] for v, k in zip(full, kept)]
        return {"source": "dsprites", "file": str(path), "images": counts, "values": values,
                "seconds": round(time.perf_counter() - started, 1)}

    folder, meta = cache.entry(root, "dsprites", fields, build)
    factors = tuple(Factor(name, tuple(vals)) for name, vals in zip(grid.NAMES, meta["values"]))
    notes = {"cache": str(folder), "file": str(path), "grid": "x".join(str(len(f)) for f in factors),
             "image_size": size, "variant": variant,
             "split": f"seeded hold-out of {cfg.test_fraction:g} of the grid (fixed, the same for every run)"}
    title = "dSprites" + (f" ({variant})" if variant != "binary" else "")
    return Arrays("dsprites", title, label_of(cfg), f"dsprites-{folder.name.rsplit('-', 1)[-1]}",
                  tuple(str(v) for v in factors[0].values), cache.read(folder, splits), notes=notes, factors=factors,
                  factor_classes=cache.read_factors(folder, splits))


def _count_key(name: str) -> str:
    return {"scale": "scales", "orientation": "orientations"}.get(name, "positions")
