"""A run's own figures: what to show of a trained model and its data (:mod:`aebench.plots` draws them).

``figures/``: loss.png, reconstructions.png, per_digit.png (one row per class), probe_accuracy.png, traversals.png,
latent_space.png, label_efficiency.png; for the VAE also samples.png and interpolation.png; where the data have
known factors, factors.png.
Which test images are shown is fixed by the run's seed.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from . import data, models, probe, units


def draw_all(cfg: DictConfig, model: torch.nn.Module, ds: data.ImageData, history: list[dict[str, Any]],
             final: Any, refs: Any, factor_report: Any, fig_dir: Path) -> None:
    """Every figure of a run into ``fig_dir``: ``final`` its :class:`~aebench.readouts.Readouts`, ``refs`` its
    :class:`~aebench.baselines.RunBaselines`, ``factor_report`` its :class:`~aebench.factors.FactorReport` (None
    without factors)."""
    draw_figures(cfg, model, ds, history, final.test_codes, {"PCA probe (same size)": refs.pca_probe,
                                                             "raw-pixel probe": refs.pixel_probe}, fig_dir)
    draw_traversals(cfg, model, ds, final.train_codes if final.train_codes is not None else final.test_codes,
                    ds.train if final.train_codes is not None else ds.test, fig_dir)
    if factor_report is not None:
        draw_factors(cfg, ds, factor_report, fig_dir)
    if final.label_budgets:
        full = {"codes": final.probe_accuracy, "PCA (same size)": refs.pca_probe, "raw pixels": refs.pixel_probe}
        draw_label_efficiency(cfg, ds, {"codes": final.label_budgets, "PCA (same size)": refs.pca_budgets,
                                        "raw pixels": refs.pixel_budgets}, full, fig_dir)


TRAVERSAL_IMAGES = 3  # test images whose codes are traversed
TRAVERSAL_STEPS = 9  # values of each unit's range, the middle one its centre
TRAVERSAL_UNITS = 32  # at most this many rows: the units that carry most


@torch.no_grad()
def draw_traversals(cfg: DictConfig, model: torch.nn.Module, ds: data.ImageData, codes: torch.Tensor,
                    images: data.Split, fig_dir: Path) -> None:
    """figures/traversals.png: each code unit of a few test images' codes varied over its range, the others held,
    units ordered by what they carry (:mod:`aebench.units`)."""
    from . import plots

    stats = units.unit_stats(model, images, codes)
    rng = torch.Generator().manual_seed(cfg.seed + 1)  # its own draw: the other figures show what they always showed
    pick = torch.randperm(len(ds.test), generator=rng)[:TRAVERSAL_IMAGES]
    base = model.encode(ds.test.take(pick)).float()
    decoded = units.traverse(model, base, stats, TRAVERSAL_STEPS)
    order = stats.order()[:TRAVERSAL_UNITS]
    decoded = decoded[:, :len(order)]
    shown = as_images(decoded.reshape(-1, decoded.shape[-1]), ds.image_shape)
    panels = shown.reshape(len(pick), len(order), TRAVERSAL_STEPS, *shown.shape[1:])
    unit_word = "KL" if units.is_variational(model) else "var"
    labels = [f"unit {u}: {unit_word} {stats.carried[u]:.3g}" for u in order]
    note = ("each unit from -2 to +2 (the prior's ±2σ)" if units.is_variational(model)
            else "each unit over its mean ± 2 std of the codes")
    cut = f"; the {len(order)} of {len(stats.carried)} units that carry most" if len(order) < len(stats.carried) else ""
    plots.traversals(panels, labels, stats.active[order].tolist(), note,
                     f"Traversals: one code unit varied, the others held ({figure_label(cfg, ds)}; "
                     f"units by {stats.measure}{cut})", fig_dir / "traversals.png", ink=ds.ink)
    model.train()


def draw_factors(cfg: DictConfig, ds: data.ImageData, report: Any, fig_dir: Path) -> None:
    """figures/factors.png: the unit x factor mutual information, each column normalised by the factor's entropy,
    with each factor's two most informative units and the gap between them (MIG is the mean of those gaps)."""
    from . import plots

    entropy = np.where(report.entropy > 0, report.entropy, np.inf)
    plots.factor_matrix(report.mutual_information / entropy[None, :], list(report.factor_names), report.metrics["mig"],
                        f"What each code unit holds of each factor ({figure_label(cfg, ds)})",
                        fig_dir / "factors.png")


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
        "beta_tcvae": f"BCE + {m.alpha:g}·MI + {m.beta:g}·TC + {m.gamma:g}·dim-wise KL (nats per image)",
        "factor_vae": f"BCE + {m.beta:g}·KL + {m.gamma:g}·TC (discriminator) (nats per image)",
        "dip_vae": f"BCE + {m.beta:g}·KL + DIP-VAE-{m.dip_type.upper()} penalty (per image)",
        "annealed_vae": f"BCE + {m.gamma:g}·|KL − C|, C → {m.capacity_max:g} nats (per image)",
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
    from . import plots  # matplotlib's import is paid only by runs that draw

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

    if cfg.model.name in models.VARIATIONAL:
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
