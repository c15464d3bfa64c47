"""aebench.compare.report: summary.csv, summary.md, groups.csv and the terminal's table, on fake run directories."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats as sps

from aebench import compare, stats
from fakes import fake_run, read_csv, run_compare, seed_sweep


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
    series, noise = compare.figure_points(compare.collect([sweep]).groups, "probe_accuracy")
    assert noise == stats.SEED_NOISE
    assert series["AE mlp"][5] == (float(g5["probe_accuracy_mean"]), float(g5["probe_accuracy_ci_low"]),
                                   float(g5["probe_accuracy_ci_high"]))
    assert (sweep / "probe_accuracy_vs_latent.png").stat().st_size > 10_000
    assert (sweep / "recon_mse_vs_latent.png").is_file()


def test_the_best_line_names_those_within_noise(tmp_path, capsys):
    sweep = seed_sweep(tmp_path / "sweep", latents=(5, 10, 20),
                       accuracy=lambda latent: {5: 0.80, 10: 0.95, 20: 0.951}[latent])
    code, _, err = run_compare(capsys, sweep)
    assert code == 0, err
    md = (sweep / "summary.md").read_text()
    best = next(line for line in md.splitlines() if line.startswith("Best linear probe"))
    assert "Within noise of it" in best and "latent=5 " not in best
    assert ("**latent=20**" in best and "latent=10 (" in best) or ("**latent=10**" in best and "latent=20 (" in best)


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
    series, _ = compare.figure_points(compare.collect([tmp_path / "s"]).groups, "probe_accuracy")
    assert set(series) == {"AE mlp dataset=mnist", "AE mlp dataset=fashion_mnist"}


def test_the_report_is_written_from_one_collection_and_its_prose_is_whole(tmp_path):
    """write_report and format_table take the Comparison collect() made: its groups, made once, are the ones
    every output names, and no placeholder of the report's text is left unfilled."""
    sweep = seed_sweep(tmp_path / "sweep")
    comparison = compare.collect([sweep])
    baseline = compare.resolve_baseline("latent=5", comparison)
    compare.write_report(comparison, tmp_path / "out", baseline, reconstructions=False)
    md = (tmp_path / "out" / "summary.md").read_text()
    table = compare.format_table(comparison, baseline)
    assert [g.name for g in comparison.groups] == ["latent=5", "latent=10"]
    assert [g["group"] for g in read_csv(tmp_path / "out" / "groups.csv")] == ["latent=5", "latent=10"]
    assert md.startswith("# aebench comparison\n\n6 job(s): 6 completed, 0 not completed.\n")
    assert "## Against the baseline: latent=5" in md and "against the baseline latent=5" in table
    assert "{" not in md and "}" not in md and "{" not in table


def test_groups_sharing_seeds_get_where_the_spread_comes_from(tmp_path, capsys):
    sweep = seed_sweep(tmp_path / "sweep", latents=(5, 10, 20), seeds=(1, 2, 3))
    code, out, err = run_compare(capsys, sweep)
    assert code == 0, err
    rows = {r["metric"]: r for r in read_csv(sweep / "variance.csv")}
    assert {"probe_accuracy", "recon_mse"} <= set(rows) and "seconds" not in rows
    r = rows["probe_accuracy"]
    assert (r["groups"], r["seeds"]) == ("3", "3")
    assert float(r["between_groups"]) + float(r["between_seeds"]) + float(r["seed_by_group"]) == pytest.approx(1)
    assert float(r["within_groups"]) == pytest.approx(float(r["between_seeds"]) + float(r["seed_by_group"]))
    # the fakes' probe accuracy is 0.85 + latent/200 plus binomial noise: the latent explains most of it
    assert float(r["between_groups"]) > 0.5
    md = (sweep / "summary.md").read_text()
    assert "## Where the spread comes from" in md and "3 groups × the 3 seeds" in md


def test_no_spread_section_without_common_seeds(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    fake_run(sweep / "0_latent=5,seed=1", latent=5, seed=1)
    fake_run(sweep / "1_latent=5,seed=2", latent=5, seed=2)
    fake_run(sweep / "2_latent=10,seed=3", latent=10, seed=3)
    fake_run(sweep / "3_latent=10,seed=4", latent=10, seed=4)
    code, out, err = run_compare(capsys, sweep)
    assert code == 0, err
    assert not (sweep / "variance.csv").exists() and "Where the spread" not in (sweep / "summary.md").read_text()
