"""Nothing lost: SIGTERM / SIGKILL mid-run, resume, and the same numbers as an uninterrupted run."""

from __future__ import annotations

import csv
import signal

import pytest
import torch

from conftest import TINY, numbers, only_run_dir, read_metrics, run_cli
from test_errors import assert_one_line_error

# 2000 images at batch 256: 8 steps an epoch; step 12 is the middle of epoch 2.
RUN = ["epochs=3", "seed=3", *TINY]


def history(run):
    rows = list(csv.DictReader(open(run / "history.csv")))
    return [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in rows]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_root):
    cwd = tmp_path_factory.mktemp("straight")
    proc = run_cli(*RUN, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return only_run_dir(cwd)


def test_same_seed_same_numbers(uninterrupted, tmp_path):
    proc = run_cli(*RUN, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    again = only_run_dir(tmp_path)
    assert numbers(read_metrics(again)) == numbers(read_metrics(uninterrupted))
    assert history(again) == history(uninterrupted)


def test_sigterm_mid_epoch_then_resume_gives_identical_metrics(uninterrupted, tmp_path):
    proc = run_cli(*RUN, cwd=tmp_path, env={"AEBENCH_SELF_SIGNAL": "TERM@12"})
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
    run = next(tmp_path.glob("outputs/*/*"))
    assert f"resume with: aebench resume={run}" in proc.stderr
    assert "Traceback" not in proc.stderr
    ckpt = torch.load(run / "checkpoints/last.pt", weights_only=False)
    assert (ckpt["epoch"], ckpt["step"]) == (1, 4)  # stopped cleanly inside epoch 2
    assert len(history(run)) == 1  # the partial history: epoch 1
    assert read_metrics(run)["status"] == "interrupted"

    proc = run_cli(f"resume={run}", "progress=false", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    resumed = read_metrics(run)
    assert resumed["resumed_from"] == {"epoch": 1, "step": 4}
    assert numbers(resumed) == numbers(read_metrics(uninterrupted))
    assert history(run) == history(uninterrupted)
    assert (run / ".hydra" / "resumed" / "overrides.yaml").is_file()  # the original .hydra/ is kept
    assert "epochs=3" in (run / ".hydra" / "overrides.yaml").read_text()


def test_sigkill_leaves_a_readable_checkpoint_and_resume_matches(uninterrupted, tmp_path):
    proc = run_cli(*RUN, cwd=tmp_path, env={"AEBENCH_SELF_SIGNAL": "KILL@12"})
    assert proc.returncode == -signal.SIGKILL
    run = next(tmp_path.glob("outputs/*/*"))
    ckpt = torch.load(run / "checkpoints/last.pt", weights_only=False)  # complete, not half-written
    assert (ckpt["epoch"], ckpt["step"]) == (1, 0)
    proc = run_cli(f"resume={run}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert numbers(read_metrics(run)) == numbers(read_metrics(uninterrupted))
    assert history(run) == history(uninterrupted)


def test_resume_refuses_overrides_that_change_the_run(uninterrupted, tmp_path):
    proc = run_cli(f"resume={uninterrupted}", "model=vae", cwd=tmp_path)
    assert_one_line_error(proc, "model=vae cannot be changed when resuming", "device=")
    proc = run_cli(f"resume={uninterrupted}", "data.train_subset=100", cwd=tmp_path)
    assert_one_line_error(proc, "data.train_subset=100 cannot be changed")


def copy_run(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_resume_refuses_a_checkpoint_from_another_version(uninterrupted, tmp_path):
    run = copy_run(uninterrupted, tmp_path / "run")
    ckpt = torch.load(run / "checkpoints/last.pt", weights_only=False)
    ckpt["aebench_version"] = "0.0.1"
    torch.save(ckpt, run / "checkpoints/last.pt")
    proc = run_cli(f"resume={run}", cwd=tmp_path)
    assert_one_line_error(proc, "written by aebench 0.0.1", "start a new run")


def test_resume_refuses_a_checkpoint_of_another_model(uninterrupted, tmp_path):
    run = copy_run(uninterrupted, tmp_path / "run")
    ckpt = torch.load(run / "checkpoints/last.pt", weights_only=False)
    ckpt["config"]["latent"] = 7  # the weights are of a latent-20 model
    torch.save(ckpt, run / "checkpoints/last.pt")
    proc = run_cli(f"resume={run}", cwd=tmp_path)
    assert_one_line_error(proc, "does not fit this model")


def test_resume_refuses_a_damaged_checkpoint(uninterrupted, tmp_path):
    run = copy_run(uninterrupted, tmp_path / "run")
    path = run / "checkpoints/last.pt"
    path.write_bytes(path.read_bytes()[: 1000])
    proc = run_cli(f"resume={run}", cwd=tmp_path)
    assert_one_line_error(proc, "cannot be read", "damaged")


def test_resume_refuses_to_move_between_cpu_and_gpu(uninterrupted, tmp_path):
    run = copy_run(uninterrupted, tmp_path / "run")
    ckpt = torch.load(run / "checkpoints/last.pt", weights_only=False)
    assert ckpt["device_type"] == "cpu"
    ckpt["device_type"] = "cuda"  # as if it had been written on a GPU
    torch.save(ckpt, run / "checkpoints/last.pt")
    proc = run_cli(f"resume={run}", cwd=tmp_path)
    assert_one_line_error(proc, "written on a cuda device", "resume it with device=cuda")
