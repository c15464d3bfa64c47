"""The factor read-outs, checked as disentanglement_lib checks its own metrics (evaluation/metrics/*_test.py): codes
that are the factors themselves, codes that say nothing, codes that repeat every factor, and the closed forms."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from sklearn.metrics import mutual_info_score

from aebench import factors as F

LN2_LN10 = math.log(2) / math.log(10)


def grid(sizes=(3, 4, 5), repeat=50) -> np.ndarray:
    """Every combination of the factors' classes, ``repeat`` times over, shuffled: (prod(sizes) * repeat, K)."""
    combos = np.stack(np.meshgrid(*[np.arange(s) for s in sizes], indexing="ij"), -1).reshape(-1, len(sizes))
    return np.random.default_rng(0).permutation(np.tile(combos, (repeat, 1)))


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.fixture(scope="module")
def pool() -> np.ndarray:
    return grid()  # 3 000 points, factors with 3, 4 and 5 classes


def noise(n: int, d: int = 3) -> np.ndarray:
    return np.random.default_rng(1).standard_normal((n, d))


# ---------------------------------------------------------------------------------------------------- MIG


def test_discretise_is_disentanglement_libs_histogram_binning():
    codes = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.6, 0.5, 0.4, 0.3, 0.2, 0.1]]).T
    np.testing.assert_array_equal(F.discretise(codes, 3).T, [[1, 1, 2, 2, 3, 3], [3, 3, 2, 2, 1, 1]])
    assert set(F.discretise(np.zeros((5, 1)), 20).ravel()) == {F.discretise(np.zeros((5, 1)), 20)[0, 0]}


def test_mutual_information_and_entropy_in_nats():
    codes = np.array([[1, 2, 1, 2], [1, 1, 2, 2]]).T
    facts = np.array([[1, 2, 1, 2], [2, 2, 1, 1]]).T - 1
    np.testing.assert_allclose(F.mutual_information(codes, facts), [[math.log(2), 0], [0, math.log(2)]], atol=1e-12)
    f = grid()
    np.testing.assert_allclose(F.entropies(f), [mutual_info_score(f[:, k], f[:, k]) for k in range(3)])
    np.testing.assert_allclose(F.entropies(f), np.log([3, 4, 5]))


def test_mig_of_the_factors_themselves_is_near_one(pool):
    result = F.mig(pool.astype(float), pool, rng(), points=2000)
    assert 0.9 <= result.score <= 1.0
    assert result.mutual_information.shape == (3, 3) and result.points == 2000 and result.bins == 20
    # each factor's own unit holds all of its entropy (fewer classes than bins: one class a bin)
    np.testing.assert_allclose(np.diag(result.mutual_information), result.entropy)


def test_mig_of_zero_codes_is_low(pool):
    assert F.mig(np.zeros((len(pool), 3)), pool, rng(), points=2000).score <= 0.2


def test_mig_of_codes_that_repeat_every_factor_is_low(pool):
    codes = np.hstack([pool, pool]).astype(float)
    assert F.mig(codes, pool, rng(), points=2000).score <= 0.1


def test_mig_uses_every_point_of_a_small_pool(pool):
    assert F.mig(pool.astype(float), pool, rng(), points=10_000).points == len(pool)


# ---------------------------------------------------------------------------------------------------- DCI


def test_dci_closed_forms():
    diag = np.diag(5.0 * np.ones(5))
    assert F.dci_disentanglement(diag) == pytest.approx(1.0)
    assert F.dci_completeness(diag) == pytest.approx(1.0)
    empty_codes = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    assert F.dci_disentanglement(empty_codes) == pytest.approx(1.0)
    assert F.dci_completeness(empty_codes) == pytest.approx(1.0)
    zero = np.zeros((10, 10))
    assert F.dci_disentanglement(zero) == pytest.approx(0.0, abs=1e-7)
    assert F.dci_completeness(zero) == pytest.approx(0.0, abs=1e-7)
    redundant = np.vstack([diag, diag])  # two codes for every factor
    assert F.dci_disentanglement(redundant) == pytest.approx(1.0)
    assert F.dci_completeness(redundant) == pytest.approx(1 - LN2_LN10)
    assert F.dci_disentanglement(diag[:2]) == pytest.approx(1.0)  # factors nobody codes
    assert F.dci_completeness(diag[:2]) == pytest.approx(1.0)
    two_factors_a_code = np.hstack([diag, diag])  # each of 5 codes covers two of ten factors
    assert F.dci_disentanglement(two_factors_a_code) == pytest.approx(1 - LN2_LN10)
    assert F.dci_completeness(two_factors_a_code) == pytest.approx(1.0)
    np.testing.assert_allclose(F.dci_disentanglement_per_unit(two_factors_a_code), 1 - LN2_LN10)


