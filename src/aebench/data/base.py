"""What every data source shares: the data root, checksums, the restricted unpickler, and the
types the rest of aebench sees: :class:`Arrays` (a source's decoded uint8 images), :class:`ImageData`
(the splits a run reads, as float batches on its device) and :class:`Factor` (one known factor of
variation, for the sources that hand factors beside the images).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from ..errors import DataError
from .grid import GRID_SOURCES, label as grid_label

ENV_DATA_ROOT = "AEBENCH_DATA"


def default_root() -> Path:
    """``$AEBENCH_DATA``, else ``$XDG_CACHE_HOME/aebench``, else ``~/.cache/aebench``."""
    if os.environ.get(ENV_DATA_ROOT):
        return Path(os.environ[ENV_DATA_ROOT]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "aebench"


def resolve_root(root: str | None) -> Path:
    return Path(root).expanduser().resolve() if root else default_root().resolve()


def label_of(cfg: Any) -> str:
    """The data's short name in summaries and figures (``cfg``: a ``data`` config): the dataset, or
    ``folder:<name>[@<N>px]`` for a folder."""
    if cfg.name in GRID_SOURCES:
        return grid_label(cfg)
    if cfg.name != "folder" or not cfg.path:
        return cfg.name
    label = f"folder:{Path(cfg.path).expanduser().resolve().name}"
    return label + (f"@{cfg.image_size}px" if cfg.image_size else "")


def md5_of(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def check_writable(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".write-test-"):
            pass
    except OSError as e:
        raise DataError(
            f"data root {root} cannot be written ({e.strerror or e}); "
            f"set data.root=<a writable folder> or the environment variable {ENV_DATA_ROOT}"
        ) from None


def torchvision_download(make: Callable[[str], Any], root: Path, timeout: float) -> Path:
    """Run torchvision's own download (``make(folder)``) into a scratch folder under ``root``, with every
    socket bounded by ``timeout`` so that an offline machine fails fast; return the scratch folder.

    The caller moves what it needs out and removes the folder (:func:`scratch_download`).
    """
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    scratch = Path(tempfile.mkdtemp(prefix=".download-", dir=root))
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            make(str(scratch))
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    finally:
        socket.setdefaulttimeout(old_timeout)
    return scratch


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain numpy arrays, lists, dicts and strings, nothing else: no code from the file can run."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):  # noqa: D102
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")
        if module.startswith("numpy.core"):
            module = module.replace("numpy.core", "numpy._core" if hasattr(np, "_core") else "numpy.core", 1)
        return super().find_class(module, name)


def stratified_subset(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Indices (sorted) of ``n`` items, as close to every class's share as rounding allows, drawn with a
    generator seeded by ``seed``: a folder listed class by class still gives every class."""
    total = len(labels)
    rng = np.random.default_rng(seed)
    if n >= total:
        return np.arange(total)
    classes, counts = np.unique(labels, return_counts=True)
    share = counts * n / total
    take = np.floor(share).astype(int)
    # the remaining picks go to the classes with the largest remainders (ties: a seeded order)
    order = np.lexsort((rng.permutation(len(classes)), -(share - take)))
    take[order[: n - take.sum()]] += 1
    picks = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]
    return np.sort(np.concatenate(picks))


def seeded_subset(total: int, n: int, seed: int = 0) -> np.ndarray:
    """Indices (sorted) of a seeded draw of ``n`` of ``total`` items (all of them when n >= total)."""
    if n >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).permutation(total)[:n])


