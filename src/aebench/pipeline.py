"""One run: data → baselines → model → pretrain (probe each epoch) → final read-outs → figures → metrics.json.

The run directory's files and their readers are :mod:`aebench.rundir`'s; every file is written
atomically.  Only the ``aebench`` command imports this module.
"""

from __future__ import annotations

import logging
import platform
import random
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from . import __version__, baselines, config, data, distributed, figures, models, precision, probe, readouts, rundir, tracking
from .train import OnEpochSaved, SelfSignal, Trainer, flush_denormals

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def versions() -> dict[str, str]:
    import hydra
    import torchvision

    return {
        "aebench": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "hydra": hydra.__version__,
        "python": platform.python_version(),
    }


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def peak_memory(device: torch.device) -> dict[str, float | None]:
    host_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    dev = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"peak_host_mib": round(host_kb / 1024, 1), "peak_device_mib": round(dev, 1) if dev is not None else None}


class Stopwatch:
    """Seconds per stage, for metrics.json: ``with watch("data"): ...``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._stage: str | None = None

    def __call__(self, stage: str) -> "Stopwatch":
        self._stage = stage
        return self

    def __enter__(self) -> None:
        self._t0 = time.perf_counter()

    def __exit__(self, *exc: Any) -> None:
        self.seconds[self._stage] = time.perf_counter() - self._t0


def run(cfg: DictConfig, run_dir: Path, checkpoint: dict[str, Any] | None = None,
        launcher_threads: int | None = None, sweep_dir: Path | None = None) -> dict[str, Any]:
    """Run the whole pipeline in ``run_dir``; return the metrics written to metrics.json.

    ``sweep_dir``: the sweep this run is a job of (its MLflow run is nested under the sweep's).

    On several processes (:func:`aebench.distributed.current`) every rank trains; rank 0 alone starts the
    trackers, computes the baselines, probes, draws and writes; ranks > 0 return ``{}`` once training is done.
    """
    t_start = time.perf_counter()
    config.validate(cfg)
    if cfg.data.path:  # absolute in the checkpoint: a resume or load_run elsewhere finds the same folder
        cfg.data.path = str(Path(cfg.data.path).expanduser().resolve())
    world = distributed.current()
    device = distributed.device_for(config.resolve_device(cfg.device), world)
    chosen = precision.resolve(cfg.train.precision, device, checkpoint)
    cfg.train.precision = chosen.used  # what the run trains in, in its checkpoint and records; why: metrics.json
    flush_denormals()  # before any parallel torch work of this process: its worker threads inherit it
    torch.set_num_threads(config.default_threads(cfg, launcher_threads))
    run_dir = Path(run_dir)
    # logger=...: a logger that cannot start refuses the run here, before any work
    tracker = (tracking.start(cfg, run_dir, device_name(device), (checkpoint or {}).get("tracking"), sweep_dir)
               if world.main else tracking.Tracker([], {}))
    try:
        return _run(cfg, run_dir, device, chosen, checkpoint, tracker, t_start)
    except BaseException as e:
        tracker.end(tracking.status_after(e), error=str(e))
        raise


def _run(cfg: DictConfig, run_dir: Path, device: torch.device, chosen: precision.Precision,
         checkpoint: dict[str, Any] | None, tracker: tracking.Tracker, t_start: float) -> dict[str, Any]:
    watch = Stopwatch()
    world = distributed.current()
    seed_everything(cfg.seed)
    with watch("data"):
        root = data.resolve_root(cfg.data.root)
        ds = load_data(cfg, root, device)
    with watch("baselines"):
        refs = baselines.for_run(cfg, ds, root) if world.main else None
    model = models.from_config(cfg, ds.image_shape, dataset_size=len(ds.pretrain)).to(device)
    curve = readouts.EpochProbe(cfg, ds, active=cfg.probe.every_epoch and ds.labelled and world.main)
    log.info("training in %s (%s)", chosen.used, chosen.reason)
    trainer = make_trainer(cfg, model, ds, run_dir, tracker, curve, chosen)
    resumed_from = resume(trainer, checkpoint, ds, tracker)
    t = time.perf_counter()
    history = trainer.fit()
    distributed.stop()  # training was the one collective stage: what follows is rank 0's alone
    if not world.main:
        return {}  # rank 0 reads out, draws and writes the run's files
    watch.seconds["pretrain"] = time.perf_counter() - t - curve.seconds
    final = readouts.final(cfg, model, ds, curve, history, watch.seconds)
    if final.probe_result is not None:
        rundir.save_probe(run_dir / rundir.PROBE, final.probe_result, ds.classes, ds.test.y, final.knn_pred)
    with watch("factors"):
        held = readouts.factor_readouts(cfg, model, ds, final)
    if held.report is not None:
        r = held.report
        rundir.save_factors(run_dir / rundir.FACTORS, r.mutual_information, r.entropy, r.factor_names, r.importance)
    tracker.log_embedding(final.test_codes, ds.test.y, ds.test, ds.classes or ("images",), cfg.seed)
    if cfg.figures:
        with watch("figures"):
            figures.draw_all(cfg, model, ds, history, final, refs, held.report, run_dir / rundir.FIGURES)
        tracker.log_figures(run_dir / rundir.FIGURES)
    watch.seconds["total"] = time.perf_counter() - t_start
    metrics = metrics_of(cfg, ds, history, final, held, refs, device, chosen, resumed_from, watch.seconds, world)
    tracker.log_final(metrics, cfg, history[-1])
    metrics["seconds"]["logging"] = round(tracker.seconds, 3)  # inside logger calls, all but the upload below
    rundir.write_metrics(run_dir, metrics)
    tracker.end("completed", [run_dir / rundir.METRICS, run_dir / rundir.HISTORY, run_dir / rundir.HYDRA])
    return metrics


def load_data(cfg: DictConfig, root: Path, device: torch.device) -> data.ImageData:
    ds = data.load(cfg.data, root, device)
    extra = f" (pretraining on {len(ds.pretrain)})" if len(ds.pretrain) != len(ds.train) else ""
    log.info("%s: %d train / %d test images%s of %s on %s", ds.title, len(ds.train), len(ds.test), extra,
             "x".join(map(str, ds.image_shape)), device)
    if not ds.labelled:
        log.warning("%s", unlabelled_note(ds))
    return ds


def unlabelled_note(ds: data.ImageData) -> str:
    return f"{ds.title} has no labels (no class folders, or one only): no probe, k-NN, label budgets or baselines"


def make_trainer(cfg: DictConfig, model: torch.nn.Module, ds: data.ImageData, run_dir: Path,
                 tracker: tracking.Tracker, curve: readouts.EpochProbe, chosen: precision.Precision) -> Trainer:
    """The training loop with its callbacks: the accuracy curve, then history.csv and the trackers once
    each epoch's checkpoint is written (and a test's signal where AEBENCH_SELF_SIGNAL asks for one)."""
    def write_history(history: list[dict[str, Any]]) -> None:
        rundir.write_history(run_dir, history)
        tracker.log_history(history)

    callbacks = [curve, OnEpochSaved(write_history)] if distributed.current().main else []
    signal_for_tests = SelfSignal.from_environment()
    if signal_for_tests is not None:
        callbacks.append(signal_for_tests)
    progress = (sys.stderr.isatty() if cfg.progress is None else bool(cfg.progress)) and distributed.current().main
    return Trainer(model, ds, cfg.train, epochs=cfg.epochs, seed=cfg.seed, run_dir=run_dir,
                   meta=rundir.checkpoint_meta(cfg, ds.describe(), tracker.state, chosen.as_dict()), callbacks=callbacks,
                   progress=progress)


def resume(trainer: Trainer, checkpoint: dict[str, Any] | None, ds: data.ImageData,
           tracker: tracking.Tracker) -> dict[str, int] | None:
    """Continue from ``checkpoint`` (None: a fresh run); where the run stood, for metrics.json."""
    if checkpoint is None:
        return None
    rundir.check_same_images(checkpoint, ds.describe())
    trainer.load_checkpoint(checkpoint)
    log.info("resuming after epoch %d, step %d", trainer.state.epoch, trainer.state.step)
    tracker.log_history(trainer.state.history)  # epochs an earlier attempt did not get to log
    return {"epoch": trainer.state.epoch, "step": trainer.state.step}


def metrics_of(cfg: DictConfig, ds: data.ImageData, history: list[dict[str, Any]], final: readouts.Readouts,
               held: readouts.FactorReadouts, refs: baselines.RunBaselines, device: torch.device, chosen: precision.Precision,
               resumed_from: dict[str, int] | None, seconds: dict[str, float],
               world: distributed.World = distributed.SINGLE) -> dict[str, Any]:
    """metrics.json: the final numbers (docs/metrics.md says what each is), then what ran, where and how long."""
    last = history[-1]
    metrics: dict[str, Any] = {
        "status": "completed",
        "recon_mse": last["test_recon_mse"],
        "neg_elbo": last.get("test_neg_elbo"),
        "probe_accuracy": final.probe_accuracy,
        "knn_accuracy": final.knn_accuracy,
        "pca_probe_accuracy": refs.pca_probe,
        "pixel_probe_accuracy": refs.pixel_probe,
        "label_budget_accuracy": final.label_budgets,
        "pca_label_budget_accuracy": refs.pca_budgets,
        "pixel_label_budget_accuracy": refs.pixel_budgets,
        "test_loss": last["test_loss"],
        "dead_code_units": probe.dead_units(final.test_codes),
        **held.numbers,
        "factor_readouts": held.record,
        "epochs_trained": last["epoch"],
        "skipped": None if ds.labelled else unlabelled_note(ds),
        "data": {**ds.describe(), "baselines": baselines.describe(ds, cfg.latent) if ds.labelled else None},
        "config": config.summary(cfg),
        "versions": versions(),
        "device": device_name(device),
        "precision": chosen.as_dict(),
        "distributed": world.describe(cfg.train.batch_size),
        "resumed_from": resumed_from,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "memory": peak_memory(device),
    }
    if cfg.model.name not in models.VARIATIONAL:
        del metrics["neg_elbo"]
    return metrics