@pytest.mark.parametrize("protocol", ["default", "exact"])
def test_dci_of_the_factors_themselves_is_near_one(pool, protocol):
    result = F.dci(pool.astype(float), pool, rng(), train=600, test=300, protocol=protocol)
    assert 0.9 <= result.disentanglement <= 1.0 and 0.9 <= result.completeness <= 1.0
    assert result.informativeness_test == pytest.approx(1.0) and result.informativeness_train == pytest.approx(1.0)
    assert (result.train, result.test, result.protocol) == (600, 300, protocol)


def test_dci_of_codes_shuffled_across_units_is_low(pool):
    # every point's factor values in a random order across the units: each unit carries every factor a little
    shuffled = np.random.default_rng(2).permuted(pool.astype(float), axis=1)
    result = F.dci(shuffled, pool, rng(), train=600, test=300)
    assert result.disentanglement <= 0.2 and result.completeness <= 0.2


def test_dci_of_codes_that_repeat_every_factor(pool):
    result = F.dci(np.hstack([pool, pool]).astype(float), pool, rng(), train=600, test=300)
    assert 0.9 <= result.disentanglement <= 1.0
    # two units share each factor: 1 - ln 2 / ln 6 for 6 units (disentanglement_lib's test: ln 10 for 10)
    assert result.completeness == pytest.approx(1 - math.log(2) / math.log(6), abs=0.05)


# ---------------------------------------------------------------------------------------------------- SAP


def test_sap_gap_closed_forms():
    assert F.sap_gap(np.eye(4)) == pytest.approx(1.0)
    assert F.sap_gap(np.vstack([np.eye(4), np.eye(4)])) == pytest.approx(0.0)
    assert F.sap_gap(np.array([[0.9, 0.5], [0.3, 0.5]])) == pytest.approx(0.3)


def test_sap_of_the_factors_themselves_is_high_and_of_repeats_or_noise_low(pool):
    own = F.sap(pool.astype(float), pool, rng(), train=2000, test=1000)
    # a one-unit linear SVM separates the extreme classes only; chance is 1/classes: the gap is well above 0
    assert own.score >= 0.4 and own.accuracy.shape == (3, 3)
    assert np.all(np.argmax(own.accuracy, axis=0) == [0, 1, 2])
    assert F.sap(np.hstack([pool, pool]).astype(float), pool, rng(), train=2000, test=1000).score <= 0.01
    assert F.sap(noise(len(pool)), pool, rng(), train=2000, test=1000).score <= 0.1


def test_sap_of_binary_factors_as_codes_is_the_gap_to_chance():
    f = grid((2, 2, 2), repeat=250)
    result = F.sap(f.astype(float), f, rng(), train=1000, test=1000)
    np.testing.assert_allclose(np.diag(result.accuracy), 1.0)
    assert result.score == pytest.approx(0.5, abs=0.06)  # a perfect unit against chance (0.5)


# ---------------------------------------------------------------------------------------------------- FactorVAE


def test_factor_vae_score_of_the_factors_themselves_is_one(pool):
    result = F.factor_vae_score(pool.astype(float), pool, rng(), variance_points=2000, train=1000, eval=500,
                                batch=16)
    assert 0.9 <= result.train_accuracy <= 1.0 and 0.9 <= result.eval_accuracy <= 1.0
    np.testing.assert_array_equal(result.unit_factor, [0, 1, 2])
    assert result.votes.sum() == 1000 and list(result.active_units) == [0, 1, 2]


def test_factor_vae_score_of_noise_is_near_chance_and_of_zero_codes_is_zero(pool):
    result = F.factor_vae_score(noise(len(pool)), pool, rng(), variance_points=2000, train=1000, eval=500, batch=16)
    assert result.eval_accuracy <= 0.5  # chance: 1/3; a majority vote over noise does a little better
    zero = F.factor_vae_score(np.zeros((len(pool), 3)), pool, rng(), variance_points=2000, train=1000, eval=500)
    assert (zero.train_accuracy, zero.eval_accuracy, len(zero.active_units)) == (0.0, 0.0, 0)


