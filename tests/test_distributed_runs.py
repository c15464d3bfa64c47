"""One run on two processes, end to end, as a user starts it: ``torchrun --nproc-per-node=2 -m aebench ...`` and
a submitit job of 2 tasks.  Slow: every test starts several Python processes (and some train on 12 000 images)."""

from __future__ import annotations

import csv
import signal
import time
from pathlib import Path

import pytest
import torch

from conftest import FIGURES, TINY, numbers, only_run_dir, read_metrics, run_cli

pytestmark = pytest.mark.slow

RUN = ["epochs=3", "seed=3", *TINY]  # 2000 images at batch 256: 8 steps an epoch; step 12 is in epoch 2
# The comparison: the default MLP AE, 3 epochs on 12 000 MNIST images, the whole test set.
COMPARED = ["epochs=3", "data.train_subset=12000", "figures=false", "progress=false"]


def torchrun(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 900):
    return run_cli("--standalone", "--nproc-per-node=2", "-m", "aebench", *args, cwd=cwd, env=env, timeout=timeout,
                   module="torch.distributed.run")


def history(run: Path) -> list[dict[str, str]]:
    rows = list(csv.DictReader(open(run / "history.csv")))
    return [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in rows]


def listing(run: Path) -> list[str]:
    return sorted(p.relative_to(run).as_posix() for p in run.rglob("*"))


