"""Dataset-level baselines: read-outs that depend on the data alone, computed once and cached.

The raw-pixel probe and the PCA probe at a given size never change with the model,
so they are computed once per dataset and setting and kept in
``<data root>/<dataset folder>/aebench-baselines.json`` (MNIST, Fashion-MNIST) or
``<data root>/baselines/<data identity>.json`` (every other source: the identity names the
files and the preprocessing, so two folders or two image sizes never share a number).  A lock
file beside it makes parallel jobs (joblib, a Slurm array) compute each value once: the others
wait, then read it.  Where the data root cannot be written, values are computed and not kept.

Bounded for wide images (3 072 values for CIFAR-10, 27 648 for STL-10):

- pixel probes read at most ``PIXEL_BYTES`` of float32 pixels (train and test together): every
  image when they fit, else class-stratified seeded subsamples of both splits in proportion;
- the PCA is exact (the covariance, accumulated batch by batch) up to ``PCA_EXACT_MAX`` features
  and ``PCA_EXACT_WORK`` multiply-adds (train images x features^2: every named set is within both),
  and randomized (``torch.svd_lowrank``, seeded) on a seeded subsample of ``PCA_FIT_ROWS`` train
  images beyond (STL-10's 27 648 values; dSprites' full grid, 663 552 train images of 4 096 values);
  every image is then projected batch by batch.

:func:`describe` says what each baseline was computed on, for metrics.json.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from . import atomic, data, probe
from .data.base import seeded_subset, stratified_subset

log = logging.getLogger(__name__)

CACHE_FILE = "aebench-baselines.json"
FORMAT = "v5"  # bump when a cached number would be computed differently
PIXEL_BYTES = 768 * 2**20  # pixel probes: at most this much float32 pixels (train + test)
PCA_EXACT_MAX = 4096  # features up to this: exact PCA; wider: randomized on a subsample
PCA_EXACT_WORK = 10**12  # and train images x features^2 up to this (SVHN: 6.9e11; dSprites' grid at 64x64: 1.1e13)
PCA_FIT_ROWS = 5000  # the randomized PCA's subsample of train images
SUBSAMPLE_SEED = 0  # which images the subsamples hold: fixed per dataset, not per run


def cache_path(root: Path, ds: data.ImageData) -> Path:
    if ds.name in data.SPECS:  # where 0.3 kept them: its cached numbers stay valid
        return Path(root) / data.spec_for(ds.name).folder / CACHE_FILE
    return Path(root) / "baselines" / f"{ds.identity}.json"


def pixel_subsample(ds: data.ImageData) -> tuple[np.ndarray, np.ndarray] | None:
    """Train and test indices for the pixel probes when all the pixels exceed ``PIXEL_BYTES``, else None."""
    total = 4 * ds.input_dim * (len(ds.train) + len(ds.test))
    if total <= PIXEL_BYTES:
        return None
    share = PIXEL_BYTES / total
    n_classes = len(ds.classes or ())
    picks = []
    for split in (ds.train, ds.test):
        n = max(n_classes, int(len(split) * share))
        picks.append(stratified_subset(split.y.cpu().numpy(), n, SUBSAMPLE_SEED))
    return picks[0], picks[1]


def pixels(ds: data.ImageData) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train pixels, train labels, test pixels, test labels) for the pixel probes: see :func:`pixel_subsample`."""
    sub = pixel_subsample(ds)
    if sub is None:
        if ds.train.resident and ds.test.resident:
            return ds.train.x, ds.train.y, ds.test.x, ds.test.y
        sub = np.arange(len(ds.train)), np.arange(len(ds.test))
    (tr, te) = (torch.from_numpy(i) for i in sub)
    return ds.train.take(tr), ds.train.y[tr.to(ds.device)], ds.test.take(te), ds.test.y[te.to(ds.device)]