def test_factor_vae_votes_land_on_the_unit_itself_not_its_place_among_active_units(pool):
    # unit 0 is dead (pruned); units 1-3 are the factors.  disentanglement_lib would record factor k's votes on
    # unit k (the k-th active unit); they belong to unit k + 1.
    codes = np.hstack([np.zeros((len(pool), 1)), pool.astype(float)])
    result = F.factor_vae_score(codes, pool, rng(), variance_points=2000, train=600, eval=300, batch=16)
    assert list(result.active_units) == [1, 2, 3]
    assert result.votes[:, 0].sum() == 0
    np.testing.assert_array_equal(np.argmax(result.votes[:, 1:], axis=0), [0, 1, 2])
    assert result.eval_accuracy == pytest.approx(1.0)


def test_fixed_factor_batches_share_the_value_and_nothing_else(pool):
    sampler = F.FixedFactorSampler(pool)
    factor = np.array([0, 1, 2] * 50)
    value = pool[np.arange(150), factor]
    idx = sampler.draw(factor, value, 32, rng())
    assert np.all(pool[idx, factor[:, None]] == value[:, None])
    other = pool[idx[factor == 2], 0]  # factor 0 within batches that fix factor 2: every class, about uniform
    assert set(np.unique(other)) == {0, 1, 2} and np.bincount(other.ravel()).min() > 0.25 * other.size


# ---------------------------------------------------------------------------------------------------- BetaVAE


def test_beta_vae_score_of_the_factors_themselves_is_one_and_of_noise_chance(pool):
    own = F.beta_vae_score(pool.astype(float), pool, rng(), train=1000, eval=500, batch=16)
    assert 0.9 <= own.train_accuracy <= 1.0 and 0.9 <= own.eval_accuracy <= 1.0
    chance = F.beta_vae_score(noise(len(pool)), pool, rng(), train=1000, eval=500, batch=16)
    assert chance.eval_accuracy <= 0.45  # 1/3


# ---------------------------------------------------------------------------------------------------- Gaussian TC


def test_gaussian_total_correlation_known_values():
    g = np.random.default_rng(3)
    independent = g.standard_normal((10_000, 5)) * [1, 2, 3, 0.1, 10]
    assert 0 <= F.gaussian_total_correlation(independent, rng()).value < 0.01
    rho = 0.8
    pair = g.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=10_000)
    tc = F.gaussian_total_correlation(pair, rng())
    assert tc.value == pytest.approx(-0.5 * math.log(1 - rho**2), abs=0.02)
    cov = np.cov(pair, rowvar=False)  # disentanglement_lib's formula on the same points
    assert tc.value == pytest.approx(0.5 * (np.log(np.diag(cov)).sum() - np.linalg.slogdet(cov)[1]), rel=1e-9)


def test_gaussian_total_correlation_leaves_constant_units_out_and_is_infinite_for_copies():
    g = np.random.default_rng(4)
    pair = g.multivariate_normal([0, 0], [[1, 0.5], [0.5, 1]], size=5000)
    with_dead = np.hstack([pair, np.zeros((5000, 1))])
    tc = F.gaussian_total_correlation(with_dead, rng())
    assert tc.value == pytest.approx(F.gaussian_total_correlation(pair, rng()).value)
    assert list(tc.constant_units) == [2]
    assert F.gaussian_total_correlation(np.hstack([pair, pair[:, :1]]), rng()).value == math.inf


# ---------------------------------------------------------------------------------------------------- all at once


SMALL = F.Sizes(mig_points=2000, dci_train=600, dci_test=300, sap_train=1000, sap_test=500, variance_points=2000,
                factor_vae_train=500, factor_vae_eval=250, beta_vae_train=500, beta_vae_eval=250, batch=16,
                tc_points=2000)


def codes_of(pool: np.ndarray) -> np.ndarray:
    """Factors plus noise, mixed a little, and a dead unit: a code like a model's."""
    g = np.random.default_rng(5)
    live = pool @ (np.eye(3) + 0.2 * g.standard_normal((3, 3))) + 0.3 * g.standard_normal((len(pool), 3))
    return np.hstack([live, np.zeros((len(pool), 1))])


