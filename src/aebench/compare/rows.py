"""One run directory read into one row: what ran, its numbers, and their noise over the test images.

The files are read through :mod:`aebench.rundir`, which owns their names and their "unreadable" error;
this module checks what a comparison needs of them.  A run whose files are damaged becomes a row with
status ``skipped`` and the reason, and the others are compared.  :func:`read_row` gives a row without its
label: :func:`aebench.compare.groups.collect`, its one caller, labels every row before anyone sees it.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
from omegaconf import OmegaConf

from .. import rundir, stats
from ..config import flatten
from ..errors import first_line

log = logging.getLogger("aebench.compare")

# A run's numbers as metrics.json gives them (seconds: its total); the label budgets' probe_accuracy@N come after.
METRICS = ["probe_accuracy", "knn_accuracy", "pca_probe_accuracy", "pixel_probe_accuracy", "recon_mse", "neg_elbo",
           "seconds"]
# The factor read-outs (rundir.FACTOR_METRICS, in the order the tables show them): every run since they exist has
# gaussian_tc, which needs no factors, so a comparison shows them (gaussian_tc too) only where some run has
# FACTOR_EVIDENCE, and a report on runs without factors keeps its columns.  Directions: stats.LOWER_IS_BETTER.
FACTOR_METRICS = rundir.FACTOR_METRICS
FACTOR_EVIDENCE = tuple(k for k in FACTOR_METRICS if k != "gaussian_tc")
# The accuracies a run's saved test predictions (probe.npz) give a bootstrap interval, and the array of each.
PREDICTED = {"probe_accuracy": "test_pred", "knn_accuracy": "knn_pred"}


@dataclass(frozen=True)
class Row:
    """One job of a comparison.  Its settings are None where its config cannot be read."""

    job: str  # its name in the report: its path below the directories compared
    run_dir: Path
    status: str  # completed, failed, interrupted, incomplete (no metrics.json) or skipped (files unreadable)
    error: str = ""
    overrides: str | None = None  # its command line's overrides that identify it, comma-separated
    model: str | None = None
    arch: str | None = None
    dataset: str | None = None
    latent: int | None = None
    epochs: int | None = None
    seed: int | None = None
    precision: str | None = None  # what a completed run trained in (train.precision=auto resolved)
    group_key: str | None = None  # its config without the settings seed groups ignore, precision as resolved
    series_key: str | None = None  # the same without the latent size: the runs one line of a figure joins
    values: Mapping[str, float | None] = field(default_factory=dict)  # METRICS, probe_accuracy@N, FACTOR_METRICS
    intervals: Mapping[str, stats.Interval] = field(default_factory=dict)  # over the test images, per PREDICTED key
    predictions: Mapping[str, np.ndarray] = field(default_factory=dict)  # test_y and, per PREDICTED key, correctness
    label: str = ""  # "<job number>: <the overrides that differ between the jobs compared>"
    varying: tuple[str, ...] = ()  # those overrides

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    @property
    def number(self) -> str:
        """The job's short name: its number (with the sweep's path where several are compared)."""
        return self.label.split(": ", 1)[0]

    def value(self, key: str) -> float | None:
        return self.values.get(key)

    def interval(self, key: str) -> tuple[float | None, float | None]:
        """The bootstrap interval of ``key`` over the test images, (None, None) where there is none."""
        found = self.intervals.get(key)
        return (found.low, found.high) if found else (None, None)

    @property
    def ci_method(self) -> str:
        return " ".join(sorted({f"{stats.TEST_NOISE} ({i.n})" for i in self.intervals.values()}))

    def record(self) -> dict[str, Any]:
        """The row as summary.csv writes it."""
        out = {"job": self.job, "status": self.status, "overrides": self.overrides, "model": self.model,
               "arch": self.arch, "dataset": self.dataset, "latent": self.latent, "epochs": self.epochs,
               "seed": self.seed, **self.values, "error": self.error}
        for key, found in self.intervals.items():
            out[f"{key}_ci_low"], out[f"{key}_ci_high"] = found.low, found.high
        if self.predictions:
            out["ci_method"] = self.ci_method
        return out


def find_runs(paths: Iterable[Path]) -> list[Path]:
    """Every run directory at or below ``paths`` (a folder with .hydra/config.yaml), in a stable order, each once."""
    depth = len(rundir.CONFIG.parts) - 1  # .hydra/config.yaml lies this far below its run
    found: list[Path] = []
    for path in paths:
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"{path} is not a directory")
        candidates = [path] if (path / rundir.CONFIG).is_file() else []
        candidates += sorted(p.parents[depth] for p in path.rglob(str(rundir.CONFIG)) if p.parents[depth] != path)
        for c in candidates:
            if c.resolve() not in {f.resolve() for f in found}:
                found.append(c)
    return sorted(found, key=_job_order)


def _job_order(run: Path) -> tuple:
    num = run.name.split("_", 1)[0]
    return (str(run.parent), int(num) if num.isdigit() else math.inf, run.name)


def read_row(run: Path, base: Path | None = None) -> Row:
    """One run's row, unlabelled: its settings and numbers, status "skipped" with the reason where its files
    are damaged."""
    try:
        job = str(run.relative_to(base)) if base is not None else run.name
    except ValueError:
        job = str(run)
    row: dict[str, Any] = {"job": job if job != "." else run.name, "run_dir": run}
    try:
        settings, flat = _settings(run)
        row.update(settings)
        metrics = rundir.read_metrics(run)
        numbers = _numbers(metrics) if metrics is not None else {
            "status": "incomplete", "error": f"no {rundir.METRICS}: killed or still running"}
    except rundir.Unreadable as e:
        return Row(**row, status="skipped", error=str(e))
    precision = numbers.pop("precision_used", None)
    row.update(numbers)
    if row["status"] == "completed":
        # runs of aebench < 0.5 record no precision in metrics.json: they trained in their config's
        row["precision"] = precision or flat.get("train.precision")
        if row["precision"] is not None:
            flat["train.precision"] = row["precision"]  # auto as resolved: a bf16 CPU's runs are not an AVX2 CPU's
        row["predictions"] = _correctness(run, row["job"], row["values"])
        row["intervals"] = {key: stats.bootstrap_accuracy(row["predictions"][key])
                            for key in PREDICTED if key in row["predictions"]}
    row["group_key"] = json.dumps(flat, sort_keys=True, default=str)
    row["series_key"] = json.dumps({k: v for k, v in flat.items() if k != "latent"}, sort_keys=True, default=str)
    return Row(**row)


def _settings(run: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The fields a comparison needs from ``.hydra/config.yaml`` and the overrides, checked, and the config
    flattened without the settings seed groups ignore."""
    cfg = rundir.read_config(run)

    def need(key: str, kind: type, default: Any = None) -> Any:
        try:
            value = OmegaConf.select(cfg, key, default=default)
        except Exception as e:  # noqa: BLE001 - an interpolation that does not resolve
            raise rundir.Unreadable(f"{rundir.CONFIG}: {key}: {first_line(e)}") from None
        if value is None or isinstance(value, bool) or not isinstance(value, kind):
            raise rundir.Unreadable(f"{rundir.CONFIG}: {key} is {value!r}, not a {kind.__name__}")
        return value

    fields = {"model": need("model.name", str), "arch": need("arch.name", str, "mlp"),  # aebench < 0.3: MLPs only
              "dataset": need("data.name", str), "latent": need("latent", int), "epochs": need("epochs", int),
              "seed": need("seed", int)}
    try:
        flat = flatten(OmegaConf.to_container(cfg, resolve=False))  # type: ignore[arg-type]
    except Exception as e:  # noqa: BLE001
        raise rundir.Unreadable(f"{rundir.CONFIG}: {first_line(e)}") from None
    kept = {k: v for k, v in flat.items() if not rundir.under(k, rundir.GROUP_IGNORES)}
    overrides = [o for o in rundir.read_overrides(run)
                 if not rundir.under(rundir.override_key(o), rundir.DIRNAME_EXCLUDES)]
    return {**fields, "overrides": ",".join(overrides)}, kept


