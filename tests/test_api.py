"""aebench.load_run, probe.npz, aebench-encode and aebench-export: using what a run learned."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import aebench
from aebench import api, data, export, models, probe, train
from conftest import TINY, read_metrics, run_in_process

FIXTURES = Path(__file__).parent / "fixtures" / "v0.3.0"


def tool(name: str, *args: str) -> subprocess.CompletedProcess:
    """The installed console script ``aebench-<name>``, as a user runs it."""
    return subprocess.run([str(Path(sys.executable).parent / f"aebench-{name}"), *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_root):
    """One real run, big enough for a probe to mean something: 3 000 train / 1 000 test images, 2 epochs."""
    run_dir = tmp_path_factory.mktemp("api") / "run"
    code, err = run_in_process([*TINY, "data.train_subset=3000", "data.test_subset=1000", "epochs=2", "latent=10",
                                "probe.label_budgets=[]", "probe.pixel_baseline=false", f"hydra.run.dir={run_dir}"])
    assert code == 0, err
    return run_dir


def test_probe_file_keeps_the_contract_and_classify_reproduces_the_run(trained):
    m = read_metrics(trained)
    with np.load(trained / "probe.npz") as f:
        saved = {k: f[k] for k in f.files}
    assert set(saved) == {"weight", "bias", "mean", "scale", "classes", "test_y", "test_pred", "knn_pred", "format"}
    assert saved["weight"].shape == (10, 10) and saved["weight"].dtype in (np.float32, np.float64)
    assert saved["bias"].dtype == saved["weight"].dtype and saved["mean"].dtype == saved["scale"].dtype == np.float32
    assert saved["classes"].tolist() == [str(d) for d in range(10)] and int(saved["format"]) == 1
    assert all(saved[k].dtype == np.int64 and saved[k].shape == (1000,) for k in ("test_y", "test_pred", "knn_pred"))
    assert (saved["test_pred"] == saved["test_y"]).mean() == m["probe_accuracy"]
    assert (saved["knn_pred"] == saved["test_y"]).mean() == m["knn_accuracy"]

    run = aebench.load_run(trained)
    assert run.model.training is False and run.config.latent == 10 and run.metrics["status"] == "completed"
    assert [r["epoch"] for r in run.history] == [1, 2] and run.probe_source.startswith("probe.npz")
    test_x, test_y = run.dataset("test")
    pred = run.classify(test_x)
    assert np.array_equal(pred.numpy(), saved["test_pred"])  # the run's own predictions, every one
    assert (pred.numpy() == test_y).mean() == m["probe_accuracy"]  # to the last digit
    assert run.classify(test_x[:3], names=True) == [run.classes[i] for i in saved["test_pred"][:3]]

    # the codes are the ones the run read: k-NN on them predicts exactly what the run's k-NN did
    train_x, train_y = run.dataset("train")
    train_codes, test_codes = run.encode(train_x), run.encode(test_x)
    _, knn_pred = probe.knn_accuracy(train_codes, torch.from_numpy(train_y), test_codes, torch.from_numpy(test_y),
                                     run.config.probe.knn_k, 10, return_predictions=True)
    assert np.array_equal(knn_pred.numpy(), saved["knn_pred"])
    # and bit for bit the pipeline's own encoding of the split the run read
    ds = data.load(run.config.data, data.resolve_root(None), torch.device("cpu"))
    assert torch.equal(test_codes, train.encode_all(run.model, ds.test))
    # every form of the same images gives the same codes
    floats = torch.from_numpy(test_x[:50].copy()).float() / 255
    for form in (test_x[:50, 0], test_x[:50].transpose(0, 2, 3, 1), torch.from_numpy(test_x[:50].copy()), floats,
                 floats.reshape(50, -1).numpy()):
        assert torch.equal(run.encode(form), test_codes[:50])

    # a linear classifier of scikit-learn on the standardised codes lands where the run's probe did
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=1 / (1e-4 * len(train_y)), max_iter=5000, tol=1e-8)
    clf.fit(run.standardise(train_codes).numpy(), train_y)
    sk = clf.score(run.standardise(test_codes).numpy(), test_y)
    print(f"\nscikit-learn {sk:.4f}, aebench probe {m['probe_accuracy']:.4f}")
    assert abs(sk - m["probe_accuracy"]) <= 0.003

    recon = run.reconstruct(test_x[:4])
    assert recon.shape == (4, 1, 28, 28) and 0 <= recon.min() and recon.max() <= 1
    assert torch.equal(run.decode(test_codes[:4]), recon)


def test_encode_command_on_a_png_folder_gives_the_codes_of_the_tensors(trained, tmp_path):
    from PIL import Image

    run = aebench.load_run(trained)
    test_x, test_y = run.dataset("test")
    folder = tmp_path / "pngs"
    for i in range(30):
        (folder / str(test_y[i])).mkdir(parents=True, exist_ok=True)
        Image.fromarray(test_x[i, 0]).save(folder / str(test_y[i]) / f"{i:03d}.png")
    out = tmp_path / "codes.npz"
    proc = tool("encode", str(trained), str(folder), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    with np.load(out) as f:
        files, codes, pred = f["files"], f["codes"], f["pred"]
    order = [int(Path(p).stem) for p in files]
    assert sorted(order) == list(range(30)) and "labels" not in np.load(out).files
    assert np.array_equal(codes, run.encode(test_x[order]).numpy())
    assert np.array_equal(pred, run.classify(test_x[order]).numpy())
    # a dataset name: its test split, with labels (in this process: the console script is proved above)
    from aebench import tools

    tools.encode_main([str(trained), "mnist:test", "--out", str(out)])
    with np.load(out) as f:
        assert f["codes"].shape == (10_000, 10) and f["labels"].shape == (10_000,) and "files" not in f.files
        assert (f["pred"] == f["labels"]).mean() > 0.5


def fake_run(root: Path, name: str, arch: str, **settings) -> Path:
    """A run directory around an untrained tiny model: what export and loading read, without training."""
    from omegaconf import OmegaConf

    from aebench import config

    cfg = OmegaConf.merge(OmegaConf.structured(config.Config), {
        "model": {"name": name}, "arch": {"name": arch, "hidden": [32], "channels": [8, 16]},
        "data": {"name": "mnist"}, "latent": 5, **settings})
    torch.manual_seed(0)
    model = models.from_config(cfg, (1, 28, 28))
    run = root / f"{name}-{arch}"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"aebench_version": aebench.__version__, "config": OmegaConf.to_container(cfg), "model": model.state_dict(),
                "epoch": 1, "history": []}, run / "checkpoints" / "last.pt")
    (run / "metrics.json").write_text(json.dumps({"status": "completed", "data": {
        "image_shape": [1, 28, 28], "classes": [str(d) for d in range(10)]}}))
    return run


@pytest.mark.parametrize("name,arch", [("ae", "mlp"), ("vae", "mlp"), ("ae", "conv"), ("vae", "conv")])
def test_exports_match_the_model_on_a_thousand_test_images(tmp_path, data_root, name, arch):
    run = aebench.load_run(fake_run(tmp_path, name, arch))
    x = torch.from_numpy(run.dataset("test")[0][:1000].copy()).reshape(1000, -1).float() / 255
    codes = run.encode(x)
    for fmt in export.FORMATS:
        sidecar = export.export(run, fmt, tmp_path / fmt)
        assert sidecar["input"]["shape"] == ["N", 784] and sidecar["code_size"] == 5
        assert sidecar["encoder"]["code"] == ("mu" if name == "vae" else "code")
        encoded = export.run_exported(tmp_path / fmt / f"encoder.{fmt}", fmt, x)
        assert len(encoded) == (2 if name == "vae" else 1)
        assert np.abs(encoded[0] - codes.numpy()).max() <= 1e-4  # output 0: mu for a VAE
        decoded = export.run_exported(tmp_path / fmt / f"decoder.{fmt}", fmt, codes)[0]
        assert np.abs(decoded - run.decode(codes).reshape(1000, -1).numpy()).max() <= 1e-4


@pytest.mark.parametrize("name", ["ae", "conv-vae"])
def test_runs_of_aebench_0_3_0_load_and_classify_with_their_last_probe(name, data_root, caplog):
    run = aebench.load_run(FIXTURES / name)
    assert run.version == "0.3.0" and run.classes == tuple(str(d) for d in range(10))
    test_x, test_y = run.dataset("test")
    assert len(test_x) == 300
    with caplog.at_level("WARNING"):
        accuracy = (run.classify(test_x).numpy() == test_y).mean()
    assert "checkpoint's last probe" in run.probe_source and "checkpoint's last probe" in caplog.text
    assert accuracy == pytest.approx(run.metrics["probe_accuracy"], abs=0.01)
    if name == "conv-vae":
        a, b = run.encode(test_x[:5], sample=True, seed=3), run.encode(test_x[:5], sample=True, seed=3)
        assert torch.equal(a, b) and not torch.equal(a, run.encode(test_x[:5]))


def one_line(e: pytest.ExceptionInfo) -> str:
    from aebench.errors import AebenchError

    text = str(e.value)
    assert "\n" not in text and isinstance(e.value, AebenchError)
    return text


def test_bad_runs_and_bad_images_are_refused_in_one_line(tmp_path, data_root):
    with pytest.raises(api.RunError) as e:
        aebench.load_run(tmp_path)
    assert "not an aebench run" in one_line(e)
    run = fake_run(tmp_path / "runs", "ae", "mlp")
    ckpt = run / "checkpoints" / "last.pt"
    good = ckpt.read_bytes()
    ckpt.write_bytes(good[: len(good) // 2])
    with pytest.raises(api.RunError) as e:
        aebench.load_run(run)
    assert "damaged" in one_line(e)
    ckpt.unlink()
    with pytest.raises(api.RunError) as e:
        aebench.load_run(run)
    assert "no checkpoint" in one_line(e)
    ckpt.write_bytes(good)
    (run / "metrics.json").write_text(json.dumps({"status": "interrupted"}))
    with pytest.raises(api.RunError) as e:
        aebench.load_run(run)
    assert "allow_incomplete=True" in one_line(e)
    loaded = aebench.load_run(run, allow_incomplete=True)
    for images, words in ((np.zeros((2, 32, 32), np.uint8), "do not fit"), (np.full((2, 28, 28), 255.0), "[0, 1]")):
        with pytest.raises(api.ImageError) as e:
            loaded.encode(images)
        assert words in one_line(e)


def test_command_line_errors_are_one_line_with_exit_2(tmp_path, capsys):
    from PIL import Image

    from aebench import tools

    run = fake_run(tmp_path, "ae", "mlp")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "big.png")
    cases = [
        (tools.export_main, [str(run), "--format", "tflite"], "aebench-export: error: unknown export format 'tflite'"),
        (tools.encode_main, [str(tmp_path / "nothing"), "mnist", "--out", str(tmp_path / "c.npz")], "is not a directory"),
        (tools.encode_main, [str(run), str(tmp_path / "big.png"), "--out", str(tmp_path / "c.npz")], "is 32x32"),
        (tools.encode_main, [str(run), str(tmp_path), "--out", str(tmp_path / "c.npz")], "is 32x32"),
        (tools.encode_main, [str(run), "cifar100", "--out", str(tmp_path / "c.npz")], "neither a file, a folder nor a dataset"),
    ]
    for main, args, words in cases:
        with pytest.raises(SystemExit) as e:
            main(args)
        err = capsys.readouterr().err
        assert e.value.code == 2 and words in err, err
        assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "c.npz").exists()
    # and through the installed console script
    proc = tool("export", str(run), "--format", "tflite")
    assert proc.returncode == 2 and proc.stderr.startswith("aebench-export: error: unknown export format")


def test_import_aebench_stays_cheap():
    code = "import sys, aebench; assert 'torch' not in sys.modules and 'aebench.api' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert aebench.load_run is api.load_run and "load_run" in dir(aebench)
