"""What the two sources of dSprites' factor grid share (:mod:`.sprites`, generated; :mod:`.dsprites`, the
published file): the grid, its reduced versions, the hold-out, the colour and noise variants, resizing,
and writing a grid into the cache.

dSprites' grid: shape (square, ellipse, heart), scale (6 values ``linspace(0.5, 1, 6)``), orientation
(40 values ``linspace(0, 2*pi, 40)``: 0 and 2*pi both, as dSprites has them) and position x and y
(32 values each, ``linspace(0, 1, 32)``): 3 x 6 x 40 x 32 x 32 = 737 280 images, every combination
once, in dSprites' order (the last factor, posY, fastest).  ``data.scales``, ``data.orientations``
and ``data.positions`` take fewer values of a factor (None: all of them).

This module imports nothing of the data package but the cache: :func:`label` is used by
:func:`.base.label_of`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from . import cache

GRID_SOURCES = ("sprites", "dsprites")
NAMES = ("shape", "scale", "orientation", "posX", "posY")  # dSprites' own names (its latents_names, less color)
SHAPES = ("square", "ellipse", "heart")
FULL_SIZES = (3, 6, 40, 32, 32)
IMAGE_SIZE = 64  # dSprites' images; data.image_size gives others
COUNT_KEYS = ("scales", "orientations", "positions")  # data.<key>: how many values of scale, orientation, posX/posY
VARIANTS = ("binary", "color", "noisy")
HOLDOUT_SEED = 0  # which images are held out for testing: fixed per grid, the same for every run whatever its seed
VARIANT_SEED = 1  # image i's colour or noise comes from a generator seeded with (VARIANT_SEED, i)
MIN_IMAGE_SIZE = 16  # the smallest square (scale 0.5) is then 2x2 pixels


def sizes(cfg: Any) -> tuple[int, ...]:
    """The grid's number of values per factor for a ``data`` config (``None`` counts: dSprites' full grid)."""
    scales, orientations, positions = (cfg.get(k) for k in COUNT_KEYS)
    full = dict(zip(NAMES, FULL_SIZES))
    return (3, scales or full["scale"], orientations or full["orientation"], positions or full["posX"],
            positions or full["posY"])


def image_size(cfg: Any) -> int:
    return int(cfg.get("image_size") or IMAGE_SIZE)


def label(cfg: Any) -> str:
    """The short name in tables and figures: ``sprites``, plus ``-color``/``-noisy``, the grid where it is not
    dSprites' full one (``:3x6x10x16x16``) and the size where it is not 64 (``@32px``)."""
    out = cfg.name
    if cfg.get("variant", "binary") != "binary":
        out += f"-{cfg.variant}"
    grid = sizes(cfg)
    if grid != FULL_SIZES:
        out += ":" + "x".join(map(str, grid))
    if image_size(cfg) != IMAGE_SIZE:
        out += f"@{image_size(cfg)}px"
    return out


def full_values() -> tuple[tuple[Any, ...], ...]:
    """dSprites' values of each factor, class by class."""
    return (SHAPES, _floats(np.linspace(0.5, 1.0, 6)), _floats(np.linspace(0.0, 2 * math.pi, 40)),
            _floats(np.linspace(0.0, 1.0, 32)), _floats(np.linspace(0.0, 1.0, 32)))


def _floats(a: np.ndarray) -> tuple[float, ...]:
    return tuple(float(v) for v in a)


def kept_classes(full: int, n: int) -> np.ndarray:
    """Which ``n`` of a factor's ``full`` classes a reduced grid of the published file keeps: evenly spread, the
    first and the last among them (``round(linspace(0, full - 1, n))``: distinct for n <= full)."""
    return np.round(np.linspace(0, full - 1, n)).astype(np.int64)


def combinations(grid: tuple[int, ...]) -> np.ndarray:
    """Every combination of the grid's classes once, in dSprites' order (the last factor fastest): (N, K) int64."""
    return np.indices(grid).reshape(len(grid), -1).T.astype(np.int64)


