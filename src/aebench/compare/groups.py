"""Rows labelled, and grouped over seeds: what :func:`collect` gives everything after it.

A job's label is its number and the overrides that differ between the jobs compared.  Jobs that differ
only in their seed (and in settings that do not change results, :data:`aebench.rundir.GROUP_IGNORES`) form
a seed group; the precision counts as a run trained in it (``train.precision=auto`` resolved), so one
command run on a CPU with bf16 units and on one without makes two groups.
"""

from __future__ import annotations

import logging
import os
import statistics
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

from .. import rundir, stats
from .rows import FACTOR_EVIDENCE, FACTOR_METRICS, METRICS, Row, find_runs, read_row

log = logging.getLogger("aebench.compare")


@dataclass(frozen=True)
class Group:
    """Completed jobs that differ only in their seed: each metric's mean, spread and t-interval over them."""

    members: tuple[Row, ...]
    means: Mapping[str, float | None]
    stds: Mapping[str, float | None]  # None with one seed
    intervals: Mapping[str, stats.Interval]  # 95 % t-interval of the mean over the seeds (two or more)

    @property
    def varying(self) -> tuple[str, ...]:
        """Its overrides that other jobs do not share, seeds aside."""
        return tuple(o for o in self.members[0].varying if not o.startswith("seed="))

    @property
    def name(self) -> str:
        """What the tables call it: :attr:`varying`, else ``"<model> <arch> latent=<n>"``."""
        return " ".join(self.varying) or f"{self.model} {self.arch} latent={self.latent}"

    @property
    def key(self) -> str:
        return self.members[0].group_key  # type: ignore[return-value]

    @property
    def series_key(self) -> str:
        return self.members[0].series_key  # type: ignore[return-value]

    # the settings every member shares
    @property
    def model(self) -> str:
        return self.members[0].model  # type: ignore[return-value]

    @property
    def arch(self) -> str:
        return self.members[0].arch  # type: ignore[return-value]

    @property
    def dataset(self) -> str:
        return self.members[0].dataset  # type: ignore[return-value]

    @property
    def latent(self) -> int:
        return self.members[0].latent  # type: ignore[return-value]

    @property
    def epochs(self) -> int:
        return self.members[0].epochs  # type: ignore[return-value]

    @property
    def n_seeds(self) -> int:
        return len(self.members)

    @property
    def seeds(self) -> str:
        return " ".join(map(str, sorted(m.seed for m in self.members)))  # type: ignore[type-var]

    @property
    def jobs(self) -> str:
        return " ".join(Path(m.job).name.split("_", 1)[0] for m in self.members)

    @property
    def method(self) -> str:
        """Which intervals the group has (groups.csv's ``interval``)."""
        return " ".join(sorted({f"{stats.SEED_NOISE} (n={i.n})" for i in self.intervals.values()}))

    def mean(self, key: str) -> float | None:
        return self.means.get(key)

    def std(self, key: str) -> float | None:
        return self.stds.get(key)

    def interval(self, key: str) -> tuple[float | None, float | None]:
        found = self.intervals.get(key)
        return (found.low, found.high) if found else (None, None)

    def record(self) -> dict[str, Any]:
        """The group as groups.csv writes it."""
        out = {"group": self.name, "model": self.model, "arch": self.arch, "dataset": self.dataset,
               "latent": self.latent, "epochs": self.epochs, "n_seeds": self.n_seeds, "seeds": self.seeds,
               "jobs": self.jobs, "interval": self.method}
        for key in self.means:
            low, high = self.interval(key)
            out.update({f"{key}_mean": self.means[key], f"{key}_std": self.stds[key], f"{key}_ci_low": low,
                        f"{key}_ci_high": high})
        return out


@dataclass(frozen=True)
class Comparison:
    """Every run found, labelled, and the seed groups of the completed ones."""

    rows: tuple[Row, ...]
    groups: tuple[Group, ...]
    budgets: tuple[str, ...]  # probe_accuracy@N of every label budget any row has, smallest first
    factors: tuple[str, ...] = ()  # the factor read-outs (FACTOR_METRICS) any row has; none where no run has factors

    @property
    def done(self) -> list[Row]:
        return [r for r in self.rows if r.completed]

    @property
    def several_seeds(self) -> bool:
        return any(g.n_seeds > 1 for g in self.groups)

    def group_of(self, row: Row) -> Group:
        return next(g for g in self.groups if g.key == row.group_key)

    def name(self, group: Group) -> str:
        """A group's name where seeds repeat, else its one job's label."""
        return group.name if self.several_seeds or group.n_seeds > 1 else group.members[0].label


