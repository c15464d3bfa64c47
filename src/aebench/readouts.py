"""What a run reads from its frozen codes: the accuracy curve during training, then the final probe,
k-NN, the label budgets and the factor read-outs (the numbers themselves are :mod:`aebench.probe`'s and
:mod:`aebench.factors`'; the baselines on pixels, which need no model, are :mod:`aebench.baselines`')."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from . import data, probe, rundir
from .train import Callback, Trainer, encode_all

log = logging.getLogger(__name__)


def fit_probe(cfg: DictConfig, ds: data.ImageData, train_x: torch.Tensor, test_x: torch.Tensor,
              init: tuple[torch.Tensor, torch.Tensor] | None = None) -> probe.ProbeResult:
    """The linear probe with the run's settings, on features of the train and test images."""
    result = probe.linear_probe(train_x, ds.train.y, test_x, ds.test.y, len(ds.classes),
                                cfg.probe.l2, cfg.probe.tol, cfg.probe.max_iter, init=init)
    if not result.converged:
        log.warning("probe stopped at max_iter=%d before converging (gradient %.2g)", cfg.probe.max_iter, result.grad_norm)
    return result


class EpochProbe(Callback):
    """The accuracy curve: encode the train and test images and probe the codes after each epoch.

    Each fit starts from the previous epoch's solution (a warm start: the same optimum to
    ``probe.tol``, in a fraction of the iterations); that solution travels in the checkpoint,
    so a resumed run probes exactly as an uninterrupted one.  Keeps the last codes it probed.
    ``active=False`` (``probe.every_epoch=false``, or no labels): it probes only when asked.
    """

    name = "probe"

    def __init__(self, cfg: DictConfig, ds: data.ImageData, active: bool = True):
        self.cfg, self.ds, self.active = cfg, ds, active
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

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        if self.active:
            row.update(self(trainer.model))

    def state_dict(self) -> dict[str, Any] | None:
        return {"init": self.init} if self.active else None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.init = state.get("init")


@dataclass
class Readouts:
    """The final read-outs of the codes; None where the data have no labels (only ``test_codes`` then)."""

    test_codes: torch.Tensor
    train_codes: torch.Tensor | None = None
    probe_accuracy: float | None = None
    probe_result: probe.ProbeResult | None = None
    knn_accuracy: float | None = None
    knn_pred: torch.Tensor | None = None
    label_budgets: dict[str, Any] | None = None


def final(cfg: DictConfig, model: torch.nn.Module, ds: data.ImageData, curve: EpochProbe,
          history: list[dict[str, Any]], seconds: dict[str, float]) -> Readouts:
    """The probe (the curve's last point where it has one), k-NN and label budgets on the final codes."""
    if not ds.labelled:
        return Readouts(test_codes=encode_all(model, ds.test))
    if curve.result is None:  # no probe ran after the last epoch (probe.every_epoch=false, or nothing left to train)
        curve(model)
    out = Readouts(test_codes=curve.codes["test"], train_codes=curve.codes["train"], probe_result=curve.result,
                   probe_accuracy=history[-1].get("probe_accuracy", curve.result.accuracy))
    p = cfg.probe
    t = time.perf_counter()
    out.knn_accuracy, out.knn_pred = probe.knn_accuracy(out.train_codes, ds.train.y, out.test_codes, ds.test.y, p.knn_k,
                                                        len(ds.classes), return_predictions=True)
    seconds["probe"] = curve.seconds + time.perf_counter() - t
    if p.label_budgets:
        t = time.perf_counter()
        out.label_budgets = probe.label_budget_probes(out.train_codes, ds.train.y, out.test_codes, ds.test.y,
                                                      list(p.label_budgets), p.budget_draws, cfg.seed, len(ds.classes),
                                                      p.budget_penalty, p.tol, p.max_iter)
        seconds["label_budgets"] = time.perf_counter() - t
        for result in out.label_budgets.values():
            if "skipped" in result:
                log.info("label budget skipped: %s", result["skipped"])
    return out


@dataclass
class FactorReadouts:
    """What the codes hold of the data's known factors (:mod:`aebench.factors`): the numbers metrics.json gives at
    its top level, the record of how they were computed (or why not), and the full report where the data have
    factors (its unit x factor arrays go to ``factors.npz`` and ``figures/factors.png``)."""

    numbers: dict[str, float]
    record: dict[str, Any]
    report: Any = None  # factors.FactorReport, or None


def finite_or_none(value: float) -> float | None:
    """A number for metrics.json, or None (JSON's null) where it is infinite or NaN: the Gaussian TC of codes with a
    unit that is an exact linear copy of others is infinite, and strict JSON readers refuse ``Infinity``."""
    return float(value) if math.isfinite(value) else None


def factor_sizes(cap: int | None) -> Any:
    """disentanglement_lib's point counts, or all of them scaled down so that none exceeds ``cap``."""
    from . import factors

    full = factors.Sizes()
    if cap is None:
        return full
    counts = {k: v for k, v in asdict(full).items() if k != "batch"}
    scale = min(1.0, cap / max(counts.values()))
    return factors.Sizes(**{k: max(2, int(round(v * scale))) for k, v in counts.items()}, batch=full.batch)


def factor_readouts(cfg: DictConfig, model: torch.nn.Module, ds: data.ImageData, final: Readouts) -> FactorReadouts:
    """The factor read-outs on the pool of every train and test image (the whole grid, for generated factors),
    encoded as the probe reads them; on data without factors, only the codes' Gaussian total correlation."""
    from . import factors  # scikit-learn's classifiers: imported by runs that use them

    p = cfg.probe
    sizes = factor_sizes(p.factor_points)
    if ds.factors is None or not p.factors:
        why = (f"{ds.title} has no known factors of variation (data=sprites, data=dsprites or a folder with "
               "factors.csv have them)" if ds.factors is None else "probe.factors=false")
        tc = factors.gaussian_total_correlation(final.test_codes.double().cpu().numpy(),
                                                rng=factors.metric_rng(cfg.seed, "gaussian_tc"), points=sizes.tc_points)
        return FactorReadouts({"gaussian_tc": finite_or_none(tc.value)},
                              {"skipped": why, "gaussian_tc": {"points": tc.points, "of": "test codes"}})
    train_codes = final.train_codes if final.train_codes is not None else encode_all(model, ds.train)
    codes = torch.cat([train_codes, final.test_codes]).double().cpu().numpy()
    classes = np.concatenate([ds.train.factors, ds.test.factors])
    report = factors.factor_metrics(codes, classes, ds.factor_names, seed=cfg.seed, protocol=p.factor_protocol,
                                    sizes=sizes)
    numbers = {k: finite_or_none(report.metrics[k]) for k in rundir.FACTOR_METRICS}
    record = {
        "protocol": report.protocol,
        "train_accuracies": {k: report.metrics[k] for k in ("factor_vae_train_accuracy", "beta_vae_train_accuracy",
                                                            "dci_informativeness_train")},
        "seconds": {k: round(v, 3) for k, v in report.seconds.items()},
    }
    return FactorReadouts(numbers, record, report)
