"""Compare runs: one table and a few figures from any set of run or sweep directories.

Used two ways: by :class:`SweepSummaryCallback` at the end of every Hydra
multirun (into the sweep directory), and by the ``aebench-compare`` command on
existing directories (several sweeps, partial sweeps and single runs mix).

A run is any folder with ``.hydra/config.yaml``; its numbers come from its
``metrics.json``.  A job without one (killed hard, or still running) is listed
with status ``incomplete``; a failed job with its status and first error line;
a run whose files cannot be read (invalid JSON or YAML, wrong types) as ``skipped``
with the reason, and the others are compared.

Noise (definitions in docs/compare.md; the statistics in :mod:`aebench.stats`): a seed group's
means get a 95 % t-interval over its seeds; a single run's accuracies a 95 % bootstrap over
the test images, from its saved predictions (``probe.npz``).  ``--baseline`` sets every group
against one, with the interval of the difference (paired by seed, Welch, or a paired bootstrap
for two single runs) and a verdict: better, worse or within noise.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import logging
import math
import os
import statistics
import sys
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, ListConfig, OmegaConf

from . import atomic, rundir, stats
from .config import flatten
from .errors import first_line

log = logging.getLogger("aebench.compare")

COLUMNS = [
    "job", "status", "overrides", "model", "arch", "dataset", "latent", "epochs", "seed",
    "probe_accuracy", "knn_accuracy", "pca_probe_accuracy", "pixel_probe_accuracy",
    "recon_mse", "neg_elbo", "seconds", "error",
]
METRICS = ["probe_accuracy", "knn_accuracy", "pca_probe_accuracy", "pixel_probe_accuracy", "recon_mse", "neg_elbo",
           "seconds"]
# The accuracies a run's saved test predictions (probe.npz) give a bootstrap interval, and the array of each.
PREDICTED = {"probe_accuracy": "test_pred", "knn_accuracy": "knn_pred"}
PREDICTIONS = "probe.npz"
INTERVAL_COLUMNS = [f"{k}_ci_{end}" for k in PREDICTED for end in ("low", "high")] + ["ci_method"]
DIFFERENCE_COLUMNS = ["group", "baseline", "metric", "group_mean", "baseline_mean", "difference", "ci_low", "ci_high",
                      "n_group", "n_baseline", "method", "verdict", "note"]
# Overrides that do not change a run's results, each with every key below it (logger: logger.mlflow.*
# too). Mirrors override_dirname.exclude_keys in conf/config.yaml, where Hydra needs every key spelled out.
NOT_IDENTIFYING = {"hydra/launcher", "hparams_search", "progress", "threads", "data.root", "data.in_memory", "figures",
                   "logger"}
# Settings that do not change a run's results, beyond the seed: jobs that differ only in these form one group.
RESULT_NEUTRAL = {"seed", "threads", "device", "progress", "figures", "resume", "data.root", "data.download",
                  "data.in_memory", "logger"}

FIGURES = {
    "probe": "probe_accuracy_vs_latent.png",
    "recon": "recon_mse_vs_latent.png",
    "curves": "loss_curves.png",
    "reconstructions": "reconstructions_by_job.png",
}


class Unreadable(Exception):
    """A run's files cannot be read: it is listed as skipped, with this as the reason."""


class BaselineError(Exception):
    """``--baseline`` matches no group, or more than one: one line for the user."""


def _under(key: str, names: set[str]) -> bool:
    """Whether the dotted ``key`` is one of ``names`` or lies below one (``logger.mlflow.tracking_uri``)."""
    parts = key.split(".")
    return any(".".join(parts[:i]) in names for i in range(1, len(parts) + 1))


def find_runs(paths: Iterable[Path]) -> list[Path]:
    """Every run directory at or below ``paths``, in a stable order, each once."""
    found: list[Path] = []
    for path in paths:
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"{path} is not a directory")
        candidates = [path] if (path / ".hydra" / "config.yaml").is_file() else []
        candidates += sorted(p.parent.parent for p in path.rglob(".hydra/config.yaml") if p.parent.parent != path)
        for c in candidates:
            if c.resolve() not in {f.resolve() for f in found}:
                found.append(c)
    return sorted(found, key=_job_order)


def _job_order(run: Path) -> tuple:
    num = run.name.split("_", 1)[0]
    return (str(run.parent), int(num) if num.isdigit() else math.inf, run.name)


# ---------------------------------------------------------------- reading one run


