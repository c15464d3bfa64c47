"""One image file to a uint8 array, as every image a run sees is prepared: the run's channels and size.

Used when a folder is decoded into the cache (:mod:`.folder`) and when new images are
brought to a trained run's shape (:mod:`aebench.api`), so both see the same pixels.

- Channels: 1 converts to Pillow's grey ``L``, 3 to ``RGB`` (alpha dropped, palettes expanded),
  as torchvision's image loader does.
- Size: with ``size`` given, the shorter side is resized to it (bilinear, antialiased), then the
  centre is cropped to ``size`` x ``size`` (torchvision's ``Resize(size)`` + ``CenterCrop(size)``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError, squashed

# What torchvision's ImageFolder accepts; Pillow reads all of them.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")
GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def open_image(path: str | Path):
    """The image at ``path`` (its header read; pixels decoded on first use), or a one-line DataError naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(path)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot read the image {path} ({squashed(e, 120)}); fix or remove it") from None


def is_grey(image) -> bool:
    """Whether an image holds grey values only, judged from its mode (a palette: from its colours)."""
    if image.mode in GREY_MODES:
        return True
    if image.mode == "P":
        palette = image.getpalette() or []
        return palette[0::3] == palette[1::3] == palette[2::3]
    return False


def shape_after(width: int, height: int, size: int | None) -> tuple[int, int]:
    """(height, width) of an image of ``width`` x ``height`` once prepared with ``size``."""
    return (height, width) if size is None else (size, size)


def to_array(image, channels: int, size: int | None) -> np.ndarray:
    """The image as uint8 (channels, H, W): converted to grey or RGB, resized and centre-cropped to ``size``."""
    from PIL import Image

    image = image.convert("L" if channels == 1 else "RGB")
    if size is not None:
        w, h = image.size
        if (w, h) != (size, size):
            scale = size / min(w, h)
            new_w, new_h = (size, max(size, round(h * scale))) if w <= h else (max(size, round(w * scale)), size)
            image = image.resize((new_w, new_h), Image.BILINEAR)
            top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
            image = image.crop((left, top, left + size, top + size))
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def load(path: str | Path, channels: int, size: int | None) -> np.ndarray:
    """:func:`to_array` of the file at ``path``; a truncated or unreadable file is a one-line DataError."""
    from PIL import Image

    image = open_image(path)
    try:
        with image:
            return to_array(image, channels, size)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:  # truncated or damaged pixel data
        raise DataError(f"cannot decode the image {path} ({squashed(e, 120)}); fix or remove it") from None
