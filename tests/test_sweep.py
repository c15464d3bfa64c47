"""Sweeps: one directory per job, a summary that matches every job, launchers, failures, aebench-compare on real
sweeps (tests/compare/ tests the comparison itself on fake run directories)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from aebench.rundir import job_dir_name, unique_dir
from conftest import TINY, read_metrics, run_cli

ONE_EPOCH = ["epochs=1", *TINY]


def sweep_dir(cwd: Path) -> Path:
    dirs = [p.parent for p in cwd.glob("multirun/*/*/summary.csv")]
    assert len(dirs) == 1, dirs
    return dirs[0]


def summary_rows(sweep: Path) -> list[dict]:
    return list(csv.DictReader(open(sweep / "summary.csv")))


@pytest.fixture(scope="module")
def sweep_2x2(tmp_path_factory, data_root):
    cwd = tmp_path_factory.mktemp("sweep")
    proc = run_cli("-m", "model=ae,vae", "latent=2,5", *ONE_EPOCH, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return sweep_dir(cwd), proc


def test_sweep_writes_one_named_directory_per_job(sweep_2x2):
    sweep, _ = sweep_2x2
    jobs = sorted(p.name for p in sweep.iterdir() if (p / "metrics.json").is_file())
    assert len(jobs) == 4
    assert any("latent=5" in j and "model=vae" in j for j in jobs)
    assert sorted(j.split("_", 1)[0] for j in jobs) == ["0", "1", "2", "3"]


def test_summary_matches_every_jobs_metrics_exactly(sweep_2x2):
    sweep, proc = sweep_2x2
    rows = summary_rows(sweep)
    assert len(rows) == 4 and all(r["status"] == "completed" for r in rows)
    for row in rows:
        m = read_metrics(sweep / row["job"])
        for key in ("probe_accuracy", "knn_accuracy", "pca_probe_accuracy", "pixel_probe_accuracy", "recon_mse"):
            assert float(row[key]) == m[key], (row["job"], key)
        assert (float(row["neg_elbo"]) == m["neg_elbo"]) if row["model"] == "vae" else row["neg_elbo"] == ""
        assert int(row["latent"]) == m["config"]["latent"] and row["model"] == m["config"]["model"]
        assert float(row["seconds"]) == m["seconds"]["total"]
    md = (sweep / "summary.md").read_text()
    assert md.count("| completed |") == 4 and "Best linear probe" in md
    assert "probe_accuracy" in proc.stdout  # the table is printed at the end of the sweep


def test_sweep_figures_are_written(sweep_2x2):
    import matplotlib.image as mpimg

    sweep, _ = sweep_2x2
    for name in ("probe_accuracy_vs_latent.png", "recon_mse_vs_latent.png", "loss_curves.png", "reconstructions_by_job.png"):
        img = mpimg.imread(sweep / name)
        assert img.shape[0] > 200 and img[..., :3].std() > 0.01, name


def test_a_failed_job_loses_nothing(tmp_path, data_root):
    proc = run_cli("-m", "latent=3,0", *ONE_EPOCH, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("aebench: error: 1 of 2 job(s) did not complete")
    rows = {r["latent"]: r for r in summary_rows(sweep_dir(tmp_path))}
    assert rows["3"]["status"] == "completed" and 0 < float(rows["3"]["probe_accuracy"]) <= 1
    assert rows["0"]["status"] == "failed" and "latent=0 is not accepted" in rows["0"]["error"]


def test_a_diverged_job_is_recorded_and_the_sweep_goes_on(tmp_path, data_root):
    proc = run_cli("-m", "train.lr=1e6,2e-3", "model.recon_loss=mse", *ONE_EPOCH, cwd=tmp_path)
    assert proc.returncode == 2 and "1 of 2 job(s) did not complete" in proc.stderr
    rows = {r["job"].split("_", 1)[0]: r for r in summary_rows(sweep_dir(tmp_path))}
    assert rows["0"]["status"] == "failed" and "training diverged in epoch 1" in rows["0"]["error"]
    assert rows["1"]["status"] == "completed" and 0.3 < float(rows["1"]["probe_accuracy"]) <= 1


def test_a_sweep_whose_jobs_all_fail_still_writes_its_summary(tmp_path, data_root):
    proc = run_cli("-m", "latent=0,-1", *ONE_EPOCH, cwd=tmp_path)
    assert proc.returncode == 2 and "2 of 2 job(s) did not complete" in proc.stderr
    sweep = sweep_dir(tmp_path)
    assert [r["status"] for r in summary_rows(sweep)] == ["failed", "failed"]
    assert "0 completed, 2 not completed" in (sweep / "summary.md").read_text()


def test_joblib_launcher_runs_jobs_in_parallel_with_split_threads(tmp_path, data_root):
    proc = run_cli("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "latent=2,5", *ONE_EPOCH, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    sweep = sweep_dir(tmp_path)
    rows = summary_rows(sweep)
    assert len(rows) == 2 and all(r["status"] == "completed" for r in rows)
    cores = len(__import__("os").sched_getaffinity(0))
    for row in rows:
        assert read_metrics(sweep / row["job"])["device"].endswith(f", {max(1, cores // 2)} threads)")


@pytest.mark.slow  # ~15 s of process start-up; CI runs it with the slow suite
def test_submitit_local_launcher(tmp_path, data_root):
    proc = run_cli("-m", "hydra/launcher=submitit_local", "latent=2,5", *ONE_EPOCH, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    sweep = sweep_dir(tmp_path)
    assert [r["status"] for r in summary_rows(sweep)] == ["completed", "completed"]
    assert (sweep / ".submitit").is_dir()
    assert read_metrics(sweep / summary_rows(sweep)[0]["job"])["device"].endswith(", 1 threads)")  # cpus_per_task: 1


@pytest.mark.slow  # ~18 s; CI runs it with the slow suite
def test_optuna_search_maximises_probe_accuracy(tmp_path, data_root):
    proc = run_cli("-m", "hparams_search=optuna", "hydra.sweeper.n_trials=2", *ONE_EPOCH, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    sweep = sweep_dir(tmp_path)
    rows = summary_rows(sweep)
    assert len(rows) == 2
    import yaml

    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())["best_value"]
    assert best == max(float(r["probe_accuracy"]) for r in rows)


def test_compare_mixes_sweeps_runs_and_partial_sweeps(sweep_2x2, tmp_path, data_root):
    sweep, _ = sweep_2x2
    proc = run_cli("epochs=1", *TINY, cwd=tmp_path)  # a single run to mix in
    assert proc.returncode == 0, proc.stderr
    single = next(tmp_path.glob("outputs/*/*"))
    partial = tmp_path / "partial"
    import shutil

    shutil.copytree(sweep, partial)
    victim = next(p for p in partial.iterdir() if p.name.startswith("3_"))
    (victim / "metrics.json").unlink()  # as if that job had been killed
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "aebench.compare", str(partial), str(single), "--out", str(out)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = summary_rows(out)
    assert len(rows) == 5
    assert sorted(r["status"] for r in rows) == ["completed"] * 4 + ["incomplete"]
    assert "incomplete" in proc.stdout and (out / "summary.md").is_file()
    assert (out / "probe_accuracy_vs_latent.png").is_file()


def test_same_second_never_shares_a_directory(tmp_path):
    base = str(tmp_path / "multirun" / "2026-11-26" / "14-00-00")
    first, second, third = unique_dir(base), unique_dir(base), unique_dir(base)
    assert len({first, second, third}) == 3 and all(Path(p).is_dir() for p in (first, second, third))


def test_two_runs_started_together_get_their_own_directories(tmp_path, data_root):
    cmd = [sys.executable, "-m", "aebench", "epochs=1", "figures=false", "probe.every_epoch=false", *TINY]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    runs = list(tmp_path.glob("outputs/*/*/metrics.json"))
    assert len(runs) == 2


def test_long_override_lists_make_short_unique_job_names():
    long = ",".join(f"train.lr=0.00{i}1234567891234" for i in range(20))
    name = job_dir_name(3, long)
    assert len(name) <= 120 and name.startswith("3_train.lr=")
    assert name != job_dir_name(3, long + "x")
    assert job_dir_name(0, "latent=2") == "0_latent=2"


def test_sigterm_stops_the_whole_sweep_with_a_resumable_job(tmp_path, data_root):
    proc = run_cli("-m", "latent=2,3", *ONE_EPOCH, cwd=tmp_path, env={"AEBENCH_SELF_SIGNAL": "TERM@3"})
    assert proc.returncode == 143, proc.stderr
    jobs = [p for p in tmp_path.glob("multirun/*/*/*") if p.is_dir()]
    assert len(jobs) == 1 and jobs[0].name.startswith("0_") and "latent=2" in jobs[0].name  # job 1 never started
    job = jobs[0]
    assert read_metrics(job)["status"] == "interrupted"
    assert f"resume with: aebench resume={job.resolve()}" in proc.stderr


@pytest.mark.slow  # 6 jobs; CI runs it with the slow suite
def test_a_seed_sweep_is_summarised_per_group_with_mean_and_spread(tmp_path, data_root):
    """aebench -m model=ae,vae seed=range(3): 2 groups of 3 seeds, mean and std from each job's metrics.json."""
    import statistics

    proc = run_cli("-m", "model=ae,vae", "latent=5", "seed=range(3)", "probe.every_epoch=false", "figures=false",
                   *ONE_EPOCH, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    sweep = sweep_dir(tmp_path)
    assert len(summary_rows(sweep)) == 6  # the per-seed rows are still there
    groups = list(csv.DictReader(open(sweep / "groups.csv")))
    assert sorted(g["model"] for g in groups) == ["ae", "vae"]
    for g in groups:
        assert g["n_seeds"] == "3" and g["seeds"] == "0 1 2"
        jobs = [p for p in sweep.iterdir() if f"model={g['model']}" in p.name and (p / "metrics.json").is_file()]
        runs = [read_metrics(j) for j in jobs]
        for key in ("probe_accuracy", "knn_accuracy", "recon_mse"):
            values = [m[key] for m in runs]
            assert float(g[f"{key}_mean"]) == statistics.fmean(values), key
            assert float(g[f"{key}_std"]) == statistics.stdev(values), key
        budget = [m["label_budget_accuracy"]["100"]["mean"] for m in runs]
        assert float(g["probe_accuracy@100_mean"]) == statistics.fmean(budget)
        assert g["neg_elbo_mean"] == "" if g["model"] == "ae" else float(g["neg_elbo_mean"]) > 0
    md = (sweep / "summary.md").read_text()
    assert "## Across seeds" in md and "| 3 (0 1 2) |" in md and " ± " in md
    assert "across seeds (mean ± std)" in proc.stdout


def test_the_leaderboard_experiment_sweeps_every_objective_on_every_network_over_seeds_1_to_3():
    from hydra import compose, initialize_config_module

    import aebench.cli  # noqa: F401  (registers the schema and resolvers)

    with initialize_config_module(version_base="1.3", config_module="aebench.conf"):
        cfg = compose("config", overrides=["experiment=leaderboard"], return_hydra_config=True)
    params = {k: str(v).split(",") for k, v in cfg.hydra.sweeper.params.items()}
    assert params == {"model": ["ae", "vae", "dae", "sae"], "arch": ["mlp", "conv"], "seed": ["1", "2", "3"]}
    assert cfg.hydra.launcher._target_.endswith("BasicLauncher")  # serial: joblib's thread split changes results
    assert cfg.experiment_name == "leaderboard" and cfg.data.name == "mnist"


def test_the_disentanglement_study_sweeps_the_vae_family_over_seeds_1_to_5_on_sprites():
    from hydra import compose, initialize_config_module

    from aebench import config, models

    import aebench.cli  # noqa: F401  (registers the schema and resolvers)

    with initialize_config_module(version_base="1.3", config_module="aebench.conf"):
        cfg = compose("config", overrides=["experiment=disentanglement"], return_hydra_config=True)
    params = {k: str(v).split(",") for k, v in cfg.hydra.sweeper.params.items()}
    assert params == {"model": ["vae", "beta_vae", "beta_tcvae", "factor_vae", "dip_vae", "annealed_vae"],
                      "seed": ["1", "2", "3", "4", "5"]}
    assert cfg.hydra.launcher._target_.endswith("BasicLauncher")
    assert (cfg.data.name, cfg.arch.name, cfg.latent, cfg.epochs, cfg.train.batch_size) == ("sprites", "conv", 10, 6, 64)
    assert cfg.probe.factor_points == 3000 and cfg.model.name == "vae"
    for model in params["model"]:  # each job's config is valid, its objective the one named
        job = config.compose(["experiment=disentanglement", f"model={model}"])
        config.validate(job)
        assert job.model.name in models.VARIATIONAL and job.epochs == 6
        assert (job.model.name, job.model.beta) == ("vae", 4.0) if model == "beta_vae" else job.model.name == model