def to_float(u8: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 images as float32 in [0, 1] on ``device``: moved as bytes, converted and divided by 255 there
    (torchvision's ``ToTensor`` scaling).  Every image a run or a loaded run sees goes through here."""
    t = torch.from_numpy(u8) if isinstance(u8, np.ndarray) else u8
    return t.to(device).to(torch.float32).div_(255.0)


# --------------------------------------------------------------------------- what a source hands over
@dataclass(frozen=True)
class Factor:
    """One known factor of variation: its name, and the value each of its classes stands for.

    A source with factors gives every image one class per factor (an int64 column of
    ``Split.factors``, 0 .. ``len(values) - 1``); ``values[k]`` is what class k means: a number
    (dSprites' scale 0.5 .. 1, an orientation in radians, a bin's centre) or a name ("heart").
    """

    name: str
    values: tuple[float | str, ...]
    note: str = ""  # how the classes were made, where that is not plain (a binned numeric column)

    def __len__(self) -> int:
        return len(self.values)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "classes": len(self.values), "values": list(self.values),
                **({"note": self.note} if self.note else {})}


@dataclass
class Arrays:
    """A dataset as a source decoded it: uint8 images (N, C, H, W) per split, in memory or memory-mapped.

    ``splits`` maps "train", "test" (and "unlabeled" where a set has such a split) to (images, labels);
    labels are int64 arrays, or None for images without labels.  ``classes`` is None for an
    unlabelled set.  ``identity`` names the data and its preprocessing exactly (baseline caches and
    metrics.json key on it); ``label`` is its short name for tables and figures.

    Sources with known factors of variation also give ``factors`` (one :class:`Factor` per column)
    and ``factor_classes``: per split, an int64 (N, K) array of each image's class of every factor,
    row for row with the images.  Sources without factors leave both empty (``factors`` None).
    """

    name: str  # the config's data.name
    title: str
    label: str
    identity: str
    classes: tuple[str, ...] | None
    splits: dict[str, tuple[np.ndarray, np.ndarray | None]]
    ink: bool = False  # grey images of dark ink on light paper when drawn inverted (MNIST-like sets)
    notes: dict[str, Any] = field(default_factory=dict)  # what metrics.json should say about the data
    factors: tuple[Factor, ...] | None = None
    factor_classes: dict[str, np.ndarray] = field(default_factory=dict)  # split -> (N, K) int64

    @property
    def image_shape(self) -> tuple[int, int, int]:
        x = next(iter(self.splits.values()))[0]
        return tuple(int(s) for s in x.shape[1:])  # type: ignore[return-value]


# --------------------------------------------------------------------------- what a run reads
class Split:
    """One split a run reads: images as float (N, C*H*W) in [0, 1] on ``device``, labels as int64, and
    ``factors``: each image's class of every known factor, an int64 numpy array (N, K) on the CPU
    (None when the source has no factors; :attr:`ImageData.factors` says what the columns are).

    Resident: the whole split converted once (uint8 / 255, torchvision's ``ToTensor`` scaling) and
    held on the device.  Mapped: the uint8 array stays memory-mapped from the cache and each batch
    is gathered from it and converted on the device, so memory does not grow with the images.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray | None, device: torch.device, resident: bool,
                 factors: np.ndarray | None = None):
        self.device = device
        self.resident = resident
        self.shape = tuple(int(s) for s in images.shape[1:])
        flat = images.reshape(len(images), -1)
        if resident:
            self.x: torch.Tensor | None = to_float(np.ascontiguousarray(flat).copy(), device)
            self._u8 = None
        else:
            self.x = None
            self._u8 = flat
        self.y = torch.from_numpy(labels.astype(np.int64)).to(device) if labels is not None else None
        self.factors = np.asarray(factors, dtype=np.int64) if factors is not None else None

    @classmethod
    def of_tensor(cls, x: torch.Tensor, y: torch.Tensor | None, shape: tuple[int, ...],
                  factors: np.ndarray | None = None) -> "Split":
        """A resident split of flat float images already in [0, 1] (tests, benchmarks, synthetic data)."""
        split = cls.__new__(cls)
        split.device, split.resident, split.shape = x.device, True, tuple(shape)
        split.x, split._u8, split.y = x, None, y
        split.factors = np.asarray(factors, dtype=np.int64) if factors is not None else None
        return split

    def __len__(self) -> int:
        return len(self.x) if self.x is not None else len(self._u8)

    @property
    def pixels(self) -> int:
        return int(np.prod(self.shape))

    def take(self, idx: torch.Tensor) -> torch.Tensor:
        """The images at ``idx`` (a 1-D index tensor), in that order."""
        if self.x is not None:
            return torch.index_select(self.x, 0, idx.to(self.x.device))  # quicker than x[idx] on the CPU (docs/speed.md)
        return to_float(np.take(self._u8, idx.cpu().numpy(), axis=0), self.device)

    def rows(self, start: int, stop: int) -> torch.Tensor:
        if self.x is not None:
            return self.x[start:stop]
        return to_float(np.array(self._u8[start:stop]), self.device)  # a copy: torch takes no read-only (mapped) arrays

    def batches(self, size: int) -> Iterator[torch.Tensor]:
        for start in range(0, len(self), size):
            yield self.rows(start, start + size)

    def images(self, idx: torch.Tensor) -> torch.Tensor:
        """The images at ``idx`` as (n, C, H, W) floats."""
        return self.take(idx).reshape(-1, *self.shape)


class ConcatSplit(Split):
    """Several splits read as one (STL-10's pretraining set: its train and unlabelled images)."""

    def __init__(self, parts: list[Split]):  # noqa: D107 - no super().__init__: nothing of its own to hold
        self.parts = parts
        self.device = parts[0].device
        self.resident = all(p.resident for p in parts)
        self.shape = parts[0].shape
        self.x = None
        self.y = None
        self.factors = np.concatenate([p.factors for p in parts]) if all(p.factors is not None for p in parts) else None
        self._starts = np.cumsum([0] + [len(p) for p in parts])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def take(self, idx: torch.Tensor) -> torch.Tensor:
        cpu = idx.cpu()
        out = torch.empty(len(idx), self.pixels, device=self.device)
        for i, part in enumerate(self.parts):
            lo, hi = int(self._starts[i]), int(self._starts[i + 1])
            sel = torch.nonzero((cpu >= lo) & (cpu < hi)).flatten()
            if len(sel):
                out[sel.to(self.device)] = part.take(cpu[sel] - lo)
        return out

    def rows(self, start: int, stop: int) -> torch.Tensor:
        return self.take(torch.arange(start, min(stop, len(self))))


@dataclass
class ImageData:
    """The splits a run reads.  ``pretrain`` is what the autoencoder trains on (``train``, or more where a
    set has unlabelled images); ``train`` and ``test`` feed the read-outs.  ``classes`` is None when the
    images carry no labels: then no probe, k-NN or label budget can run.  ``factors`` is None when the
    images carry no known factors; else one :class:`Factor` per column of every split's ``factors``."""

    name: str
    title: str
    label: str
    identity: str
    classes: tuple[str, ...] | None
    train: Split
    test: Split
    pretrain: Split
    image_shape: tuple[int, int, int]
    ink: bool = False
    notes: dict[str, Any] = field(default_factory=dict)
    factors: tuple[Factor, ...] | None = None

    @property
    def labelled(self) -> bool:
        return self.classes is not None

    @property
    def factor_names(self) -> tuple[str, ...] | None:
        return tuple(f.name for f in self.factors) if self.factors is not None else None

    @property
    def factor_sizes(self) -> tuple[int, ...] | None:
        """The number of classes of each factor (dSprites: 3, 6, 40, 32, 32)."""
        return tuple(len(f) for f in self.factors) if self.factors is not None else None

    @property
    def device(self) -> torch.device:
        return self.train.device

    @property
    def input_dim(self) -> int:
        return self.train.pixels

    # The resident splits' tensors, for callers that hold a whole set in memory (tests, benchmarks).
    @property
    def train_x(self) -> torch.Tensor:
        return self._resident(self.train)

    @property
    def test_x(self) -> torch.Tensor:
        return self._resident(self.test)

    @property
    def train_y(self) -> torch.Tensor | None:
        return self.train.y

    @property
    def test_y(self) -> torch.Tensor | None:
        return self.test.y

    def _resident(self, split: Split) -> torch.Tensor:
        if split.x is None:
            raise ValueError(f"{self.title} is memory-mapped (data.in_memory=false or too large); read it by batches")
        return split.x

    @classmethod
    def of_tensors(cls, name: str, classes: tuple[str, ...] | None, train_x: torch.Tensor, train_y: torch.Tensor | None,
                   test_x: torch.Tensor, test_y: torch.Tensor | None, image_shape: tuple[int, int, int],
                   factors: tuple[Factor, ...] | None = None, train_factors: np.ndarray | None = None,
                   test_factors: np.ndarray | None = None) -> "ImageData":
        """A set of flat float images already on their device (tests, benchmarks, synthetic data); with
        ``factors``, the (N, K) class arrays of both splits too."""
        train = Split.of_tensor(train_x, train_y, image_shape, train_factors)
        test = Split.of_tensor(test_x, test_y, image_shape, test_factors)
        return cls(name, name, name, name, classes, train, test, train, tuple(image_shape), factors=factors)

    def describe(self) -> dict[str, Any]:
        """What metrics.json records about the data: enough to preprocess new images as the run did."""
        return {
            "name": self.name,
            "label": self.label,
            "title": self.title,
            "identity": self.identity,
            "image_shape": list(self.image_shape),
            "classes": list(self.classes) if self.classes is not None else None,
            "train_images": len(self.train),
            "test_images": len(self.test),
            "pretrain_images": len(self.pretrain),
            "in_memory": self.pretrain.resident,
            **({"factors": [f.describe() for f in self.factors]} if self.factors is not None else {}),
            **self.notes,
        }
