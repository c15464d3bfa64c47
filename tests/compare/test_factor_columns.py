"""The factor read-outs in a comparison (mig, DCI, SAP, the FactorVAE and BetaVAE scores, gaussian_tc): columns,
intervals over seeds and verdicts where some run has them, and a report on runs without factors unchanged."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats as sps

from aebench import compare
from aebench.compare.rows import FACTOR_METRICS
from fakes import fake_run, read_csv, run_compare

# summary.csv's header for runs without factors, as it was before the factor read-outs existed
MNIST_SUMMARY_HEADER = [
    "job", "status", "overrides", "model", "arch", "dataset", "latent", "epochs", "seed", "probe_accuracy",
    "knn_accuracy", "pca_probe_accuracy", "pixel_probe_accuracy", "recon_mse", "neg_elbo", "seconds",
    "probe_accuracy@100", "probe_accuracy_ci_low", "probe_accuracy_ci_high", "knn_accuracy_ci_low",
    "knn_accuracy_ci_high", "ci_method", "error"]


def readouts(latent: int, seed: int) -> dict:
    """A run's factor read-outs as metrics.json holds them.  Against latent=5, latent=10 has a higher MIG (better),
    a higher Gaussian TC (worse), a lower SAP (worse) and a DCI disentanglement that moves with the seed both ways
    (within noise); the rest differ by a little that the seeds' spread covers."""
    up = latent == 10
    wobble = 0.002 * up * (seed % 2)
    return {
        "mig": 0.20 + 0.10 * up + 0.010 * seed + 0.002 * up * seed,
        "dci_disentanglement": 0.30 + (0.01 if up else 0.0) * (-1) ** seed + 0.001 * seed,
        "dci_completeness": 0.25 + 0.01 * seed + wobble, "dci_informativeness": 0.80 + 0.005 * seed + wobble,
        "sap": 0.08 - 0.03 * up + 0.004 * seed + 0.001 * up * seed, "factor_vae_score": 0.60 + 0.02 * seed + wobble,
        "beta_vae_score": 0.70 + 0.01 * seed + wobble,
        "gaussian_tc": 1.0 + 0.8 * up + 0.1 * seed + 0.01 * up * seed,
        # descriptive, not metrics: compare reads none of it
        "factor_readouts": {"protocol": {"seed": seed, "dci": {"protocol": "fast", "train": 10000}},
                            "seconds": {"mig": 1.5, "dci": 30.0}, "train_accuracies": {"beta_vae": 0.9}},
    }


def factor_sweep(root, latents=(5, 10), seeds=(0, 1, 2), dataset="sprites"):
    job = 0
    for latent in latents:
        for seed in seeds:
            fake_run(root / f"{job}_latent={latent},seed={seed}", latent=latent, seed=seed, dataset=dataset,
                     more=readouts(latent, seed))
            job += 1
    return root


def mnist_sweep(root):
    """Runs without factors: every run has gaussian_tc (it needs none) and factor_readouts says why the rest are
    missing."""
    job = 0
    for latent in (5, 10):
        for seed in (0, 1, 2):
            fake_run(root / f"{job}_latent={latent},seed={seed}", latent=latent, seed=seed,
                     more={"gaussian_tc": 1.0 + latent / 10 + 0.1 * seed,
                           "factor_readouts": {"skipped": "the data has no known factors"}})
            job += 1
    return root


