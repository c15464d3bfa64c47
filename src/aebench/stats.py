"""The statistics behind comparisons: intervals and differences, pure numpy + math.

No scipy at run time (it is a test extra only; the tests check every function here against
``scipy.stats``) and no torch, so the comparison, the API and the pipeline can share it.

- :func:`t_ppf`: Student's t quantile, from the regularised incomplete beta function
  (Lentz's continued fraction) inverted by safeguarded Newton steps.
- :func:`t_interval`: the interval of a mean over seeds.
- :func:`welch_difference`, :func:`paired_difference`, :func:`single_vs_group_difference`:
  the interval of a difference of two means.
- :func:`bootstrap_accuracy`, :func:`paired_bootstrap_accuracy`: percentile bootstrap over the
  test images from saved per-image predictions.

Every interval is returned as an :class:`Interval`; :func:`verdict` turns one into words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

LEVEL = 0.95
RESAMPLES = 2000
BOOTSTRAP_SEED = 0

SEED_NOISE = "95 % t-interval over seeds"
TEST_NOISE = "95 % bootstrap over test images"


@dataclass(frozen=True)
class Interval:
    """``estimate`` with its ``level`` interval [``low``, ``high``]; ``method`` says how, ``n`` from how many."""

    estimate: float
    low: float
    high: float
    method: str
    n: int
    df: float | None = None

    def contains(self, value: float = 0.0) -> bool:
        return self.low <= value <= self.high


# ---------------------------------------------------------------- Student's t


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) (modified Lentz; Numerical Recipes' betacf)."""
    tiny, eps = 1e-300, 1e-16
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float, y: float | None = None) -> float:
    """The regularised incomplete beta function I_x(a, b), for a, b > 0 and 0 <= x <= 1.

    ``y`` = 1 - x where the caller knows it more exactly than 1 - x computes (x near 1)."""
    y = 1.0 - x if y is None else y
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(y)
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):  # the fraction converges fast here; else use the symmetry I_x(a,b) = 1 - I_1-x(b,a)
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, y) / b


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom (any real df > 0)."""
    t2 = t * t
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t2), t2 / (df + t2))  # P(T > |t|)
    return tail if t >= 0 else 1.0 - tail


def _t_log_pdf(t: float, df: float) -> float:
    return (math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
            - (df + 1) / 2 * math.log1p(t * t / df))


def _normal_isf(q: float) -> float:
    """x with P(Z > x) = q for the standard normal, Newton on erfc from a rational start."""
    x = math.sqrt(-2.0 * math.log(q)) if q < 0.5 else 0.0
    x -= (2.515517 + 0.802853 * x + 0.010328 * x * x) / (1 + 1.432788 * x + 0.189269 * x * x + 0.001308 * x ** 3) \
        if q < 0.5 else 0.0
    for _ in range(50):
        step = (0.5 * math.erfc(x / math.sqrt(2)) - q) / math.exp(-x * x / 2 - 0.5 * math.log(2 * math.pi))
        x += step
        if abs(step) < 1e-15 * max(1.0, abs(x)):
            break
    return x


def t_ppf(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` > 0 degrees of freedom (``math.inf``: the normal).

    Closed forms for df 1 and 2, a four-term expansion about the normal quantile for df > 5000;
    otherwise the upper tail q = min(p, 1 - p) is solved for from
    :func:`t_sf` by Newton steps kept inside a bracket (bisection when a step leaves it), to
    about 1e-12 relative (tested against scipy.stats.t.ppf).
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must lie in (0, 1), not {p}")
    if not df > 0:
        raise ValueError(f"df must be > 0, not {df}")
    if p == 0.5:
        return 0.0
    sign, q = (1.0, 1.0 - p) if p > 0.5 else (-1.0, p)  # solve P(T > x) = q, x > 0
    if df == 1:
        return sign * math.tan(math.pi * (0.5 - q))
    if df == 2:
        return sign * math.sqrt(2.0) * (1 - 2 * q) / math.sqrt(4 * q * (1 - q))
    if df > 5000:  # lgamma's rounding at large df would cost digits: Cornish–Fisher (A&S 26.7.5), error O(df^-5)
        z = _normal_isf(q)
        if math.isinf(df):
            return sign * z
        g = [(z ** 3 + z) / 4, (5 * z ** 5 + 16 * z ** 3 + 3 * z) / 96,
             (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / 384,
             (79 * z ** 9 + 776 * z ** 7 + 1482 * z ** 5 - 1920 * z ** 3 - 945 * z) / 92160]
        return sign * (z + sum(gi / df ** (i + 1) for i, gi in enumerate(g)))
    lo, hi = 0.0, max(1.0, _normal_isf(q))
    while t_sf(hi, df) > q:  # widen until the bracket holds the root
        lo, hi = hi, 2.0 * hi
    x = 0.5 * (lo + hi)
    for _ in range(200):
        f = t_sf(x, df) - q  # decreasing in x
        if f > 0:
            lo = x
        else:
            hi = x
        step = f / math.exp(_t_log_pdf(x, df))  # f' = -pdf, so Newton adds f / pdf
        new = x + step
        if not lo < new < hi:
            new = 0.5 * (lo + hi)
        if abs(new - x) <= 1e-14 * max(1.0, abs(x)) or hi - lo <= 1e-15 * hi:
            x = new
            break
        x = new
    return sign * x


# ---------------------------------------------------------------- intervals over seeds


def _t_half_width(se: float, df: float, level: float) -> float:
    return t_ppf(0.5 + level / 2, df) * se if se > 0 else 0.0


def t_interval(values: Sequence[float], level: float = LEVEL) -> Interval | None:
    """The Student-t interval of the mean of ``values`` (n >= 2, else None)."""
    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    if n < 2:
        return None
    mean = float(x.mean())
    half = _t_half_width(float(x.std(ddof=1)) / math.sqrt(n), n - 1, level)
    return Interval(mean, mean - half, mean + half, f"t over {n} seeds", n, n - 1)


def paired_difference(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> Interval | None:
    """mean(a - b) with the t interval of the paired differences (same seeds, in the same order)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) != len(b):
        raise ValueError("paired samples must have the same length")
    d = t_interval(a - b, level)
    return None if d is None else Interval(d.estimate, d.low, d.high, f"paired t over {len(a)} seeds", len(a), d.df)


