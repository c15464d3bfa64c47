"""One run: data → model → pretrain (probe each epoch) → final read-outs → figures → metrics.json.

The run directory holds ``metrics.json``, ``history.csv``, ``checkpoints/last.pt``
and ``figures/``; Hydra adds ``.hydra/`` and the log file.  Every file is
written atomically.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import platform
import random
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from . import __version__, atomic, baselines, config, data, models, probe, tracking
from .errors import CheckpointError, ConfigError
from .train import Trainer, TrainSettings, batches, eval_batch, flush_denormals

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
CHECKPOINT = Path("checkpoints") / "last.pt"
FIGURES = "figures"
PROBE_FILE = "probe.npz"  # the final probe and its predictions (see save_probe)
PROBE_FORMAT = 1


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_threads(cfg: DictConfig, launcher_threads: int | None = None) -> int:
    """Explicit ``threads``, else what the sweep launcher gives each job, else every usable core."""
    if cfg.threads:
        return int(cfg.threads)
    return launcher_threads or usable_cores()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_model(cfg: DictConfig, image_shape: tuple[int, ...]) -> torch.nn.Module:
    """The objective ``cfg.model`` on the network ``cfg.arch``, for images of ``image_shape`` (C, H, W)."""
    a, m = cfg.arch, cfg.model
    try:
        return models.build(
            m.name, image_shape, cfg.latent, list(a.hidden), arch=a.name, activation=a.activation,
            decoder_hidden=list(a.decoder_hidden) if a.decoder_hidden is not None else None, channels=list(a.channels),
            code_activation=m.code_activation, recon_loss=m.recon_loss, beta=m.beta, noise=m.noise,
            noise_level=m.noise_level, sparsity=m.sparsity,
        )
    except ValueError as e:  # a network that cannot be built for these images (too many convolutions, say)
        fix = "; give fewer arch.channels" + (" or a larger data.image_size" if cfg.data.name == "folder" else "")
        raise ConfigError(f"arch={a.name} cannot be built for {'x'.join(map(str, image_shape))} images: {e}"
                          f"{fix if a.name == 'conv' else ''}") from None


@torch.no_grad()
def encode_all(model: torch.nn.Module, x: torch.Tensor | data.Split, batch: int | None = None) -> torch.Tensor:
    """The codes of every image of ``x`` (flat images, or a split), in batches of :func:`~aebench.train.eval_batch`."""
    was_training = model.training
    model.eval()
    batch = batch or eval_batch(x.shape[1] if isinstance(x, torch.Tensor) else x.pixels)
    codes = torch.cat([model.encode(b).float() for b in batches(x, batch)])
    model.train(was_training)
    return codes


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


def fit_probe(cfg: DictConfig, ds: data.ImageData, train_x: torch.Tensor, test_x: torch.Tensor,
              init: tuple[torch.Tensor, torch.Tensor] | None = None) -> probe.ProbeResult:
    """The linear probe with the run's settings, on features of the train and test images."""
    result = probe.linear_probe(train_x, ds.train.y, test_x, ds.test.y, len(ds.classes),
                                cfg.probe.l2, cfg.probe.tol, cfg.probe.max_iter, init=init)
    if not result.converged:
        log.warning("probe stopped at max_iter=%d before converging (gradient %.2g)", cfg.probe.max_iter, result.grad_norm)
    return result


class EpochProbe:
    """The accuracy curve: encode the train and test images and probe the codes after an epoch.

    Each fit starts from the previous epoch's solution (a warm start: the same optimum to
    ``probe.tol``, in a fraction of the iterations); that solution travels in the checkpoint,
    so a resumed run probes exactly as an uninterrupted one.  Keeps the last codes it probed.
    """

    def __init__(self, cfg: DictConfig, ds: data.ImageData):
        self.cfg, self.ds = cfg, ds
        self.seconds = 0.0
        self.codes: dict[str, torch.Tensor] = {}
        self.result: probe.ProbeResult | None = None
        self.init: tuple[torch.Tensor, torch.Tensor] | None = None

    def __call__(self, model: torch.nn.Module) -> dict[str, Any]:
        t0 = time.perf_counter()
        self.codes = {"train": encode_all(model, self.ds.train), "test": encode_all(model, self.ds.test)}
        self.result = fit_probe(self.cfg, self.ds, self.codes["train"], self.codes["test"], init=self.init)
        self.init = (self.result.weight.cpu(), self.result.bias.cpu())
        self.seconds += time.perf_counter() - t0
        return {"probe_accuracy": self.result.accuracy, "probe_iterations": self.result.iterations}

    def state_dict(self) -> dict[str, Any]:
        return {"init": self.init}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.init = state.get("init")