def _number(value: Any, where: str) -> float | None:
    """A metric from a file: a number, or None when absent (or not finite); anything else is damage."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Unreadable(f"{where} is {type(value).__name__} {str(value)[:30]!r}, not a number")
    return float(value) if math.isfinite(value) else None


def _read_config(run: Path) -> tuple[dict[str, Any], list[str]]:
    """The fields a comparison needs from ``.hydra/config.yaml`` (and the overrides), checked."""
    path = run / ".hydra" / "config.yaml"
    try:
        cfg = OmegaConf.load(path)
    except Exception as e:  # noqa: BLE001 - yaml's and OmegaConf's errors have no common base worth naming
        raise Unreadable(f".hydra/config.yaml: not valid YAML ({first_line(e)})") from None
    if not isinstance(cfg, DictConfig):
        raise Unreadable(".hydra/config.yaml: not a mapping of settings")

    def need(key: str, kind: type, default: Any = None) -> Any:
        try:
            value = OmegaConf.select(cfg, key, default=default)
        except Exception as e:  # noqa: BLE001 - an interpolation that does not resolve
            raise Unreadable(f".hydra/config.yaml: {key}: {first_line(e)}") from None
        if value is None or isinstance(value, bool) or not isinstance(value, kind):
            raise Unreadable(f".hydra/config.yaml: {key} is {value!r}, not a {kind.__name__}")
        return value

    fields = {"model": need("model.name", str), "arch": need("arch.name", str, "mlp"),  # aebench < 0.3: MLPs only
              "dataset": need("data.name", str), "latent": need("latent", int), "epochs": need("epochs", int),
              "seed": need("seed", int)}
    try:
        fields["group_key"] = group_key(OmegaConf.to_container(cfg, resolve=False))
    except Exception as e:  # noqa: BLE001
        raise Unreadable(f".hydra/config.yaml: {first_line(e)}") from None
    overrides_file = run / ".hydra" / "overrides.yaml"
    overrides: Any = []
    if overrides_file.is_file():
        try:
            overrides = OmegaConf.load(overrides_file)
        except Exception as e:  # noqa: BLE001
            raise Unreadable(f".hydra/overrides.yaml: not valid YAML ({first_line(e)})") from None
        if not isinstance(overrides, ListConfig) or not all(isinstance(o, str) for o in overrides):
            raise Unreadable(".hydra/overrides.yaml: not a list of overrides")
    return fields, [o for o in overrides if not _under(o.split("=", 1)[0], NOT_IDENTIFYING)]


def _read_metrics(run: Path) -> dict[str, Any] | None:
    """metrics.json's numbers, checked; None where there is no file (killed or still running)."""
    path = run / "metrics.json"
    if not path.is_file():
        return None
    try:
        metrics = json.loads(path.read_text())
    except (ValueError, OSError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise Unreadable(f"metrics.json: not valid JSON ({first_line(e)})") from None
    if not isinstance(metrics, dict):
        raise Unreadable(f"metrics.json: a JSON {type(metrics).__name__}, not an object")
    status = metrics.get("status", "incomplete")
    if not isinstance(status, str):
        raise Unreadable(f"metrics.json: status is {status!r}, not a word")
    error = metrics.get("error")
    out: dict[str, Any] = {"status": status, "error": error if isinstance(error, str) else ""}
    recorded = metrics.get("config")
    if isinstance(recorded, dict) and isinstance(recorded.get("dataset"), str):
        out["dataset"] = recorded["dataset"]  # folder:<name>[@<N>px]: two folders are two datasets
    for key in METRICS[:-1]:
        out[key] = _number(metrics.get(key), f"metrics.json: {key}")
    seconds = metrics.get("seconds")
    if seconds is not None and not isinstance(seconds, dict):
        raise Unreadable("metrics.json: seconds is not an object")
    out["seconds"] = _number((seconds or {}).get("total"), "metrics.json: seconds.total")
    budgets = metrics.get("label_budget_accuracy")
    if budgets is not None and not isinstance(budgets, dict):
        raise Unreadable("metrics.json: label_budget_accuracy is not an object")
    for n, result in (budgets or {}).items():
        if n == "skipped" or (isinstance(result, dict) and "skipped" in result):  # unlabelled data, a budget too big
            continue
        if not isinstance(result, dict) or not str(n).isdigit():
            raise Unreadable(f"metrics.json: label_budget_accuracy[{n!r}] is not a budget's result")
        out[f"probe_accuracy@{n}"] = _number(result.get("mean"), f"metrics.json: label_budget_accuracy[{n!r}].mean")
    return out


def _read_predictions(run: Path, row: dict[str, Any]) -> dict[str, np.ndarray] | None:
    """Per-image correctness of the probe and the k-NN from ``probe.npz``; None (and a note) where it cannot serve."""
    path = run / PREDICTIONS
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in ("test_y", *PREDICTED.values()) if k in f.files}
            fmt = int(f["format"]) if "format" in f.files else None
    except Exception as e:  # noqa: BLE001 - a damaged file costs its interval only
        log.warning("%s: %s unreadable (%s): no bootstrap interval", row["job"], PREDICTIONS, first_line(e))
        return None
    test_y = arrays.get("test_y")
    if fmt != 1 or test_y is None or test_y.ndim != 1 or test_y.dtype.kind not in "iu":
        log.warning("%s: %s is not format 1 with integer test_y: no bootstrap interval", row["job"], PREDICTIONS)
        return None
    out = {"test_y": test_y}
    for key, name in PREDICTED.items():
        pred = arrays.get(name)
        if pred is None or pred.shape != test_y.shape or row.get(key) is None:
            continue
        correct = pred == test_y
        if abs(float(correct.mean()) - row[key]) > 1e-6:  # predictions of another fit than the number reported
            log.warning("%s: %s's %s disagree with metrics.json's %s: no bootstrap interval", row["job"], PREDICTIONS,
                        name, key)
            continue
        out[key] = correct
    return out


