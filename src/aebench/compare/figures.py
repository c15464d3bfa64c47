"""The comparison's figures: probe accuracy, reconstruction error and (where runs have factors) MIG against the latent
size, every job's loss curve, and the same test images reconstructed by every job (:mod:`aebench.plots` draws them).

A point is a group's mean over its seeds, its interval an error bar.  A line joins the groups that differ only
in their latent size, and is named as the tables name them: the model and network, the dataset and epochs
where those differ, and the group's other overrides.
"""

from __future__ import annotations

import logging
from pathlib import Path
import numpy as np

from .. import rundir, stats
from ..errors import first_line
from .groups import Comparison, Group
from .rows import Row

log = logging.getLogger("aebench.compare")

FIGURES = {
    "probe": "probe_accuracy_vs_latent.png",
    "recon": "recon_mse_vs_latent.png",
    "mig": "mig_vs_latent.png",
    "curves": "loss_curves.png",
    "reconstructions": "reconstructions_by_job.png",
}
PROBE_TITLE = "Linear probe on frozen codes vs latent size"
PROBE_TITLE_DATASETS = PROBE_TITLE + " (datasets apart)"
PROBE_AXIS = "linear-probe test accuracy (%)"
RECON_TITLE = "Reconstruction error vs latent size"
RECON_AXIS = "test MSE per pixel"
MIG_TITLE = "Mutual information gap vs latent size"
MIG_AXIS = "MIG (higher: each factor in one unit)"
PCA_LINE, PIXEL_LINE = "PCA probe (same size)", "raw-pixel probe"
# Overrides a line's name leaves out: its model and network lead it, the latent size is the x axis, seeds are
# pooled, and the dataset and epochs are named as settings where they differ.
IMPLIED = {"model", "arch", "latent", "seed", "data", "epochs"}


def series_names(groups: tuple[Group, ...] | list[Group]) -> dict[str, str]:
    """The name of every line (by :attr:`Group.series_key`): ``"AE mlp"``, then what sets it apart."""
    named = [k for k in ("dataset", "epochs") if len({getattr(g, k) for g in groups}) > 1]
    firsts: dict[str, Group] = {}
    for g in groups:
        firsts.setdefault(g.series_key, g)
    names = {key: " ".join([g.model.upper(), g.arch, *(f"{k}={getattr(g, k)}" for k in named),
                            *(o for o in g.varying if rundir.override_key(o) not in IMPLIED)])
             for key, g in firsts.items()}
    # lines that nothing on their command lines tells apart (two sweeps of other configs): named by where they are
    for name in {n for n in names.values() if list(names.values()).count(n) > 1}:
        keys = [k for k, n in names.items() if n == name]
        places = [str(Path(firsts[k].members[0].job).parent) for k in keys]
        if len(set(places)) < len(places) or "." in places:
            places = [f"job {firsts[k].members[0].number}" for k in keys]
        for key, place in zip(keys, places):
            names[key] = f"{name} ({place})"
    return names


def figure_points(groups: tuple[Group, ...] | list[Group], key: str) -> tuple[dict[str, dict], str | None]:
    """What a comparison figure draws for ``key``: ``{series: {latent: (mean, low, high)}}`` and the noise
    the bars show.  Never two kinds on one axis: where any group has several seeds the bars are the
    t-intervals over seeds (single runs get none); else single runs get their bootstrap over test images."""
    several = any(g.interval(key)[0] is not None for g in groups)
    names = series_names(groups)
    series: dict[str, dict[int, tuple]] = {}
    drawn = False
    for g in groups:
        mean = g.mean(key)
        if mean is None:
            continue
        low, high = g.interval(key) if several else g.members[0].interval(key)
        drawn = drawn or low is not None
        series.setdefault(names[g.series_key], {})[g.latent] = (mean, low, high)
    noise = (stats.SEED_NOISE if several else stats.TEST_NOISE) if drawn else None
    return series, noise