def checkpoint_file(run_dir: Path) -> Path:
    """``run_dir``'s checkpoint, or the one-line error that there is nothing to resume."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"nothing to resume in {run_dir}: no {CHECKPOINT} there; give resume=<a run directory with a checkpoint>")
    return path


def load_checkpoint(run_dir: Path) -> dict[str, Any]:
    path = checkpoint_file(run_dir)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same advice
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(e).__name__}); it is damaged: start a new run") from None
    if not isinstance(ckpt, dict) or "aebench_version" not in ckpt or "config" not in ckpt:
        raise CheckpointError(f"{path} is not an aebench checkpoint; give resume=<a run directory made by aebench>")
    if ckpt["aebench_version"] != __version__:
        raise CheckpointError(
            f"checkpoint {path} was written by aebench {ckpt['aebench_version']}, this is aebench {__version__}; "
            f"resume it with aebench {ckpt['aebench_version']} or start a new run"
        )
    return ckpt


def save_probe(path: Path, result: probe.ProbeResult, classes: tuple[str, ...], test_y: torch.Tensor,
               knn_pred: torch.Tensor) -> None:
    """Write the final linear probe with what it predicted, atomically (``aebench.load_run`` classifies with it).

    ``weight`` (features, classes) and ``bias`` in the dtype the fit ended in (float32 or float64);
    ``mean``, ``scale`` (float32): the standardisation z = (x - mean) * scale of the train codes;
    ``classes``; ``test_y``, ``test_pred`` (the probe's) and ``knn_pred`` (k-NN's), int64; ``format``.
    """
    as_np = lambda t: t.detach().cpu().numpy()  # noqa: E731
    arrays = {
        "weight": as_np(result.exact_weight), "bias": as_np(result.exact_bias),
        "mean": as_np(result.mean).astype(np.float32), "scale": as_np(result.scale).astype(np.float32),
        "classes": np.array([str(c) for c in classes], dtype=np.str_),
        "test_y": as_np(test_y).astype(np.int64), "test_pred": as_np(result.test_pred).astype(np.int64),
        "knn_pred": as_np(knn_pred).astype(np.int64), "format": np.array(PROBE_FORMAT),
    }
    with atomic.atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: np.savez would add ".npz" to a name
        np.savez(f, **arrays)


def check_same_images(checkpoint: dict[str, Any], ds: data.ImageData) -> None:
    """Refuse to resume on other images than the checkpoint's (a folder changed since, say)."""
    saved = checkpoint.get("data")  # absent in checkpoints of aebench < 0.4
    if saved and (saved.get("identity"), saved.get("pretrain_images")) != (ds.identity, len(ds.pretrain)):
        raise CheckpointError(
            f"the images changed since the checkpoint was written ({saved.get('label')}: {saved.get('pretrain_images')} "
            f"images to train on, now {len(ds.pretrain)}; data identity {saved.get('identity')}, now {ds.identity}); "
            "a resumed run needs the images it started with: restore them, or start a new run")


def run(cfg: DictConfig, run_dir: Path, checkpoint: dict[str, Any] | None = None,
        launcher_threads: int | None = None, sweep_dir: Path | None = None) -> dict[str, Any]:
    """Run the whole pipeline in ``run_dir``; return the metrics written to metrics.json.

    ``sweep_dir``: the sweep this run is a job of (its MLflow run is nested under the sweep's).
    """
    t_start = time.perf_counter()
    config.validate(cfg)
    if cfg.data.path:  # absolute in the checkpoint: a resume or load_run elsewhere finds the same folder
        cfg.data.path = str(Path(cfg.data.path).expanduser().resolve())
    device = config.resolve_device(cfg.device)
    flush_denormals()  # before any parallel torch work of this process: its worker threads inherit it
    torch.set_num_threads(default_threads(cfg, launcher_threads))
    run_dir = Path(run_dir)
    # logger=...: a logger that cannot start refuses the run here, before any work
    tracker = tracking.start(cfg, run_dir, device_name(device), (checkpoint or {}).get("tracking"), sweep_dir)
    try:
        return _run(cfg, run_dir, device, checkpoint, tracker, t_start)
    except BaseException as e:
        tracker.end(tracking.status_after(e), error=str(e))
        raise


