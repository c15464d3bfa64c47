"""Sprites (``data=sprites``): dSprites' factor grid, drawn by our own deterministic rasteriser; no download.

Every combination of shape (square, ellipse, heart), scale, orientation and position x and y once
(:mod:`.grid`), as binary images: white shapes on black, 0 and 255 in the cache.  The shape is the
class label for the probe; all five are factors.

The scene, in canvas units (the canvas is the unit square, x to the right, y down):

- position: the shape's centre (its area's centroid) is at ``16.5/64 + 31/64 * v`` along each axis for a
  position value v in [0, 1], so at 64x64 dSprites' 32 positions are the centres of pixels 16 .. 47, one
  pixel apart, and every shape at every scale stays inside the canvas (dSprites keeps its shapes in the
  centre of the canvas in the same way);
- scale s: the shape's size times s; at scale 1 the three shapes have the same area, (1/4)^2 of the canvas:
  a square of side 1/4, an ellipse of axes 0.40 and 0.20 (2:1), and a heart, the curve
  (x^2 + y^2 - 1)^3 = x^2 y^3 scaled to that area; the largest reaches 0.20 from its centre;
- orientation t: the shape turned by t radians counter-clockwise about its centre.

A pixel is on when at least half of it lies in the shape: 8 x 8 points per pixel are tested against the
shape's exact outline (the square's sides, the ellipse's and the heart's implicit equations).  Position
is a pure translation, so each base sprite (shape, scale, orientation) is rasterised once, at the 1/8
pixel offsets its positions need, and placed at every position: 720 base sprites make the full grid.
Positions fall on whole pixels at 64x64 with dSprites' 32 values; otherwise (other sizes, other counts)
a centre is placed to the nearest 1/8 pixel.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from omegaconf import DictConfig

from . import cache, grid
from .base import Arrays, Factor, label_of

log = logging.getLogger(__name__)

RENDER_VERSION = 1  # bump when an image would be drawn differently: the cache keys on it
SUPERSAMPLE = 8  # points per pixel along each axis; also the finest step of a position, in pixels
POSITION_LO, POSITION_SPAN = 16.5 / 64, 31 / 64  # a centre along an axis: LO + SPAN * v, in canvas units
UNIT = 0.25  # at scale 1 every shape covers UNIT^2 of the canvas
ELLIPSE_AXES = (UNIT * math.sqrt(2 / math.pi), UNIT * math.sqrt(1 / (2 * math.pi)))  # semi-axes 2:1, area UNIT^2
# The heart (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0 has area 3.6620 and its centroid at y = 0.2935 (measured on a
# 4000 x 4000 grid over [-1.5, 1.5]^2; tests/test_sprites.py checks both): centred there, scaled to UNIT^2.
HEART_AREA, HEART_CENTROID_Y = 3.6620, 0.2935
HEART_SCALE = UNIT / math.sqrt(HEART_AREA)
REACH = 0.2  # the farthest any shape reaches from its centre at scale 1 (the ellipse: 0.1995), canvas units


def inside(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether the points (u, v) (canvas units from the centre, v up, the shape at scale 1, unturned) are in ``shape``."""
    if shape == 0:  # square
        return np.maximum(np.abs(u), np.abs(v)) <= UNIT / 2
    if shape == 1:  # ellipse, its long axis along u
        return (u / ELLIPSE_AXES[0]) ** 2 + (v / ELLIPSE_AXES[1]) ** 2 <= 1
    x, y = u / HEART_SCALE, v / HEART_SCALE + HEART_CENTROID_Y  # heart, its lobes up
    return (x * x + y * y - 1) ** 3 - x * x * y ** 3 <= 0


