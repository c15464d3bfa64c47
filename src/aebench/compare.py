"""Compare runs: one table and a few figures from any set of run or sweep directories.

Used two ways: by :class:`SweepSummaryCallback` at the end of every Hydra
multirun (into the sweep directory), and by the ``aebench-compare`` command on
existing directories (several sweeps, partial sweeps and single runs mix).

A run is any folder with ``.hydra/config.yaml``; its numbers come from its
``metrics.json``.  A job without one (killed hard, or still running) is listed
with status ``incomplete``; a failed job with its status and first error line.
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
from omegaconf import DictConfig, OmegaConf

from . import atomic, rundirs
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
# Overrides that do not change a run's results, each with every key below it (logger: logger.mlflow.*
# too). Mirrors override_dirname.exclude_keys in conf/config.yaml, where Hydra needs every key spelled out.
NOT_IDENTIFYING = {"hydra/launcher", "hparams_search", "progress", "threads", "data.root", "figures", "logger"}
# Settings that do not change a run's results, beyond the seed: jobs that differ only in these form one group.
RESULT_NEUTRAL = {"seed", "threads", "device", "progress", "figures", "resume", "data.root", "data.download", "logger"}

FIGURES = {
    "probe": "probe_accuracy_vs_latent.png",
    "recon": "recon_mse_vs_latent.png",
    "curves": "loss_curves.png",
    "reconstructions": "reconstructions_by_job.png",
}


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


def load_row(run: Path, base: Path | None = None) -> dict[str, Any]:
    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    overrides_file = run / ".hydra" / "overrides.yaml"
    overrides = OmegaConf.to_container(OmegaConf.load(overrides_file)) if overrides_file.is_file() else []
    overrides = [o for o in overrides if not _under(o.split("=", 1)[0], NOT_IDENTIFYING)]
    metrics_path = run / "metrics.json"
    metrics: dict[str, Any] = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    try:
        job = str(run.relative_to(base)) if base is not None else run.name
    except ValueError:
        job = str(run)
    status = metrics.get("status", "incomplete")
    row = {
        "job": job if job != "." else run.name,
        "status": status,
        "overrides": ",".join(overrides),
        "model": cfg.model.name,
        "arch": cfg.arch.name if "arch" in cfg else "mlp",  # runs of aebench < 0.3 had MLPs only
        "dataset": cfg.data.name,
        "latent": int(cfg.latent),
        "epochs": int(cfg.epochs),
        "error": metrics.get("error", "no metrics.json: killed or still running" if status == "incomplete" else ""),
        "run_dir": str(run),
    }
    for key in METRICS[:-1]:
        row[key] = metrics.get(key)
    row["seconds"] = metrics.get("seconds", {}).get("total")
    row["seed"] = int(cfg.seed)
    for n, result in (metrics.get("label_budget_accuracy") or {}).items():
        row[f"probe_accuracy@{n}"] = result.get("mean")
    row["group_key"] = group_key(OmegaConf.to_container(cfg, resolve=False))
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


def group_by_seed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per group of completed jobs that differ only in their seed: mean, std and count of each metric."""
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
             "jobs": " ".join(Path(m["job"]).name.split("_", 1)[0] for m in members)}
        for key in metrics:
            values = [m[key] for m in members if m.get(key) is not None]
            g[f"{key}_mean"] = statistics.fmean(values) if values else None
            g[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else None
        out.append(g)
    return out


def label_jobs(rows: list[dict[str, Any]]) -> None:
    """Short names for tables and figures: the job number and the overrides that differ between jobs."""
    common = set.intersection(*(set(r["overrides"].split(",")) for r in rows)) if rows else set()
    for r in rows:
        num = Path(r["job"]).name.split("_", 1)[0]
        varying = [o for o in r["overrides"].split(",") if o and o not in common]
        r["varying"] = varying
        prefix = str(Path(r["job"]).parent / num) if str(Path(r["job"]).parent) != "." else num
        label = f"{prefix}: {' '.join(varying)}" if varying else (prefix if num.isdigit() else r["job"])
        r["label"] = label if len(label) <= 80 else label[:79] + "…"


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


def _mean_std(group: dict[str, Any], key: str) -> str:
    mean, std = group.get(f"{key}_mean"), group.get(f"{key}_std")
    if mean is None:
        return "–"
    text = _fmt(mean, key)
    if std is not None:
        text += " ± " + (f"{100 * std:.2f}" if "accuracy" in key else _fmt(std, key))
    return text


def markdown_table(rows: list[dict[str, Any]], budgets: list[str]) -> str:
    head = ["job", "model", "arch", "latent", "epochs", "seed", "probe acc.", *(f"probe @{b.split('@')[1]}" for b in budgets),
            "kNN acc.", "PCA probe", "recon MSE", "neg. ELBO", "seconds", "status"]
    keys = ["label", "model", "arch", "latent", "epochs", "seed", "probe_accuracy", *budgets, "knn_accuracy",
            "pca_probe_accuracy", "recon_mse", "neg_elbo", "seconds", "status"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [_fmt(row.get(k), k) for k in keys]
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


def _series_label(row: dict[str, Any], varying: list[str]) -> str:
    return " ".join([row["model"].upper(), row["arch"]] + [f"{k}={row[k]}" for k in varying])


GROUP_COLUMNS = ["group", "model", "arch", "dataset", "latent", "epochs", "n_seeds", "seeds", "jobs"]


def write_report(paths: list[Path], out: Path, reconstructions: bool = True) -> list[dict[str, Any]]:
    """Write summary.csv, summary.md (and groups.csv where jobs repeat over seeds) and the figures into ``out``."""
    from . import plots

    runs = find_runs(paths)
    # jobs are named relative to what the given directories share, so two sweeps' "0_latent=2" differ
    base = Path(paths[0]) if len(paths) == 1 else Path(os.path.commonpath([str(Path(p).resolve()) for p in paths]))
    rows = [load_row(r.resolve() if len(paths) > 1 else r, base) for r in runs]
    label_jobs(rows)
    budgets = budget_columns(rows)
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_csv(out / "summary.csv", rows, COLUMNS[:-1] + budgets + ["error"])
    groups = group_by_seed(rows)
    several_seeds = any(g["n_seeds"] > 1 for g in groups)
    if several_seeds:
        stats = [f"{k}_{s}" for k in METRICS + budgets for s in ("mean", "std")]
        atomic.write_csv(out / "groups.csv", groups, GROUP_COLUMNS + stats)
    done = [r for r in rows if r["status"] == "completed"]
    failed = [r for r in rows if r["status"] != "completed"]
    text = [f"# aebench comparison\n\n{len(rows)} job(s): {len(done)} completed, {len(failed)} not completed.\n"]
    if several_seeds:
        text.append(f"\n## Across seeds\n\n{len(groups)} group(s) of jobs that differ only in their seed "
                    "(and in settings that do not change results): mean ± standard deviation over the seeds "
                    "(accuracy spreads in points), per group; every job below. Also in groups.csv.\n\n")
        text.append(group_table(groups, budgets))
        text.append("\n## Every job\n")
    text.append("\n" + markdown_table(rows, budgets))
    if done:
        if several_seeds:
            best_group = max(groups, key=lambda g: g["probe_accuracy_mean"])
            text.append(f"\nBest linear probe: **{best_group['group']}** ({best_group['model']}, {best_group['arch']}, latent "
                        f"{best_group['latent']}) at {_mean_std(best_group, 'probe_accuracy')} over "
                        f"{best_group['n_seeds']} seed(s).\n")
        else:
            best = max(done, key=lambda r: r["probe_accuracy"])
            text.append(f"\nBest linear probe: **{best['label']}** ({best['model']}, {best['arch']}, latent "
                        f"{best['latent']}) at {_fmt(best['probe_accuracy'], 'probe_accuracy')}.\n")
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


def _figures(done: list[dict[str, Any]], groups: list[dict[str, Any]], out: Path, reconstructions: bool,
             plots: Any) -> list[str]:
    """Comparison figures; a point is a group's mean over its seeds, with the spread as an error bar."""
    written: list[str] = []
    if not done:
        return written
    varying = [k for k in ("dataset", "epochs") if len({r[k] for r in done}) > 1]
    probe_series: dict[str, dict[int, tuple]] = {}
    recon_series: dict[str, dict[int, tuple]] = {}
    refs: dict[str, dict[int, float]] = {}
    several_datasets = len({r["dataset"] for r in done}) > 1
    for g in groups:
        label = _series_label(g, varying)
        probe_series.setdefault(label, {})[g["latent"]] = (g["probe_accuracy_mean"], g["probe_accuracy_std"])
        recon_series.setdefault(label, {})[g["latent"]] = (g["recon_mse_mean"], g["recon_mse_std"])
        # the baselines depend on the data (and the size), never on the model or its training
        suffix = f", {g['dataset']}" if several_datasets else ""
        if g.get("pca_probe_accuracy_mean") is not None:
            refs.setdefault(f"PCA probe (same size){suffix}", {})[g["latent"]] = g["pca_probe_accuracy_mean"]
        if g.get("pixel_probe_accuracy_mean") is not None:
            refs.setdefault(f"raw-pixel probe{suffix}", {}).setdefault(0, g["pixel_probe_accuracy_mean"])
    plots.metric_vs_latent(probe_series, refs, "linear-probe test accuracy (%)",
                           "Linear probe on frozen codes vs latent size", out / FIGURES["probe"], percent=True)
    plots.metric_vs_latent(recon_series, {}, "test MSE per pixel", "Reconstruction error vs latent size",
                           out / FIGURES["recon"])
    written += [FIGURES["probe"], FIGURES["recon"]]

    curves = {}
    for r in done:
        history = Path(r["run_dir"]) / "history.csv"
        if history.is_file():
            with open(history) as f:
                hist = list(csv.DictReader(f))
            curves[r["label"]] = ([int(h["epoch"]) for h in hist], [float(h["test_recon_mse"]) for h in hist])
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
            x = torch.from_numpy(np.ascontiguousarray(x_u8[first]).reshape(len(first), -1)).float().div_(255.0)
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


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table for the terminal: every job, then the seed groups where jobs repeat over seeds."""
    budgets = budget_columns(rows)
    cols = ["label", "model", "arch", "latent", "probe_accuracy", *budgets, "knn_accuracy", "pca_probe_accuracy",
            "recon_mse", "neg_elbo", "seconds", "status"]
    text = _text_table(cols, [[_fmt(r.get(c), c) for c in cols] for r in rows])
    groups = group_by_seed(rows)
    if any(g["n_seeds"] > 1 for g in groups):
        gcols = ["group", "n_seeds", "probe_accuracy", *budgets, "knn_accuracy", "recon_mse", "neg_elbo"]
        cells = [[g["group"], str(g["n_seeds"]), *(_mean_std(g, c) for c in gcols[2:])] for g in groups]
        text += "\n\nacross seeds (mean ± std):\n" + _text_table(gcols, cells)
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
        rows = write_report([sweep_dir], sweep_dir)
        print(format_table(rows))
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
    parser.add_argument("--no-reconstructions", action="store_true", help="skip the figure that reloads every model")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    missing = [str(d) for d in args.dirs if not d.is_dir()]
    if missing:
        print(f"aebench-compare: error: not a directory: {', '.join(missing)}; give run or sweep directories", file=sys.stderr)
        sys.exit(2)
    try:
        runs = find_runs(args.dirs)
    except OSError as e:
        print(f"aebench-compare: error: {e}", file=sys.stderr)
        sys.exit(2)
    if not runs:
        print(f"aebench-compare: error: no aebench runs (folders with .hydra/config.yaml) under {', '.join(map(str, args.dirs))}",
              file=sys.stderr)
        sys.exit(2)
    if args.out is not None:
        out = args.out
    elif len(args.dirs) == 1:
        out = args.dirs[0]
    else:
        out = Path(rundirs.unique_dir(f"comparisons/{datetime.datetime.now():%Y-%m-%d_%H-%M-%S}"))
    rows = write_report(list(args.dirs), out, reconstructions=not args.no_reconstructions)
    print(format_table(rows))
    print(f"report: {out / 'summary.md'}")


if __name__ == "__main__":
    main()