def test_factor_read_outs_get_columns_t_intervals_and_a_table_of_their_own(tmp_path, capsys):
    sweep = factor_sweep(tmp_path / "sweep")
    code, out, err = run_compare(capsys, sweep)
    assert code == 0, err
    jobs = read_csv(sweep / "summary.csv")
    budgets_end = MNIST_SUMMARY_HEADER.index("probe_accuracy@100") + 1  # the factor columns follow the budgets
    assert list(jobs[0]) == [*MNIST_SUMMARY_HEADER[:budgets_end], *FACTOR_METRICS, *MNIST_SUMMARY_HEADER[budgets_end:]]
    assert [float(j["mig"]) for j in jobs] == pytest.approx([readouts(latent, s)["mig"] for latent in (5, 10)
                                                              for s in (0, 1, 2)])
    groups = {g["group"]: g for g in read_csv(sweep / "groups.csv")}
    for name, latent in (("latent=5", 5), ("latent=10", 10)):
        for key in FACTOR_METRICS:
            values = [readouts(latent, s)[key] for s in (0, 1, 2)]
            low, high = sps.t.interval(0.95, 2, loc=np.mean(values), scale=sps.sem(values))
            g = groups[name]
            assert float(g[f"{key}_mean"]) == pytest.approx(np.mean(values), rel=1e-12)
            assert float(g[f"{key}_ci_low"]) == pytest.approx(low, rel=1e-9)
            assert float(g[f"{key}_ci_high"]) == pytest.approx(high, rel=1e-9)
    md = (sweep / "summary.md").read_text()
    factors = md.split("## Factors", 1)[1]
    table = [line for line in factors.splitlines() if line.startswith("| ")]
    assert table[0] == ("| group | seeds | MIG | DCI disent. | DCI compl. | DCI inform. | SAP | FactorVAE score | "
                        "BetaVAE score | Gaussian TC |")
    g5 = groups["latent=5"]
    mig5 = (f"{float(g5['mig_mean']):.3f} ± {float(g5['mig_std']):.3f} "
            f"[{float(g5['mig_ci_low']):.3f}, {float(g5['mig_ci_high']):.3f}]")
    assert table[1].startswith(f"| latent=5 | 3 (0 1 2) | {mig5} |")
    assert "Gaussian TC, which is lower for a more factorised code" in factors
    # the main tables keep their columns: the factor read-outs are in their own table
    assert "MIG" not in md.split("## Factors", 1)[0]
    assert "factor read-outs" in out and mig5 in out
    assert (sweep / "mig_vs_latent.png").stat().st_size > 10_000


def test_paired_verdicts_follow_each_read_outs_direction(tmp_path, capsys):
    sweep = factor_sweep(tmp_path / "sweep")
    code, out, err = run_compare(capsys, sweep, "--baseline", "latent=5")
    assert code == 0, err
    diffs = {d["metric"]: d for d in read_csv(sweep / "differences.csv")}
    assert set(FACTOR_METRICS) <= set(diffs)
    for key in FACTOR_METRICS:
        a = [readouts(10, s)[key] for s in (0, 1, 2)]
        b = [readouts(5, s)[key] for s in (0, 1, 2)]
        ci = sps.ttest_rel(a, b).confidence_interval(0.95)
        assert diffs[key]["method"] == "paired t over 3 seeds"
        assert (float(diffs[key]["ci_low"]), float(diffs[key]["ci_high"])) == (pytest.approx(ci.low),
                                                                               pytest.approx(ci.high))
    assert diffs["mig"]["verdict"] == "better"  # higher MIG: better
    assert diffs["sap"]["verdict"] == "worse"  # lower SAP: worse
    assert diffs["gaussian_tc"]["verdict"] == "worse"  # higher total correlation: worse
    assert diffs["dci_disentanglement"]["verdict"] == "within noise"
    # and the other way round: latent=5 against latent=10 has the lower Gaussian TC, which is better
    code, _, err = run_compare(capsys, sweep, "--baseline", "latent=10", "--out", tmp_path / "back")
    assert code == 0, err
    back = {d["metric"]: d for d in read_csv(tmp_path / "back" / "differences.csv")}
    assert back["gaussian_tc"]["verdict"] == "better" and back["mig"]["verdict"] == "worse"
    md = (sweep / "summary.md").read_text()
    assert "for recon MSE, neg. ELBO, seconds and Gaussian TC lower is better" in md