def aebench_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("aebench:")]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory, data_root):
    cwd = tmp_path_factory.mktemp("ddp-straight")
    proc = torchrun(*RUN, *FIGURES, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return only_run_dir(cwd), proc


def test_a_two_process_run_has_one_directory_that_holds_what_a_one_process_run_holds(two_processes, tmp_path):
    run, proc = two_processes
    single = run_cli(*RUN, *FIGURES, "threads=1", cwd=tmp_path)
    assert single.returncode == 0, single.stderr
    assert listing(run) == listing(only_run_dir(tmp_path))  # only_run_dir: exactly one directory was claimed
    assert proc.stdout.count("finished in") == 1  # one summary, from rank 0
    m = read_metrics(run)
    assert m["distributed"] == {"world_size": 2, "backend": "gloo", "batch_per_rank": 128}
    assert m["device"].endswith(", 1 threads)")  # torchrun's OMP_NUM_THREADS=1 per process
    assert read_metrics(only_run_dir(tmp_path))["distributed"] == {"world_size": 1, "backend": None, "batch_per_rank": 256}


def test_sigterm_to_one_rank_stops_both_at_a_checkpoint_and_resume_matches_an_uninterrupted_run(two_processes,
                                                                                                   tmp_path):
    proc = torchrun(*RUN, *FIGURES, cwd=tmp_path, env={"AEBENCH_SELF_SIGNAL": "TERM@12:1"})
    assert proc.returncode != 0
    run = next(tmp_path.glob("outputs/*/*"))
    said = aebench_lines(proc.stderr)
    assert said == [f"aebench: interrupted by signal 15 in epoch 2 after step 4/8; resume with: aebench resume={run}"], \
        proc.stderr
    ckpt = torch.load(run / "checkpoints/last.pt", weights_only=False)
    assert (ckpt["epoch"], ckpt["step"], ckpt["world_size"], len(ckpt["ranks"])) == (1, 4, 2, 2)
    assert read_metrics(run)["status"] == "interrupted"

    proc = torchrun(f"resume={run}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    uninterrupted, _ = two_processes
    resumed = read_metrics(run)
    assert resumed["resumed_from"] == {"epoch": 1, "step": 4}
    assert numbers(resumed) == numbers(read_metrics(uninterrupted))
    assert history(run) == history(uninterrupted)
    assert len(list(tmp_path.glob("outputs/*/*"))) == 1


def test_sigkill_of_one_rank_ends_the_run_with_a_line_naming_the_ranks_and_a_readable_checkpoint(tmp_path, data_root):
    t0 = time.monotonic()
    proc = torchrun(*RUN, cwd=tmp_path, env={"AEBENCH_SELF_SIGNAL": "KILL@12:1"}, timeout=120)
    seconds = time.monotonic() - t0
    assert proc.returncode != 0 and seconds < 60, (proc.returncode, seconds)
    said = aebench_lines(proc.stderr)
    assert len(said) == 1 and said[0].startswith("aebench: error: rank 0 of 2: rank 1 of the run stopped "), proc.stderr
    assert "the last checkpoint is kept" in said[0]
    run = next(tmp_path.glob("outputs/*/*"))
    ckpt = torch.load(run / "checkpoints/last.pt", weights_only=False)
    assert (ckpt["epoch"], ckpt["step"]) == (1, 0)  # epoch 1's, intact
    m = read_metrics(run)
    assert m["status"] == "failed" and m["error"].startswith("rank 0 of 2: rank 1 of the run stopped")


def test_two_processes_of_one_thread_match_one_process_of_two_threads(tmp_path, data_root):
    """The issue's bar: per-epoch losses to 1e-3 relative, the probe to 0.5 points (bf16 where the CPU has it)."""
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    proc = run_cli(*COMPARED, "threads=2", cwd=one, timeout=900)
    assert proc.returncode == 0, proc.stderr
    proc = torchrun(*COMPARED, cwd=two)
    assert proc.returncode == 0, proc.stderr
    a, b = only_run_dir(one), only_run_dir(two)
    rows_a, rows_b = list(csv.DictReader(open(a / "history.csv"))), list(csv.DictReader(open(b / "history.csv")))
    ma, mb = read_metrics(a), read_metrics(b)
    print(f"\nDDP 2x1 vs 1x2 threads ({ma['precision']['used']}), {COMPARED}:")
    for ra, rb in zip(rows_a, rows_b):
        for key in ("train_loss", "test_loss"):
            x, y = float(ra[key]), float(rb[key])
            print(f"  epoch {ra['epoch']} {key}: {x:.6g} vs {y:.6g}, relative difference {abs(x - y) / abs(x):.2e}")
            assert abs(x - y) <= 1e-3 * abs(x), (ra["epoch"], key, x, y)
    print(f"  probe_accuracy: {ma['probe_accuracy']:.4f} vs {mb['probe_accuracy']:.4f}, "
          f"difference {100 * (mb['probe_accuracy'] - ma['probe_accuracy']):+.2f} points")
    print(f"  pretrain seconds: {ma['seconds']['pretrain']:.1f} vs {mb['seconds']['pretrain']:.1f}")
    assert len(rows_a) == len(rows_b) == 3
    assert abs(ma["probe_accuracy"] - mb["probe_accuracy"]) <= 0.005


def test_a_submitit_job_of_two_tasks_is_one_run_with_one_directory(tmp_path, data_root):
    proc = run_cli("-m", "hydra/launcher=submitit_local", "hydra.launcher.tasks_per_node=2", "epochs=2", *TINY,
                   cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    jobs = [p for p in next(tmp_path.glob("multirun/*/*")).iterdir() if p.is_dir() and p.name[0].isdigit()]
    assert len(jobs) == 1
    m = read_metrics(jobs[0])
    assert m["status"] == "completed" and m["distributed"]["world_size"] == 2
    assert (jobs[0] / "checkpoints/last.pt").is_file() and len(history(jobs[0])) == 2
    logs = sorted(p.name for p in (tmp_path / "multirun").rglob("*_log.out"))
    assert len(logs) == 2  # both tasks ran
    assert "rendezvous" in "".join(p.read_text() for p in (tmp_path / "multirun").rglob("*_0_log.out"))


def test_a_checkpoint_resumes_on_another_number_of_processes(two_processes, tmp_path):
    """2 processes stopped mid-epoch, resumed on 1 (and 1 process stopped, resumed on 2): the run completes, with
    numbers close to the uninterrupted run's (the noise streams start afresh, the summation order changes)."""
    uninterrupted, _ = two_processes
    proc = torchrun(*RUN, *FIGURES, cwd=tmp_path, env={"AEBENCH_SELF_SIGNAL": "TERM@12:0"})
    assert proc.returncode != 0
    run = next(tmp_path.glob("outputs/*/*"))
    proc = run_cli(f"resume={run}", "threads=1", cwd=tmp_path)  # one process
    assert proc.returncode == 0, proc.stderr
    resumed, straight = read_metrics(run), read_metrics(uninterrupted)
    assert resumed["resumed_from"] == {"epoch": 1, "step": 4} and resumed["distributed"]["world_size"] == 1
    print("\n2 processes stopped at epoch 2 step 4, resumed on 1, against 2 processes throughout:")
    for a, b in zip(history(run), history(uninterrupted)):
        for key in ("train_loss", "test_loss"):
            x, y = float(a[key]), float(b[key])
            print(f"  epoch {a['epoch']} {key}: {x:.6g} vs {y:.6g}, relative difference {abs(x - y) / abs(y):.2e}")
            assert abs(x - y) <= 1e-2 * abs(y)
    print(f"  probe_accuracy {resumed['probe_accuracy']:.4f} vs {straight['probe_accuracy']:.4f}")
    assert abs(resumed["probe_accuracy"] - straight["probe_accuracy"]) <= 0.02

    other = tmp_path / "other"
    other.mkdir()
    proc = run_cli(*RUN, "threads=1", cwd=other, env={"AEBENCH_SELF_SIGNAL": "TERM@12"})
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
    run = next(other.glob("outputs/*/*"))
    proc = torchrun(f"resume={run}", cwd=other)  # two processes
    assert proc.returncode == 0, proc.stderr
    assert read_metrics(run)["distributed"]["world_size"] == 2 and len(history(run)) == 3