def _run(cfg: DictConfig, run_dir: Path, device: torch.device, checkpoint: dict[str, Any] | None,
         tracker: tracking.Tracker, t_start: float) -> dict[str, Any]:
    seconds: dict[str, float] = {}
    seed_everything(cfg.seed)
    progress = sys.stderr.isatty() if cfg.progress is None else bool(cfg.progress)
    fig_dir = run_dir / FIGURES

    t = time.perf_counter()
    root = data.resolve_root(cfg.data.root)
    ds = data.load(cfg.data, root, device)
    seconds["data"] = time.perf_counter() - t
    extra = f" (pretraining on {len(ds.pretrain)})" if len(ds.pretrain) != len(ds.train) else ""
    log.info("%s: %d train / %d test images%s of %s on %s", ds.title, len(ds.train), len(ds.test), extra,
             "x".join(map(str, ds.image_shape)), device)
    skipped = None if ds.labelled else \
        f"{ds.title} has no labels (no class folders, or one only): no probe, k-NN, label budgets or baselines"
    if skipped:
        log.warning("%s", skipped)

    t = time.perf_counter()
    p = cfg.probe
    budgets = list(p.label_budgets) if ds.labelled else []
    budget_args = (budgets, p.budget_draws, cfg.seed, p.budget_penalty, p.tol, p.max_iter)
    pca_probe = pixel_probe = pca_budgets = pixel_budgets = None
    if ds.labelled:
        pca = functools.cache(functools.partial(baselines.pca_features, ds, min(cfg.latent, ds.input_dim)))  # fitted once, if needed
        pca_probe = baselines.pca_probe(ds, root, cfg.latent, p.l2, p.tol, p.max_iter, features=pca)
        pixel_probe = baselines.pixel_probe(ds, root, p.l2, p.tol, p.max_iter) if p.pixel_baseline else None
        pca_budgets = baselines.budget_probes(ds, root, "pca", cfg.latent, *budget_args, features=pca) if budgets else None
        del pca
        pixel_budgets = baselines.budget_probes(ds, root, "pixels", None, *budget_args) if budgets and p.pixel_baseline else None
    seconds["baselines"] = time.perf_counter() - t

    model = build_model(cfg, ds.image_shape).to(device)
    epoch_probe = EpochProbe(cfg, ds)
    settings = TrainSettings(epochs=cfg.epochs, seed=cfg.seed, **OmegaConf.to_container(cfg.train))

    def on_history(history: list[dict[str, Any]]) -> None:
        atomic.write_csv(run_dir / HISTORY_FILE, history)
        tracker.log_history(history)

    trainer = Trainer(
        model, ds, settings,
        checkpoint_path=run_dir / CHECKPOINT,
        checkpoint_extra={"aebench_version": __version__, "config": config.to_container(cfg), "tracking": tracker.state,
                          "data": ds.describe()},
        run_dir=run_dir,
        epoch_metrics=epoch_probe if p.every_epoch and ds.labelled else None,
        on_history=on_history,
        progress=progress,
    )
    resumed_from = None
    if checkpoint is not None:
        check_same_images(checkpoint, ds)
        trainer.load_checkpoint(checkpoint)
        resumed_from = {"epoch": trainer.state.epoch, "step": trainer.state.step}
        log.info("resuming after epoch %d, step %d", trainer.state.epoch, trainer.state.step)
        tracker.log_history(trainer.state.history)  # epochs an earlier attempt did not get to log
    t = time.perf_counter()
    history = trainer.fit()
    seconds["pretrain"] = time.perf_counter() - t - epoch_probe.seconds

    final = history[-1]
    probe_accuracy = knn = code_budgets = None
    if not ds.labelled:
        test_codes = encode_all(model, ds.test)
    else:
        if epoch_probe.result is None:  # no probe ran after the last epoch (probe.every_epoch=false, or nothing left to train)
            epoch_probe(model)
        train_codes, test_codes = epoch_probe.codes["train"], epoch_probe.codes["test"]
        probe_accuracy = final.get("probe_accuracy", epoch_probe.result.accuracy)
        t = time.perf_counter()
        knn, knn_pred = probe.knn_accuracy(train_codes, ds.train.y, test_codes, ds.test.y, p.knn_k, len(ds.classes),
                                           return_predictions=True)
        seconds["probe"] = epoch_probe.seconds + time.perf_counter() - t
        save_probe(run_dir / PROBE_FILE, epoch_probe.result, ds.classes, ds.test.y, knn_pred)
    if budgets:
        t = time.perf_counter()
        code_budgets = probe.label_budget_probes(train_codes, ds.train.y, test_codes, ds.test.y, budget_args[0],
                                                 budget_args[1], cfg.seed, len(ds.classes), *budget_args[3:])
        seconds["label_budgets"] = time.perf_counter() - t
        for n, result in code_budgets.items():
            if "skipped" in result:
                log.info("label budget skipped: %s", result["skipped"])

    tracker.log_embedding(test_codes, ds.test.y, ds.test, ds.classes or ("images",), cfg.seed)

    if cfg.figures:
        t = time.perf_counter()
        draw_figures(cfg, model, ds, history, test_codes, {"PCA probe (same size)": pca_probe,
                                                           "raw-pixel probe": pixel_probe}, fig_dir)
        if code_budgets:
            full = {"codes": probe_accuracy, "PCA (same size)": pca_probe, "raw pixels": pixel_probe}
            draw_label_efficiency(cfg, ds, {"codes": code_budgets, "PCA (same size)": pca_budgets,
                                            "raw pixels": pixel_budgets}, full, fig_dir)
        seconds["figures"] = time.perf_counter() - t
        tracker.log_figures(fig_dir)
    seconds["total"] = time.perf_counter() - t_start

    metrics: dict[str, Any] = {
        "status": "completed",
        "recon_mse": final["test_recon_mse"],
        "neg_elbo": final.get("test_neg_elbo"),
        "probe_accuracy": probe_accuracy,
        "knn_accuracy": knn,
        "pca_probe_accuracy": pca_probe,
        "pixel_probe_accuracy": pixel_probe,
        "label_budget_accuracy": code_budgets,
        "pca_label_budget_accuracy": pca_budgets,
        "pixel_label_budget_accuracy": pixel_budgets,
        "test_loss": final["test_loss"],
        "dead_code_units": probe.dead_units(test_codes),
        "epochs_trained": final["epoch"],
        "skipped": skipped,
        "data": {**ds.describe(), "baselines": baselines.describe(ds, cfg.latent) if ds.labelled else None},
        "config": config.summary(cfg),
        "versions": versions(),
        "device": device_name(device),
        "resumed_from": resumed_from,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "memory": peak_memory(device),
    }
    if cfg.model.name != "vae":
        del metrics["neg_elbo"]
    tracker.log_final(metrics, cfg, final)
    metrics["seconds"]["logging"] = round(tracker.seconds, 3)  # inside logger calls, all but the upload below
    atomic.write_json(run_dir / METRICS_FILE, metrics)
    tracker.end("completed", [run_dir / METRICS_FILE, run_dir / HISTORY_FILE, run_dir / ".hydra"])
    return metrics


