"""Every bad input: one clear line, a non-zero exit, no traceback, nothing half-written.

Each case here is a row of the table in README.md ("What bad input gets").
"""

from __future__ import annotations

import json
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import aebench.conf

# conf/data/*.yaml: every source, and the full-grid presets of the factor grids (sprites_full, dsprites_full)
DATA_CHOICES = sorted(p.stem for p in (Path(aebench.conf.__file__).parent / "data").glob("*.yaml"))

from conftest import TINY, run_cli, run_in_process


def assert_one_line_error(proc: subprocess.CompletedProcess, *expected: str) -> str:
    return assert_one_line(proc.returncode, proc.stderr, *expected, stdout=proc.stdout)


def assert_one_line(code: int, stderr: str, *expected: str, stdout: str = "") -> str:
    assert code == 2, (code, stderr)
    assert "Traceback" not in stderr and "Traceback" not in stdout
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    line = lines[0]
    assert line.startswith("aebench: error: "), line
    for text in expected:
        assert text in line, (text, line)
    return line


CASES = {
    # name: (overrides, phrases the one line must contain)
    "unknown model": (["model=transformer"], ["model/transformer", "ae, annealed_vae, beta_tcvae, beta_vae, dae, dip_vae, factor_vae, sae, vae"]),
    "unknown arch": (["arch=resnet"], ["arch/resnet", "conv, mlp"]),
    "unknown dataset": (["data=imagenet"], ["data/imagenet", ", ".join(DATA_CHOICES)]),
    "unknown experiment": (["experiment=nope"], ["experiment/nope", "seed_report"]),
    "latent zero": (["latent=0"], ["latent=0", ">= 1"]),
    "latent negative": (["latent=-3"], ["latent=-3", ">= 1"]),
    "latent not a number": (["latent=abc"], ["latent=abc", "Integer"]),
    "latent not an integer": (["latent=2.5"], ["latent=2.5", "Integer"]),
    "epochs zero": (["epochs=0"], ["epochs=0", ">= 1"]),
    "epochs not a number": (["epochs=many"], ["epochs=many", "Integer"]),
    "device without gpu": (["device=cuda"], ["device=cuda", "no CUDA GPU", "device=cpu"]),  # skipped with a GPU
    "device unknown": (["device=tpu"], ["device='tpu'", "auto, cpu, cuda, cuda:N"]),
    "batch size zero": (["train.batch_size=0"], ["train.batch_size=0", ">= 1"]),
    "learning rate negative": (["train.lr=-0.1"], ["train.lr=-0.1", "> 0"]),
    "learning rate infinite": (["train.lr=inf"], ["train.lr=inf", "finite number > 0"]),
    "scheduler unknown": (["train.scheduler=warmup"], ["train.scheduler='warmup'", "none, step, cosine"]),
    "precision unknown": (["train.precision=fp8"], ["fp32, bf16"]),
    "hidden width zero": (["arch.hidden=[256,0]"], ["arch.hidden[1]=0", ">= 1"]),
    "hidden not a list": (["arch.hidden=wide"], ["arch.hidden=wide"]),
    "channels zero": (["arch=conv", "arch.channels=[0]"], ["arch.channels[0]=0", ">= 1"]),
    "too many convolutions": (["arch=conv", "arch.channels=[4,4,4,4,4,4]", "epochs=1", "data.train_subset=100",
                               "data.test_subset=50"], ["arch=conv cannot be built for 1x28x28 images",
                                                        "6 stride-2 convolutions need images of at least 64x64"]),
    "conv without convolutions": (["arch=conv", "arch.channels=[]"], ["arch.channels=[]", "no convolution", "arch=mlp"]),
    "folder without a path": (["data=folder"], ["data=folder needs data.path="]),
    "image size zero": (["data=folder", "data.path=/tmp", "data.image_size=0"], ["data.image_size=0", ">= 1"]),
    "image size on mnist": (["data.image_size=32"], ["data.image_size=32", "applies to data=folder"]),
    "channels unknown": (["data=folder", "data.path=/tmp", "data.channels=2"], ["data.channels='2'", "auto, 1, 3"]),
    "unlabeled without stl10": (["data.unlabeled=true"], ["data.unlabeled=true", "only stl10"]),
    "activation unknown": (["arch.activation=tanhh"], ["arch.activation='tanhh'", "relu, gelu, elu"]),
    "noise unknown": (["model=dae", "model.noise=salt"], ["model.noise='salt'", "mask, gaussian"]),
    "mask fraction of one": (["model=dae", "model.noise_level=1"], ["model.noise_level=1.0", "[0, 1)"]),
    "sparsity negative": (["model=sae", "model.sparsity=-1"], ["model.sparsity=-1.0", ">= 0"]),
    "beta negative": (["model=vae", "model.beta=-1"], ["model.beta=-1", ">= 0"]),
    "tc weight negative": (["model=beta_tcvae", "model.beta=-2"], ["model.beta=-2.0", ">= 0"]),
    "gamma negative": (["model=factor_vae", "model.gamma=-1"], ["model.gamma=-1.0", ">= 0"]),
    "capacity negative": (["model=annealed_vae", "model.capacity_max=-5"], ["model.capacity_max=-5.0", ">= 0"]),
    "capacity ramp past the run": (["model=annealed_vae", "model.capacity_ramp=1.5"], ["model.capacity_ramp=1.5", "[0, 1]"]),
    "dip type unknown": (["model=dip_vae", "model.dip_type=iii"], ["model.dip_type='iii'", "i, ii"]),
    "factor_vae batch of one": (["model=factor_vae", "train.batch_size=1"],
                                ["model=factor_vae needs train.batch_size >= 2", "permuted across the batch"]),
    "subset too small": (["data.train_subset=1"], ["data.train_subset=1", ">= 2"]),
    "threads zero": (["threads=0"], ["threads=0", ">= 1"]),
    "unknown key": (["lattent=5"], ["lattent"]),
    "bad override syntax": (["latent=[1,"], ["latent=[1,"]),
}