def collect(paths: list[Path], warn: bool = True) -> Comparison:
    """Every run below ``paths``, read, labelled and grouped (unreadable ones as skipped, each with a warning
    unless ``warn`` is false: :func:`warn_skipped` gives them later)."""
    runs = find_runs(paths)
    # jobs are named relative to what the given directories share, so two sweeps' "0_latent=2" differ
    base = Path(paths[0]) if len(paths) == 1 else Path(os.path.commonpath([str(Path(p).resolve()) for p in paths]))
    rows = _labelled([read_row(r.resolve() if len(paths) > 1 else r, base) for r in runs])
    if warn:
        warn_skipped(rows)
    budgets, factors = budget_columns(rows), factor_columns(rows)
    return Comparison(tuple(rows), tuple(group_by_seed(rows, budgets, factors)), tuple(budgets), tuple(factors))


def warn_skipped(rows: tuple[Row, ...] | list[Row]) -> None:
    for r in rows:
        if r.status == "skipped":
            log.warning("skipped %s: %s", r.job, r.error)


def budget_columns(rows: list[Row]) -> list[str]:
    """``probe_accuracy@N`` for every label budget any row has, smallest first."""
    found = {k for r in rows for k in r.values if k.startswith("probe_accuracy@")}
    return sorted(found, key=lambda k: int(k.split("@")[1]))


def factor_columns(rows: list[Row]) -> list[str]:
    """The factor read-outs any row has, in :data:`FACTOR_METRICS`' order; none where no row has a read-out that
    needs factors (gaussian_tc alone, which every recent run has, opens no factor columns)."""
    if not any(r.value(k) is not None for r in rows for k in FACTOR_EVIDENCE):
        return []
    return [k for k in FACTOR_METRICS if any(r.value(k) is not None for r in rows)]


def _shown_overrides(rows: list[Row]) -> list[list[str]]:
    """Each job's overrides as labels show them: ``train.precision`` as the run trained in it, and named
    where the completed runs did not all train in one."""
    used = {r.precision for r in rows if r.precision}
    shown = []
    for r in rows:
        words = [o for o in (r.overrides or "").split(",") if o]
        if r.precision:
            mine = f"train.precision={r.precision}"
            words = [mine if rundir.override_key(o) == "train.precision" else o for o in words]
            if len(used) > 1 and mine not in words:
                words.append(mine)
        shown.append(words)
    return shown


def _labelled(rows: list[Row]) -> list[Row]:
    """The rows with their labels: the job number and the overrides that differ between jobs."""
    shown = _shown_overrides(rows)
    readable = [set(words) for r, words in zip(rows, shown) if r.overrides is not None]
    common = set.intersection(*readable) if readable else set()
    out = []
    for r, words in zip(rows, shown):
        num = Path(r.job).name.split("_", 1)[0]
        varying = tuple(o for o in words if o not in common)
        prefix = str(Path(r.job).parent / num) if str(Path(r.job).parent) != "." else num
        label = f"{prefix}: {' '.join(varying)}" if varying else (prefix if num.isdigit() else r.job)
        out.append(replace(r, label=label if len(label) <= 80 else label[:79] + "…", varying=varying))
    return out


def group_by_seed(rows: list[Row], budgets: list[str], factors: list[str] | tuple[str, ...] = ()) -> list[Group]:
    """One group per set of completed jobs that differ only in their seed: mean, std and the 95 % t-interval of
    each metric's mean over the seeds (where two or more have it): :data:`METRICS`, the label ``budgets`` and the
    factor read-outs ``factors``.  ``rows``: labelled (:func:`collect`)."""
    by_key: dict[str, list[Row]] = {}
    for r in rows:
        if r.completed:
            by_key.setdefault(r.group_key, []).append(r)  # type: ignore[arg-type]
    out = []
    for members in by_key.values():
        means, stds, intervals = {}, {}, {}
        for key in [*METRICS, *budgets, *factors]:
            values = [v for v in (m.value(key) for m in members) if v is not None]
            means[key] = statistics.fmean(values) if values else None
            stds[key] = statistics.stdev(values) if len(values) > 1 else None
            interval = stats.t_interval(values)
            if interval:
                intervals[key] = interval
        out.append(Group(tuple(members), means, stds, intervals))
    return out