def peak_memory(device: torch.device) -> dict[str, float | None]:
    host_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    dev = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"peak_host_mib": round(host_kb / 1024, 1), "peak_device_mib": round(dev, 1) if dev is not None else None}


def figure_label(cfg: DictConfig, ds: data.ImageData) -> str:
    return f"{cfg.model.name.upper()} ({cfg.arch.name}), latent {cfg.latent}, {ds.label if ds.name == 'folder' else ds.title}"


def loss_label(cfg: DictConfig) -> str:
    """What the training objective's numbers are, for the loss figure's axis."""
    m = cfg.model
    recon = "BCE (nats per image)" if m.recon_loss == "bce" else "MSE per pixel"
    return {
        "vae": "negative ELBO (nats per image)" if m.beta == 1 else f"BCE + {m.beta:g}·KL (nats per image)",
        "ae": recon,
        "dae": f"{recon} of the clean image from a corrupted one",
        "sae": f"{recon} + {m.sparsity:g}·|code|₁",
    }[m.name]


def draw_label_efficiency(cfg: DictConfig, ds: data.ImageData, budgets: dict[str, dict | None],
                          full: dict[str, float | None], fig_dir: Path) -> None:
    from . import plots  # matplotlib: imported only by runs that draw

    plots.label_efficiency(budgets, full, len(ds.train), f"Linear probe with few labels ({figure_label(cfg, ds)})",
                           fig_dir / "label_efficiency.png")