def placements(values: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """For position values in [0, 1]: the pixel holding each centre, and the centre's offset in that pixel in
    1/SUPERSAMPLE steps (0 .. SUPERSAMPLE - 1), at ``size`` pixels."""
    centre = size * (POSITION_LO + POSITION_SPAN * np.asarray(values, dtype=np.float64))
    steps = np.round(centre * SUPERSAMPLE).astype(np.int64)
    return steps // SUPERSAMPLE, steps % SUPERSAMPLE


def tile_size(size: int) -> int:
    """The side of the square (odd, centred on the pixel holding the shape's centre) that holds any shape."""
    return 2 * math.ceil(REACH * size + 2) + 1


def base_sprite(shape: int, scale: float, orientation: float, size: int,
                phases: set[tuple[int, int]]) -> dict[tuple[int, int], np.ndarray]:
    """One base sprite rasterised at ``size`` pixels for each (y, x) offset in ``phases`` (1/SUPERSAMPLE pixel steps):
    {(qy, qx): a binary (T, T) uint8 tile}, the centre in tile pixel (T // 2, T // 2) plus the offset."""
    t, h = tile_size(size), SUPERSAMPLE
    # sample points over the tile with one extra pixel before it: an offset q shifts the shape by q samples
    g = np.arange(-h, t * h)
    offset = ((g + 0.5) / h - t // 2) / size  # canvas units from the centre, for offset 0
    dx, dy_up = offset[None, :], -offset[:, None]
    c, s = math.cos(orientation), math.sin(orientation)
    mask = inside(shape, (c * dx + s * dy_up) / scale, (-s * dx + c * dy_up) / scale).astype(np.int32)
    tiles = {}
    for qy, qx in phases:
        window = mask[h - qy : h - qy + t * h, h - qx : h - qx + t * h]
        covered = window.reshape(t, h, t, h).sum(axis=(1, 3))
        tiles[(qy, qx)] = (2 * covered >= h * h).astype(np.uint8)
    return tiles


def render(values: tuple[tuple[Any, ...], ...], size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The grid's binary images (0/255, shape (n, 1, size, size)) and their factor classes, one base sprite's
    positions at a time, in dSprites' order (posY fastest)."""
    shapes, scales, orientations, xs, ys = values
    pixel_x, phase_x = placements(np.array(xs), size)
    pixel_y, phase_y = placements(np.array(ys), size)
    phases = {(int(qy), int(qx)) for qy in phase_y for qx in phase_x}
    t = tile_size(size)
    top, left = pixel_y - t // 2 + t, pixel_x - t // 2 + t  # on a canvas padded by t on every side
    n_pos = len(xs) * len(ys)
    position_classes = np.indices((len(xs), len(ys))).reshape(2, -1).T
    for shape in range(len(shapes)):
        for i_scale, scale in enumerate(scales):
            for i_orient, orientation in enumerate(orientations):
                tiles = base_sprite(shape, scale, orientation, size, phases)
                _check_inside(tiles, top - t, left - t, phase_y, phase_x, size)
                padded = np.zeros((len(xs), len(ys), size + 2 * t, size + 2 * t), dtype=np.uint8)
                for ix in range(len(xs)):
                    for iy in range(len(ys)):
                        padded[ix, iy, top[iy] : top[iy] + t, left[ix] : left[ix] + t] = tiles[(phase_y[iy], phase_x[ix])]
                images = padded[:, :, t : t + size, t : t + size]
                classes = np.empty((n_pos, 5), dtype=np.int64)
                classes[:, :3] = (shape, i_scale, i_orient)
                classes[:, 3:] = position_classes
                yield images.reshape(n_pos, 1, size, size) * np.uint8(255), classes


def _check_inside(tiles: dict[tuple[int, int], np.ndarray], top: np.ndarray, left: np.ndarray, phase_y: np.ndarray,
                  phase_x: np.ndarray, size: int) -> None:
    """Every on pixel of every placed tile falls inside the canvas (else the geometry is wrong: a shape would be cut)."""
    for (qy, qx), tile in tiles.items():
        rows, cols = np.flatnonzero(tile.any(axis=1)), np.flatnonzero(tile.any(axis=0))
        if not len(rows):
            continue
        ys, xs = top[phase_y == qy], left[phase_x == qx]
        if ys.min() + rows[0] < 0 or ys.max() + rows[-1] >= size or xs.min() + cols[0] < 0 or xs.max() + cols[-1] >= size:
            raise RuntimeError(f"a sprite leaves the {size}x{size} canvas")


def values_of(cfg: Any) -> tuple[tuple[Any, ...], ...]:
    """Each factor's values for a ``data`` config: dSprites' ranges, with the config's number of values."""
    shapes, scales, orientations, positions, _ = grid.sizes(cfg)
    linspace = lambda lo, hi, n: tuple(float(v) for v in np.linspace(lo, hi, n))  # noqa: E731
    xy = linspace(0.0, 1.0, positions)
    return grid.SHAPES, linspace(0.5, 1.0, scales), linspace(0.0, 2 * math.pi, orientations), xy, xy


def arrays(cfg: DictConfig, root: Path, splits: tuple[str, ...] = ("train", "test")) -> Arrays:
    values = values_of(cfg)
    sizes = tuple(len(v) for v in values)
    size, variant = grid.image_size(cfg), cfg.get("variant", "binary")
    count = int(np.prod(sizes))
    fields = {"source": "sprites", "render": RENDER_VERSION, "grid": list(sizes), "image_size": size,
              "variant": variant, "test_fraction": cfg.test_fraction}

    def build(folder: Path) -> dict[str, Any]:
        started = time.perf_counter()
        log.info("drawing %d sprites (%s) at %dx%d, once", count, "x".join(map(str, sizes)), size, size)
        counts = grid.write(folder, render(values, size), count, size, variant, grid.holdout(count, cfg.test_fraction))
        return {"source": "sprites", "images": counts, "seconds": round(time.perf_counter() - started, 1)}

    folder, meta = cache.entry(root, "sprites", fields, build)
    factors = tuple(Factor(name, vals) for name, vals in zip(grid.NAMES, values))
    notes = {"cache": str(folder), "grid": "x".join(map(str, sizes)), "image_size": size, "variant": variant,
             "split": f"seeded hold-out of {cfg.test_fraction:g} of the grid (fixed, the same for every run)"}
    title = "Sprites" + (f" ({variant})" if variant != "binary" else "")
    return Arrays("sprites", title, label_of(cfg), f"sprites-{folder.name.rsplit('-', 1)[-1]}", grid.SHAPES,
                  cache.read(folder, splits), notes=notes, factors=factors,
                  factor_classes=cache.read_factors(folder, splits))
