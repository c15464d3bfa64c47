"""Factor read-outs: which known factors of variation the code units capture, and whether each unit captures one.

Every metric follows google-research/disentanglement_lib (``evaluation/metrics/``; the settings of its
``unsupervised_study_v1`` configs, the study of Locatello et al. 2019), on a finite pool of labelled points that
are already encoded: ``codes`` (N x D floats: an AE's z, a VAE's mu) and ``factors`` (N x K integer classes).
Where disentanglement_lib draws fresh observations from the ground-truth generator, these read-outs draw pool points:

- *points at random* (MIG, DCI, SAP, the global variances, the Gaussian TC): a uniformly random subset of the
  pool, without replacement, train and test disjoint; a pool smaller than asked gives all of its points (split
  in the asked ratio).
- *one factor fixed, the others drawn* (FactorVAE votes, BetaVAE pairs): a factor k uniformly at random, the
  fixed value v as factor k of a uniformly random pool point, then points uniformly *with* replacement among the
  pool's points whose factor k is v.

On the full factor grid (every combination once) the second is exactly the generator's distribution; the
first differs from it only in that no point repeats (disentanglement_lib samples with replacement).  What
disentanglement_lib gets wrong or leaves to the sklearn version, and how the numbers here differ from its
numbers, is said at each metric and in docs/factors.md.  Every draw comes from a ``numpy.random.Generator``:
:func:`factor_metrics` gives each metric its own stream of ``seed``, so equal inputs give equal scores.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from .errors import RunFailed

MIG_BINS = 20  # equal-width bins per code unit (disentanglement_lib's histogram_discretizer.num_bins)
ACTIVE_STD = 0.05  # FactorVAE score: units whose std over the pool is below this are pruned (prune_dims.threshold)
BATCH = 64  # FactorVAE: points per vote; BetaVAE: pairs per point
SAP_C = 0.01  # the linear SVM's C in SAP
ENTROPY_EPS = 1e-11  # DCI adds this to the importances before the entropies (as disentanglement_lib)
BLOCK_BYTES = 16 * 2**20  # bound on the gathered codes of one block of votes or pairs

# Each number of :func:`factor_metrics` and whether a higher value is the better one (compare's verdicts).
# gaussian_tc is lower for a more factorised code: lower is "better" in that sense only (a code that carries
# nothing at all has TC 0).
HIGHER_IS_BETTER: dict[str, bool] = {
    "mig": True,
    "dci_disentanglement": True,
    "dci_completeness": True,
    "dci_informativeness": True,
    "dci_informativeness_train": True,
    "sap": True,
    "factor_vae_score": True,
    "factor_vae_train_accuracy": True,
    "beta_vae_score": True,
    "beta_vae_train_accuracy": True,
    "gaussian_tc": False,
}
METRICS = ("mig", "dci", "sap", "factor_vae", "beta_vae", "gaussian_tc")  # also fixes each one's random stream


class FactorError(RunFailed):
    """The codes or factors handed to a factor read-out cannot be used."""


@dataclass(frozen=True)
class Sizes:
    """How many points each metric uses; the defaults are disentanglement_lib's ``unsupervised_study_v1``."""

    mig_points: int = 10_000
    dci_train: int = 10_000
    dci_test: int = 5_000
    sap_train: int = 10_000
    sap_test: int = 5_000
    variance_points: int = 10_000  # FactorVAE's global variances
    factor_vae_train: int = 10_000  # votes
    factor_vae_eval: int = 5_000
    beta_vae_train: int = 10_000  # points, each from BATCH pairs
    beta_vae_eval: int = 5_000
    batch: int = BATCH
    tc_points: int = 10_000


# ----------------------------------------------------------------------------------------------------------------
# Input and sampling