def as_images(flat: torch.Tensor, image_shape: tuple[int, int, int]) -> np.ndarray:
    """Flat images (n, C*H*W) as numpy for figures: (n, H, W) grey, or (n, H, W, 3) colour."""
    c, h, w = image_shape
    x = flat.float().reshape(-1, c, h, w).cpu().numpy()
    return x[:, 0] if c == 1 else x.transpose(0, 2, 3, 1)


@torch.no_grad()
def draw_figures(cfg: DictConfig, model: torch.nn.Module, ds: data.ImageData, history: list[dict[str, Any]],
                 test_codes: torch.Tensor, references: dict[str, float | None], fig_dir: Path) -> None:
    from . import plots  # matplotlib: ~0.75 s of import, paid only by runs that draw

    model.eval()
    shape, test, n_test = ds.image_shape, ds.test, len(ds.test)
    rng = torch.Generator().manual_seed(cfg.seed)  # which images are shown; fixed by the seed
    label = figure_label(cfg, ds)
    show = functools.partial(as_images, image_shape=shape)
    ink = ds.ink  # grey digits and clothes: dark on light, as printed

    plots.loss_curves(history, loss_label(cfg), fig_dir / "loss.png")

    pick = torch.randperm(n_test, generator=rng)[:64]
    x = test.take(pick)
    plots.reconstructions(show(x), show(model.reconstruct(x)), f"Reconstructions of test images ({label})",
                          fig_dir / "reconstructions.png", ink=ink)

    labels = test.y.cpu() if test.y is not None else None
    if labels is not None:
        per_class_idx = []
        for c in range(len(ds.classes)):
            members = torch.nonzero(labels == c).flatten()
            chosen = members[torch.randperm(len(members), generator=rng)[:10]]
            if len(chosen) < 10:  # tiny test subsets: repeat what there is (or leave blank)
                chosen = chosen.repeat(10)[:10] if len(chosen) else chosen
            per_class_idx.append(chosen)
        if all(len(c) == 10 for c in per_class_idx):
            originals = test.take(torch.stack(per_class_idx).flatten())
            grid_shape = (len(ds.classes), 10, *show(originals[:1]).shape[1:])
            plots.per_class(show(originals).reshape(grid_shape), show(model.reconstruct(originals)).reshape(grid_shape),
                            ds.classes, f"10 random test images per class and their reconstructions ({label})",
                            fig_dir / "per_digit.png", ink=ink)

    curve = [row for row in history if row.get("probe_accuracy") is not None]
    if curve:
        plots.probe_curve([r["epoch"] for r in curve], [r["probe_accuracy"] for r in curve], references,
                          f"Linear probe on frozen codes ({label})", fig_dir / "probe_accuracy.png")

    shown = torch.randperm(n_test, generator=rng)[:5000]
    codes = test_codes[shown.to(test_codes.device)]
    if codes.shape[1] <= 2:
        points, axis = codes, "code unit {}"
        if codes.shape[1] == 1:  # a 1-D code: spread it along x only
            points = torch.cat([codes, torch.zeros_like(codes)], dim=1)
    else:
        mean, comps = probe.pca_fit(test_codes, 2)
        points, axis = probe.pca_project(codes, mean, comps), "principal component {} of the codes"
    plots.latent_scatter(points.cpu().numpy(), labels[shown].numpy() if labels is not None else None,
                         ds.classes or ("test images (no labels)",), f"Codes of test images ({label})", axis,
                         fig_dir / "latent_space.png")

    if cfg.model.name == "vae":
        gen = torch.Generator(device=ds.device).manual_seed(cfg.seed)
        plots.image_sheet(show(model.sample(64, generator=gen)), 8, f"Decoded draws from the prior N(0, I) ({label})",
                          fig_dir / "samples.png", ink=ink)
        n_paths = min(8, n_test // 2)
        pairs = torch.randperm(n_test, generator=rng)[: 2 * n_paths]
        z = model.encode(test.take(pairs)).float()
        start, end = z[:n_paths], z[n_paths:]
        steps = torch.linspace(0, 1, 10, device=z.device)
        path = start[:, None, :] * (1 - steps)[None, :, None] + end[:, None, :] * steps[None, :, None]
        if n_paths:
            plots.image_sheet(show(model.decode(path.reshape(-1, z.shape[1]))), 10,
                              f"Decoded straight paths between the codes (mu) of two test images ({label})",
                              fig_dir / "interpolation.png", xlabel="from the first image (left) to the second (right)",
                              ink=ink)
    model.train()
