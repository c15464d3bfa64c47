"""The named colour sets (CIFAR-10, SVHN, STL-10) on tiny files written in their exact on-disk formats.

The real correctness check: torchvision's own dataset classes read the same files, and every pixel
and label we decode must equal theirs.  The md5 check stays on: it is pointed at the test's files.
"""

from __future__ import annotations

import json
import pickle
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets as tvd

from aebench import baselines, data
from aebench.data import cifar, named, stl10, svhn
from aebench.errors import DataError

from conftest import only_run_dir, read_metrics, run_in_process

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def colour_images(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3, size, size) uint8 images whose colour says their class (a probe can learn it), and labels 0..9."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    hues = np.random.default_rng(99).integers(30, 226, size=(10, 3))
    noise = rng.integers(-30, 31, size=(n, 3, size, size))
    return np.clip(hues[labels][:, :, None, None] + noise, 0, 255).astype(np.uint8), labels


def point_md5_at(monkeypatch, module, folder: Path, names) -> None:
    """The reader's checksums, for the files this test wrote (the check itself stays on)."""
    monkeypatch.setattr(module, "MD5", {n: data.md5_of(folder / n) for n in names})


# --------------------------------------------------------------------------- CIFAR-10's pickle batches
class Py2Pickler(pickle._Pickler):
    """Pickles as the CIFAR-10 batches were made (Python 2's cPickle, protocol 2): strings as BINSTRING,
    numpy's reconstruction under numpy.core.  No ``_codecs.encode`` global, which Python 3 writes for bytes."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        n = len(raw)
        self.write((pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)) + raw)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str

    def save_global(self, obj, name=None):
        module = obj.__module__.replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode())
        self.memoize(obj)


def py2_pickle(obj, path: Path) -> None:
    with open(path, "wb") as f:
        Py2Pickler(f, protocol=2).dump(obj)


def write_cifar(root: Path, per_batch: int = 12, test: int = 20) -> Path:
    folder = root / cifar.FOLDER
    folder.mkdir(parents=True)
    for i, name in enumerate((*cifar.TRAIN, *cifar.TEST)):
        x, y = colour_images(test if name == "test_batch" else per_batch, 32, seed=i)
        py2_pickle({"batch_label": f"batch {name}", "labels": [int(v) for v in y], "data": x.reshape(len(x), 3072),
                    "filenames": [f"img_{i}_{j}.png" for j in range(len(x))]}, folder / name)
    py2_pickle({"num_cases_per_batch": per_batch, "label_names": CIFAR_CLASSES, "num_vis": 3072}, folder / cifar.META)
    return folder


@pytest.fixture
def cifar_root(tmp_path, monkeypatch):
    folder = write_cifar(tmp_path / "root")
    point_md5_at(monkeypatch, cifar, folder, cifar.FILES)
    return tmp_path / "root"


def test_the_test_pickles_need_only_the_globals_real_cifar_batches_have(cifar_root):
    import pickletools

    found = set()
    for name in cifar.FILES:
        for op, arg, _ in pickletools.genops((cifar_root / cifar.FOLDER / name).read_bytes()):
            if op.name == "GLOBAL":
                found.add(arg)
    assert found == {"numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}


def test_cifar10_reads_as_torchvision_does(cifar_root, monkeypatch):
    arrays = data.open_arrays(data.as_config("cifar10", download=False), cifar_root)
    assert (arrays.name, arrays.title, arrays.label, arrays.identity) == ("cifar10", "CIFAR-10", "cifar10", "cifar10")
    assert arrays.classes == tuple(CIFAR_CLASSES) and arrays.ink is False and arrays.image_shape == (3, 32, 32)
    assert arrays.notes["verified_md5"] is True
    meta = json.loads((Path(arrays.notes["cache"]) / "meta.json").read_text())
    assert meta["verified_md5"] is True and meta["fields"]["md5"] == cifar.MD5
    # torchvision verifies its own md5s: give it the test files' too
    monkeypatch.setattr(tvd.CIFAR10, "train_list", [[n, cifar.MD5[n]] for n in cifar.TRAIN])
    monkeypatch.setattr(tvd.CIFAR10, "test_list", [[n, cifar.MD5[n]] for n in cifar.TEST])
    monkeypatch.setattr(tvd.CIFAR10, "meta", {**tvd.CIFAR10.meta, "md5": cifar.MD5[cifar.META]})
    for split, train in (("train", True), ("test", False)):
        theirs = tvd.CIFAR10(str(cifar_root), train=train, download=False)
        x, y = arrays.splits[split]
        assert x.shape == (60 if train else 20, 3, 32, 32) and x.dtype == np.uint8
        assert np.array_equal(y, theirs.targets)
        image, label = theirs[0]
        assert image.mode == "RGB" and np.array_equal(x[0], np.asarray(image).transpose(2, 0, 1)) and y[0] == label
        assert np.array_equal(x, theirs.data.transpose(0, 3, 1, 2))
        assert list(theirs.classes) == list(arrays.classes)


def test_a_second_load_reads_the_cache_without_verifying_or_decoding_again(cifar_root, monkeypatch):
    cfg = data.as_config("cifar10", download=False)
    first = data.open_arrays(cfg, cifar_root)
    meta = Path(first.notes["cache"]) / "meta.json"
    stamp = meta.stat().st_mtime_ns

    def refuse(*args):
        raise AssertionError("called on a cache hit")

    monkeypatch.setattr(cifar, "_decode", refuse)
    monkeypatch.setattr(named, "md5_of", refuse)
    second = data.open_arrays(cfg, cifar_root)
    assert second.notes["cache"] == first.notes["cache"] and meta.stat().st_mtime_ns == stamp
    assert isinstance(second.splits["train"][0], np.memmap)
    assert np.array_equal(second.splits["train"][0], first.splits["train"][0])


def test_cifar10_without_one_batch_names_it_and_says_where_the_files_go(cifar_root):
    (cifar_root / cifar.FOLDER / "data_batch_3").unlink()
    with pytest.raises(DataError) as e:
        data.open_arrays(data.as_config("cifar10", download=False), cifar_root)
    msg = str(e.value)
    assert "\n" not in msg and "(missing: data_batch_3)" in msg
    assert f"extract it into {cifar_root}" in msg and "data_batch_1..5, test_batch and batches.meta" in msg


def test_a_corrupted_file_fails_its_md5_and_is_named(cifar_root):
    path = cifar_root / cifar.FOLDER / "test_batch"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError) as e:
        data.open_arrays(data.as_config("cifar10", download=False), cifar_root)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and "md5" in msg and "delete it" in msg
    assert not list((cifar_root / "cache").glob("cifar10-*"))  # nothing cached from it


def test_offline_download_fails_fast_with_the_same_advice(tmp_path, monkeypatch):
    calls = []

    def offline(make, root, timeout):
        calls.append(timeout)
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(named, "torchvision_download", offline)
    for name, missing in (("cifar10", "data_batch_1"), ("svhn", "train_32x32.mat"), ("stl10", "train_X.bin")):
        with pytest.raises(DataError) as e:
            data.open_arrays(data.as_config(name, download=True), tmp_path)
        msg = str(e.value)
        assert "\n" not in msg and missing in msg
        assert "torchvision's download failed" in msg and "name resolution" in msg
    assert calls == [named.DOWNLOAD_TIMEOUT] * 3 and named.DOWNLOAD_TIMEOUT <= 10
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".download-")]


def test_a_download_moves_the_verified_files_into_place(tmp_path, monkeypatch):
    source = write_cifar(tmp_path / "elsewhere")
    point_md5_at(monkeypatch, cifar, source, cifar.FILES)
    root = tmp_path / "root"
    root.mkdir()

    def fake_torchvision(make, root_, timeout):  # what torchvision's download leaves in its scratch folder
        scratch = root_ / ".download-fake"
        (scratch / cifar.FOLDER).mkdir(parents=True)
        for f in cifar.FILES:
            (scratch / cifar.FOLDER / f).write_bytes((source / f).read_bytes())
        (scratch / "cifar-10-python.tar.gz").write_bytes(b"archive")
        return scratch

    monkeypatch.setattr(named, "torchvision_download", fake_torchvision)
    arrays = data.open_arrays(data.as_config("cifar10", download=True), root)
    assert len(arrays.splits["train"][0]) == 60
    assert sorted(p.name for p in (root / cifar.FOLDER).iterdir()) == sorted(cifar.FILES)
    assert not (root / ".download-fake").exists()


# --------------------------------------------------------------------------- SVHN's .mat files
def write_svhn(root: Path, train: int = 60, test: int = 20) -> None:
    from scipy.io import savemat

    root.mkdir(parents=True, exist_ok=True)
    for i, (name, n) in enumerate((("train_32x32.mat", train), ("test_32x32.mat", test))):
        x, y = colour_images(n, 32, seed=10 + i)
        y = np.where(y == 0, 10, y).astype(np.uint8).reshape(-1, 1)  # the digit 0 is stored as 10
        savemat(root / name, {"X": x.transpose(2, 3, 1, 0), "y": y})  # X: H x W x C x N


@pytest.fixture
def svhn_root(tmp_path, monkeypatch):
    root = tmp_path / "root"
    write_svhn(root)
    point_md5_at(monkeypatch, svhn, root, svhn.FILES)
    return root


def test_svhn_reads_as_torchvision_does_with_10_as_the_digit_0(svhn_root, monkeypatch):
    arrays = data.open_arrays(data.as_config("svhn", download=False), svhn_root)
    assert (arrays.title, arrays.identity, arrays.classes) == ("SVHN", "svhn", tuple("0123456789"))
    monkeypatch.setattr(tvd.SVHN, "split_list", {s: ["", f"{s}_32x32.mat", svhn.MD5[f"{s}_32x32.mat"]]
                                                 for s in ("train", "test")})
    for split, n in (("train", 60), ("test", 20)):
        x, y = arrays.splits[split]
        theirs = tvd.SVHN(str(svhn_root), split=split, download=False)
        assert x.shape == (n, 3, 32, 32) and np.array_equal(y, theirs.labels)
        assert 0 in y and 10 not in y and y.min() == 0 and y.max() == 9
        image, label = theirs[0]
        assert np.array_equal(x[0], np.asarray(image).transpose(2, 0, 1)) and y[0] == label
        assert np.array_equal(x, theirs.data)


def test_svhn_without_scipy_says_which_extra_to_install(svhn_root, monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy.io", None)  # import scipy.io raises ImportError
    with pytest.raises(DataError) as e:
        data.open_arrays(data.as_config("svhn", download=False), svhn_root)
    assert "\n" not in str(e.value) and "pip install 'aebench[svhn]'" in str(e.value)


# --------------------------------------------------------------------------- STL-10's raw binaries
def write_stl10(root: Path, train: int = 60, test: int = 20, unlabeled: int = 30) -> Path:
    folder = root / stl10.FOLDER
    folder.mkdir(parents=True)
    for i, (split, n) in enumerate((("train", train), ("test", test))):
        x, y = colour_images(n, 96, seed=20 + i)
        (folder / f"{split}_X.bin").write_bytes(x.transpose(0, 1, 3, 2).tobytes())  # channels stored column-major
        (folder / f"{split}_y.bin").write_bytes((y + 1).astype(np.uint8).tobytes())  # labels 1..10
    x, _ = colour_images(unlabeled, 96, seed=30)
    (folder / "unlabeled_X.bin").write_bytes(x.transpose(0, 1, 3, 2).tobytes())
    return folder


@pytest.fixture
def stl10_root(tmp_path, monkeypatch):
    folder = write_stl10(tmp_path / "root")
    point_md5_at(monkeypatch, stl10, folder, (*stl10.LABELLED, *stl10.UNLABELED))
    return tmp_path / "root"


def test_stl10_reads_as_torchvision_does_with_and_without_unlabelled_images(stl10_root, monkeypatch):
    cfg = data.as_config("stl10", download=False, unlabeled=True)
    arrays = data.open_arrays(cfg, stl10_root, ("train", "test", "unlabeled"))
    assert (arrays.title, arrays.identity, arrays.classes) == ("STL-10", "stl10", stl10.CLASSES)
    assert arrays.image_shape == (3, 96, 96) and arrays.notes["verified_md5"] is True
    monkeypatch.setattr(tvd.STL10, "train_list", [[n, stl10.MD5[n]] for n in
                                                  ("train_X.bin", "train_y.bin", "unlabeled_X.bin")])
    monkeypatch.setattr(tvd.STL10, "test_list", [[n, stl10.MD5[n]] for n in ("test_X.bin", "test_y.bin")])
    for split, n in (("train", 60), ("test", 20), ("unlabeled", 30)):
        x, y = arrays.splits[split]
        theirs = tvd.STL10(str(stl10_root), split=split, download=False)
        assert x.shape == (n, 3, 96, 96) and np.array_equal(x, theirs.data)
        assert np.array_equal(x[0], np.asarray(theirs[0][0]).transpose(2, 0, 1))
        if split == "unlabeled":
            assert y is None
        else:
            assert np.array_equal(y, theirs.labels) and y.min() == 0 and y.max() == 9
    # the pipeline pretrains on train + unlabelled, the read-outs see train and test; the identity does not change
    loaded = data.load(cfg, stl10_root, torch.device("cpu"))
    assert (len(loaded.pretrain), len(loaded.train), len(loaded.test), loaded.identity) == (90, 60, 20, "stl10")
    assert torch.equal(loaded.pretrain.rows(0, 60), loaded.train.rows(0, 60))
    assert torch.allclose(loaded.pretrain.rows(60, 90).reshape(-1, 3, 96, 96),
                          torch.from_numpy(np.asarray(arrays.splits["unlabeled"][0], dtype=np.float32)) / 255)
    # without unlabelled images the large file is not needed at all
    (stl10_root / stl10.FOLDER / "unlabeled_X.bin").unlink()
    plain = data.load(data.as_config("stl10", download=False), stl10_root, torch.device("cpu"))
    assert len(plain.pretrain) == 60 and plain.identity == "stl10"


# --------------------------------------------------------------------------- the real command, in-process
# No raw-pixel probe, and short probes: on 60 separable images L-BFGS runs long to reach its tolerance.
RUN = ["epochs=1", "probe.label_budgets=[]", "probe.pixel_baseline=false", "probe.max_iter=50", "figures=true",
       "progress=false", "device=cpu"]


# Every reader once, both networks on CIFAR-10; STL-10 (96x96, three halvings) with its unlabelled images.
@pytest.mark.parametrize("name, arch", [("cifar10", "mlp"), ("cifar10", "conv"), ("svhn", "mlp"), ("stl10", "conv")])
def test_a_run_on_a_named_colour_set(name, arch, tmp_path, monkeypatch):
    root = tmp_path / "root"
    writers = {"cifar10": (lambda: write_cifar(root), cifar, cifar.FILES),
               "svhn": (lambda: (write_svhn(root), root)[1], svhn, svhn.FILES),
               "stl10": (lambda: write_stl10(root), stl10, (*stl10.LABELLED, *stl10.UNLABELED))}
    write, module, files = writers[name]
    point_md5_at(monkeypatch, module, write(), files)
    # the randomized PCA (exact beyond 60 rows' rank all the same): the exact one's 3072x3072 eigh costs ~20 s here
    monkeypatch.setattr(baselines, "PCA_EXACT_MAX", 1024)
    monkeypatch.chdir(tmp_path)
    extra = ["data.unlabeled=true"] if name == "stl10" else []
    code, err = run_in_process([f"data={name}", f"data.root={root}", f"arch={arch}", *RUN, *extra])
    assert code == 0, err
    run = only_run_dir(tmp_path)
    m = read_metrics(run)
    assert m["data"]["identity"] == name and m["data"]["image_shape"][0] == 3
    assert m["data"]["train_images"] == 60 and m["data"]["test_images"] == 20
    if name == "stl10":
        assert m["data"]["pretrain_images"] == 90
    assert 0 < m["recon_mse"] < 1 and 0.1 <= m["probe_accuracy"] <= 1 and 0.1 <= m["pca_probe_accuracy"] <= 1
    from PIL import Image

    path = run / "figures" / "reconstructions.png"
    with Image.open(path) as im:
        assert im.mode in ("RGB", "RGBA")
        rgb = np.asarray(im.convert("RGB")).astype(int)
    half = rgb.shape[1] // 2  # test images on the left, their reconstructions on the right
    for side in (rgb[:, :half], rgb[:, half:]):
        assert (np.abs(side[..., 0] - side[..., 1]) > 8).mean() > 0.05, "reconstructions.png is grey"
    assert (run / "figures" / "loss.png").is_file()


def test_the_command_says_what_is_missing_in_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = run_in_process(["data=cifar10", f"data.root={tmp_path / 'root'}", "data.download=false", *RUN])
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("aebench: error: CIFAR-10 is not under") and "data.download=false" in lines[0]