def test_the_highest_mig_line_names_those_within_noise(tmp_path, capsys):
    sweep = factor_sweep(tmp_path / "sweep", latents=(5, 10))
    code, _, err = run_compare(capsys, sweep)
    assert code == 0, err
    best = next(line for line in (sweep / "summary.md").read_text().splitlines() if line.startswith("Highest MIG"))
    assert best.startswith("Highest MIG: **latent=10** (ae, mlp, latent 10) at 0.312 ± ")
    assert "Every other is below it beyond the noise" in best
    # a group as good as the best within its noise is named with its difference (no "points": MIG is no accuracy)
    for seed in (0, 1, 2):
        more = readouts(10, seed)
        more["mig"] += 0.01 * (-1) ** seed
        fake_run(sweep / f"{6 + seed}_latent=20,seed={seed}", latent=20, seed=seed, dataset="sprites", more=more)
    code, _, err = run_compare(capsys, sweep)
    assert code == 0, err
    best = next(line for line in (sweep / "summary.md").read_text().splitlines() if line.startswith("Highest MIG"))
    assert "**Within noise of it**" in best and "points" not in best
    assert ("**latent=10**" in best and "latent=20 (" in best) or ("**latent=20**" in best and "latent=10 (" in best)
    assert "latent=5 (" not in best


def test_single_runs_show_their_read_outs_without_intervals(tmp_path, capsys):
    for job, latent in enumerate((5, 10)):
        fake_run(tmp_path / "s" / f"{job}_latent={latent}", latent=latent, overrides=[f"latent={latent}"],
                 dataset="sprites", more=readouts(latent, 0))
    code, _, err = run_compare(capsys, tmp_path / "s", "--baseline", "0")
    assert code == 0, err
    md = (tmp_path / "s" / "summary.md").read_text()
    assert "one run each (no interval" in md and f"| 1: latent=10 | 1 (0) | {readouts(10, 0)['mig']:.3f} |" in md
    best = next(line for line in md.splitlines() if line.startswith("Highest MIG"))
    assert "No noise estimate against 1 other(s) (one run each: run several seeds)" in best
    diffs = {d["metric"]: d for d in read_csv(tmp_path / "s" / "differences.csv")}
    assert diffs["mig"]["verdict"] == "–" and "no noise estimate" in diffs["mig"]["note"]


def test_runs_without_factors_keep_todays_report(tmp_path, capsys):
    """gaussian_tc alone (every run has it) opens no factor block: summary.csv, groups.csv, summary.md and the
    differences are what they were before the factor read-outs existed."""
    sweep = mnist_sweep(tmp_path / "mnist")
    code, out, err = run_compare(capsys, sweep, "--baseline", "latent=5")
    assert code == 0, err
    with open(sweep / "summary.csv") as f:
        assert f.readline().rstrip("\n").split(",") == MNIST_SUMMARY_HEADER
    assert not any(k.startswith("gaussian_tc") for k in read_csv(sweep / "groups.csv")[0])
    assert {d["metric"] for d in read_csv(sweep / "differences.csv")} == {
        "probe_accuracy", "probe_accuracy@100", "knn_accuracy", "recon_mse", "seconds"}
    md = (sweep / "summary.md").read_text()
    assert "## Factors" not in md and "Highest MIG" not in md and "Gaussian TC" not in md
    assert "for recon MSE, neg. ELBO and seconds lower is better" in md
    assert "factor read-outs" not in out and not (sweep / "mig_vs_latent.png").exists()
    comparison = compare.collect([sweep])
    assert comparison.factors == ()
    # beside a sweep with factors: the block opens, and the MNIST groups show the one read-out they have
    factor_sweep(tmp_path / "sprites", latents=(5,))
    comparison = compare.collect([sweep, tmp_path / "sprites"])
    assert comparison.factors == FACTOR_METRICS
    mnist = next(g for g in comparison.groups if g.dataset == "mnist")
    assert mnist.mean("mig") is None and mnist.mean("gaussian_tc") == pytest.approx(1.6)


def test_a_read_out_that_is_not_a_number_skips_its_run(tmp_path):
    sweep = factor_sweep(tmp_path / "sweep", latents=(5,))
    path = sweep / "1_latent=5,seed=1" / "metrics.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "mig": "0.3"}))
    rows = {r.job.split("_")[0]: r for r in compare.collect([sweep], warn=False).rows}
    assert rows["1"].status == "skipped" and rows["1"].error == "metrics.json: mig is str '0.3', not a number"
    assert rows["0"].completed and rows["0"].value("mig") == pytest.approx(0.2)
