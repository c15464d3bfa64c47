"""Sweeps on a real Slurm cluster through ``hydra/launcher=submitit_slurm``: job arrays, accounting,
pre-emption, time limits, scancel and a data root shared by jobs that start together.

Needs a cluster that answers ``sinfo`` (``make test-slurm`` starts a single-node one with
scripts/slurm-cluster.sh and stops it afterwards); skipped otherwise.  Jobs ask for what a
2-CPU node without a GPU has: 1 CPU, no GPU, 2 GB.  Each test names its jobs, and cancels
what it leaves behind.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TINY, numbers, only_run_dir, read_metrics, run_cli

pytestmark = pytest.mark.slurm


def slurm(*args: str, check: bool = True) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=60).stdout


@pytest.fixture(scope="module")
def partition() -> str:
    """The cluster's default partition; skips the module when no cluster answers."""
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"no Slurm cluster answers (sinfo: {e}); start one with scripts/slurm-cluster.sh start "
                    f"and export SLURM_CONF=/tmp/aebench-slurm/etc/slurm.conf, or run make test-slurm")
    names = out.stdout.split()
    if out.returncode != 0 or not names:
        why = (out.stderr.strip().splitlines() or ["no partition"])[-1]
        pytest.skip(f"no Slurm cluster answers ({why}); start one with "
                    f"scripts/slurm-cluster.sh start and export SLURM_CONF=/tmp/aebench-slurm/etc/slurm.conf, "
                    f"or run make test-slurm")
    return next((n.rstrip("*") for n in names if n.endswith("*")), names[0])


@pytest.fixture
def job_name(request):
    """A name for this test's jobs; whatever of them is left at the end is cancelled."""
    name = f"aebench-test-{request.node.name[5:35]}"
    yield name
    slurm("scancel", "--name", name, check=False)


def on_slurm(partition: str, name: str) -> list[str]:
    return ["hydra/launcher=submitit_slurm", f"hydra.launcher.partition={partition}", f"hydra.launcher.name={name}",
            "hydra.launcher.cpus_per_task=1", "hydra.launcher.gpus_per_node=0", "hydra.launcher.mem_gb=2"]