NO_GPU = not torch.cuda.is_available()


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gets_one_clear_line(name, tmp_path, monkeypatch):
    overrides, expected = CASES[name]
    if "device=cuda" in overrides and not NO_GPU:
        pytest.skip("this machine has a GPU")
    monkeypatch.chdir(tmp_path)
    code, err = run_in_process(overrides)  # in-process for speed; the tests below go through a real process
    assert_one_line(code, err, *expected)
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").rglob("metrics.json"))
    assert not any((tmp_path / "outputs").rglob(".hydra")) if (tmp_path / "outputs").exists() else True


def test_read_only_data_root(tmp_path):
    proc = run_cli("data.root=/sys/aebench-data", *TINY, cwd=tmp_path)
    assert_one_line_error(proc, "/sys/aebench-data", "cannot be written", "data.root=")


def test_corrupted_data_file(tmp_path, data_root):
    root = tmp_path / "data"
    shutil.copytree(data_root / "MNIST" / "raw", root / "MNIST" / "raw")
    target = root / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    blob = bytearray(target.read_bytes())
    blob[5000] ^= 0x10
    target.write_bytes(bytes(blob))
    proc = run_cli(f"data.root={root}", *TINY, cwd=tmp_path)
    assert_one_line_error(proc, "md5", str(target), "delete")
    assert target.read_bytes() == bytes(blob)  # the user's file is left for them to inspect


def _small_file_limit():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))


def test_full_disk_while_writing_results(tmp_path, data_root):
    """A write that fails for want of space (here: a file-size limit) is one line, with no half file."""
    env = {"PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "aebench", "epochs=1", *TINY], cwd=tmp_path,
                          env={**__import__("os").environ, **env}, capture_output=True, text=True,
                          preexec_fn=_small_file_limit, timeout=300)
    line = assert_one_line_error(proc, "could not write", "File too large")
    assert "last.pt" in line
    assert not list(tmp_path.rglob("*.tmp")), "a temporary file was left behind"
    assert not list(tmp_path.rglob("last.pt")) and not list(tmp_path.rglob("metrics.json"))


def test_resume_of_a_folder_without_checkpoint_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "no" / "such-run"
    code, err = run_in_process([f"resume={target}"])
    assert_one_line(code, err, "nothing to resume", str(target), "resume=<a run directory with a checkpoint>")
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize("overrides", [["model=transformer"], ["latent=abc"], ["latent=0"]]
                         + ([["device=cuda"]] if NO_GPU else []))
def test_a_real_process_prints_exactly_one_line(tmp_path, overrides):
    proc = run_cli(*overrides, cwd=tmp_path)
    assert_one_line_error(proc, overrides[0].split("=")[0])
    assert proc.stdout == ""
    assert not (tmp_path / "outputs").exists()


def test_python_m_and_console_script_agree(tmp_path):
    proc = subprocess.run([str(Path(sys.executable).parent / "aebench"), "latent=0"], cwd=tmp_path, capture_output=True, text=True)
    assert_one_line_error(proc, "latent=0")


def test_divergence_is_one_line_and_a_failed_run(tmp_path, data_root):
    proc = run_cli("train.lr=1e6", "model.recon_loss=mse", "epochs=2", *TINY, "hydra.run.dir=run", cwd=tmp_path)
    line = assert_one_line_error(proc, "training diverged in epoch 1", "not finite", "smaller train.lr", "1e+06")
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["status"] == "failed" and m["error"] == line.removeprefix("aebench: error: ")
    assert not (tmp_path / "run" / "history.csv").exists()  # no epoch finished with finite numbers
