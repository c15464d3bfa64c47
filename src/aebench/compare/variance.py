"""Where a metric's spread comes from: between the groups (say, the objectives) or the seed.

For the groups that share at least two seeds, each metric's values over groups x those seeds are split by
:func:`aebench.stats.variance_shares`: the share between groups, between seeds (a seed's effect common to every
group: a seed starts every group from the same random state, the same initial weights where their networks
match), and the rest (the seed's effect particular to each group).  ``variance.csv`` and a section of summary.md carry them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import stats
from .groups import Comparison, Group


@dataclass(frozen=True)
class Spread:
    metric: str
    shares: stats.VarianceShares

    def record(self) -> dict[str, object]:
        s = self.shares
        return {"metric": self.metric, "groups": s.groups, "seeds": s.seeds, "between_groups": s.between_groups,
                "between_seeds": s.between_seeds, "seed_by_group": s.interaction, "within_groups": s.within_groups,
                "p_groups": s.p_groups, "p_seeds": s.p_seeds}


COLUMNS = ["metric", "groups", "seeds", "between_groups", "between_seeds", "seed_by_group", "within_groups",
           "p_groups", "p_seeds"]


def common_seeds(groups: list[Group] | tuple[Group, ...]) -> list[int]:
    """The seeds every group has, once each, sorted."""
    sets = [{m.seed for m in g.members} for g in groups if len({m.seed for m in g.members}) == g.n_seeds]
    if len(sets) != len(groups) or not sets:
        return []
    return sorted(set.intersection(*sets))  # type: ignore[arg-type]


def spreads(comparison: Comparison, metrics: list[str]) -> list[Spread]:
    """Each metric's decomposition over the comparison's groups and their common seeds (none where fewer than two
    groups, or fewer than two common seeds, or the groups are on different datasets)."""
    groups = list(comparison.groups)
    if len(groups) < 2 or len({g.dataset for g in groups}) != 1:
        return []
    seeds = common_seeds(groups)
    if len(seeds) < 2:
        return []
    out = []
    for key in metrics:
        table = []
        for g in groups:
            by_seed = {m.seed: m.value(key) for m in g.members}
            table.append([by_seed.get(s) for s in seeds])
        if any(v is None for row in table for v in row):
            continue
        shares = stats.variance_shares(np.array(table, dtype=np.float64))
        if shares is not None:
            out.append(Spread(key, shares))
    return out