def describe(ds: data.ImageData, latent: int) -> dict[str, str]:
    """What each baseline was computed on, in words (for metrics.json)."""
    sub = pixel_subsample(ds)
    pixel = (f"every image ({len(ds.train)} train, {len(ds.test)} test), {ds.input_dim} values each" if sub is None else
             f"class-stratified seeded subsamples of {len(sub[0])} train and {len(sub[1])} test images "
             f"(of {len(ds.train)} and {len(ds.test)}; {ds.input_dim} values each exceed {PIXEL_BYTES >> 20} MiB)")
    dim = min(latent, ds.input_dim)
    pca = (f"exact PCA to {dim} of the {len(ds.train)} train images" if pca_is_exact(ds.train) else
           f"randomized PCA to {dim} fitted on a seeded subsample of {min(PCA_FIT_ROWS, len(ds.train))} train images "
           f"({ds.input_dim} values each), every image projected")
    return {"pixel_probe": pixel, "pca_probe": pca}


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (ValueError, OSError):
        return {}  # a damaged cache is recomputed, never trusted


def cached(path: Path, key: str, compute: Callable[[], Any], what: str) -> Any:
    """``compute()`` once per ``key`` in the cache file ``path``; later calls read it."""
    key = f"{key}-{FORMAT}"
    value = _read(path).get(key)
    if value is not None:
        return value
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(atomic.file_lock(path.with_name(f".{path.name}.lock")))
        except OSError as e:
            log.warning("cannot lock %s (%s); computing the %s without caching it", path, e.strerror or e, what)
            return compute()
        value = _read(path).get(key)  # another process may have computed it while we waited
        if value is not None:
            return value
        log.info("%s (computed once per dataset, then cached in %s)", what, path)
        value = compute()
        try:
            atomic.write_json(path, {**_read(path), key: value})
        except OSError as e:
            log.warning("could not cache the %s in %s: %s", what, path, e)
        return value


def _setting(ds: data.ImageData, l2: float, tol: float) -> str:
    return f"train{len(ds.train)}-test{len(ds.test)}-l2{l2}-tol{tol}"


def _accuracy(result: probe.ProbeResult, what: str, max_iter: int) -> float:
    if not result.converged:  # said once, when the number is computed (and cached)
        log.warning("the %s stopped at probe.max_iter=%d before converging: largest gradient entry %.2g",
                    what, max_iter, result.grad_norm)
    return result.accuracy


def pixel_probe(ds: data.ImageData, root: Path, l2: float, tol: float, max_iter: int) -> float:
    """Test accuracy of the linear probe on the raw (standardised) pixels."""
    def compute() -> float:
        result = probe.linear_probe(*pixels(ds), len(ds.classes), l2, tol, max_iter)
        return _accuracy(result, "probe on raw pixels", max_iter)

    return cached(cache_path(root, ds), f"pixels-{_setting(ds, l2, tol)}", compute, "probe on raw pixels")