def _number(value: Any, where: str) -> float | None:
    """A metric from a file: a number, or None when absent (or not finite); anything else is damage."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise rundir.Unreadable(f"{where} is {type(value).__name__} {str(value)[:30]!r}, not a number")
    return float(value) if math.isfinite(value) else None


def _numbers(metrics: dict[str, Any]) -> dict[str, Any]:
    """What a comparison reads of metrics.json, checked: status, error, numbers, the precision used."""
    where = rundir.METRICS
    status = metrics.get("status", "incomplete")
    if not isinstance(status, str):
        raise rundir.Unreadable(f"{where}: status is {status!r}, not a word")
    error = metrics.get("error")
    out: dict[str, Any] = {"status": status, "error": error if isinstance(error, str) else ""}
    recorded = metrics.get("config")
    if isinstance(recorded, dict) and isinstance(recorded.get("dataset"), str):
        out["dataset"] = recorded["dataset"]  # folder:<name>[@<N>px]: two folders are two datasets
    values = {key: _number(metrics.get(key), f"{where}: {key}") for key in (*METRICS[:-1], *FACTOR_METRICS)}
    seconds = metrics.get("seconds")
    if seconds is not None and not isinstance(seconds, dict):
        raise rundir.Unreadable(f"{where}: seconds is not an object")
    values["seconds"] = _number((seconds or {}).get("total"), f"{where}: seconds.total")
    budgets = metrics.get("label_budget_accuracy")
    if budgets is not None and not isinstance(budgets, dict):
        raise rundir.Unreadable(f"{where}: label_budget_accuracy is not an object")
    for n, result in (budgets or {}).items():
        if n == "skipped" or (isinstance(result, dict) and "skipped" in result):  # unlabelled data, a budget too big
            continue
        if not isinstance(result, dict) or not str(n).isdigit():
            raise rundir.Unreadable(f"{where}: label_budget_accuracy[{n!r}] is not a budget's result")
        values[f"probe_accuracy@{n}"] = _number(result.get("mean"), f"{where}: label_budget_accuracy[{n!r}].mean")
    precision = metrics.get("precision")  # {used, reason}; absent before aebench 0.5
    if precision is not None and not (isinstance(precision, dict) and isinstance(precision.get("used"), str)):
        raise rundir.Unreadable(f"{where}: precision is {str(precision)[:30]!r}, not {{used, reason}}")
    out["precision_used"] = precision["used"] if precision else None
    return {**out, "values": values}


def _correctness(run: Path, job: str, values: Mapping[str, float | None]) -> dict[str, np.ndarray]:
    """Per-image correctness of the probe and the k-NN from ``probe.npz``, with ``test_y``; {} (and a warning)
    where it cannot serve."""
    try:
        arrays = rundir.read_predictions(run)
    except rundir.Unreadable as e:  # a damaged file costs its interval only
        log.warning("%s: %s: no bootstrap interval", job, e)
        return {}
    if arrays is None:
        return {}
    test_y = arrays["test_y"]
    out = {"test_y": test_y}
    for key, name in PREDICTED.items():
        pred = arrays.get(name)
        if pred is None or pred.shape != test_y.shape or values.get(key) is None:
            continue
        correct = pred == test_y
        if abs(float(correct.mean()) - values[key]) > 1e-6:  # predictions of another fit than the number reported
            log.warning("%s: %s's %s disagree with %s's %s: no bootstrap interval", job, rundir.PROBE, name,
                        rundir.METRICS, key)
            continue
        out[key] = correct
    return out