def welch_difference(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> Interval | None:
    """mean(a) - mean(b) with Welch's interval (unequal variances, Welch–Satterthwaite df); n >= 2 each."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        return None
    va, vb = a.var(ddof=1) / na, b.var(ddof=1) / nb
    diff = float(a.mean() - b.mean())
    se2 = va + vb
    method = f"Welch t, {na} and {nb} seeds"
    if se2 == 0:
        return Interval(diff, diff, diff, method, na + nb, math.inf)
    df = se2 ** 2 / (va ** 2 / (na - 1) + vb ** 2 / (nb - 1))
    half = _t_half_width(math.sqrt(se2), df, level)
    return Interval(diff, diff - half, diff + half, method, na + nb, float(df))


def single_vs_group_difference(single: float, group: Sequence[float], level: float = LEVEL) -> Interval | None:
    """``single`` - mean(``group``), taking the single run to share the group's seed spread s:
    se = s·sqrt(1 + 1/n), n - 1 df (the pooled two-sample t with one side of size 1)."""
    g = np.asarray(group, dtype=np.float64)
    n = len(g)
    if n < 2:
        return None
    diff = float(single - g.mean())
    half = _t_half_width(float(g.std(ddof=1)) * math.sqrt(1 + 1 / n), n - 1, level)
    return Interval(diff, diff - half, diff + half, f"t, 1 run against {n} seeds (their spread)", n + 1, n - 1)


# ---------------------------------------------------------------- bootstrap over test images


def bootstrap_accuracy(correct: np.ndarray, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED,
                       level: float = LEVEL) -> Interval:
    """Percentile bootstrap of the accuracy mean(``correct``) over the test images.

    Resampling N images with replacement and counting the correct ones is a binomial draw
    Binomial(N, k/N): drawn as such, the same distribution costs microseconds instead of
    ``resamples`` × N indices.
    """
    correct = np.asarray(correct, dtype=bool)
    n = correct.size
    if n == 0:
        raise ValueError("no test predictions")
    k = int(correct.sum())
    rng = np.random.default_rng(seed)
    accs = rng.binomial(n, k / n, size=resamples) / n
    low, high = np.quantile(accs, [(1 - level) / 2, (1 + level) / 2])
    return Interval(k / n, float(low), float(high), f"bootstrap over {n} test images", n)


def paired_bootstrap_accuracy(correct_a: np.ndarray, correct_b: np.ndarray, resamples: int = RESAMPLES,
                              seed: int = BOOTSTRAP_SEED, level: float = LEVEL) -> Interval:
    """acc(a) - acc(b) on the same test images, with a paired percentile bootstrap over the images.

    Each image is one of four kinds (both right, only a, only b, both wrong); resampling the
    images is a multinomial draw of the four counts, and the difference is (only a - only b) / N.
    """
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.size == 0:
        raise ValueError("paired predictions must cover the same, non-empty test set")
    n = a.size
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, [only_a / n, only_b / n, (n - only_a - only_b) / n], size=resamples)
    diffs = (counts[:, 0] - counts[:, 1]) / n
    low, high = np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2])
    return Interval((only_a - only_b) / n, float(low), float(high), f"paired bootstrap over {n} test images", n)


# ---------------------------------------------------------------- words


# The metrics for which a lower value is the better one (every other: higher).  gaussian_tc, the Gaussian total
# correlation of the codes (docs/factors.md), is lower for a more factorised code.
LOWER_IS_BETTER = {"recon_mse", "neg_elbo", "seconds", "gaussian_tc"}


def verdict(interval: Interval | None, metric: str) -> str:
    """"better", "worse" or "within noise" for a difference (group - baseline) of ``metric``."""
    if interval is None:
        return "–"
    if interval.contains(0.0):
        return "within noise"
    higher = interval.low > 0
    lower_better = metric in LOWER_IS_BETTER
    return "better" if higher != lower_better else "worse"


# ---------------------------------------------------------------- where the spread comes from


def f_sf(f: float, d1: float, d2: float) -> float:
    """P(F > f) for Fisher's F with ``d1``, ``d2`` degrees of freedom."""
    if not f > 0:
        return 1.0
    return betainc(d2 / 2.0, d1 / 2.0, d2 / (d2 + d1 * f), d1 * f / (d2 + d1 * f))


@dataclass(frozen=True)
class VarianceShares:
    """A two-way decomposition without replication of values laid out groups x seeds (every group run with the
    same seeds): the share of the total sum of squares between groups, between seeds (what a seed does to every
    group alike), and the rest (what a seed does to each group differently); with the F-test's p-values of the
    group and the seed effects against the rest."""

    groups: int
    seeds: int
    total: float  # the sum of squares about the grand mean
    between_groups: float  # shares, summing to 1 with the two below
    between_seeds: float
    interaction: float
    p_groups: float | None  # None where the rest is 0 (nothing to test against)
    p_seeds: float | None

    @property
    def within_groups(self) -> float:
        """Everything the seed explains, shared or not: 1 - the groups' share (Locatello et al.'s seed effect)."""
        return self.between_seeds + self.interaction


def variance_shares(values: np.ndarray) -> VarianceShares | None:
    """``values``: (groups, seeds), finite; None where there are fewer than 2 of either or no spread at all."""
    y = np.asarray(values, dtype=np.float64)
    if y.ndim != 2 or min(y.shape) < 2 or not np.isfinite(y).all():
        return None
    g, s = y.shape
    grand = y.mean()
    total = float(((y - grand) ** 2).sum())
    if total <= 0:
        return None
    ss_g = float(s * ((y.mean(axis=1) - grand) ** 2).sum())
    ss_s = float(g * ((y.mean(axis=0) - grand) ** 2).sum())
    ss_r = max(total - ss_g - ss_s, 0.0)
    d_g, d_s, d_r = g - 1, s - 1, (g - 1) * (s - 1)
    rest = ss_r / d_r
    p_g = f_sf((ss_g / d_g) / rest, d_g, d_r) if rest > 0 else None
    p_s = f_sf((ss_s / d_s) / rest, d_s, d_r) if rest > 0 else None
    return VarianceShares(g, s, total, ss_g / total, ss_s / total, ss_r / total, p_g, p_s)
