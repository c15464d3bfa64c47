"""Groups set against each other: the difference in a metric, its 95 % interval and a verdict.

Which interval a difference gets depends on what the two groups have (definitions in docs/compare.md; the
statistics in :mod:`aebench.stats`): both with several seeds, paired t over the seeds when they share them,
else Welch; one run against several seeds, the run taken to share their spread; one run each, a paired
bootstrap over the test images where both saved their predictions on the same test labels, else none.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from .. import rundir, stats
from ..errors import AebenchError
from .groups import Comparison, Group
from .rows import PREDICTED


class BaselineError(AebenchError):
    """``--baseline`` matches no group, or more than one: one line for the user."""


@dataclass(frozen=True)
class Difference:
    """``group`` - ``baseline`` in ``metric`` (a row of differences.csv)."""

    group: str
    baseline: str
    metric: str
    group_mean: float
    baseline_mean: float
    difference: float
    ci_low: float | None
    ci_high: float | None
    n_group: int
    n_baseline: int
    method: str  # how the interval was made; "" where there is none (the note says why)
    verdict: str  # better | worse | within noise | –
    note: str


DIFFERENCE_COLUMNS = [f.name for f in fields(Difference)]


def _values(group: Group, key: str) -> list[tuple[int, float]]:
    return [(m.seed, m.value(key)) for m in group.members if m.value(key) is not None]  # type: ignore[misc]


def _interval(group: Group, baseline: Group, key: str) -> tuple[stats.Interval | None, str]:
    """The 95 % interval of ``group`` - ``baseline`` in ``key``, or None and the reason."""
    a, b = _values(group, key), _values(baseline, key)
    if group.dataset != baseline.dataset:
        return None, f"another dataset ({group.dataset} against {baseline.dataset}): not compared"
    if len(a) > 1 and len(b) > 1:
        seeds_a, seeds_b = sorted(s for s, _ in a), sorted(s for s, _ in b)
        if seeds_a == seeds_b and len(set(seeds_a)) == len(seeds_a):
            return stats.paired_difference([v for _, v in sorted(a)], [v for _, v in sorted(b)]), ""
        return stats.welch_difference([v for _, v in a], [v for _, v in b]), ""
    if len(a) > 1 or len(b) > 1:
        if len(a) == 1:
            return stats.single_vs_group_difference(a[0][1], [v for _, v in b]), ""
        flipped = stats.single_vs_group_difference(b[0][1], [v for _, v in a])
        return stats.Interval(-flipped.estimate, -flipped.high, -flipped.low, flipped.method, flipped.n, flipped.df), ""
    if key in PREDICTED and group.n_seeds == baseline.n_seeds == 1:
        pa, pb = group.members[0].predictions, baseline.members[0].predictions
        if key not in pa or key not in pb:
            return None, f"one run each and no saved test predictions ({rundir.PROBE}) for both: no interval"
        if not np.array_equal(pa["test_y"], pb["test_y"]):
            return None, "one run each, on different test sets (test labels differ): no paired interval"
        return stats.paired_bootstrap_accuracy(pa[key], pb[key]), ""
    return None, "one run each: no noise estimate (run several seeds)"


def difference(group: Group, baseline: Group, key: str) -> Difference | None:
    """``group`` - ``baseline`` in ``key`` with its 95 % interval and a verdict; None where either lacks the metric."""
    a, b = _values(group, key), _values(baseline, key)
    if not a or not b:
        return None
    group_mean, baseline_mean = statistics.fmean(v for _, v in a), statistics.fmean(v for _, v in b)
    interval, note = _interval(group, baseline, key)
    return Difference(group.name, baseline.name, key, group_mean, baseline_mean, group_mean - baseline_mean,
                      interval.low if interval else None, interval.high if interval else None, len(a), len(b),
                      interval.method if interval else "", stats.verdict(interval, key), note)


def difference_metrics(budgets: tuple[str, ...] | list[str], factors: tuple[str, ...] | list[str] = ()) -> list[str]:
    """The metrics a baseline is compared in: the probes, the label ``budgets``, the reconstruction, the time and
    the factor read-outs ``factors`` (:attr:`Comparison.factors`)."""
    return ["probe_accuracy", *budgets, "knn_accuracy", "recon_mse", "neg_elbo", "seconds", *factors]


def differences(comparison: Comparison, baseline: Group) -> list[Difference]:
    """Every other group against ``baseline``, metric by metric."""
    out = []
    for g in comparison.groups:
        if g is baseline:
            continue
        for key in difference_metrics(comparison.budgets, comparison.factors):
            d = difference(g, baseline, key)
            if d is not None:
                out.append(d)
    return out


def resolve_baseline(spec: str, comparison: Comparison) -> Group:
    """The one group ``spec`` names: a group's name, or a job's label, number or directory name.

    Raises :class:`BaselineError` (one line, with the candidates) when it names none or several."""
    matched = {g.key: g for g in comparison.groups if g.name == spec}
    not_completed = []
    for r in comparison.rows:
        if spec in (r.job, r.label, r.number, Path(r.job).name):
            if r.completed:
                group = comparison.group_of(r)
                matched[group.key] = group
            else:
                not_completed.append(f"{r.label} ({r.status})")

    def describe(g: Group) -> str:
        return f"'{g.name}' (jobs {' '.join(m.number for m in g.members)})"

    if len(matched) == 1:
        return next(iter(matched.values()))
    if len(matched) > 1:
        raise BaselineError(f"--baseline {spec!r} is ambiguous: it matches {len(matched)} groups: "
                            f"{'; '.join(describe(g) for g in matched.values())}; give one of their job numbers")
    why = f" (it names {', '.join(not_completed)}, which did not complete)" if not_completed else ""
    raise BaselineError(f"--baseline {spec!r} matches no group{why}; the groups: "
                        f"{'; '.join(describe(g) for g in comparison.groups) or 'none (no completed job)'}")


@dataclass(frozen=True)
class Best:
    """The best group in one metric on one dataset, and how every other group there stands against it."""

    metric: str
    dataset: str
    best: Group
    others: int  # how many other groups have the metric on this dataset
    close: list[tuple[Group, Difference]] = field(default_factory=list)  # within noise of the best
    unknown: list[Group] = field(default_factory=list)  # no noise estimate against the best


def best_groups(groups: tuple[Group, ...] | list[Group], key: str = "probe_accuracy") -> list[Best]:
    """Per dataset (in the order they come), the group with the best mean ``key``: the highest, the lowest for
    :data:`aebench.stats.LOWER_IS_BETTER`."""
    scored = [g for g in groups if g.mean(key) is not None]
    pick = min if key in stats.LOWER_IS_BETTER else max
    out = []
    for dataset in dict.fromkeys(g.dataset for g in scored):
        members = [g for g in scored if g.dataset == dataset]
        best = Best(key, dataset, pick(members, key=lambda g: g.mean(key)), len(members) - 1)
        for g in members:
            if g is best.best:
                continue
            d = difference(g, best.best, key)
            if d.verdict == "within noise":  # type: ignore[union-attr]
                best.close.append((g, d))  # type: ignore[arg-type]
            elif d.verdict == "–":  # type: ignore[union-attr]
                best.unknown.append(g)
        out.append(best)
    return out
