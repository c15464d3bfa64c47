"""aebench.stats against scipy.stats on fixed numbers, and the bootstrap's coverage on simulated data."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats as sps

from aebench import stats

A = [0.9312, 0.9287, 0.9335, 0.9301]
B = [0.9255, 0.9270, 0.9241, 0.9262]
C = [0.9190, 0.9402, 0.9288]


@pytest.mark.parametrize("df", [*range(1, 61), 2.5, 7.3, 75, 100, 250, 1000, 4999, 5001, 12345.6, 1e6, 1e9])
def test_t_quantile_matches_scipy(df):
    for p in (0.975, 0.995, 0.9, 0.6, 0.025, 0.5005, 0.9995):
        assert stats.t_ppf(p, df) == pytest.approx(sps.t.ppf(p, df), rel=1e-10, abs=1e-12), (p, df)


def test_t_quantile_at_infinite_df_is_the_normal():
    assert stats.t_ppf(0.975, math.inf) == pytest.approx(sps.norm.ppf(0.975), rel=1e-12)
    assert stats.t_ppf(0.5, 3) == 0.0


def test_t_interval_matches_scipy():
    got = stats.t_interval(A)
    low, high = sps.t.interval(0.95, len(A) - 1, loc=np.mean(A), scale=sps.sem(A))
    assert (got.low, got.high) == (pytest.approx(low, rel=1e-10), pytest.approx(high, rel=1e-10))
    assert got.n == 4 and got.estimate == pytest.approx(np.mean(A))
    assert stats.t_interval([0.9]) is None


def test_welch_matches_scipy():
    got = stats.welch_difference(A, C)
    res = sps.ttest_ind(A, C, equal_var=False)
    ci = res.confidence_interval(0.95)
    assert got.df == pytest.approx(res.df, rel=1e-10)
    assert (got.low, got.high) == (pytest.approx(ci.low, rel=1e-9), pytest.approx(ci.high, rel=1e-9))
    assert got.estimate == pytest.approx(np.mean(A) - np.mean(C))


def test_paired_matches_scipy():
    got = stats.paired_difference(A, B)
    ci = sps.ttest_rel(A, B).confidence_interval(0.95)
    assert (got.low, got.high) == (pytest.approx(ci.low, rel=1e-9), pytest.approx(ci.high, rel=1e-9))


def test_one_run_against_a_group_is_the_pooled_t_with_one_side_of_one():
    got = stats.single_vs_group_difference(0.95, A)
    ci = sps.ttest_ind([0.95], A, equal_var=True).confidence_interval(0.95)
    assert (got.low, got.high) == (pytest.approx(ci.low, rel=1e-9), pytest.approx(ci.high, rel=1e-9))


def test_verdict_words_follow_the_metric_direction():
    up = stats.Interval(0.01, 0.005, 0.015, "x", 3)
    across = stats.Interval(0.01, -0.005, 0.015, "x", 3)
    assert stats.verdict(up, "probe_accuracy") == "better" and stats.verdict(up, "recon_mse") == "worse"
    assert stats.verdict(across, "probe_accuracy") == "within noise"
    assert stats.verdict(None, "probe_accuracy") == "–"
    # the factor read-outs: higher is better, but for the Gaussian total correlation (a more factorised code)
    assert stats.verdict(up, "mig") == "better" and stats.verdict(up, "gaussian_tc") == "worse"


def test_bootstrap_covers_the_true_accuracy_95_percent_of_the_time():
    rng = np.random.default_rng(21)
    true, n, trials = 0.9, 2000, 400
    covered = 0
    for t in range(trials):
        correct = rng.random(n) < true
        covered += stats.bootstrap_accuracy(correct, seed=t).contains(true)
    assert 0.92 <= covered / trials <= 0.98, covered / trials


def test_paired_bootstrap_covers_the_true_difference():
    rng = np.random.default_rng(7)
    n, trials, covered = 2000, 300, 0
    for t in range(trials):
        a = rng.random(n) < 0.9
        b = np.where(rng.random(n) < 0.8, a, rng.random(n) < 0.88)  # correlated with a, true acc 0.8*0.9+0.2*0.88
        covered += stats.paired_bootstrap_accuracy(a, b, seed=t).contains(0.9 - (0.8 * 0.9 + 0.2 * 0.88))
    assert 0.92 <= covered / trials <= 0.98, covered / trials


def test_bootstrap_is_seeded_and_cheap_for_10000_images():
    correct = np.random.default_rng(0).random(10_000) < 0.93
    first, again = stats.bootstrap_accuracy(correct), stats.bootstrap_accuracy(correct)
    assert first == again and first.low < first.estimate < first.high


def test_stats_imports_neither_torch_nor_scipy():
    code = "import sys, aebench.stats; sys.exit(bool({'torch', 'scipy'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_variance_shares_split_the_sum_of_squares_and_test_it_as_scipy_does():
    rng = np.random.default_rng(0)
    groups, seeds = 6, 5
    y = (np.arange(groups)[:, None] * 0.3 + rng.normal(0, 1, seeds)[None, :]
         + rng.normal(0, 0.5, (groups, seeds)))
    s = stats.variance_shares(y)
    assert s.between_groups + s.between_seeds + s.interaction == pytest.approx(1)
    ss_total = ((y - y.mean()) ** 2).sum()
    assert s.total == pytest.approx(ss_total)
    assert s.between_groups == pytest.approx(seeds * ((y.mean(1) - y.mean()) ** 2).sum() / ss_total)
    assert s.within_groups == pytest.approx(((y - y.mean(1, keepdims=True)) ** 2).sum() / ss_total)
    df_r = (groups - 1) * (seeds - 1)
    f_groups = (s.between_groups / (groups - 1)) / (s.interaction / df_r)
    assert s.p_groups == pytest.approx(sps.f.sf(f_groups, groups - 1, df_r), rel=1e-9)
    f_seeds = (s.between_seeds / (seeds - 1)) / (s.interaction / df_r)
    assert s.p_seeds == pytest.approx(sps.f.sf(f_seeds, seeds - 1, df_r), rel=1e-9)


def test_variance_shares_of_pure_effects_and_of_too_little_data():
    only_groups = np.repeat(np.arange(4.0)[:, None], 3, axis=1)
    s = stats.variance_shares(only_groups)
    assert s.between_groups == pytest.approx(1) and s.p_groups is None  # no rest to test against
    only_seeds = np.repeat(np.arange(3.0)[None, :], 4, axis=0)
    assert stats.variance_shares(only_seeds).between_seeds == pytest.approx(1)
    assert stats.variance_shares(np.ones((3, 3))) is None  # no spread
    assert stats.variance_shares(np.ones((1, 5))) is None and stats.variance_shares(np.ones((4, 1))) is None
    assert stats.variance_shares(np.array([[1.0, np.nan], [2.0, 3.0]])) is None