def test_factor_metrics_report(pool):
    with_colour = np.hstack([pool, np.ones((len(pool), 1), dtype=np.int64)])  # a factor that never changes
    report = F.factor_metrics(codes_of(pool), with_colour, ["a", "b", "c", "colour"], seed=0, sizes=SMALL)
    assert set(report.metrics) == set(F.HIGHER_IS_BETTER)
    assert all(isinstance(v, float) and math.isfinite(v) for v in report.metrics.values())
    for name, value in report.metrics.items():
        if name != "gaussian_tc":
            assert 0.0 <= value <= 1.0, name
    assert report.metrics["gaussian_tc"] > 0  # the live units are mixed
    assert report.factor_names == ["a", "b", "c"] and report.protocol["factors_left_out"] == ["colour"]
    assert report.mutual_information.shape == (4, 3) and report.entropy.shape == (3,)
    assert set(report.seconds) == set(F.METRICS) and all(s >= 0 for s in report.seconds.values())
    p = report.protocol
    assert (p["mig"]["points"], p["dci"]["train"], p["dci"]["test"]) == (2000, 600, 300)
    assert p["dci"]["protocol"] == "default"
    assert p["factor_vae"]["active_units"] == 3 and p["gaussian_tc"]["constant_units_left_out"] == [3]
    import json

    json.dumps(p)  # the protocol goes into metrics.json as it is


def test_factor_metrics_are_deterministic(pool):
    codes = codes_of(pool)
    first = F.factor_metrics(codes, pool, ["a", "b", "c"], seed=3, sizes=SMALL)
    again = F.factor_metrics(codes, pool, ["a", "b", "c"], seed=3, sizes=SMALL)
    assert first.metrics == again.metrics
    np.testing.assert_array_equal(first.mutual_information, again.mutual_information)
    other = F.factor_metrics(codes, pool, ["a", "b", "c"], seed=4, sizes=SMALL)
    assert other.metrics != first.metrics


@pytest.mark.parametrize("codes, facts, names, match", [
    (np.full((10, 2), np.nan), np.zeros((10, 1), int), ["a"], "non-finite"),
    (np.zeros((10, 2)), np.zeros((9, 1), int), ["a"], "same points"),
    (np.zeros((10, 2)), np.zeros((10, 1)), ["a"], "integer class"),
    (np.zeros((10, 2)), np.arange(20).reshape(10, 2), ["a"], "2 factor columns but 1 names"),
    (np.zeros((10, 2)), np.zeros((10, 1), int), ["a"], "one value only"),
])
def test_bad_input_is_one_clear_line(codes, facts, names, match):
    with pytest.raises(F.FactorError, match=match) as err:
        F.factor_metrics(codes, facts, names, seed=0, sizes=SMALL)
    assert "\n" not in str(err.value)


def test_unknown_dci_protocol(pool):
    with pytest.raises(F.FactorError, match="one of"):
        F.factor_metrics(codes_of(pool), pool, ["a", "b", "c"], protocol="fast", sizes=SMALL)


@pytest.mark.slow
def test_full_protocol_on_a_dsprites_sized_pool():
    """disentanglement_lib's sizes (10 000 points, 10 000 / 5 000 train / eval) on dSprites' factor sizes."""
    g = np.random.default_rng(6)
    sizes = (3, 6, 40, 32, 32)
    pool = np.stack([g.integers(s, size=50_000) for s in sizes], 1)
    scaled = pool / (np.array(sizes) - 1)
    codes = np.hstack([scaled + 0.02 * g.standard_normal(pool.shape), 0.01 * g.standard_normal((len(pool), 5))])
    start = time.perf_counter()
    report = F.factor_metrics(codes, pool, ["shape", "scale", "orientation", "x", "y"], seed=0)
    print(f"\nfactor metrics at full size: {time.perf_counter() - start:.0f} s; "
          + ", ".join(f"{k} {v:.1f} s" for k, v in report.seconds.items()))
    p = report.protocol
    assert (p["mig"]["points"], p["dci"]["train"], p["dci"]["test"], p["sap"]["train"], p["sap"]["test"]) == \
        (10_000, 10_000, 5_000, 10_000, 5_000)
    assert (p["factor_vae"]["train_votes"], p["factor_vae"]["eval_votes"], p["beta_vae"]["train"]) == \
        (10_000, 5_000, 10_000)
    m = report.metrics
    # each factor in its own unit, well resolved, five dead units: disentangled by every measure
    assert m["mig"] > 0.6 and m["dci_disentanglement"] > 0.8 and m["dci_completeness"] > 0.8
    assert m["factor_vae_score"] > 0.95 and m["beta_vae_score"] > 0.95 and m["sap"] > 0.1
    assert p["factor_vae"]["active_units"] == 5 and m["gaussian_tc"] < 0.05