def pca_features(ds: data.ImageData, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and test images projected on the top ``dim`` principal directions of the train images."""
    mean, components = _pca_fit_bounded(ds.train, dim)
    rows = probe.rows_per_chunk(ds.input_dim)
    project = lambda split: torch.cat([probe.pca_project(b, mean, components) for b in split.batches(rows)])  # noqa: E731
    return project(ds.train), project(ds.test)


def pca_is_exact(split: data.Split) -> bool:
    """Whether the PCA of ``split`` is exact: at most PCA_EXACT_MAX features and PCA_EXACT_WORK multiply-adds."""
    return split.pixels <= PCA_EXACT_MAX and len(split) * split.pixels**2 <= PCA_EXACT_WORK


def _pca_fit_bounded(split: data.Split, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`aebench.probe.pca_fit` read batch by batch (exact), or randomized on a subsample (wide images)."""
    d = split.pixels
    rows = probe.rows_per_chunk(d)
    if pca_is_exact(split):  # the same chunks as probe.pca_fit on the whole matrix: the same numbers
        return probe.pca_fit_batches(lambda: split.batches(rows), len(split), d, dim, split.device)
    idx = torch.from_numpy(seeded_subset(len(split), PCA_FIT_ROWS, SUBSAMPLE_SEED))
    x = split.take(idx)
    mean = x.double().mean(0, keepdim=True)
    with torch.random.fork_rng(devices=[x.device] if x.is_cuda else []):  # the run's own random streams stay as they were
        torch.manual_seed(SUBSAMPLE_SEED)
        _, _, v = torch.svd_lowrank(x - mean.float(), q=min(dim + 10, *x.shape), niter=4)
    return mean, v[:, :dim].double()


Features = Callable[[], tuple[torch.Tensor, torch.Tensor]]


def pca_probe(ds: data.ImageData, root: Path, dim: int, l2: float, tol: float, max_iter: int,
              features: Features | None = None) -> float:
    """Test accuracy of the linear probe on a PCA of the pixels to ``dim`` dimensions.

    ``features``: where the PCA features come from when the number is not cached (by
    default :func:`pca_features`); one memoised source lets this and the PCA budget
    probes fit the PCA once between them.
    """
    dim = min(dim, ds.input_dim)

    def compute() -> float:
        train, test = features() if features is not None else pca_features(ds, dim)
        result = probe.linear_probe(train, ds.train.y, test, ds.test.y, len(ds.classes), l2, tol, max_iter)
        return _accuracy(result, f"probe on a PCA of the pixels to {dim}", max_iter)

    return cached(cache_path(root, ds), f"pca{dim}-{_setting(ds, l2, tol)}", compute, f"probe on a PCA of the pixels to {dim}")


def budget_probes(ds: data.ImageData, root: Path, kind: str, dim: int | None, budgets: list[int], draws: int, seed: int,
                  penalty: float, tol: float, max_iter: int, features: Features | None = None) -> dict[str, dict]:
    """:func:`aebench.probe.label_budget_probes` on raw pixels (``kind="pixels"``) or a PCA to ``dim`` (``"pca"``).

    Cached like the other baselines; the draws depend on the seed, so the key holds it.
    ``features``: as for :func:`pca_probe` (``kind="pca"`` only).
    """
    key = f"{kind}{dim if kind == 'pca' else ''}-budgets{'_'.join(map(str, budgets))}x{draws}-seed{seed}-{_setting(ds, penalty, tol)}"

    def compute() -> dict[str, dict]:
        if kind == "pca":
            train, test = features() if features is not None else pca_features(ds, min(dim or 1, ds.input_dim))
            train_y, test_y = ds.train.y, ds.test.y
        else:
            train, train_y, test, test_y = pixels(ds)
        return probe.label_budget_probes(train, train_y, test, test_y, budgets, draws, seed, len(ds.classes),
                                         penalty, tol, max_iter)

    return cached(cache_path(root, ds), key, compute, f"{kind} probes on {', '.join(map(str, budgets))} labels")


@dataclass
class RunBaselines:
    """The baselines a run is set against: the probe on a PCA of the pixels to the code's size and on the raw
    pixels, with their label budgets (None where not asked for, or where the data have no labels)."""

    pca_probe: float | None = None
    pixel_probe: float | None = None
    pca_budgets: dict[str, dict] | None = None
    pixel_budgets: dict[str, dict] | None = None


def for_run(cfg: Any, ds: data.ImageData, root: Path) -> RunBaselines:
    """Every baseline the run's settings ask for (``probe.*``), each computed once per dataset and cached."""
    if not ds.labelled:
        return RunBaselines()
    p = cfg.probe
    budgets = list(p.label_budgets)
    draws = dict(budgets=budgets, draws=p.budget_draws, seed=cfg.seed, penalty=p.budget_penalty, tol=p.tol,
                 max_iter=p.max_iter)
    pca = functools.cache(functools.partial(pca_features, ds, min(cfg.latent, ds.input_dim)))  # fitted once, if needed
    out = RunBaselines(pca_probe=pca_probe(ds, root, cfg.latent, p.l2, p.tol, p.max_iter, features=pca))
    if p.pixel_baseline:
        out.pixel_probe = pixel_probe(ds, root, p.l2, p.tol, p.max_iter)
    if budgets:
        out.pca_budgets = budget_probes(ds, root, "pca", cfg.latent, **draws, features=pca)
        del pca  # its features are not needed again
        if p.pixel_baseline:
            out.pixel_budgets = budget_probes(ds, root, "pixels", None, **draws)
    return out
