"""Numbers as the report writes them, and its tables: Markdown for summary.md, plain text for the terminal.

Accuracies as percentages, their spreads and differences in points; the factor read-outs to three decimals; an
interval in brackets after its value.
"""

from __future__ import annotations

import math
from typing import Any

from .differences import Difference
from .groups import Group
from .rows import FACTOR_METRICS, PREDICTED, Row
from .variance import Spread

DIFFERENCE_HEAD = ["group", "metric", "group vs baseline", "difference", "95 % interval", "method", "verdict"]
FACTOR_HEADS = {"mig": "MIG", "dci_disentanglement": "DCI disent.", "dci_completeness": "DCI compl.",
                "dci_informativeness": "DCI inform.", "sap": "SAP", "factor_vae_score": "FactorVAE score",
                "beta_vae_score": "BetaVAE score", "gaussian_tc": "Gaussian TC"}


def fmt(value: Any, key: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if "accuracy" in key:
        return f"{100 * value:.2f}%"
    if key == "recon_mse":
        return f"{value:.5f}"
    if key in FACTOR_METRICS:
        return f"{value:.3f}"
    if key in ("neg_elbo", "seconds"):
        return f"{value:.1f}"
    return str(value)


def fmt_bound(value: float, key: str, sign: bool = False) -> str:
    """An interval's end or a difference: accuracies in points, the rest as :func:`fmt` writes them."""
    if "accuracy" in key:
        return f"{100 * value:+.2f}" if sign else f"{100 * value:.2f}"
    if key == "recon_mse":
        return f"{value:+.5f}" if sign else f"{value:.5f}"
    if key in FACTOR_METRICS:
        return f"{value:+.3f}" if sign else f"{value:.3f}"
    return f"{value:+.1f}" if sign else f"{value:.1f}"


def with_interval(value: Any, low: Any, high: Any, key: str) -> str:
    text = fmt(value, key)
    if value is not None and low is not None and high is not None:
        text += f" [{fmt_bound(low, key)}, {fmt_bound(high, key)}]"
    return text


def cell(row: Row, key: str) -> str:
    """A job's number, with its bootstrap interval over the test images where it has one."""
    return with_interval(row.value(key), *row.interval(key), key)


def job_cell(row: Row, key: str) -> str:
    """Any column of a job: a setting, or a number (the accuracies with their intervals)."""
    if key in PREDICTED:
        return cell(row, key)
    if key in ("label", "status", "model", "arch", "latent", "epochs", "seed"):
        return fmt(getattr(row, key), key)
    return fmt(row.value(key), key)


def mean_std(group: Group, key: str) -> str:
    mean, std = group.mean(key), group.std(key)
    if mean is None:
        return "–"
    text = fmt(mean, key)
    if std is not None:
        text += " ± " + (f"{100 * std:.2f}" if "accuracy" in key else fmt(std, key))
    low, high = group.interval(key)
    if low is not None and high is not None:
        text += f" [{fmt_bound(low, key)}, {fmt_bound(high, key)}]"
    return text


def difference_cells(d: Difference) -> list[str]:
    key = d.metric
    interval = (f"[{fmt_bound(d.ci_low, key, True)}, {fmt_bound(d.ci_high, key, True)}]"  # type: ignore[arg-type]
                if d.ci_low is not None else "–")
    return [d.group, key, f"{fmt(d.group_mean, key)} vs {fmt(d.baseline_mean, key)}",
            fmt_bound(d.difference, key, True), interval, d.method or d.note, d.verdict]


def _markdown(head: list[str], cells: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in cells]
    return "\n".join(lines) + "\n"


def _budget_heads(budgets: tuple[str, ...]) -> list[str]:
    return [f"probe @{b.split('@')[1]}" for b in budgets]


def markdown_table(rows: tuple[Row, ...], budgets: tuple[str, ...]) -> str:
    head = ["job", "model", "arch", "latent", "epochs", "seed", "probe acc.", *_budget_heads(budgets), "kNN acc.",
            "PCA probe", "recon MSE", "neg. ELBO", "seconds", "status"]
    keys = ["label", "model", "arch", "latent", "epochs", "seed", "probe_accuracy", *budgets, "knn_accuracy",
            "pca_probe_accuracy", "recon_mse", "neg_elbo", "seconds", "status"]
    cells = []
    for row in rows:
        cells.append([job_cell(row, k) for k in keys])
        if row.status != "completed" and row.error:
            cells[-1][-1] = f"{row.status}: {row.error}"
    return _markdown(head, cells)


def group_table(groups: tuple[Group, ...], budgets: tuple[str, ...]) -> str:
    head = ["group", "model", "arch", "latent", "seeds", "probe acc.", *_budget_heads(budgets), "kNN acc.",
            "PCA probe", "recon MSE", "neg. ELBO", "seconds"]
    keys = ["probe_accuracy", *budgets, "knn_accuracy", "pca_probe_accuracy", "recon_mse", "neg_elbo", "seconds"]
    return _markdown(head, [[g.name, g.model, g.arch, str(g.latent), f"{g.n_seeds} ({g.seeds})",
                             *(mean_std(g, k) for k in keys)] for g in groups])


def factor_table(groups: list[Group], names: list[str], factors: tuple[str, ...]) -> str:
    """The factor read-outs ``factors`` of ``groups`` (named ``names``): mean ± std [t-interval] over the seeds."""
    head = ["group", "seeds", *(FACTOR_HEADS[k] for k in factors)]
    return _markdown(head, [[name, f"{g.n_seeds} ({g.seeds})", *(mean_std(g, k) for k in factors)]
                            for g, name in zip(groups, names)])


def difference_table(diffs: list[Difference]) -> str:
    return _markdown(DIFFERENCE_HEAD, [difference_cells(d) for d in diffs])


SPREAD_HEAD = ["metric", "between groups", "seed, alike in every group", "seed, group by group", "p (groups)",
               "p (seed)"]


def spread_table(spreads: list[Spread]) -> str:
    """Each metric's variance shares (percent of the sum of squares) and the F-tests' p-values."""
    def pct(v: float) -> str:
        return f"{100 * v:.0f} %"

    def p(v: float | None) -> str:
        return "–" if v is None else (f"{v:.3f}" if v >= 0.001 else "< 0.001")

    cells = [[FACTOR_HEADS.get(x.metric, x.metric), pct(x.shares.between_groups), pct(x.shares.between_seeds),
              pct(x.shares.interaction), p(x.shares.p_groups), p(x.shares.p_seeds)] for x in spreads]
    return _markdown(SPREAD_HEAD, cells)


def text_table(cols: list[str], cells: list[list[str]]) -> str:
    """Columns padded to their widest cell, for the terminal."""
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)