def load_row(run: Path, base: Path | None = None) -> dict[str, Any]:
    """One run's row: its settings and numbers, ``status`` "skipped" with the reason where its files are damaged."""
    try:
        job = str(run.relative_to(base)) if base is not None else run.name
    except ValueError:
        job = str(run)
    row: dict[str, Any] = {"job": job if job != "." else run.name, "run_dir": str(run), "overrides": None,
                           "model": None, "arch": None, "dataset": None, "latent": None, "epochs": None, "seed": None}
    try:
        fields, overrides = _read_config(run)
        row.update(fields, overrides=",".join(overrides))
        metrics = _read_metrics(run)
    except Unreadable as e:
        return {**row, "status": "skipped", "error": str(e), "group_key": None}
    if metrics is None:
        metrics = {"status": "incomplete", "error": "no metrics.json: killed or still running"}
    row.update(metrics)
    if row["status"] == "completed":
        predictions = _read_predictions(run, row)
        if predictions:
            row["_predictions"] = predictions
            methods = set()
            for key in PREDICTED:
                if key in predictions:
                    interval = stats.bootstrap_accuracy(predictions[key])
                    row[f"{key}_ci_low"], row[f"{key}_ci_high"] = interval.low, interval.high
                    methods.add(f"{stats.TEST_NOISE} ({interval.n})")
            row["ci_method"] = " ".join(sorted(methods))
    return row


def group_key(config: dict[str, Any]) -> str:
    """What a run's results depend on: its config without the seed and the result-neutral settings."""
    flat = flatten(config)
    kept = {k: v for k, v in flat.items() if not _under(k, RESULT_NEUTRAL)}
    return json.dumps(kept, sort_keys=True, default=str)


def budget_columns(rows: list[dict[str, Any]]) -> list[str]:
    """``probe_accuracy@N`` for every label budget any row has, smallest first."""
    found = {k for r in rows for k in r if k.startswith("probe_accuracy@")}
    return sorted(found, key=lambda k: int(k.split("@")[1]))


def _job_prefix(row: dict[str, Any]) -> str:
    """The job's short name: its number (with the sweep's path where several are compared)."""
    return row["label"].split(": ", 1)[0] if "label" in row else row["job"]


