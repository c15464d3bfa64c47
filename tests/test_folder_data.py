"""Your own images (data=folder): layouts, the cache, colour, unlabelled folders, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aebench import data, rundir
from aebench.errors import DataError

from conftest import read_metrics, run_in_process

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
FAST = ["epochs=1", "progress=false", "probe.label_budgets=[]", "probe.every_epoch=false", "figures=false",
        "arch.hidden=[32]", "latent=4"]


def write_images(folder: Path, arrays: list[np.ndarray], suffix: str = ".png", mode: str | None = None) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, a in enumerate(arrays):
        path = folder / f"{i:04d}{suffix}"
        Image.fromarray(a, mode=mode).save(path)
        paths.append(path)
    return paths


def colour_blobs(n: int, colour: tuple[int, int, int], size: int = 12, seed: int = 0) -> list[np.ndarray]:
    """Images of one dominant colour with noise: a class a probe can tell apart."""
    rng = np.random.default_rng(seed)
    base = np.array(colour, dtype=np.float64)
    return [np.clip(base + rng.normal(0, 30, (size, size, 3)), 0, 255).astype(np.uint8) for _ in range(n)]


def config(path: Path, **settings) -> dict:
    return data.as_config("folder", path=str(path), **settings)


@pytest.fixture(scope="module")
def mnist_pngs(tmp_path_factory, data_root) -> Path:
    out = tmp_path_factory.mktemp("mnist_png") / "mnist"
    subprocess.run([sys.executable, str(REPO / "scripts" / "mnist_to_folder.py"), str(out), "--train", "600",
                    "--test", "200"], check=True, capture_output=True)
    return out


def test_a_folder_of_mnist_pngs_holds_exactly_the_mnist_pixels(mnist_pngs, data_root, tmp_path):
    ds = data.load(config(mnist_pngs), tmp_path, CPU)
    assert ds.classes == tuple(str(d) for d in range(10)) and ds.image_shape == (1, 28, 28)
    assert (len(ds.train), len(ds.test)) == (600, 200)
    mnist = data.load("mnist", data_root, CPU, train_subset=600, test_subset=200)
    # the folder lists the images class by class, each class in file (= MNIST) order
    order = torch.argsort(mnist.train_y, stable=True)
    assert torch.equal(ds.train_x, mnist.train_x[order]) and torch.equal(ds.train_y, mnist.train_y[order])
    assert ds.describe()["split"] == "train/ and test/ folders"


def test_the_cache_is_built_once_and_rebuilt_when_the_folder_changes(tmp_path):
    folder = tmp_path / "imgs"
    for c, colour in enumerate([(200, 0, 0), (0, 200, 0)]):
        write_images(folder / f"class{c}", colour_blobs(10, colour, seed=c))
    root = tmp_path / "root"
    first = data.load(config(folder), root, CPU)
    entries = [p for p in (root / "cache").iterdir() if not p.name.startswith(".")]
    assert len(entries) == 1 and json.loads((entries[0] / "meta.json").read_text())["classes"] == ["class0", "class1"]
    stamp = (entries[0] / "train_x.npy").stat().st_mtime_ns

    def no_decoding(path):
        raise AssertionError(f"{path} was opened again although the folder is cached")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(data.images, "open_image", no_decoding)
        again = data.load(config(folder), root, CPU)
    assert torch.equal(first.train_x, again.train_x) and (entries[0] / "train_x.npy").stat().st_mtime_ns == stamp
    write_images(folder / "class1" / "more", colour_blobs(3, (0, 200, 0), seed=9))  # a file added
    changed = data.load(config(folder), root, CPU)
    assert len(changed.train) + len(changed.test) == 23
    entries_now = [p for p in (root / "cache").iterdir() if not p.name.startswith(".")]
    assert len(entries_now) == 1 and entries_now[0] != entries[0]  # rebuilt; the stale entry removed


def test_hold_out_is_class_stratified_and_fixed_per_folder(tmp_path):
    folder = tmp_path / "imgs"
    for c, colour in enumerate([(200, 0, 0), (0, 200, 0), (0, 0, 200)]):
        write_images(folder / f"c{c}", colour_blobs(20 + 10 * c, colour, seed=c))
    a = data.load(config(folder, test_fraction=0.2), tmp_path / "r1", CPU)
    b = data.load(config(folder, test_fraction=0.2), tmp_path / "r2", CPU)
    assert torch.bincount(a.test_y).tolist() == [4, 6, 8]  # 20 % of each class
    assert torch.equal(a.test_x, b.test_x)  # the same test images, whatever the run
    sub = data.load(config(folder, train_subset=12), tmp_path / "r1", CPU)
    assert torch.bincount(sub.train_y).tolist() == [3, 4, 5]  # subsets keep every class


def test_grey_and_colour_and_size_are_chosen_as_documented(tmp_path):
    grey = tmp_path / "grey"
    write_images(grey / "a", [np.full((10, 14), 50, np.uint8)] * 3, mode="L")
    write_images(grey / "b", [np.full((10, 14), 200, np.uint8)] * 3, mode="L")
    ds = data.load(config(grey), tmp_path, CPU)
    assert ds.image_shape == (1, 10, 14)  # own size kept when all agree; all grey: one channel
    mixed = tmp_path / "mixed"
    write_images(mixed / "a", [np.full((10, 14), 50, np.uint8)] * 3, mode="L")
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 128
    write_images(mixed / "b", [rgba] * 3, mode="RGBA")
    with pytest.raises(DataError, match=r"differ in size .*10|data.image_size=N"):
        data.load(config(mixed), tmp_path, CPU)
    ds = data.load(config(mixed, image_size=8), tmp_path, CPU)
    assert ds.image_shape == (3, 8, 8)  # one colour image makes the set colour
    reds = ds.train_x.reshape(-1, 3, 8, 8)[ds.train_y == 1]
    assert torch.all(reds[:, 0] == 1.0) and torch.all(reds[:, 1:] == 0.0)  # RGBA: alpha dropped, as torchvision does
    forced = data.load(config(mixed, image_size=8, channels="1"), tmp_path, CPU)
    assert forced.image_shape == (1, 8, 8)


def test_an_unlabelled_folder_trains_and_draws_and_skips_the_read_outs(tmp_path, monkeypatch):
    folder = tmp_path / "flat"
    write_images(folder, colour_blobs(40, (120, 60, 200)))
    monkeypatch.chdir(tmp_path)
    code, err = run_in_process(["data=folder", f"data.path={folder}", f"data.root={tmp_path / 'root'}", *FAST,
                                "figures=true"])
    assert code == 0, err
    run = next(tmp_path.glob("outputs/*/*"))
    m = read_metrics(run)
    assert m["probe_accuracy"] is None and m["knn_accuracy"] is None and "no labels" in m["skipped"]
    assert m["data"]["classes"] is None and m["config"]["dataset"] == "folder:flat"
    assert 0 < m["recon_mse"] < 0.2
    figures = {p.name for p in (run / "figures").iterdir()}
    assert {"loss.png", "reconstructions.png", "latent_space.png"} <= figures
    assert "probe_accuracy.png" not in figures and "per_digit.png" not in figures


def test_photographs_in_colour_run_end_to_end_with_a_chosen_size(tmp_path, monkeypatch):
    folder = tmp_path / "photos"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "photo_patches.py"), str(folder), "--per-class", "60"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    monkeypatch.chdir(tmp_path)
    code, err = run_in_process(["data=folder", f"data.path={folder}", "data.image_size=32", f"data.root={tmp_path / 'r'}",
                                "arch=conv", "arch.channels=[8,16]", "arch.hidden=[64]", "latent=8", "epochs=4", "train.batch_size=32",
                                "progress=false", "probe.label_budgets=[]", "figures=true"])
    assert code == 0, err
    run = next(tmp_path.glob("outputs/*/*"))
    m = read_metrics(run)
    classes = len(m["data"]["classes"])
    assert m["data"]["image_shape"] == [3, 32, 32] and classes >= 1
    assert m["probe_accuracy"] > 1.3 / classes and m["knn_accuracy"] > 1.3 / classes  # photographs told apart
    with Image.open(run / "figures" / "reconstructions.png") as im:
        rgb = np.asarray(im.convert("RGB")).astype(int)
    assert (np.abs(rgb[..., 0] - rgb[..., 1]) > 30).mean() > 0.05  # drawn in colour, not grey


@pytest.mark.parametrize("case", ["missing", "empty", "one class", "truncated", "mixed sizes", "too small for conv"])
def test_bad_folders_get_one_line(case, tmp_path, monkeypatch):
    folder = tmp_path / "imgs"
    extra: list[str] = []
    expected: list[str]
    if case == "missing":
        expected = [f"data.path={folder} does not exist"]
    elif case == "empty":
        folder.mkdir()
        expected = ["holds no images"]
    elif case == "one class":  # treated as unlabelled, with a warning: the run completes
        write_images(folder / "only", colour_blobs(12, (10, 10, 10)))
        expected = []
    elif case == "truncated":
        paths = write_images(folder / "a", colour_blobs(4, (1, 2, 3))) + write_images(folder / "b", colour_blobs(4, (9, 9, 9)))
        paths[2].write_bytes(paths[2].read_bytes()[:60])
        expected = ["cannot", str(paths[2]), "fix or remove it"]
    elif case == "mixed sizes":
        write_images(folder / "a", colour_blobs(3, (1, 2, 3), size=12))
        write_images(folder / "b", colour_blobs(3, (1, 2, 3), size=16))
        expected = ["differ in size", "12x12", "16x16", "data.image_size=N"]
    else:
        write_images(folder / "a", colour_blobs(3, (1, 2, 3), size=6))
        write_images(folder / "b", colour_blobs(3, (9, 2, 3), size=6))
        extra = ["arch=conv", "arch.channels=[4,4,4]"]
        expected = ["arch=conv cannot be built for 3x6x6 images", "at least 8x8", "data.image_size"]
    monkeypatch.chdir(tmp_path)
    code, err = run_in_process(["data=folder", f"data.path={folder}", f"data.root={tmp_path / 'root'}", *FAST, *extra])
    if not expected:
        assert code == 0, err
        assert read_metrics(next(tmp_path.glob("outputs/*/*")))["skipped"]
        return
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("aebench: error: "), err
    for text in expected:
        assert text in lines[0], (text, lines[0])
    if case != "too small for conv":  # (there the images are fine: their cache stays for the next run)
        assert not list((tmp_path / "root").glob("cache/*/meta.json"))  # nothing half-built was kept
    assert not list((tmp_path / "root").glob("cache/.*.building"))
    assert not list(tmp_path.glob("outputs/*/*/metrics.json"))


def test_a_path_in_an_override_does_not_nest_sweep_folders():
    name = rundir.job_dir_name(3, "data.path=/images/cats,data=folder")
    assert "/" not in name and name.startswith("3_data.path=")


def test_an_interrupted_folder_run_loads_and_refuses_to_resume_on_changed_images(tmp_path, monkeypatch):
    folder = tmp_path / "imgs"
    for c, colour in enumerate([(200, 0, 0), (0, 200, 0)]):
        write_images(folder / f"c{c}", colour_blobs(20, colour, seed=c))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AEBENCH_SELF_SIGNAL", "TERM@7")  # SIGTERM after step 7: the second epoch is under way
    code, err = run_in_process(["data=folder", f"data.path={folder}", f"data.root={tmp_path / 'root'}", *FAST,
                                "epochs=3", "train.batch_size=8"])
    assert code == 128 + 15, err
    run = next(tmp_path.glob("outputs/*/*"))
    import aebench

    loaded = aebench.load_run(run, allow_incomplete=True)  # shape and classes from the checkpoint
    assert loaded.classes == ("c0", "c1") and loaded.encode(torch.rand(3, 3, 12, 12)).shape == (3, 4)
    monkeypatch.delenv("AEBENCH_SELF_SIGNAL")
    write_images(folder / "c1" / "late", colour_blobs(2, (0, 200, 0), seed=5))  # the folder changes
    code, err = run_in_process([f"resume={run}"])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "the images changed since the checkpoint" in lines[0], err