def draw(comparison: Comparison, out: Path, reconstructions: bool) -> list[str]:
    """Draw the comparison's figures into ``out``; the names of those drawn."""
    from .. import plots  # matplotlib: imported only where figures are drawn

    written: list[str] = []
    done, groups = comparison.done, comparison.groups
    if not done:
        return written
    several_datasets = len({r.dataset for r in done}) > 1
    refs: dict[str, dict[int, float]] = {}
    for g in groups:
        # the baselines depend on the data (and the size), never on the model or its training
        suffix = f", {g.dataset}" if several_datasets else ""
        pca, pixels = g.mean("pca_probe_accuracy"), g.mean("pixel_probe_accuracy")
        if pca is not None:
            refs.setdefault(PCA_LINE + suffix, {})[g.latent] = pca
        if pixels is not None:
            refs.setdefault(PIXEL_LINE + suffix, {}).setdefault(0, pixels)
    probe_series, probe_noise = figure_points(groups, "probe_accuracy")
    recon_series, recon_noise = figure_points(groups, "recon_mse")
    mig_series, mig_noise = figure_points(groups, "mig")  # none where no run has factors
    if probe_series:  # none where every run's data is unlabelled
        title = PROBE_TITLE_DATASETS if several_datasets else PROBE_TITLE
        plots.metric_vs_latent(probe_series, refs, PROBE_AXIS, title, out / FIGURES["probe"], percent=True,
                               noise=probe_noise)
        written.append(FIGURES["probe"])
    if recon_series:
        plots.metric_vs_latent(recon_series, {}, RECON_AXIS, RECON_TITLE, out / FIGURES["recon"], noise=recon_noise)
        written.append(FIGURES["recon"])
    if mig_series:
        plots.metric_vs_latent(mig_series, {}, MIG_AXIS, MIG_TITLE, out / FIGURES["mig"], noise=mig_noise)
        written.append(FIGURES["mig"])

    curves = {}
    for r in done:
        try:
            history = rundir.read_history(r.run_dir)
            if history is not None:
                curves[r.label] = ([int(h["epoch"]) for h in history], [float(h["test_recon_mse"]) for h in history])
        except (rundir.Unreadable, ValueError, KeyError, TypeError) as e:  # a damaged history costs its curve only
            log.warning("%s: %s unreadable (%s): no loss curve", r.job, rundir.HISTORY, first_line(e))
    if curves:
        plots.all_loss_curves(curves, RECON_AXIS, out / FIGURES["curves"])
        written.append(FIGURES["curves"])

    if reconstructions:
        try:
            originals, recon_rows, ink = reconstruct_by_job(done)
        except Exception as e:  # noqa: BLE001 - a missing checkpoint or dataset only costs this figure
            log.warning("skipped %s: %s", FIGURES["reconstructions"], first_line(e))
        else:
            if recon_rows:
                plots.reconstruction_rows(originals, recon_rows, out / FIGURES["reconstructions"], ink=ink)
                written.append(FIGURES["reconstructions"])
    return written


def reconstruct_by_job(done: list[Row]) -> tuple[np.ndarray | None, dict[str, np.ndarray], bool]:
    """The first test image of each class (the first ten test images where there are no labels), reconstructed
    by every job's final model (:func:`aebench.load_run`); jobs on data other than the first job's are left out
    (their images differ)."""
    from omegaconf import OmegaConf

    from .. import data
    from ..api import load_run
    from ..figures import as_images

    originals, first_data, x, ink = None, None, None, True
    rows: dict[str, np.ndarray] = {}
    for r in sorted(done, key=lambda r: (r.latent, r.model, r.arch)):
        if not (r.run_dir / rundir.CHECKPOINT).is_file():
            continue
        run = load_run(r.run_dir)
        data_cfg = OmegaConf.to_container(data.as_config(run.config.data))
        data_cfg.pop("root", None), data_cfg.pop("download", None)  # type: ignore[union-attr]
        if first_data is None:
            first_data = data_cfg
            arrays = data.open_arrays(run.config.data, data.resolve_root(run.config.data.root), ("test",))
            x_u8, y = arrays.splits["test"]
            first = [int(np.flatnonzero(y == c)[0]) for c in range(len(arrays.classes))] if y is not None \
                else list(range(min(10, len(x_u8))))
            x, ink = np.ascontiguousarray(x_u8[first]), arrays.ink
            originals = as_images(data.base.to_float(x, run.device), run.image_shape)
        elif data_cfg != first_data:
            log.info("reconstructions figure: %s left out (other data than the first job's)", r.label)
            continue
        name = f"{r.model.upper()} ({r.arch}), latent {r.latent}"
        rows[name if name not in rows else f"{name} ({r.label})"] = as_images(run.reconstruct(x), run.image_shape)
    return originals, rows, ink