def group_by_seed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per group of completed jobs that differ only in their seed: mean, std, count and the 95 %
    t-interval of each metric's mean over the seeds (where two or more have it)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["status"] == "completed":
            groups.setdefault(r["group_key"], []).append(r)
    metrics = METRICS + budget_columns(rows)
    out = []
    for members in groups.values():
        first = members[0]
        seeds = [m["seed"] for m in members]
        varying = [o for o in first["overrides"].split(",") if o and not o.startswith("seed=")
                   and o in first.get("varying", [])]
        g = {"group": " ".join(varying) or f"{first['model']} {first['arch']} latent={first['latent']}",
             "model": first["model"], "arch": first["arch"], "dataset": first["dataset"], "latent": first["latent"],
             "epochs": first["epochs"], "n_seeds": len(members), "seeds": " ".join(map(str, sorted(seeds))),
             "jobs": " ".join(Path(m["job"]).name.split("_", 1)[0] for m in members),
             "_members": members, "_key": first["group_key"]}
        methods = set()
        for key in metrics:
            values = [m[key] for m in members if m.get(key) is not None]
            g[f"{key}_mean"] = statistics.fmean(values) if values else None
            g[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else None
            interval = stats.t_interval(values)
            g[f"{key}_ci_low"], g[f"{key}_ci_high"] = (interval.low, interval.high) if interval else (None, None)
            if interval:
                methods.add(f"{stats.SEED_NOISE} (n={interval.n})")
        g["interval"] = " ".join(sorted(methods))
        out.append(g)
    return out


def label_jobs(rows: list[dict[str, Any]]) -> None:
    """Short names for tables and figures: the job number and the overrides that differ between jobs."""
    readable = [r for r in rows if r["overrides"] is not None]
    common = set.intersection(*(set(r["overrides"].split(",")) for r in readable)) if readable else set()
    for r in rows:
        num = Path(r["job"]).name.split("_", 1)[0]
        varying = [o for o in (r["overrides"] or "").split(",") if o and o not in common]
        r["varying"] = varying
        prefix = str(Path(r["job"]).parent / num) if str(Path(r["job"]).parent) != "." else num
        label = f"{prefix}: {' '.join(varying)}" if varying else (prefix if num.isdigit() else r["job"])
        r["label"] = label if len(label) <= 80 else label[:79] + "…"


def collect(paths: list[Path], warn: bool = True) -> list[dict[str, Any]]:
    """Every run below ``paths``, read and labelled (unreadable ones as skipped, each with a warning
    unless ``warn`` is false: :func:`warn_skipped` gives them later)."""
    runs = find_runs(paths)
    # jobs are named relative to what the given directories share, so two sweeps' "0_latent=2" differ
    base = Path(paths[0]) if len(paths) == 1 else Path(os.path.commonpath([str(Path(p).resolve()) for p in paths]))
    rows = [load_row(r.resolve() if len(paths) > 1 else r, base) for r in runs]
    label_jobs(rows)
    if warn:
        warn_skipped(rows)
    return rows


def warn_skipped(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        if r["status"] == "skipped":
            log.warning("skipped %s: %s", r["job"], r["error"])


# ---------------------------------------------------------------- differences


def _values(group: dict[str, Any], key: str) -> list[tuple[int, float]]:
    return [(m["seed"], m[key]) for m in group["_members"] if m.get(key) is not None]


def difference(group: dict[str, Any], baseline: dict[str, Any], key: str) -> dict[str, Any] | None:
    """``group`` - ``baseline`` in ``key`` with its 95 % interval and a verdict; None where either lacks the metric.

    Both with several seeds: paired t over the seeds when both have the same seeds, else Welch. One run
    against several seeds: the run taken to share their spread. One run each: for the accuracies a paired
    bootstrap over the test images (from both runs' saved predictions, on the same test labels), else
    no interval.
    """
    a, b = _values(group, key), _values(baseline, key)
    if not a or not b:
        return None
    xa, xb = [v for _, v in a], [v for _, v in b]
    out = {"group": group["group"], "baseline": baseline["group"], "metric": key, "group_mean": statistics.fmean(xa),
           "baseline_mean": statistics.fmean(xb), "n_group": len(xa), "n_baseline": len(xb), "note": ""}
    out["difference"] = out["group_mean"] - out["baseline_mean"]
    interval, note = None, ""
    if group["dataset"] != baseline["dataset"]:
        note = f"another dataset ({group['dataset']} against {baseline['dataset']}): not compared"
    elif len(a) > 1 and len(b) > 1:
        seeds_a, seeds_b = sorted(s for s, _ in a), sorted(s for s, _ in b)
        if seeds_a == seeds_b and len(set(seeds_a)) == len(seeds_a):
            interval = stats.paired_difference([v for _, v in sorted(a)], [v for _, v in sorted(b)])
        else:
            interval = stats.welch_difference(xa, xb)
    elif len(a) > 1 or len(b) > 1:
        if len(a) == 1:
            interval = stats.single_vs_group_difference(xa[0], xb)
        else:
            flipped = stats.single_vs_group_difference(xb[0], xa)
            interval = stats.Interval(-flipped.estimate, -flipped.high, -flipped.low, flipped.method, flipped.n,
                                      flipped.df)
    elif key in PREDICTED and group["n_seeds"] == baseline["n_seeds"] == 1:
        pa = group["_members"][0].get("_predictions") or {}
        pb = baseline["_members"][0].get("_predictions") or {}
        if key not in pa or key not in pb:
            note = f"one run each and no saved test predictions ({PREDICTIONS}) for both: no interval"
        elif not np.array_equal(pa["test_y"], pb["test_y"]):
            note = "one run each, on different test sets (test labels differ): no paired interval"
        else:
            interval = stats.paired_bootstrap_accuracy(pa[key], pb[key])
    else:
        note = "one run each: no noise estimate (run several seeds)"
    out.update(ci_low=interval.low if interval else None, ci_high=interval.high if interval else None,
               method=interval.method if interval else "", verdict=stats.verdict(interval, key), note=note)
    return out


def difference_metrics(rows: list[dict[str, Any]]) -> list[str]:
    return ["probe_accuracy", *budget_columns(rows), "knn_accuracy", "recon_mse", "neg_elbo", "seconds"]


def resolve_baseline(spec: str, rows: list[dict[str, Any]], groups: list[dict[str, Any]]) -> dict[str, Any]:
    """The one group ``spec`` names: a group's name, or a job's label, number or directory name.

    Raises :class:`BaselineError` (one line, with the candidates) when it names none or several."""
    by_key = {g["_key"]: g for g in groups}
    matched: dict[str, dict[str, Any]] = {g["_key"]: g for g in groups if g["group"] == spec}
    not_completed = []
    for r in rows:
        if spec in (r["job"], r["label"], _job_prefix(r), Path(r["job"]).name):
            if r["status"] == "completed":
                matched[r["group_key"]] = by_key[r["group_key"]]
            else:
                not_completed.append(f"{r['label']} ({r['status']})")

    def describe(g: dict[str, Any]) -> str:
        return f"'{g['group']}' (jobs {' '.join(_job_prefix(m) for m in g['_members'])})"

    if len(matched) == 1:
        return next(iter(matched.values()))
    if len(matched) > 1:
        raise BaselineError(f"--baseline {spec!r} is ambiguous: it matches {len(matched)} groups: "
                            f"{'; '.join(describe(g) for g in matched.values())}; give one of their job numbers")
    why = f" (it names {', '.join(not_completed)}, which did not complete)" if not_completed else ""
    raise BaselineError(f"--baseline {spec!r} matches no group{why}; the groups: "
                        f"{'; '.join(describe(g) for g in groups) or 'none (no completed job)'}")


def differences(rows: list[dict[str, Any]], groups: list[dict[str, Any]], baseline: dict[str, Any]) -> list[dict]:
    """Every other group against ``baseline``, metric by metric."""
    out = []
    for g in groups:
        if g is baseline:
            continue
        for key in difference_metrics(rows):
            d = difference(g, baseline, key)
            if d is not None:
                out.append(d)
    return out


# ---------------------------------------------------------------- formatting


def _fmt(value: Any, key: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if "accuracy" in key:
        return f"{100 * value:.2f}%"
    if key == "recon_mse":
        return f"{value:.5f}"
    if key in ("neg_elbo", "seconds"):
        return f"{value:.1f}"
    return str(value)


def _fmt_bound(value: float, key: str, sign: bool = False) -> str:
    """An interval's end or a difference: accuracies in points, the rest as :func:`_fmt` writes them."""
    if "accuracy" in key:
        return f"{100 * value:+.2f}" if sign else f"{100 * value:.2f}"
    if key == "recon_mse":
        return f"{value:+.5f}" if sign else f"{value:.5f}"
    return f"{value:+.1f}" if sign else f"{value:.1f}"


def _with_interval(value: Any, low: Any, high: Any, key: str) -> str:
    text = _fmt(value, key)
    if value is not None and low is not None and high is not None:
        text += f" [{_fmt_bound(low, key)}, {_fmt_bound(high, key)}]"
    return text


def _cell(row: dict[str, Any], key: str) -> str:
    """A job's number, with its bootstrap interval over the test images where it has one."""
    return _with_interval(row.get(key), row.get(f"{key}_ci_low"), row.get(f"{key}_ci_high"), key)


def _mean_std(group: dict[str, Any], key: str) -> str:
    mean, std = group.get(f"{key}_mean"), group.get(f"{key}_std")
    if mean is None:
        return "–"
    text = _fmt(mean, key)
    if std is not None:
        text += " ± " + (f"{100 * std:.2f}" if "accuracy" in key else _fmt(std, key))
    low, high = group.get(f"{key}_ci_low"), group.get(f"{key}_ci_high")
    if low is not None and high is not None:
        text += f" [{_fmt_bound(low, key)}, {_fmt_bound(high, key)}]"
    return text


def _difference_cells(d: dict[str, Any]) -> list[str]:
    key = d["metric"]
    interval = (f"[{_fmt_bound(d['ci_low'], key, True)}, {_fmt_bound(d['ci_high'], key, True)}]"
                if d["ci_low"] is not None else "–")
    return [d["group"], key, f"{_fmt(d['group_mean'], key)} vs {_fmt(d['baseline_mean'], key)}",
            _fmt_bound(d["difference"], key, True), interval, d["method"] or d["note"], d["verdict"]]


DIFFERENCE_HEAD = ["group", "metric", "group vs baseline", "difference", "95 % interval", "method", "verdict"]


def markdown_table(rows: list[dict[str, Any]], budgets: list[str]) -> str:
    head = ["job", "model", "arch", "latent", "epochs", "seed", "probe acc.", *(f"probe @{b.split('@')[1]}" for b in budgets),
            "kNN acc.", "PCA probe", "recon MSE", "neg. ELBO", "seconds", "status"]
    keys = ["label", "model", "arch", "latent", "epochs", "seed", "probe_accuracy", *budgets, "knn_accuracy",
            "pca_probe_accuracy", "recon_mse", "neg_elbo", "seconds", "status"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [_cell(row, k) if k in PREDICTED else _fmt(row.get(k), k) for k in keys]
        if row["status"] != "completed" and row.get("error"):
            cells[-1] = f"{row['status']}: {row['error']}"
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def group_table(groups: list[dict[str, Any]], budgets: list[str]) -> str:
    head = ["group", "model", "arch", "latent", "seeds", "probe acc.", *(f"probe @{b.split('@')[1]}" for b in budgets),
            "kNN acc.", "PCA probe", "recon MSE", "neg. ELBO", "seconds"]
    keys = ["probe_accuracy", *budgets, "knn_accuracy", "pca_probe_accuracy", "recon_mse", "neg_elbo", "seconds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g in groups:
        cells = [g["group"], g["model"], g["arch"], str(g["latent"]), f"{g['n_seeds']} ({g['seeds']})",
                 *(_mean_std(g, k) for k in keys)]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def difference_table(diffs: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(DIFFERENCE_HEAD) + " |", "|" + "---|" * len(DIFFERENCE_HEAD)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in _difference_cells(d)) + " |" for d in diffs]
    return "\n".join(lines) + "\n"


def _series_label(row: dict[str, Any], varying: list[str]) -> str:
    return " ".join([row["model"].upper(), row["arch"]] + [f"{k}={row[k]}" for k in varying])


def _name(group: dict[str, Any], several_seeds: bool) -> str:
    """A group's name where seeds repeat, else its one job's label."""
    return group["group"] if several_seeds or group["n_seeds"] > 1 else group["_members"][0]["label"]


def best_probe_lines(groups: list[dict[str, Any]], several_seeds: bool) -> str:
    """The best linear probe (per dataset), and which others are within noise of it."""
    scored = [g for g in groups if g.get("probe_accuracy_mean") is not None]
    if not scored:
        return ("\nBest linear probe: – (no completed job has a probe accuracy: the probe is skipped on "
                "unlabelled data).\n") if groups else ""
    datasets = list(dict.fromkeys(g["dataset"] for g in scored))
    lines = []
    for dataset in datasets:
        members = [g for g in scored if g["dataset"] == dataset]
        best = max(members, key=lambda g: g["probe_accuracy_mean"])
        where = f" on {dataset}" if len(datasets) > 1 else ""
        value = (_mean_std(best, "probe_accuracy") + f" over {best['n_seeds']} seed(s)" if several_seeds
                 else _cell(best["_members"][0], "probe_accuracy"))
        line = (f"\nBest linear probe{where}: **{_name(best, several_seeds)}** ({best['model']}, {best['arch']}, "
                f"latent {best['latent']}) at {value}.")
        close, unknown = [], []
        for g in members:
            if g is best:
                continue
            d = difference(g, best, "probe_accuracy")
            if d["verdict"] == "within noise":
                close.append(f"{_name(g, several_seeds)} ({_fmt_bound(d['difference'], 'probe_accuracy', True)} "
                             f"[{_fmt_bound(d['ci_low'], 'probe_accuracy', True)}, "
                             f"{_fmt_bound(d['ci_high'], 'probe_accuracy', True)}] points)")
            elif d["verdict"] == "–":
                unknown.append(_name(g, several_seeds))
        if close:
            line += (" **Within noise of it** (the 95 % interval of the difference to the best contains 0): "
                     + "; ".join(close) + ".")
        elif len(members) > 1 and not unknown:
            line += " Every other is below it beyond the noise (95 % interval of the difference)."
        if unknown:
            line += (f" No noise estimate against {len(unknown)} other(s) (one run each, without saved test "
                     f"predictions on the same test images): {', '.join(unknown[:5])}{' …' if len(unknown) > 5 else ''}.")
        lines.append(line + "\n")
    return "".join(lines)


GROUP_COLUMNS = ["group", "model", "arch", "dataset", "latent", "epochs", "n_seeds", "seeds", "jobs", "interval"]


def write_report(paths: list[Path], out: Path, reconstructions: bool = True, baseline: str | None = None,
                 rows: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Write summary.csv, summary.md (and groups.csv where jobs repeat over seeds, differences.csv with a
    ``baseline``) and the figures into ``out``.  An unknown or ambiguous baseline raises
    :class:`BaselineError` before anything is written."""
    from . import plots

    rows = collect(paths) if rows is None else rows
    budgets = budget_columns(rows)
    groups = group_by_seed(rows)
    base_group = resolve_baseline(baseline, rows, groups) if baseline is not None else None
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_csv(out / "summary.csv", rows, COLUMNS[:-1] + budgets + INTERVAL_COLUMNS + ["error"])
    several_seeds = any(g["n_seeds"] > 1 for g in groups)
    if several_seeds:
        columns = [f"{k}_{s}" for k in METRICS + budgets for s in ("mean", "std", "ci_low", "ci_high")]
        atomic.write_csv(out / "groups.csv", groups, GROUP_COLUMNS + columns)
    done = [r for r in rows if r["status"] == "completed"]
    skipped = [r for r in rows if r["status"] == "skipped"]
    failed = [r for r in rows if r["status"] not in ("completed", "skipped")]
    text = [f"# aebench comparison\n\n{len(rows)} job(s): {len(done)} completed, {len(failed)} not completed"
            + (f", {len(skipped)} skipped (files unreadable: {'; '.join(r['job'] + ': ' + r['error'] for r in skipped)})"
               if skipped else "") + ".\n"]
    if several_seeds:
        text.append(f"\n## Across seeds\n\n{len(groups)} group(s) of jobs that differ only in their seed "
                    "(and in settings that do not change results): mean ± standard deviation over the seeds "
                    f"(accuracy spreads in points) [{stats.SEED_NOISE}: the interval of the mean, Student t with "
                    "n − 1 degrees of freedom, n = the number of seeds], per group; every job below. "
                    "Also in groups.csv.\n\n")
        text.append(group_table(groups, budgets))
        text.append("\n## Every job\n")
    text.append("\n" + markdown_table(rows, budgets))
    if any(r.get("ci_method") for r in rows):
        text.append(f"\n[…] beside a job's probe and kNN accuracy: {stats.TEST_NOISE} (percentile bootstrap, "
                    f"{stats.RESAMPLES} resamples, from the run's saved predictions; – where it has none).\n")
    text.append(best_probe_lines(groups, several_seeds))
    if base_group is not None:
        diffs = differences(rows, groups, base_group)
        atomic.write_csv(out / "differences.csv", diffs, DIFFERENCE_COLUMNS)
        text.append(f"\n## Against the baseline: {_name(base_group, several_seeds)}\n\n"
                    "Each group minus the baseline (accuracies in points), with the 95 % interval of the difference: "
                    "paired t over seeds where both have the same seeds, Welch's t otherwise, a paired bootstrap over "
                    "the test images for two single runs. better / worse: the interval excludes 0 (for recon MSE, "
                    "neg. ELBO and seconds lower is better); within noise: it contains 0. Also in differences.csv.\n\n")
        text.append(difference_table(diffs) if diffs else "No other group to compare.\n")
    text.append("\nColumns: probe acc. = linear probe on the frozen codes (test accuracy); probe @N = the same probe "
                "fitted on N labelled train codes (mean over class-balanced draws); kNN acc. = k-nearest "
                "neighbours on the same codes; PCA probe = the same probe on a PCA of the pixels to the same size; "
                "recon MSE = test mean squared error per pixel; neg. ELBO = test BCE summed over pixels + KL, nats "
                "per image (VAE only); seconds = wall time of the whole run.\n")
    figures = _figures(done, groups, out, reconstructions, plots)
    if figures:
        text.append("\n" + "\n".join(f"![{name}]({name})" for name in figures) + "\n")
    atomic.write_text(out / "summary.md", "".join(text))
    return rows


def figure_points(groups: list[dict[str, Any]], key: str, varying: list[str]) -> tuple[dict[str, dict], str | None]:
    """What a comparison figure draws for ``key``: ``{series: {latent: (mean, low, high)}}`` and the noise
    the bars show.  Never two kinds on one axis: where any group has several seeds the bars are the
    t-intervals over seeds (single runs get none); else single runs get their bootstrap over test images."""
    several = any(g.get(f"{key}_ci_low") is not None for g in groups)
    series: dict[str, dict[int, tuple]] = {}
    drawn = False
    for g in groups:
        mean = g.get(f"{key}_mean")
        if mean is None:
            continue
        if several:
            low, high = g.get(f"{key}_ci_low"), g.get(f"{key}_ci_high")
        else:
            member = g["_members"][0]
            low, high = member.get(f"{key}_ci_low"), member.get(f"{key}_ci_high")
        drawn = drawn or low is not None
        series.setdefault(_series_label(g, varying), {})[g["latent"]] = (mean, low, high)
    noise = (stats.SEED_NOISE if several else stats.TEST_NOISE) if drawn else None
    return series, noise


def _figures(done: list[dict[str, Any]], groups: list[dict[str, Any]], out: Path, reconstructions: bool,
             plots: Any) -> list[str]:
    """Comparison figures; a point is a group's mean over its seeds, its interval as an error bar."""
    written: list[str] = []
    if not done:
        return written
    # series labels carry the dataset where several are compared, so no line mixes two datasets
    varying = [k for k in ("dataset", "epochs") if len({r[k] for r in done}) > 1]
    refs: dict[str, dict[int, float]] = {}
    several_datasets = len({r["dataset"] for r in done}) > 1
    for g in groups:
        # the baselines depend on the data (and the size), never on the model or its training
        suffix = f", {g['dataset']}" if several_datasets else ""
        if g.get("pca_probe_accuracy_mean") is not None:
            refs.setdefault(f"PCA probe (same size){suffix}", {})[g["latent"]] = g["pca_probe_accuracy_mean"]
        if g.get("pixel_probe_accuracy_mean") is not None:
            refs.setdefault(f"raw-pixel probe{suffix}", {}).setdefault(0, g["pixel_probe_accuracy_mean"])
    probe_series, probe_noise = figure_points(groups, "probe_accuracy", varying)
    recon_series, recon_noise = figure_points(groups, "recon_mse", varying)
    if probe_series:  # none where every run's data is unlabelled
        title = "Linear probe on frozen codes vs latent size" + (" (datasets apart)" if several_datasets else "")
        plots.metric_vs_latent(probe_series, refs, "linear-probe test accuracy (%)", title, out / FIGURES["probe"],
                               percent=True, noise=probe_noise)
        written.append(FIGURES["probe"])
    if recon_series:
        plots.metric_vs_latent(recon_series, {}, "test MSE per pixel", "Reconstruction error vs latent size",
                               out / FIGURES["recon"], noise=recon_noise)
        written.append(FIGURES["recon"])

    curves = {}
    for r in done:
        history = Path(r["run_dir"]) / "history.csv"
        if history.is_file():
            try:
                with open(history) as f:
                    hist = list(csv.DictReader(f))
                curves[r["label"]] = ([int(h["epoch"]) for h in hist], [float(h["test_recon_mse"]) for h in hist])
            except (OSError, ValueError, KeyError, TypeError) as e:  # a damaged history costs its curve only
                log.warning("%s: history.csv unreadable (%s): no loss curve", r["job"], first_line(e))
    if curves:
        plots.all_loss_curves(curves, "test MSE per pixel", out / FIGURES["curves"])
        written.append(FIGURES["curves"])

    if reconstructions:
        try:
            originals, recon_rows, ink = _reconstruct_by_job(done)
        except Exception as e:  # noqa: BLE001 - a missing checkpoint or dataset only costs this figure
            log.warning("skipped %s: %s", FIGURES["reconstructions"], first_line(e))
        else:
            if recon_rows:
                plots.reconstruction_rows(originals, recon_rows, out / FIGURES["reconstructions"], ink=ink)
                written.append(FIGURES["reconstructions"])
    return written


def _reconstruct_by_job(done: list[dict[str, Any]]) -> tuple[Any, dict[str, Any], bool]:
    """The first test image of each class (the first ten test images where there are no labels), reconstructed
    by every job's final model; jobs on data other than the first job's are left out (their images differ)."""
    import torch

    from . import data, pipeline

    originals = None
    first_data: dict[str, Any] | None = None
    rows = {}
    ink = True
    for r in sorted(done, key=lambda r: (r["latent"], r["model"], r["arch"])):
        ckpt_path = Path(r["run_dir"]) / pipeline.CHECKPOINT
        if not ckpt_path.is_file():
            continue
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        cfg = OmegaConf.create(ckpt["config"])
        cfg.data = data.as_config(cfg.data)  # runs of older versions lack the newer data.* settings
        data_cfg = OmegaConf.to_container(cfg.data)
        data_cfg.pop("root", None), data_cfg.pop("download", None)
        if first_data is None:
            first_data = data_cfg
            arrays = data.open_arrays(cfg.data, data.resolve_root(cfg.data.root), ("test",))
            x_u8, y = arrays.splits["test"]
            first = [int(np.flatnonzero(y == c)[0]) for c in range(len(arrays.classes))] if y is not None \
                else list(range(min(10, len(x_u8))))
            shape, ink = arrays.image_shape, arrays.ink
            x = data.base.to_float(np.ascontiguousarray(x_u8[first]).reshape(len(first), -1), torch.device("cpu"))
            originals = pipeline.as_images(x, shape)
        elif data_cfg != first_data:
            log.info("reconstructions figure: %s left out (other data than the first job's)", r["label"])
            continue
        model = pipeline.build_model(cfg, shape)
        model.load_state_dict(ckpt["model"])
        model.eval()
        with torch.no_grad():
            recon = pipeline.as_images(model.reconstruct(x), shape)
        name = f"{r['model'].upper()} ({r['arch']}), latent {r['latent']}"
        rows[name if name not in rows else f"{name} ({r['label']})"] = recon
    return originals, rows, ink


def format_table(rows: list[dict[str, Any]], baseline: str | None = None) -> str:
    """A plain-text table for the terminal: every job, then the seed groups where jobs repeat over seeds,
    then the differences to ``baseline`` where one is given."""
    budgets = budget_columns(rows)
    cols = ["label", "model", "arch", "latent", "probe_accuracy", *budgets, "knn_accuracy", "pca_probe_accuracy",
            "recon_mse", "neg_elbo", "seconds", "status"]
    text = _text_table(cols, [[_cell(r, c) if c in PREDICTED else _fmt(r.get(c), c) for c in cols] for r in rows])
    if any(r.get("ci_method") for r in rows):
        text += f"\n[…]: {stats.TEST_NOISE}"
    groups = group_by_seed(rows)
    several_seeds = any(g["n_seeds"] > 1 for g in groups)
    if several_seeds:
        gcols = ["group", "n_seeds", "probe_accuracy", *budgets, "knn_accuracy", "recon_mse", "neg_elbo"]
        cells = [[g["group"], str(g["n_seeds"]), *(_mean_std(g, c) for c in gcols[2:])] for g in groups]
        text += f"\n\nacross seeds (mean ± std) [{stats.SEED_NOISE}]:\n" + _text_table(gcols, cells)
    if baseline is not None:
        base = resolve_baseline(baseline, rows, groups)
        diffs = differences(rows, groups, base)
        text += (f"\n\nagainst the baseline {_name(base, several_seeds)} (group − baseline, accuracies in points; "
                 "95 % interval; better / worse: it excludes 0, within noise: it contains 0):\n")
        text += _text_table(DIFFERENCE_HEAD, [_difference_cells(d) for d in diffs]) if diffs else "no other group"
    return text


def _text_table(cols: list[str], cells: list[list[str]]) -> str:
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


# Set by the callback in the process that runs the sweep; aebench's main() turns it into the exit code.
sweep_problem: str | None = None


class SweepSummaryCallback(Callback):
    """Hydra callback: at the end of a multirun, compare its jobs inside the sweep directory.

    With logger=mlflow the sweep is also one MLflow parent run (:mod:`aebench.tracking`): made
    before the first job, nesting every job's run, holding the comparison at the end.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from . import tracking
        from .errors import AebenchError

        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            tracking.start_sweep(config, sweep_dir)
        except AebenchError as e:
            # A logger that cannot start refuses the sweep before its first job.  Hydra would turn an
            # exception raised here into a warning and run the jobs anyway, so end the process now.
            try:
                sweep_dir.rmdir()  # only if still empty
            except OSError:
                pass
            print(f"aebench: error: {e}", file=sys.stderr)
            sys.exit(AebenchError.EXIT_CODE)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global sweep_problem
        from . import tracking

        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        try:
            rows = write_report([sweep_dir], sweep_dir)
            print(format_table(rows))
        except Exception as e:  # noqa: BLE001 - the jobs' own results are safe; a failed summary must not hide them
            log.error("the sweep's comparison failed: %s", first_line(e))
            tracking.end_sweep(sweep_dir, completed=False)
            sweep_problem = (f"the comparison of the sweep failed ({first_line(e)}); every job's results are in its "
                             f"own directory under {sweep_dir}; try: aebench-compare {sweep_dir}")
            return
        print(f"summary: {sweep_dir / 'summary.md'}")
        bad = [r for r in rows if r["status"] != "completed"]
        tracking.end_sweep(sweep_dir, completed=not bad)
        if bad:
            sweep_problem = (f"{len(bad)} of {len(rows)} job(s) did not complete ({'; '.join(r['label'] for r in bad)}); "
                             f"the others' results and the reasons are in {sweep_dir / 'summary.md'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="aebench-compare",
        description="Compare aebench runs: summary.csv, summary.md and figures from run or sweep directories.",
    )
    parser.add_argument("dirs", nargs="+", type=Path, help="run or sweep directories (mixing works)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write the report (default: the directory itself when one is given, "
                             "else comparisons/<date>_<time>)")
    parser.add_argument("--baseline", default=None, metavar="GROUP_OR_JOB",
                        help="set every group against this one (a group's name, or a job's number, label or "
                             "directory name): the difference, its 95 %% interval and better / worse / within noise")
    parser.add_argument("--no-reconstructions", action="store_true", help="skip the figure that reloads every model")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    def fail(message: str) -> None:
        print(f"aebench-compare: error: {message}", file=sys.stderr)
        sys.exit(2)

    missing = [str(d) for d in args.dirs if not d.is_dir()]
    if missing:
        fail(f"not a directory: {', '.join(missing)}; give run or sweep directories")
    try:
        rows = collect(args.dirs, warn=False)
    except OSError as e:
        fail(str(e))
    if not rows:
        fail(f"no aebench runs (folders with .hydra/config.yaml) under {', '.join(map(str, args.dirs))}")
    if all(r["status"] == "skipped" for r in rows):
        fail(f"nothing to compare: every run's files are unreadable ({'; '.join(r['job'] + ': ' + r['error'] for r in rows)})")
    warn_skipped(rows)
    if args.out is not None:
        out = args.out
    elif len(args.dirs) == 1:
        out = args.dirs[0]
    else:
        out = None
    try:
        if args.baseline is not None:
            resolve_baseline(args.baseline, rows, group_by_seed(rows))  # refuse before anything is written
        if out is None:
            out = Path(rundir.unique_dir(f"comparisons/{datetime.datetime.now():%Y-%m-%d_%H-%M-%S}"))
        write_report(list(args.dirs), out, reconstructions=not args.no_reconstructions, baseline=args.baseline,
                     rows=rows)
        print(format_table(rows, args.baseline))
    except BaselineError as e:
        fail(str(e))
    print(f"report: {out / 'summary.md'}")
    if not any(r["status"] == "completed" for r in rows):
        fail(f"nothing to compare: no job completed (the report lists them: {out / 'summary.md'})")


if __name__ == "__main__":
    main()
