"""aebench-compare's intervals, differences against a baseline and damaged runs, on fake run directories.

Every run here is written by the test (config, overrides, metrics.json, probe.npz): no training, seconds in all.
"""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import numpy as np
import pytest
import yaml
from omegaconf import OmegaConf
from scipy import stats as sps

from aebench import compare, stats

N_TEST = 1000


def fake_run(path: Path, *, latent: int = 5, seed: int = 0, accuracy: float | None = 0.9, knn: float | None = 0.92,
             overrides: list[str] | None = None, lr: float = 2e-3, dataset: str = "mnist", predictions: bool = True,
             test_y: np.ndarray | None = None, status: str = "completed") -> Path:
    """A completed run's directory as aebench >= 0.4 leaves it (no checkpoint, no history)."""
    (path / ".hydra").mkdir(parents=True)
    config = {"model": {"name": "ae"}, "arch": {"name": "mlp"}, "data": {"name": dataset, "root": None},
              "latent": latent, "epochs": 2, "seed": seed, "train": {"lr": lr}, "threads": None}
    (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    overrides = [f"latent={latent}", f"seed={seed}"] if overrides is None else overrides
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    rng = np.random.default_rng([latent, seed, int(1e6 * lr)])
    test_y = rng.integers(0, 10, N_TEST) if test_y is None else test_y
    metrics = {"status": status, "recon_mse": 0.02 / latent + 0.0005 * rng.random(), "neg_elbo": None,
               "probe_accuracy": None, "knn_accuracy": None, "pca_probe_accuracy": 0.7, "pixel_probe_accuracy": 0.9,
               "seconds": {"total": 10.0 + rng.random()},
               "label_budget_accuracy": {"100": {"mean": (accuracy or 0.5) - 0.1 + 0.01 * rng.random()}}}
    arrays = {"test_y": test_y, "format": np.int64(1)}
    for key, name, acc in (("probe_accuracy", "test_pred", accuracy), ("knn_accuracy", "knn_pred", knn)):
        if acc is not None:
            pred = np.where(rng.random(N_TEST) < acc, test_y, (test_y + 1) % 10)
            arrays[name] = pred
            metrics[key] = float(np.mean(pred == test_y))
    if accuracy is None:  # unlabelled data: the probes are skipped, with a note
        metrics["skipped"] = "the data has no labels: no probe"
        metrics["label_budget_accuracy"] = {"skipped": "the data has no labels"}
    (path / "metrics.json").write_text(json.dumps(metrics))
    if predictions and accuracy is not None:
        np.savez(path / "probe.npz", **arrays)
    return path


def seed_sweep(root: Path, latents=(5, 10), seeds=(0, 1, 2), accuracy=lambda latent: 0.85 + latent / 200) -> Path:
    """A fake sweep `-m latent=5,10 seed=range(3)`: 2 settings x 3 seeds."""
    job = 0
    for latent in latents:
        for seed in seeds:
            fake_run(root / f"{job}_latent={latent},seed={seed}", latent=latent, seed=seed, accuracy=accuracy(latent))
            job += 1
    return root


def run_compare(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        compare.main([*map(str, argv), "--no-reconstructions"])
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def read_csv(path: Path) -> list[dict]:
    return list(csv.DictReader(open(path)))


def test_a_seed_sweep_gets_t_intervals_in_every_output(tmp_path, capsys):
    sweep = seed_sweep(tmp_path / "sweep")
    code, out, err = run_compare(capsys, sweep)
    assert code == 0, err
    groups = {g["group"]: g for g in read_csv(sweep / "groups.csv")}
    assert set(groups) == {"latent=5", "latent=10"}
    for name, g in groups.items():
        runs = [json.loads((p / "metrics.json").read_text()) for p in sweep.glob(f"*_{name},seed=*")]
        values = [m["probe_accuracy"] for m in runs]
        low, high = sps.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=sps.sem(values))
        assert float(g["probe_accuracy_ci_low"]) == pytest.approx(low, rel=1e-9)
        assert float(g["probe_accuracy_ci_high"]) == pytest.approx(high, rel=1e-9)
        assert g["interval"] == "95 % t-interval over seeds (n=3)" and g["n_seeds"] == "3"
        assert float(g["probe_accuracy@100_ci_low"]) < float(g["probe_accuracy@100_mean"])
    md = (sweep / "summary.md").read_text()
    g5 = groups["latent=5"]
    cell = f"[{100 * float(g5['probe_accuracy_ci_low']):.2f}, {100 * float(g5['probe_accuracy_ci_high']):.2f}]"
    assert cell in md and "95 % t-interval over seeds" in md and cell in out
    # single runs' bootstrap intervals stay in summary.csv, from each run's probe.npz
    row = read_csv(sweep / "summary.csv")[0]
    assert float(row["probe_accuracy_ci_low"]) < float(row["probe_accuracy"]) < float(row["probe_accuracy_ci_high"])
    assert row["ci_method"].startswith("95 % bootstrap over test images")
    # the figure's bars are the t-intervals, never the bootstrap
    rows = compare.collect([sweep])
    series, noise = compare.figure_points(compare.group_by_seed(rows), "probe_accuracy", [])
    assert noise == stats.SEED_NOISE
    assert series["AE mlp"][5] == (float(g5["probe_accuracy_mean"]), float(g5["probe_accuracy_ci_low"]),
                                   float(g5["probe_accuracy_ci_high"]))
    assert (sweep / "probe_accuracy_vs_latent.png").stat().st_size > 10_000
    assert (sweep / "recon_mse_vs_latent.png").is_file()


def test_baseline_gives_paired_differences_and_verdicts(tmp_path, capsys):
    sweep = seed_sweep(tmp_path / "sweep")
    code, out, err = run_compare(capsys, sweep, "--baseline", "latent=5")
    assert code == 0, err
    diffs = {d["metric"]: d for d in read_csv(sweep / "differences.csv") if d["group"] == "latent=10"}
    probe = diffs["probe_accuracy"]
    a = [json.loads((sweep / f"{3 + s}_latent=10,seed={s}" / "metrics.json").read_text())["probe_accuracy"] for s in range(3)]
    b = [json.loads((sweep / f"{s}_latent=5,seed={s}" / "metrics.json").read_text())["probe_accuracy"] for s in range(3)]
    ci = sps.ttest_rel(a, b).confidence_interval(0.95)
    assert float(probe["ci_low"]) == pytest.approx(ci.low) and float(probe["ci_high"]) == pytest.approx(ci.high)
    assert probe["method"] == "paired t over 3 seeds"
    assert probe["verdict"] == ("better" if ci.low > 0 else "worse" if ci.high < 0 else "within noise")
    assert probe["verdict"] == "better"  # 2.5 points apart on 1 000 images: beyond the seed noise
    assert diffs["recon_mse"]["verdict"] == "better"  # lower is better
    assert {"probe_accuracy@100", "knn_accuracy", "seconds"} <= set(diffs) and "neg_elbo" not in diffs
    md = (sweep / "summary.md").read_text()
    assert "## Against the baseline: latent=5" in md and "| better |" in md
    assert "against the baseline latent=5" in out and "better" in out
    # the same by job number
    code, _, err = run_compare(capsys, sweep, "--baseline", "1")
    assert code == 0, err


def test_welch_where_the_seeds_differ(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    seed_sweep(sweep, latents=(5,), seeds=(0, 1, 2))
    for j, seed in enumerate((3, 4, 5, 6)):
        fake_run(sweep / f"{3 + j}_latent=10,seed={seed}", latent=10, seed=seed, accuracy=0.9)
    code, _, err = run_compare(capsys, sweep, "--baseline", "latent=5")
    assert code == 0, err
    probe = next(d for d in read_csv(sweep / "differences.csv") if d["metric"] == "probe_accuracy")
    a = [json.loads((sweep / f"{3 + j}_latent=10,seed={s}" / "metrics.json").read_text())["probe_accuracy"]
         for j, s in enumerate((3, 4, 5, 6))]
    b = [json.loads((sweep / f"{s}_latent=5,seed={s}" / "metrics.json").read_text())["probe_accuracy"] for s in range(3)]
    ci = sps.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert probe["method"].startswith("Welch")
    assert float(probe["ci_low"]) == pytest.approx(ci.low) and float(probe["ci_high"]) == pytest.approx(ci.high)


def test_an_ambiguous_or_unknown_baseline_is_refused_in_one_line(tmp_path, capsys):
    seed_sweep(tmp_path / "a")
    seed_sweep(tmp_path / "b", accuracy=lambda latent: 0.8)  # the same overrides, another config: same names
    for run in (tmp_path / "b").iterdir():
        cfg = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
        cfg["train"]["lr"] = 1e-3
        (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    out_dir = tmp_path / "report"
    code, _, err = run_compare(capsys, tmp_path / "a", tmp_path / "b", "--out", out_dir, "--baseline", "latent=5")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "ambiguous" in err and "a/0" in err and "b/0" in err and not out_dir.exists()
    code, _, err = run_compare(capsys, tmp_path / "a", tmp_path / "b", "--out", out_dir, "--baseline", "latent=7")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "matches no group" in err and "'latent=10'" in err
    code, _, err = run_compare(capsys, tmp_path / "a", tmp_path / "b", "--out", out_dir, "--baseline", "b/0")
    assert code == 0, err
    assert {d["baseline"] for d in read_csv(out_dir / "differences.csv")} == {"latent=5"}


def test_two_single_runs_get_a_paired_bootstrap_over_the_test_images(tmp_path, capsys):
    test_y = np.random.default_rng(1).integers(0, 10, N_TEST)
    fake_run(tmp_path / "s" / "0_latent=5", latent=5, overrides=["latent=5"], accuracy=0.85, test_y=test_y)
    fake_run(tmp_path / "s" / "1_latent=10", latent=10, overrides=["latent=10"], accuracy=0.95, test_y=test_y)
    fake_run(tmp_path / "s" / "2_latent=20", latent=20, overrides=["latent=20"], accuracy=0.95)  # other test labels
    fake_run(tmp_path / "s" / "3_latent=40", latent=40, overrides=["latent=40"], accuracy=0.8, predictions=False)
    code, out, err = run_compare(capsys, tmp_path / "s", "--baseline", "0")
    assert code == 0, err
    diffs = {(d["group"], d["metric"]): d for d in read_csv(tmp_path / "s" / "differences.csv")}
    assert diffs[("latent=10", "probe_accuracy")]["method"] == "paired bootstrap over 1000 test images"
    assert diffs[("latent=10", "probe_accuracy")]["verdict"] == "better"
    assert "different test sets" in diffs[("latent=20", "probe_accuracy")]["note"]
    assert diffs[("latent=20", "probe_accuracy")]["verdict"] == "–"
    assert "no saved test predictions" in diffs[("latent=40", "knn_accuracy")]["note"]
    assert "no noise estimate" in diffs[("latent=10", "recon_mse")]["note"]
    rows = compare.collect([tmp_path / "s"])
    series, noise = compare.figure_points(compare.group_by_seed(rows), "probe_accuracy", [])
    assert noise == stats.TEST_NOISE
    low, high = series["AE mlp"][5][1:]
    assert (low, high) == (rows[0]["probe_accuracy_ci_low"], rows[0]["probe_accuracy_ci_high"])
    assert series["AE mlp"][40][1:] == (None, None)  # no predictions: no bar
    md = (tmp_path / "s" / "summary.md").read_text()
    best = next(line for line in md.splitlines() if line.startswith("Best linear probe"))
    assert best.startswith("Best linear probe: **1: latent=10**") and "Within noise" not in best
    assert "No noise estimate against 2 other(s)" in best and "2: latent=20" in best  # other test set; no predictions


def test_the_best_line_names_those_within_noise(tmp_path, capsys):
    sweep = seed_sweep(tmp_path / "sweep", latents=(5, 10, 20),
                       accuracy=lambda latent: {5: 0.80, 10: 0.95, 20: 0.951}[latent])
    code, _, err = run_compare(capsys, sweep)
    assert code == 0, err
    md = (sweep / "summary.md").read_text()
    best = next(line for line in md.splitlines() if line.startswith("Best linear probe"))
    assert "Within noise of it" in best and "latent=5 " not in best
    assert ("**latent=20**" in best and "latent=10 (" in best) or ("**latent=10**" in best and "latent=20 (" in best)


def test_damaged_files_are_skipped_and_the_rest_compared(tmp_path, capsys, caplog):
    sweep = seed_sweep(tmp_path / "sweep")
    (sweep / "1_latent=5,seed=1" / "metrics.json").write_text('{"status": "completed", "probe_acc')  # half-written
    (sweep / "2_latent=5,seed=2" / ".hydra" / "config.yaml").write_text("model: [ae\nlatent: 5\n")
    metrics = json.loads((sweep / "4_latent=10,seed=1" / "metrics.json").read_text())
    (sweep / "4_latent=10,seed=1" / "metrics.json").write_text(json.dumps({**metrics, "probe_accuracy": "high"}))
    (sweep / "3_latent=10,seed=0" / "metrics.json").unlink()  # killed: incomplete, as before
    code, out, err = run_compare(capsys, sweep, "--baseline", "latent=10")
    assert code == 0, err
    assert "Traceback" not in err + out
    rows = {r["job"].split("_")[0]: r for r in read_csv(sweep / "summary.csv")}
    assert rows["1"]["status"] == "skipped" and "metrics.json: not valid JSON" in rows["1"]["error"]
    assert rows["2"]["status"] == "skipped" and ".hydra/config.yaml: not valid YAML" in rows["2"]["error"]
    assert rows["4"]["status"] == "skipped" and "probe_accuracy is str 'high', not a number" in rows["4"]["error"]
    assert rows["3"]["status"] == "incomplete" and rows["0"]["status"] == rows["5"]["status"] == "completed"
    md = (sweep / "summary.md").read_text()
    assert "3 skipped (files unreadable: 1_latent=5,seed=1: metrics.json" in md
    assert "skipped 2_latent=5,seed=2: .hydra/config.yaml" in caplog.text  # a warning per skipped run


def test_nothing_comparable_is_one_line_and_exit_2(tmp_path, capsys):
    sweep = seed_sweep(tmp_path / "sweep", latents=(5,), seeds=(0, 1))
    for run in sweep.iterdir():
        (run / "metrics.json").write_text("[1, 2")
    code, _, err = run_compare(capsys, sweep)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("aebench-compare: error: nothing to compare") and "0_latent=5,seed=0: metrics.json" in err
    assert not (sweep / "summary.md").exists()


def test_unlabelled_runs_have_no_best_probe_and_still_compare(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    for job, latent in enumerate((5, 10)):
        fake_run(sweep / f"{job}_latent={latent}", latent=latent, overrides=[f"latent={latent}"], accuracy=None, knn=None)
    code, out, err = run_compare(capsys, sweep, "--baseline", "0")
    assert code == 0, err
    md = (sweep / "summary.md").read_text()
    assert "Best linear probe: – (no completed job has a probe accuracy" in md
    assert not (sweep / "probe_accuracy_vs_latent.png").exists() and (sweep / "recon_mse_vs_latent.png").is_file()
    assert {d["metric"] for d in read_csv(sweep / "differences.csv")} == {"recon_mse", "seconds"}
    # mixed with labelled seeds: the best line and the figure use those that have a probe
    seed_sweep(tmp_path / "more", latents=(20,), seeds=(0, 1))
    code, _, err = run_compare(capsys, sweep, tmp_path / "more", "--out", tmp_path / "r", "--baseline", "latent=20")
    assert code == 0, err
    assert "Best linear probe: **latent=20**" in (tmp_path / "r" / "summary.md").read_text()


def test_several_datasets_are_never_one_line_or_one_best(tmp_path, capsys):
    fake_run(tmp_path / "s" / "0_data=mnist", overrides=["data=mnist"], dataset="mnist")
    fake_run(tmp_path / "s" / "1_data=fashion_mnist", overrides=["data=fashion_mnist"], dataset="fashion_mnist")
    code, _, err = run_compare(capsys, tmp_path / "s", "--baseline", "0")
    assert code == 0, err
    md = (tmp_path / "s" / "summary.md").read_text()
    assert "Best linear probe on mnist" in md and "Best linear probe on fashion_mnist" in md
    assert all("another dataset" in d["note"] and d["verdict"] == "–" for d in read_csv(tmp_path / "s" / "differences.csv"))
    rows = compare.collect([tmp_path / "s"])
    series, _ = compare.figure_points(compare.group_by_seed(rows), "probe_accuracy", ["dataset"])
    assert set(series) == {"AE mlp dataset=mnist", "AE mlp dataset=fashion_mnist"}


def test_the_sweep_callback_survives_a_damaged_job(tmp_path, capsys):
    sweep = seed_sweep(tmp_path / "sweep", latents=(5,), seeds=(0, 1))
    (sweep / "0_latent=5,seed=0" / "metrics.json").write_text("{")
    compare.sweep_problem = None
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
    compare.SweepSummaryCallback().on_multirun_end(config)
    assert (sweep / "summary.md").is_file()
    assert compare.sweep_problem and "1 of 2 job(s) did not complete" in compare.sweep_problem
    compare.sweep_problem = None


def test_groups_at_one_latent_size_are_drawn_side_by_side(tmp_path, monkeypatch):
    """A leaderboard has every group at latent 20: their error bars must not be drawn on one vertical line."""
    from aebench import plots

    drawn = {}
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.setdefault("fig", fig))
    series = {f"{m} mlp": {20: (0.92 + i / 100, 0.91 + i / 100, 0.93 + i / 100)} for i, m in enumerate(("AE", "VAE", "DAE"))}
    plots.metric_vs_latent(series, {}, "acc", "t", tmp_path / "f.png", percent=True, noise=stats.SEED_NOISE)
    ax = drawn["fig"].axes[0]
    xs = [bars.lines[0].get_xdata()[0] for bars in ax.containers if bars.get_label() in series]
    assert len(xs) == 3 and len(set(xs)) == 3 and min(xs) < 20 < max(xs) and max(xs) / min(xs) < 1.1
    assert [t.get_text() for t in ax.get_xticklabels()] == ["20"]  # the tick still names the true size
    plots.plt.close(drawn["fig"])
