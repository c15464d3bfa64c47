"""The GPU path, exercised on the CPU (device selection, bf16 autocast, torch.compile), and subnormal flushing."""

from __future__ import annotations

import math
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from aebench import config, data, models
from aebench.errors import ConfigError
from aebench.train import Trainer, evaluate

from conftest import build_model


def test_auto_picks_the_cpu_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert config.resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        config.resolve_device("cuda:0")


def test_auto_picks_the_gpu_and_checks_its_index(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert config.resolve_device("auto") == torch.device("cuda")
    assert config.resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(ConfigError, match=r"cuda:1 does not exist: this machine has 1 GPU\(s\)"):
        config.resolve_device("cuda:1")


def tiny_trainer(data_root, name: str, precision: str = "fp32", compile: bool = False) -> Trainer:
    ds = data.load("mnist", data_root, torch.device("cpu"), train_subset=512, test_subset=256)
    torch.manual_seed(0)
    overrides = [f"model={name}", "latent=8", "arch.hidden=[64]", "arch.activation=relu", "model.recon_loss=mse",
                 "train.batch_size=128", "train.lr=1e-3", "train.scheduler=none", f"train.precision={precision}",
                 f"train.compile={compile}"]
    model = build_model(784, *overrides)
    return Trainer(model, ds, config.compose(overrides).train, epochs=2, seed=0, run_dir=Path(tempfile.mkdtemp()), meta={})


@pytest.mark.parametrize("name", ["ae", "vae"])
def test_bf16_autocast_trains_and_evaluates(data_root, name):
    history = tiny_trainer(data_root, name, precision="bf16").fit()
    assert len(history) == 2
    assert all(math.isfinite(row["test_loss"]) and math.isfinite(row["train_loss"]) for row in history)
    assert history[1]["train_loss"] < history[0]["train_loss"]
    fp32 = tiny_trainer(data_root, name).fit()
    # bf16 keeps about 3 significant digits: the same training, not the same bits
    assert history[0]["test_recon_mse"] == pytest.approx(fp32[0]["test_recon_mse"], rel=0.1)


def test_evaluate_is_batched_and_deterministic(data_root):
    ds = data.load("mnist", data_root, torch.device("cpu"), train_subset=10, test_subset=1000)
    model = build_model(784, "model=vae", "latent=4", "arch.hidden=[32]", "arch.activation=relu")
    first, second = evaluate(model, ds.test_x, seed=5, precision="fp32"), evaluate(model, ds.test_x, seed=5, precision="fp32")
    assert first == second and first["neg_elbo"] == pytest.approx(first["bce"] + first["kl"], rel=1e-6)


@pytest.mark.slow
def test_compiled_loss_matches_eager(data_root):
    compiled = tiny_trainer(data_root, "ae", compile=True).fit()
    eager = tiny_trainer(data_root, "ae").fit()
    assert compiled[-1]["test_loss"] == pytest.approx(eager[-1]["test_loss"], rel=1e-3)


SUBNORMAL_CHECK = """
import sys
import torch
torch.set_num_threads(2)
{setup}
# A subnormal float32 made from its bits (1e-39 written as a float would already be flushed
# on the main thread), in a tensor large enough to be split between the two threads.
x = torch.full((1 << 22,), 0x000AE398, dtype=torch.int32).view(torch.float32)
y = x * 0.5
print(int((y.view(torch.int32) != 0).sum()))  # counted on the bits: DAZ would read subnormals as 0
"""
FLUSH_FIRST = "from aebench.train import flush_denormals\nif not flush_denormals(): sys.exit(3)"
FLUSH_LATE = "torch.ones(1 << 22).sum()  # the worker threads exist now\n" + FLUSH_FIRST
RUN_PIPELINE_FIRST = (
    "from aebench import cli\n"
    "sys.argv = ['aebench', 'epochs=1', 'data.train_subset=600', 'data.test_subset=200', 'progress=false',\n"
    "            'figures=false', 'probe.pixel_baseline=false', 'hydra.run.dir=' + sys.argv[1]]\n"
    "cli.main()"
)


def count_unflushed(setup: str, tmp_path: Path) -> int:
    proc = subprocess.run([sys.executable, "-c", SUBNORMAL_CHECK.format(setup=setup), str(tmp_path / "run")],
                          capture_output=True, text=True, cwd=tmp_path)
    if proc.returncode == 3:
        pytest.skip("torch cannot flush subnormals to zero on this CPU")
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.strip().splitlines()[-1])


def test_without_the_flag_subnormal_results_stay(tmp_path):
    assert count_unflushed("", tmp_path) == 1 << 22  # the control: these tests can see the difference


def test_flag_set_first_reaches_every_thread(tmp_path):
    assert count_unflushed(FLUSH_FIRST, tmp_path) == 0


def test_flag_set_late_misses_the_worker_threads(tmp_path):
    """Why the pipeline sets it first: set after the thread pool exists, part of the work is not flushed."""
    assert 0 < count_unflushed(FLUSH_LATE, tmp_path) < 1 << 22


def test_the_command_sets_the_flag_before_its_first_parallel_work(tmp_path, data_root):
    assert count_unflushed(RUN_PIPELINE_FIRST, tmp_path) == 0
