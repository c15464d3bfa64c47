"""Dataset-level baselines: read-outs that depend on the data alone, computed once and cached.

The raw-pixel probe and the PCA probe at a given size never change with the model,
so they are computed once per dataset and setting and kept in
``<data root>/<dataset folder>/aebench-baselines.json``.  A lock file beside it
makes parallel jobs (joblib, a Slurm array) compute each value once: the others
wait, then read it.  Where the data root cannot be written, values are computed
and not kept.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any, Callable

import torch

from . import atomic, data, probe

log = logging.getLogger(__name__)

CACHE_FILE = "aebench-baselines.json"
FORMAT = "v5"  # bump when a cached number would be computed differently


def cache_path(root: Path, dataset: str) -> Path:
    return Path(root) / data.spec_for(dataset).folder / CACHE_FILE


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
    return f"train{len(ds.train_x)}-test{len(ds.test_x)}-l2{l2}-tol{tol}"


def _accuracy(result: probe.ProbeResult, what: str, max_iter: int) -> float:
    if not result.converged:  # said once, when the number is computed (and cached)
        log.warning("the %s stopped at probe.max_iter=%d before converging: largest gradient entry %.2g",
                    what, max_iter, result.grad_norm)
    return result.accuracy


def pixel_probe(ds: data.ImageData, root: Path, l2: float, tol: float, max_iter: int) -> float:
    """Test accuracy of the linear probe on the raw (standardised) pixels."""
    def compute() -> float:
        result = probe.linear_probe(ds.train_x, ds.train_y, ds.test_x, ds.test_y, len(ds.classes), l2, tol, max_iter)
        return _accuracy(result, "probe on raw pixels", max_iter)

    return cached(cache_path(root, ds.name), f"pixels-{_setting(ds, l2, tol)}", compute, "probe on raw pixels")


def pca_features(ds: data.ImageData, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and test images projected on the top ``dim`` principal directions of the train images."""
    mean, components = probe.pca_fit(ds.train_x, dim)
    return probe.pca_project(ds.train_x, mean, components), probe.pca_project(ds.test_x, mean, components)


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
        result = probe.linear_probe(train, ds.train_y, test, ds.test_y, len(ds.classes), l2, tol, max_iter)
        return _accuracy(result, f"probe on a PCA of the pixels to {dim}", max_iter)

    return cached(cache_path(root, ds.name), f"pca{dim}-{_setting(ds, l2, tol)}", compute, f"probe on a PCA of the pixels to {dim}")


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
        else:
            train, test = ds.train_x, ds.test_x
        return probe.label_budget_probes(train, ds.train_y, test, ds.test_y, budgets, draws, seed, len(ds.classes),
                                         penalty, tol, max_iter)

    return cached(cache_path(root, ds.name), key, compute, f"{kind} probes on {', '.join(map(str, budgets))} labels")
