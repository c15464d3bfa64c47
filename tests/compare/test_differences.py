"""aebench.compare.differences: each group against a baseline, with the interval the groups allow and a verdict."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats as sps

from aebench import compare, stats
from fakes import N_TEST, fake_run, read_csv, run_compare, seed_sweep


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
    comparison = compare.collect([tmp_path / "s"])
    rows = comparison.rows
    series, noise = compare.figure_points(comparison.groups, "probe_accuracy")
    assert noise == stats.TEST_NOISE
    low, high = series["AE mlp"][5][1:]
    assert (low, high) == rows[0].interval("probe_accuracy")
    assert series["AE mlp"][40][1:] == (None, None)  # no predictions: no bar
    md = (tmp_path / "s" / "summary.md").read_text()
    best = next(line for line in md.splitlines() if line.startswith("Best linear probe"))
    assert best.startswith("Best linear probe: **1: latent=10**") and "Within noise" not in best
    assert "No noise estimate against 2 other(s)" in best and "2: latent=20" in best  # other test set; no predictions


def test_one_run_against_a_group_takes_the_groups_spread(tmp_path):
    """A single run against three seeds: the run is taken to share their spread, in either direction."""
    sweep = seed_sweep(tmp_path / "sweep", latents=(5,), seeds=(0, 1, 2))
    fake_run(sweep / "3_latent=10,seed=0", latent=10, seed=0, accuracy=0.9)
    comparison = compare.collect([sweep])
    group, single = comparison.groups
    there = compare.difference(single, group, "probe_accuracy")
    back = compare.difference(group, single, "probe_accuracy")
    spread = [m.value("probe_accuracy") for m in group.members]
    expected = stats.single_vs_group_difference(single.members[0].value("probe_accuracy"), spread)
    assert (there.ci_low, there.ci_high) == (expected.low, expected.high)
    assert (back.ci_low, back.ci_high) == (-expected.high, -expected.low)
    assert back.difference == pytest.approx(-there.difference) and there.n_group == 1 and there.n_baseline == 3