def check_pool(codes: np.ndarray, factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The codes as float64 (N, D) and the factors as int64 (N, K) classes 0..n_k-1, or one line saying what is wrong.

    A factor's classes may be any integers; they are renumbered in sorted order (their order is not used).
    """
    codes = np.asarray(codes)
    factors = np.asarray(factors)
    if codes.ndim != 2 or factors.ndim != 2:
        raise FactorError(f"codes and factors must be 2-D (points x units, points x factors); got shapes "
                          f"{codes.shape} and {factors.shape}")
    if len(codes) != len(factors):
        raise FactorError(f"codes and factors must hold the same points; got {len(codes)} codes and "
                          f"{len(factors)} rows of factors")
    if len(codes) < 2 or codes.shape[1] < 1 or factors.shape[1] < 1:
        raise FactorError(f"factor read-outs need at least 2 points, 1 code unit and 1 factor; got codes "
                          f"{codes.shape}, factors {factors.shape}")
    if not np.issubdtype(factors.dtype, np.integer):
        raise FactorError(f"factors must be integer class indices; got dtype {factors.dtype}")
    if not np.issubdtype(codes.dtype, np.number) or np.iscomplexobj(codes):
        raise FactorError(f"codes must be real numbers; got dtype {codes.dtype}")
    codes = codes.astype(np.float64)
    bad = int((~np.isfinite(codes)).sum())
    if bad:
        raise FactorError(f"the codes hold {bad} non-finite value(s) (NaN or inf), so no factor read-out can be "
                          "computed; the model diverged: train again with a smaller train.lr")
    classes = np.empty(factors.shape, dtype=np.int64)
    for k in range(factors.shape[1]):
        classes[:, k] = np.unique(factors[:, k], return_inverse=True)[1].reshape(-1)
    return codes, classes


def require_varying(factors: np.ndarray, where: str) -> None:
    """Every factor must take at least two classes among the points a metric uses."""
    for k in range(factors.shape[1]):
        if factors[:, k].min() == factors[:, k].max():
            raise FactorError(f"factor {k} takes one value only among the {len(factors)} {where}, so nothing can "
                              "be read about it; leave constant factors out (factor_metrics does)")


def split(n_pool: int, first: int, second: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint uniformly random index sets of sizes ``first`` and ``second`` from ``n_pool`` points.

    A pool smaller than ``first + second`` is split in the same ratio (each part at least one point).
    """
    if first < 1 or second < 1:
        raise FactorError(f"train and test sizes must be positive; got {first} and {second}")
    if first + second > n_pool:
        first = min(n_pool - 1, max(1, round(n_pool * first / (first + second))))
        second = n_pool - first
    order = rng.permutation(n_pool)
    return order[:first], order[first:first + second]


def subset(n_pool: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``min(n, n_pool)`` uniformly random distinct indices."""
    if n < 1:
        raise FactorError(f"a metric needs a positive number of points; got {n}")
    return rng.permutation(n_pool)[: min(n, n_pool)]


class FixedFactorSampler:
    """Draws pool points that share one factor's value: the pool's stand-in for "fix factor k, draw the others".

    For every (factor k, class v) the pool's points with ``factors[:, k] == v`` lie together in one index array.
    """

    def __init__(self, factors: np.ndarray):
        self.factors = factors
        n, k_count = factors.shape
        self.classes = factors.max(0) + 1
        self.offset = np.concatenate([[0], np.cumsum(self.classes)[:-1]])  # group of (k, v) = offset[k] + v
        # factor k's block of ``members`` (positions k*n .. (k+1)*n) holds every point, sorted by its class of k
        self.members = np.concatenate([np.argsort(factors[:, k], kind="stable") for k in range(k_count)])
        counts = [np.bincount(factors[:, k], minlength=self.classes[k]) for k in range(k_count)]
        self.count = np.concatenate(counts)  # of group g
        self.start = np.concatenate([k * n + np.cumsum(c) - c for k, c in enumerate(counts)])  # of group g

    def draw(self, factor: np.ndarray, value: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
        """For each row i, ``size`` indices drawn uniformly with replacement among the points whose factor
        ``factor[i]`` has class ``value[i]``: shape (len(factor), size)."""
        group = self.offset[factor] + value
        pick = rng.integers(0, self.count[group][:, None], size=(len(group), size))
        return self.members[self.start[group][:, None] + pick]


def blocks(rows: int, row_bytes: int):
    """Slices of ``rows`` whose gathered arrays stay under BLOCK_BYTES."""
    step = max(1, BLOCK_BYTES // max(1, row_bytes))
    for i in range(0, rows, step):
        yield slice(i, min(rows, i + step))


def sklearn_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31 - 1))


# ----------------------------------------------------------------------------------------------------------------
# MIG


def discretise(codes: np.ndarray, bins: int = MIG_BINS) -> np.ndarray:
    """Each unit into ``bins`` equal-width bins between its own min and max, numbered 1..bins (N, D) int64.

    disentanglement_lib's ``_histogram_discretize``: ``np.digitize`` against the left edges of ``np.histogram``'s
    bins, so the maximum falls in the last bin; a constant unit falls in one bin.
    """
    out = np.empty(codes.shape, dtype=np.int64)
    for j in range(codes.shape[1]):
        edges = np.histogram_bin_edges(codes[:, j], bins)
        out[:, j] = np.digitize(codes[:, j], edges[:-1])
    return out


def mutual_information(discrete_codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Discrete mutual information (nats) between every unit and every factor: (D, K), sklearn's mutual_info_score."""
    from sklearn.metrics import mutual_info_score

    return np.array([[mutual_info_score(factors[:, k], discrete_codes[:, j]) for k in range(factors.shape[1])]
                     for j in range(discrete_codes.shape[1])]).reshape(discrete_codes.shape[1], factors.shape[1])


def entropies(factors: np.ndarray) -> np.ndarray:
    """Each factor's entropy (nats) over the points: (K,)."""
    out = np.empty(factors.shape[1])
    for k in range(factors.shape[1]):
        p = np.bincount(factors[:, k]) / len(factors)
        p = p[p > 0]
        out[k] = -(p * np.log(p)).sum()
    return out


@dataclass
class Mig:
    score: float  # mean over factors of gaps
    gaps: np.ndarray = field(repr=False)  # (K,): (largest - second largest MI over units) / H(factor)
    mutual_information: np.ndarray = field(repr=False)  # (D, K) nats
    entropy: np.ndarray = field(repr=False)  # (K,) nats
    points: int = 0
    bins: int = MIG_BINS


def mig(codes: np.ndarray, factors: np.ndarray, rng: np.random.Generator, points: int = 10_000,
        bins: int = MIG_BINS) -> Mig:
    """Mutual information gap (Chen et al. 2018, as disentanglement_lib computes it).

    ``points`` random pool points; each unit discretised into ``bins`` equal-width bins; the discrete MI of every
    unit with every factor; per factor, the gap between its two most informative units over its entropy; the mean
    over all factors.  A code of one unit has no second unit: its gap is the MI itself over the entropy.
    """
    codes, factors = check_pool(codes, factors)
    idx = subset(len(codes), points, rng)
    codes, factors = codes[idx], factors[idx]
    require_varying(factors, "MIG points")
    m = mutual_information(discretise(codes, bins), factors)
    h = entropies(factors)
    top = np.sort(m, axis=0)[::-1]
    second = top[1] if len(top) > 1 else np.zeros(m.shape[1])
    gaps = (top[0] - second) / h
    return Mig(float(gaps.mean()), gaps, m, h, len(idx), bins)


# ----------------------------------------------------------------------------------------------------------------
# DCI


def _normalised_entropy(p: np.ndarray, base: int) -> np.ndarray:
    """Entropy of each row of ``p`` (not yet normalised) in base ``base``; 0 where base is 1."""
    p = p / p.sum(1, keepdims=True)
    if base < 2:
        return np.zeros(len(p))
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(1) / math.log(base)


def dci_disentanglement_per_unit(importance: np.ndarray) -> np.ndarray:
    """1 - the entropy (base K) of each unit's importances over the factors: (D,)."""
    return 1.0 - _normalised_entropy(importance + ENTROPY_EPS, importance.shape[1])


def dci_disentanglement(importance: np.ndarray) -> float:
    """DCI disentanglement of a (D, K) importance matrix: per-unit disentanglement weighted by the unit's share
    of the total importance (uniform weights when every importance is 0)."""
    importance = np.asarray(importance, dtype=np.float64)
    per_unit = dci_disentanglement_per_unit(importance)
    weights = importance if importance.sum() > 0 else np.ones_like(importance)
    return float((per_unit * weights.sum(1) / weights.sum()).sum())


def dci_completeness_per_factor(importance: np.ndarray) -> np.ndarray:
    """1 - the entropy (base D) of each factor's importances over the units: (K,)."""
    return 1.0 - _normalised_entropy(importance.T + ENTROPY_EPS, importance.shape[0])


def dci_completeness(importance: np.ndarray) -> float:
    """DCI completeness of a (D, K) importance matrix: per-factor completeness weighted by the factor's share."""
    importance = np.asarray(importance, dtype=np.float64)
    per_factor = dci_completeness_per_factor(importance)
    weights = importance if importance.sum() > 0 else np.ones_like(importance)
    return float((per_factor * weights.sum(0) / weights.sum()).sum())


@dataclass(frozen=True)
class DciProtocol:
    """How DCI's importances are obtained: sklearn's GradientBoostingClassifier() per factor (its defaults: 100
    stages, learning rate 0.1, depth 3) on the codes as they are, or on each unit's rank among ``bins`` quantiles
    of the train points (the same model; its splits can only fall between those quantiles)."""

    name: str
    bins: int | None
    description: str


DCI_PROTOCOLS: dict[str, DciProtocol] = {
    "exact": DciProtocol("exact", None,
                         "disentanglement_lib: sklearn GradientBoostingClassifier() per factor (100 stages, learning "
                         "rate 0.1, depth 3) on the codes"),
    "default": DciProtocol("default", 256,
                           "sklearn GradientBoostingClassifier() per factor (100 stages, learning rate 0.1, depth 3) "
                           "on each unit quantised to 256 quantiles of the train points: ~1.6x faster than exact, "
                           "agrees with it within 0.02 (docs/factors.md)"),
}


def quantile_ranks(train: np.ndarray, test: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Each unit replaced by the number of its ``bins``-quantile edges (of the train points) at or below it."""
    out_train, out_test = np.empty(train.shape), np.empty(test.shape)
    levels = np.linspace(0, 1, bins + 1)[1:-1]
    for j in range(train.shape[1]):
        edges = np.unique(np.quantile(train[:, j], levels))
        out_train[:, j] = np.searchsorted(edges, train[:, j], side="right")
        out_test[:, j] = np.searchsorted(edges, test[:, j], side="right")
    return out_train, out_test


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass
class Dci:
    disentanglement: float
    completeness: float
    informativeness_test: float  # mean over factors of the test accuracy (disentanglement_lib's informativeness)
    informativeness_train: float
    importance: np.ndarray = field(repr=False)  # (D, K): each factor's classifier's feature_importances_
    protocol: str = "exact"
    train: int = 0
    test: int = 0


def dci(codes: np.ndarray, factors: np.ndarray, rng: np.random.Generator, train: int = 10_000, test: int = 5_000,
        protocol: str = "default", workers: int | None = None) -> Dci:
    """Disentanglement, completeness and informativeness (Eastwood & Williams 2018, disentanglement_lib's form).

    Per factor, a gradient-boosted classifier of the factor's class from all units (``DCI_PROTOCOLS[protocol]``);
    its impurity-based ``feature_importances_`` fill the factor's column of the importance matrix; informativeness
    is the classifier's accuracy (train and test), averaged over factors.  The factors' classifiers are fitted in
    ``workers`` threads (default: one per usable CPU): each has its own seed, so the numbers do not depend on it.
    """
    from sklearn.ensemble import GradientBoostingClassifier

    if protocol not in DCI_PROTOCOLS:
        raise FactorError(f"DCI protocol must be one of {sorted(DCI_PROTOCOLS)}; got {protocol!r}")
    spec = DCI_PROTOCOLS[protocol]
    codes, factors = check_pool(codes, factors)
    tr, te = split(len(codes), train, test, rng)
    require_varying(factors[tr], "DCI train points")
    x_train, x_test = codes[tr], codes[te]
    if spec.bins is not None:
        x_train, x_test = quantile_ranks(x_train, x_test, spec.bins)
    seeds = [sklearn_seed(rng) for _ in range(factors.shape[1])]

    def fit(k: int):
        return GradientBoostingClassifier(random_state=seeds[k]).fit(x_train, factors[tr, k])

    # the factors with the most classes (the costliest fits) first, so the threads finish together
    order = sorted(range(factors.shape[1]), key=lambda k: -len(np.unique(factors[tr, k])))
    workers = max(1, min(workers or usable_cpus(), len(order)))
    if workers == 1:
        models = {k: fit(k) for k in order}
    else:  # sklearn's tree building releases the GIL
        with ThreadPoolExecutor(workers) as pool:
            models = dict(zip(order, pool.map(fit, order)))
    importance = np.zeros((codes.shape[1], factors.shape[1]))
    acc_train, acc_test = [], []
    for k in range(factors.shape[1]):
        importance[:, k] = np.abs(models[k].feature_importances_)
        acc_train.append(np.mean(models[k].predict(x_train) == factors[tr, k]))
        acc_test.append(np.mean(models[k].predict(x_test) == factors[te, k]))
    return Dci(dci_disentanglement(importance), dci_completeness(importance), float(np.mean(acc_test)),
               float(np.mean(acc_train)), importance, protocol, len(tr), len(te))


# ----------------------------------------------------------------------------------------------------------------
# SAP


def sap_gap(accuracy: np.ndarray) -> float:
    """The mean over factors (columns) of the gap between the two best units' (rows) scores."""
    top = np.sort(np.asarray(accuracy, dtype=np.float64), axis=0)
    second = top[-2] if len(top) > 1 else np.zeros(top.shape[1])
    return float((top[-1] - second).mean())


@dataclass
class Sap:
    score: float
    accuracy: np.ndarray = field(repr=False)  # (D, K): test accuracy of unit j's SVM for factor k
    train: int = 0
    test: int = 0


def sap(codes: np.ndarray, factors: np.ndarray, rng: np.random.Generator, train: int = 10_000,
        test: int = 5_000) -> Sap:
    """Separated attribute predictability (Kumar et al. 2018; disentanglement_lib's discrete-factor path).

    For every unit j and factor k, sklearn's ``LinearSVC(C=0.01, class_weight="balanced")`` fitted on unit j
    alone to predict factor k's class on the train points; its test accuracy fills the score matrix; the score
    is the mean over factors of the gap between the two best units.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    codes, factors = check_pool(codes, factors)
    tr, te = split(len(codes), train, test, rng)
    require_varying(factors[tr], "SAP train points")
    seed = sklearn_seed(rng)
    accuracy = np.zeros((codes.shape[1], factors.shape[1]))
    for j in range(codes.shape[1]):
        x_train, x_test = codes[tr, j : j + 1], codes[te, j : j + 1]
        for k in range(factors.shape[1]):
            svm = LinearSVC(C=SAP_C, class_weight="balanced", dual="auto", random_state=seed)
            with warnings.catch_warnings():
                # a unit that says nothing about a factor may stop at max_iter; its accuracy is still the number
                warnings.simplefilter("ignore", ConvergenceWarning)
                svm.fit(x_train, factors[tr, k])
            accuracy[j, k] = np.mean(svm.predict(x_test) == factors[te, k])
    return Sap(sap_gap(accuracy), accuracy, len(tr), len(te))


# ----------------------------------------------------------------------------------------------------------------
# FactorVAE score


@dataclass
class FactorVae:
    train_accuracy: float
    eval_accuracy: float  # the score
    active_units: np.ndarray = field(repr=False)  # indices of the units with std >= ACTIVE_STD
    votes: np.ndarray = field(repr=False)  # (K, D) train votes: factor fixed x unit of least normalised variance
    unit_factor: np.ndarray = field(repr=False)  # (D,) the majority-vote classifier: unit -> factor
    variance_points: int = 0
    train: int = 0
    eval: int = 0
    batch: int = BATCH


def factor_vae_votes(codes: np.ndarray, sampler: FixedFactorSampler, scale: np.ndarray, active: np.ndarray,
                     votes: int, batch: int, rng: np.random.Generator) -> np.ndarray:
    """(K, D) vote counts: each vote fixes a random factor, draws ``batch`` points sharing its value, and votes for
    the ACTIVE unit whose variance over the batch, divided by its global variance, is least."""
    n, k_count = sampler.factors.shape
    factor = rng.integers(k_count, size=votes)
    value = sampler.factors[rng.integers(n, size=votes), factor]
    members = sampler.draw(factor, value, batch, rng)
    winner = np.empty(votes, dtype=np.int64)
    sub = codes[:, active] / scale[active]
    for s in blocks(votes, batch * len(active) * 8):
        local = sub[members[s]].var(axis=1, ddof=1)  # (block, active units)
        winner[s] = active[np.argmin(local, axis=1)]
    out = np.zeros((k_count, codes.shape[1]), dtype=np.int64)
    np.add.at(out, (factor, winner), 1)
    return out


def factor_vae_score(codes: np.ndarray, factors: np.ndarray, rng: np.random.Generator,
                     variance_points: int = 10_000, train: int = 10_000, eval: int = 5_000, batch: int = BATCH,
                     threshold: float = ACTIVE_STD) -> FactorVae:
    """The FactorVAE disentanglement score (Kim & Mnih 2018, disentanglement_lib's form).

    Global variances (ddof 1) over ``variance_points`` random pool points; units whose std is below ``threshold``
    are pruned.  A vote: a random factor held at one value over ``batch`` points; each active unit's variance over
    the batch (ddof 1) divided by its global variance; the vote goes to (factor, least unit).  The majority-vote
    classifier maps each unit to the factor it got most train votes for; the accuracies are the shares of train
    and eval votes it classifies right.  No active unit: both 0.

    disentanglement_lib takes the argmin over the pruned units but records the vote in the column of that
    position among all units (the i-th active unit votes as unit i).  The columns are merely relabelled, one to
    one, so its accuracies are these; only its vote matrix (which unit serves which factor) and its
    ``num_active_dims`` (the length of the mask: always D) differ.  Here votes land on the real unit.
    """
    codes, factors = check_pool(codes, factors)
    if batch < 2:
        raise FactorError(f"a FactorVAE vote needs a batch of at least 2 points (a variance); got {batch}")
    if train < 1 or eval < 1:
        raise FactorError(f"FactorVAE needs positive numbers of train and eval votes; got {train} and {eval}")
    require_varying(factors, "pool points")
    idx = subset(len(codes), variance_points, rng)
    variance = codes[idx].var(axis=0, ddof=1) if len(idx) > 1 else np.zeros(codes.shape[1])
    scale = np.sqrt(variance)
    active = np.flatnonzero(scale >= threshold)
    if len(active) == 0:
        empty = np.zeros((factors.shape[1], codes.shape[1]), dtype=np.int64)
        return FactorVae(0.0, 0.0, active, empty, np.zeros(codes.shape[1], dtype=np.int64), len(idx), train, eval,
                         batch)
    sampler = FixedFactorSampler(factors)
    train_votes = factor_vae_votes(codes, sampler, scale, active, train, batch, rng)
    unit_factor = np.argmax(train_votes, axis=0)
    units = np.arange(codes.shape[1])
    train_accuracy = train_votes[unit_factor, units].sum() / train_votes.sum()
    eval_votes = factor_vae_votes(codes, sampler, scale, active, eval, batch, rng)
    eval_accuracy = eval_votes[unit_factor, units].sum() / eval_votes.sum()
    return FactorVae(float(train_accuracy), float(eval_accuracy), active, train_votes, unit_factor, len(idx), train,
                     eval, batch)


# ----------------------------------------------------------------------------------------------------------------
# BetaVAE score


@dataclass
class BetaVae:
    train_accuracy: float
    eval_accuracy: float  # the score
    train: int = 0
    eval: int = 0
    batch: int = BATCH
    converged: bool = True


def beta_vae_points(codes: np.ndarray, sampler: FixedFactorSampler, points: int, batch: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(features (points, D), the fixed factor of each): a feature is the mean |z1 - z2| over ``batch`` pairs that
    share one random factor's value (per pair: the first point uniform over the pool, the second uniform among
    the points that share the first one's class of that factor)."""
    n, k_count = sampler.factors.shape
    factor = rng.integers(k_count, size=points)
    first = rng.integers(n, size=(points, batch))
    value = sampler.factors[first, factor[:, None]]
    second = sampler.draw(np.repeat(factor, batch), value.reshape(-1), 1, rng).reshape(points, batch)
    features = np.empty((points, codes.shape[1]))
    for s in blocks(points, 2 * batch * codes.shape[1] * 8):
        features[s] = np.abs(codes[first[s]] - codes[second[s]]).mean(axis=1)
    return features, factor


def beta_vae_score(codes: np.ndarray, factors: np.ndarray, rng: np.random.Generator, train: int = 10_000,
                   eval: int = 5_000, batch: int = BATCH) -> BetaVae:
    """The BetaVAE disentanglement score (Higgins et al. 2017, disentanglement_lib's ``beta_vae_sklearn``).

    Each point: a random factor fixed between the two points of ``batch`` pairs; the feature is the mean absolute
    difference of their codes.  sklearn's ``LogisticRegression`` (default settings) predicts the fixed factor
    from the feature; its accuracy on the train points and on separately drawn eval points.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    codes, factors = check_pool(codes, factors)
    if train < 1 or eval < 1 or batch < 1:
        raise FactorError(f"BetaVAE needs positive train and eval points and batch; got {train}, {eval}, {batch}")
    require_varying(factors, "pool points")
    sampler = FixedFactorSampler(factors)
    x_train, y_train = beta_vae_points(codes, sampler, train, batch, rng)
    seed = sklearn_seed(rng)
    x_eval, y_eval = beta_vae_points(codes, sampler, eval, batch, rng)
    if len(np.unique(y_train)) < 2:  # one factor, or very few train points
        only = int(y_train[0])
        return BetaVae(1.0, float(np.mean(y_eval == only)), train, eval, batch)
    model = LogisticRegression(random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(x_train, y_train)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return BetaVae(float(model.score(x_train, y_train)), float(model.score(x_eval, y_eval)), train, eval, batch,
                   converged)


# ----------------------------------------------------------------------------------------------------------------
# Gaussian total correlation


@dataclass
class GaussianTc:
    value: float  # nats; inf where one unit is an exact linear function of others
    constant_units: np.ndarray = field(repr=False)  # indices of the units left out (constant over the points)
    points: int = 0


def gaussian_total_correlation(codes: np.ndarray, rng: np.random.Generator, points: int = 10_000) -> GaussianTc:
    """Total correlation of the Gaussian fitted to the codes: KL(N(0, S) || N(0, diag S)) =
    0.5 (sum log diag S - log det S) = -0.5 log det R (R the correlation matrix), over ``points`` random points.

    Needs no factors.  A unit that is constant over the points (a dead unit) is left out: a constant is
    independent of everything and adds nothing to the total correlation of the rest (disentanglement_lib's
    formula gives NaN there: log 0 - log 0).  Units that are exact linear functions of others make the
    fitted Gaussian degenerate and its total correlation infinite: the value is then ``inf``.
    """
    codes = np.asarray(codes)
    if codes.ndim != 2 or len(codes) < 2:
        raise FactorError("the Gaussian total correlation needs codes of shape (points >= 2, units); "
                          f"got {codes.shape}")
    codes, _ = check_pool(codes, np.zeros((len(codes), 1), dtype=np.int64))
    idx = subset(len(codes), points, rng)
    x = codes[idx]
    constant = np.flatnonzero(np.ptp(x, axis=0) == 0)
    varying = np.setdiff1d(np.arange(x.shape[1]), constant)
    if len(varying) < 2:
        return GaussianTc(0.0, constant, len(idx))
    x = x[:, varying]
    cov = np.atleast_2d(np.cov(x, rowvar=False))
    std = np.sqrt(np.diag(cov))
    corr = cov / np.outer(std, std)
    sign, logdet = np.linalg.slogdet(corr)
    # an eigenvalue at rounding level means an exact linear dependence among the units
    if sign <= 0 or np.linalg.eigvalsh(corr)[0] <= 1e-12 * len(corr):
        return GaussianTc(math.inf, constant, len(idx))
    return GaussianTc(float(max(0.0, -0.5 * logdet)), constant, len(idx))


# ----------------------------------------------------------------------------------------------------------------
# Everything at once


@dataclass
class FactorReport:
    """What :func:`factor_metrics` found: flat numbers, the unit x factor MI, how they were computed, and what
    each cost."""

    metrics: dict[str, float]  # the keys of HIGHER_IS_BETTER
    mutual_information: np.ndarray  # (D, K) nats over the MIG points, columns in ``factor_names`` order
    entropy: np.ndarray  # (K,) nats of each factor over the MIG points
    factor_names: list[str]
    protocol: dict  # JSON-ready: the points, bins, classifiers and seed of every metric
    seconds: dict[str, float]  # wall time of each metric (its sampling included)
    importance: np.ndarray | None = field(default=None, repr=False)  # DCI's (D, K)
    sap_accuracy: np.ndarray | None = field(default=None, repr=False)  # SAP's (D, K)


def metric_rng(seed: int, metric: str) -> np.random.Generator:
    """The random stream of one metric: independent of the others, so changing one's sizes changes no other."""
    return np.random.default_rng([METRICS.index(metric), seed])


def factor_metrics(codes: np.ndarray, factors: np.ndarray, names: Sequence[str], seed: int = 0,
                   protocol: str = "default", sizes: Sizes = Sizes(), workers: int | None = None) -> FactorReport:
    """Every factor read-out of ``codes`` (N, D) against ``factors`` (N, K) named ``names``, seeded by ``seed``.

    Factors that take a single value over the pool (dSprites' colour, say) carry nothing to read and are left
    out; the protocol names them.  ``protocol`` picks DCI's classifier settings (``DCI_PROTOCOLS``: ``default``
    or disentanglement_lib's ``exact``); ``workers``: DCI's threads (default one per usable CPU; the numbers do
    not depend on it).  ``sizes``: each metric's points (disentanglement_lib's by default); the counts used go
    into the protocol.
    """
    names = [str(n) for n in names]
    codes, factors = check_pool(codes, factors)
    if len(names) != factors.shape[1]:
        raise FactorError(f"{factors.shape[1]} factor columns but {len(names)} names: {names}")
    if len(set(names)) != len(names):
        raise FactorError(f"factor names must differ from one another; got {names}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise FactorError(f"the seed must be a non-negative integer; got {seed!r}")
    if protocol not in DCI_PROTOCOLS:
        raise FactorError(f"DCI protocol must be one of {sorted(DCI_PROTOCOLS)}; got {protocol!r}")
    varying = [k for k in range(factors.shape[1]) if factors[:, k].min() != factors[:, k].max()]
    if not varying:
        raise FactorError(f"every factor ({', '.join(names)}) takes one value only over the {len(codes)} points: "
                          "there is nothing to read")
    left_out = [names[k] for k in range(factors.shape[1]) if k not in varying]
    factors, names = factors[:, varying], [names[k] for k in varying]
    seconds: dict[str, float] = {}

    def timed(metric: str, fn, *args, **kwargs):
        start = time.perf_counter()
        result = fn(*args, rng=metric_rng(int(seed), metric), **kwargs)
        seconds[metric] = time.perf_counter() - start
        return result

    m = timed("mig", mig, codes, factors, points=sizes.mig_points)
    d = timed("dci", dci, codes, factors, train=sizes.dci_train, test=sizes.dci_test, protocol=protocol,
              workers=workers)
    s = timed("sap", sap, codes, factors, train=sizes.sap_train, test=sizes.sap_test)
    f = timed("factor_vae", factor_vae_score, codes, factors, variance_points=sizes.variance_points,
              train=sizes.factor_vae_train, eval=sizes.factor_vae_eval, batch=sizes.batch)
    b = timed("beta_vae", beta_vae_score, codes, factors, train=sizes.beta_vae_train, eval=sizes.beta_vae_eval,
              batch=sizes.batch)
    tc = timed("gaussian_tc", gaussian_total_correlation, codes, points=sizes.tc_points)
    metrics = {
        "mig": m.score,
        "dci_disentanglement": d.disentanglement,
        "dci_completeness": d.completeness,
        "dci_informativeness": d.informativeness_test,
        "dci_informativeness_train": d.informativeness_train,
        "sap": s.score,
        "factor_vae_score": f.eval_accuracy,
        "factor_vae_train_accuracy": f.train_accuracy,
        "beta_vae_score": b.eval_accuracy,
        "beta_vae_train_accuracy": b.train_accuracy,
        "gaussian_tc": tc.value,
    }
    spec = DCI_PROTOCOLS[protocol]
    described = {
        "reference": "google-research/disentanglement_lib evaluation/metrics, unsupervised_study_v1 settings",
        "seed": int(seed),
        "pool_points": len(codes),
        "units": codes.shape[1],
        "factors": names,
        "factors_left_out": left_out,
        "sizes_asked": asdict(sizes),
        "mig": {"points": m.points, "bins": m.bins, "binning": "equal-width between each unit's min and max",
                "mutual_information": "sklearn.metrics.mutual_info_score, nats", "normalised_by": "factor entropy"},
        "dci": {"protocol": protocol, "classifier": spec.description, "train": d.train, "test": d.test,
                "importance": "feature_importances_ (impurity-based)",
                "informativeness": "mean accuracy over factors"},
        "sap": {"train": s.train, "test": s.test,
                "classifier": f"sklearn LinearSVC(C={SAP_C}, class_weight='balanced') per unit and factor"},
        "factor_vae": {"variance_points": f.variance_points, "train_votes": f.train, "eval_votes": f.eval,
                       "batch": f.batch, "active_std": ACTIVE_STD, "active_units": int(len(f.active_units)),
                       "votes": "argmin over the active units, recorded on the unit itself"},
        "beta_vae": {"train": b.train, "eval": b.eval, "pairs_per_point": b.batch,
                     "classifier": "sklearn LogisticRegression() defaults", "converged": b.converged},
        "gaussian_tc": {"points": tc.points, "constant_units_left_out": [int(u) for u in tc.constant_units]},
    }
    return FactorReport(metrics, m.mutual_information, m.entropy, names, described, seconds, d.importance,
                        s.accuracy)