def start_sweep(*args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.Popen([sys.executable, "-m", "aebench", "-m", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def wait_until(condition, timeout: float, what: str, poll: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def sweep_dir(cwd: Path) -> Path:
    dirs = list(cwd.glob("multirun/*/*"))
    assert len(dirs) == 1, dirs
    return dirs[0]


def job_dirs(sweep: Path) -> dict[int, Path]:
    return {int(p.name.split("_", 1)[0]): p for p in sweep.iterdir() if p.is_dir() and p.name[0].isdigit()}


def slurm_jobs(sweep: Path) -> dict[int, str]:
    """Job number -> Slurm job id, from submitit's folders (``.submitit/<array>_<task>``; a lone job: ``<id>``)."""
    ids = sorted(p.name for p in (sweep / ".submitit").iterdir() if p.is_dir())
    return {int(i.split("_")[1]) if "_" in i else 0: i for i in ids}


def array_id(sweep: Path) -> str:
    """The Slurm job id of the sweep's array."""
    arrays = {i.split("_")[0] for i in slurm_jobs(sweep).values()}
    assert len(arrays) == 1, arrays
    return arrays.pop()


def array_tasks(job_id: str) -> list[str]:
    """The tasks an array record of sacct's names: ``99_2`` itself, or every task of an unsplit record such as
    ``99_[0-2%2]`` (the array's remainder: tasks that never started, e.g. cancelled while pending)."""
    match = re.fullmatch(r"(\d+)_\[([\d,\-]+)(?:%\d+)?\]", job_id)
    if not match:
        return [job_id]
    tasks = []
    for part in match.group(2).split(","):
        first, _, last = part.partition("-")
        tasks += [f"{match.group(1)}_{i}" for i in range(int(first), int(last or first) + 1)]
    return tasks


def accounting(job_id: str) -> dict[str, list[str]]:
    """sacct's states of every array task, every attempt (requeued ones first), once all are final.  A task
    with no record of its own takes the state of the unsplit record that still names it."""
    def final():
        rows = [line.split("|") for line in slurm("sacct", "-n", "-X", "-P", "--duplicates", "-j", job_id,
                                                   "-o", "JobID,State").splitlines()]
        states: dict[str, list[str]] = {}
        for task, state in rows:
            if "[" not in task:
                states.setdefault(task, []).append(state.split()[0])
        for record, state in rows:
            if "[" in record:
                for task in array_tasks(record):
                    if task not in states:
                        states[task] = [state.split()[0]]
        busy = {"PENDING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "RESIZING", "SUSPENDED"}
        return states if states and not any(s[-1] in busy for s in states.values()) else None
    return wait_until(final, 60, f"sacct to record job {job_id} as finished", poll=1)


def history(run: Path) -> list[dict[str, str]]:
    """history.csv without its timings (wall-clock seconds differ from run to run)."""
    rows = list(csv.DictReader(open(run / "history.csv")))
    return [{k: v for k, v in row.items() if not k.endswith("seconds")} for row in rows]


def uninterrupted(overrides: list[str], cwd: Path) -> subprocess.Popen:
    """The same run in one go, outside Slurm, with the thread count of a 1-CPU job (thread count changes bits)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "aebench", "threads=1", *overrides], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def assert_same_results(job: Path, reference: subprocess.Popen, cwd: Path) -> None:
    _, err = reference.communicate(timeout=300)
    assert reference.returncode == 0, err
    ref = only_run_dir(cwd)
    assert read_metrics(job)["status"] == "completed"
    assert numbers(read_metrics(job)) == numbers(read_metrics(ref))
    assert history(job) == history(ref)


# ------------------------------------------------------------------ a sweep as one job array
@pytest.fixture(scope="module")
def sweep_4(partition, tmp_path_factory):
    """model=ae,vae latent=2,5 as one array, on a fresh data root that its jobs prepare themselves."""
    cwd = tmp_path_factory.mktemp("slurm-sweep")
    name = "aebench-test-sweep4"
    try:
        proc = run_cli("-m", *on_slurm(partition, name), "model=ae,vae", "latent=2,5", "epochs=1", *TINY,
                       f"data.root={cwd / 'data'}", "data.download=false", cwd=cwd, timeout=400)
    finally:
        slurm("scancel", "--name", name, check=False)
    assert proc.returncode == 0, proc.stderr
    return sweep_dir(cwd), proc


def test_a_sweep_runs_as_one_job_array_that_sacct_records_completed(sweep_4):
    sweep, _ = sweep_4
    states = accounting(array_id(sweep))
    assert sorted(states) == [f"{array_id(sweep)}_{i}" for i in range(4)] == sorted(slurm_jobs(sweep).values())
    assert all(s == ["COMPLETED"] for s in states.values()), states


def test_the_summary_equals_every_jobs_metrics(sweep_4):
    sweep, proc = sweep_4
    rows = list(csv.DictReader(open(sweep / "summary.csv")))
    assert len(rows) == 4 and all(r["status"] == "completed" for r in rows)
    assert {(r["model"], r["latent"]) for r in rows} == {("ae", "2"), ("ae", "5"), ("vae", "2"), ("vae", "5")}
    for row in rows:
        m = read_metrics(sweep / row["job"])
        for key in ("probe_accuracy", "knn_accuracy", "pca_probe_accuracy", "recon_mse"):
            assert float(row[key]) == m[key], (row["job"], key)
        assert (float(row["neg_elbo"]) == m["neg_elbo"]) if row["model"] == "vae" else row["neg_elbo"] == ""
        assert m["device"].endswith(", 1 threads)")  # torch threads = cpus_per_task
    assert "probe_accuracy" in proc.stdout


def test_jobs_that_start_together_prepare_a_fresh_data_root_once(sweep_4):
    sweep, _ = sweep_4
    starts = slurm("sacct", "-n", "-X", "-P", "-j", array_id(sweep), "-o", "JobID,Start").split()
    started = sorted(line.split("|")[1] for line in starts)
    assert started[0] == started[1], f"no two jobs started together: {starts}"  # two 1-CPU jobs on 2 CPUs
    logs = [(job / "aebench.log").read_text() for job in job_dirs(sweep).values()]
    assert sum(log.count("MNIST: prepared from") for log in logs) == 1, "the data was prepared more than once"
    # Every job read complete files: all completed (a half-written file fails its md5 check).
    raw = sweep.parent.parent.parent / "data" / "MNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(
        ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"])


# ------------------------------------------------------------------ pre-emption
def test_a_requeued_job_resumes_and_ends_with_the_uninterrupted_numbers(partition, job_name, tmp_path, data_root):
    run = ["latent=3", "epochs=10", *TINY]
    (tmp_path / "slurm").mkdir()
    (tmp_path / "ref").mkdir()
    sweep_proc = start_sweep(*on_slurm(partition, job_name), *run, cwd=tmp_path / "slurm")
    reference = uninterrupted(run, tmp_path / "ref")
    try:
        checkpoint = wait_until(lambda: next((tmp_path / "slurm").glob("multirun/*/*/0_*/checkpoints/last.pt"), None),
                                120, "the job's first checkpoint")
        job = checkpoint.parent.parent
        slurm_job = slurm_jobs(job.parent)[0]
        slurm("scontrol", "requeue", slurm_job)  # as a pre-emption does: SIGTERM, then requeued
        code, _, err = finish(sweep_proc)
    finally:
        sweep_proc.kill()
    assert code == 0, err
    log = (job / "aebench.log").read_text()
    assert "interrupted by signal 15" in log and "found an unfinished checkpoint" in log
    assert accounting(slurm_job)[slurm_job] == ["REQUEUED", "COMPLETED"]
    assert_same_results(job, reference, tmp_path / "ref")


# ------------------------------------------------------------------ time limit
def seconds_per_epoch(cwd: Path) -> float:
    """This machine's steady pace now, for the runs below (a 1-CPU job: 1 thread): the fastest of three
    epochs, so that a run sized with it lasts at least as long as planned."""
    cwd.mkdir()
    proc = run_cli("threads=1", "latent=3", "epochs=3", *TINY, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(open(only_run_dir(cwd) / "history.csv")))
    return min(float(r["train_seconds"]) + float(r["eval_seconds"]) for r in rows)


def test_a_job_past_its_time_limit_checkpoints_is_requeued_and_completes(partition, job_name, tmp_path, data_root):
    # A 1-minute limit.  Slurm checks limits every 30 s, so the warning (SIGUSR2) comes 20-50 s before
    # the limit (10-40 s into the job) and the kill 0-30 s after it.  With 35 s of training one CI run
    # finished unwarned (a late check, or a pace measured slow).  Sized at 60 s of training at the fastest
    # pace measured, the first attempt trains from ~8 s (start-up) to at least 68 s into the job, so the
    # warning (at 40 s at the latest) finds it training, and the later attempts are warned again or finish.
    epochs = min(1000, max(20, round(60 / seconds_per_epoch(tmp_path / "pace"))))
    run = ["latent=3", f"epochs={epochs}", *TINY]
    limits = ["hydra.launcher.timeout_min=1", "hydra.launcher.signal_delay_s=20", "hydra.launcher.max_num_timeout=10"]
    (tmp_path / "slurm").mkdir()
    (tmp_path / "ref").mkdir()
    sweep_proc = start_sweep(*on_slurm(partition, job_name), *limits, *run, cwd=tmp_path / "slurm")
    reference = uninterrupted(run, tmp_path / "ref")
    try:
        code, _, err = finish(sweep_proc, timeout=400)
    finally:
        sweep_proc.kill()
    assert code == 0, err
    sweep = sweep_dir(tmp_path / "slurm")
    job = job_dirs(sweep)[0]
    slurm_job = slurm_jobs(sweep)[0]
    attempts = accounting(slurm_job)[slurm_job]
    assert attempts[-1] == "COMPLETED" and len(attempts) >= 2, attempts  # requeued at least once, never TIMEOUT
    assert set(attempts[:-1]) == {"REQUEUED"}, attempts
    submitit_log = "".join(p.read_text() for p in (sweep / ".submitit").glob("*/*_log.err"))
    assert "Caught signal SIGUSR2" in submitit_log and "this job is timed-out" in submitit_log
    log = (job / "aebench.log").read_text()
    assert "stopping training at a checkpoint" in log and "found an unfinished checkpoint" in log
    assert_same_results(job, reference, tmp_path / "ref")


# ------------------------------------------------------------------ scancel
def test_cancelled_jobs_are_reported_and_the_others_finish_intact(partition, job_name, tmp_path, data_root):
    # Two jobs at a time: job 2 waits while jobs 0 and 1 run.  Cancel job 2 before it starts and job 1
    # while it trains.
    proc = start_sweep(*on_slurm(partition, job_name), "hydra.launcher.array_parallelism=2", "latent=2,3,4",
                       "epochs=12", *TINY, cwd=tmp_path)
    try:
        wait_until(lambda: next(tmp_path.glob("multirun/*/*/1_*/checkpoints/last.pt"), None), 120,
                   "job 1's first checkpoint")
        array = array_id(sweep_dir(tmp_path))
        slurm("scancel", f"{array}_2")
        slurm("scancel", f"{array}_1")
        code, _, err = finish(proc)
    finally:
        proc.kill()
    assert code == 2, err
    assert err.strip().splitlines()[-1].startswith("aebench: error: 2 of 3 job(s) did not complete"), err
    sweep = sweep_dir(tmp_path)
    rows = {int(r["job"].split("_", 1)[0]): r for r in csv.DictReader(open(sweep / "summary.csv"))}
    assert [rows[i]["status"] for i in range(3)] == ["completed", "interrupted", "cancelled"]
    assert "interrupted by signal 15" in rows[1]["error"]
    assert "CANCELLED" in rows[2]["error"] and rows[2]["latent"] == "4"
    done = read_metrics(job_dirs(sweep)[0])
    assert done["status"] == "completed" and done["epochs_trained"] == 12
    assert float(rows[0]["probe_accuracy"]) == done["probe_accuracy"]
    assert (job_dirs(sweep)[0] / "checkpoints" / "last.pt").is_file()
    states = accounting(array)
    assert [states[f"{array}_{i}"][-1] for i in range(3)] == ["COMPLETED", "CANCELLED", "CANCELLED"]


# ------------------------------------------------------------------ one run on several tasks (DDP)
def test_a_job_of_two_tasks_is_one_ddp_run_with_one_directory(partition, job_name, tmp_path, data_root):
    """hydra.launcher.tasks_per_node=2: both tasks of the job train one run (gloo, rendezvous from submitit's job
    environment), rank 0 alone writes the job's directory, and the job completes in sacct."""
    proc = run_cli("-m", *on_slurm(partition, job_name), "hydra.launcher.tasks_per_node=2", "latent=3", "epochs=2",
                   *TINY, cwd=tmp_path, timeout=400)
    assert proc.returncode == 0, proc.stderr
    sweep = sweep_dir(tmp_path)
    jobs = job_dirs(sweep)
    assert list(jobs) == [0]
    m = read_metrics(jobs[0])
    assert m["status"] == "completed" and m["distributed"] == {"world_size": 2, "backend": "gloo", "batch_per_rank": 128}
    assert m["device"].endswith(", 1 threads)")  # cpus_per_task=1 per task
    assert sorted(p.name for p in jobs[0].iterdir()) == [".hydra", "aebench.log", "checkpoints", "history.csv",
                                                         "metrics.json", "probe.npz"]
    assert (jobs[0] / "aebench.log").read_text().count("process 0 of 2") == 1
    slurm_job = slurm_jobs(sweep)[0]
    assert accounting(slurm_job)[slurm_job] == ["COMPLETED"]
    outs = sorted(p.name for p in (sweep / ".submitit").rglob("*_log.out"))
    assert len(outs) == 2, outs  # one log per task