def holdout(count: int, fraction: float) -> np.ndarray:
    """A boolean mask of the test images: a seeded ``fraction`` of the grid, fixed per grid (not per run)."""
    test = np.zeros(count, dtype=bool)
    test[np.random.default_rng(HOLDOUT_SEED).permutation(count)[: int(round(fraction * count))]] = True
    return test


def channels(variant: str) -> int:
    return 1 if variant == "binary" else 3


def paint(binary: np.ndarray, indices: Iterable[int], variant: str) -> np.ndarray:
    """The ``variant`` of binary images (n, 1, S, S) holding 0 and 255, as disentanglement_lib draws them:

    - ``binary``: as they are;
    - ``color``: the shape in one colour per image, each channel uniform in [0.5, 1] (the background black);
    - ``noisy``: the background uniform noise in [0, 1] per pixel and channel, the shape white.

    disentanglement_lib draws a new colour or noise every time it shows an image; here image ``i`` (its index
    in the grid) always has the same, drawn from a generator seeded with (VARIANT_SEED, i): the cache holds
    each image once.
    """
    if variant == "binary":
        return binary
    n, _, h, w = binary.shape
    out = np.empty((n, 3, h, w), dtype=np.uint8)
    on = binary[:, 0] > 0
    for row, i in enumerate(indices):
        rng = np.random.default_rng([VARIANT_SEED, int(i)])
        if variant == "color":
            colour = np.round(rng.uniform(0.5, 1.0, 3) * 255).astype(np.uint8)
            out[row] = colour[:, None, None] * on[row]
        else:
            out[row] = rng.integers(0, 256, (3, h, w), dtype=np.uint8)
            out[row][:, on[row]] = 255
    return out


def area_weights(source: int, size: int) -> np.ndarray:
    """(size, source) weights of an area-average resampling: output pixel i is the mean of the source pixels
    it covers, each by the share of it that falls in output pixel i."""
    edges = np.linspace(0, source, size + 1)
    lo, hi = edges[:-1, None], edges[1:, None]
    j = np.arange(source)[None, :]
    overlap = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0, None)
    return overlap / (source / size)


def resize_binary(on: np.ndarray, size: int) -> np.ndarray:
    """Binary images (n, H, W) (non-zero: on) at ``size`` x ``size``, as uint8 0/1: a pixel is on where at least
    half of its area is covered (area-average resampling, then the threshold 1/2)."""
    n, h, w = on.shape
    if (h, w) == (size, size):
        return (on > 0).astype(np.uint8)
    rows, cols = area_weights(h, size), area_weights(w, size)
    covered = np.einsum("ih,nhw,jw->nij", rows, (on > 0).astype(np.float32), cols, optimize=True)
    return (covered >= 0.5 - 1e-6).astype(np.uint8)


def write(folder: Path, blocks: Iterator[tuple[np.ndarray, np.ndarray]], count: int, size: int, variant: str,
          test: np.ndarray) -> dict[str, int]:
    """Write the grid's images into a cache entry being built, split by the ``test`` mask.

    ``blocks`` yields (binary images (n, 1, S, S) holding 0/255, their factor classes (n, K)) in grid order,
    ``count`` images in all; each is painted in the ``variant`` and goes to ``train`` or ``test``.  The shape
    class (factor 0) is the label.  Returns the image count of each split.
    """
    shape = (channels(variant), size, size)
    n_test = int(test.sum())
    writers = {"train": cache.Writer(folder, "train", count - n_test, shape, labelled=True, factors=len(NAMES)),
               "test": cache.Writer(folder, "test", n_test, shape, labelled=True, factors=len(NAMES))}
    start = 0
    for images, classes in blocks:
        stop = start + len(images)
        painted = paint(images, range(start, stop), variant)
        held = test[start:stop]
        for split, rows in (("train", ~held), ("test", held)):
            if rows.any():
                writers[split].add(painted[rows], classes[rows, 0], classes[rows])
        start = stop
    if start != count:
        raise RuntimeError(f"the grid gave {start} images, {count} expected")
    for writer in writers.values():
        writer.close()
    return {"train": count - n_test, "test": n_test}
