"""Every figure aebench draws, headless (matplotlib's Agg backend).

Functions take plain arrays and numbers, never models or training state, and
write one PNG each, atomically.  Image grids are composed in numpy and drawn
with a single ``imshow``, which keeps a figure to a few tens of milliseconds.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.patches  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from . import atomic  # noqa: E402

DPI = 110


def _save(fig: Any, path: Path) -> None:
    _fit_text(fig)
    fig.tight_layout()
    for _ in range(3):  # a title wrapped onto several lines over a short figure: make the figure taller
        renderer = fig.canvas.get_renderer()
        top = max([t.get_window_extent(renderer).y1 for t in _titles(fig)] or [0.0])
        if top <= fig.bbox.y1:
            break
        fig.set_figheight(fig.get_figheight() + (top - fig.bbox.y1) / fig.dpi + 0.1)
        fig.tight_layout()
    # zlib level 1: image sheets encode several times quicker than at the default 6, files a fifth larger
    atomic.save_figure(fig, path, dpi=DPI, pil_kwargs={"compress_level": 1})
    plt.close(fig)


def _fit_text(fig: Any) -> None:
    """Wrap every title and axis label that would run past the figure onto more lines (a long data label, say),
    so that each fits whatever the text: titles and x labels across the figure's width, y labels along its height."""
    renderer = fig.canvas.get_renderer()
    width, height = fig.bbox.width * 0.96, fig.bbox.height * 0.96
    texts = [(fig._suptitle, width)] if fig._suptitle is not None else []
    for ax in fig.axes:
        texts += [(t, width) for t in (ax.title, ax._left_title, ax._right_title, ax.xaxis.label)]
        texts.append((ax.yaxis.label, height))
    for text, room in texts:
        original = text.get_text()
        if not original:
            continue
        longest = max(len(line) for line in original.splitlines())
        for _ in range(4):  # each pass narrows the lines in proportion to the overshoot, wrapping the original anew
            extent = text.get_window_extent(renderer)
            size = extent.height if text.get_rotation() % 180 == 90 else extent.width
            if size <= room:
                break
            longest = max(8, int(longest * room / size) - 1)
            text.set_text("\n".join(textwrap.fill(line, longest) for line in original.splitlines()))


def _titles(fig: Any) -> list[Any]:
    found = [fig._suptitle] if fig._suptitle is not None else []
    return found + [t for ax in fig.axes for t in (ax.title, ax._left_title, ax._right_title) if t.get_text()]


def image_grid(images: np.ndarray, cols: int, pad: int = 1) -> np.ndarray:
    """Tile (N, H, W) grey or (N, H, W, 3) colour images in [0, 1] into one (rows*(H+pad), cols*(W+pad)[, 3])
    array, with gaps of ones between them."""
    n, h, w = images.shape[:3]
    rows = -(-n // cols)
    grid = np.ones((rows * (h + pad) - pad, cols * (w + pad) - pad, *images.shape[3:]), dtype=np.float32)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        grid[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = img
    return grid


def _show(ax: Any, grid: np.ndarray, title: str, ink: bool = True) -> None:
    """Draw an image grid: colour as it is; grey inverted (dark ink on white) when ``ink``, else as it is."""
    if grid.ndim == 3:
        ax.imshow(np.clip(grid, 0, 1), interpolation="nearest")
    else:
        ax.imshow(grid, cmap="gray_r" if ink else "gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])


def loss_curves(history: Sequence[dict[str, Any]], loss_label: str, path: Path) -> None:
    """Train and test loss per epoch, and the test reconstruction error per epoch."""
    epochs = [row["epoch"] for row in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [row["train_loss"] for row in history], "o-", label="train")
    ax1.plot(epochs, [row["test_loss"] for row in history], "s-", label="test")
    ax1.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax2.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax1.set_xlabel("epoch")
    ax1.set_ylabel(loss_label)
    ax1.set_title("Training objective")
    ax1.legend()
    ax1.grid(alpha=0.3)
    ax2.plot(epochs, [row["test_recon_mse"] for row in history], "s-", color="C2")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("MSE per pixel (pixels in [0, 1])")
    ax2.set_title("Test reconstruction error")
    ax2.grid(alpha=0.3)
    _save(fig, path)


def reconstructions(originals: np.ndarray, recons: np.ndarray, title: str, path: Path, ink: bool = True) -> None:
    """Test images (left) and their reconstructions (right), the same 8x8 layout."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 4.8))
    _show(ax1, image_grid(originals, cols=8), "test images", ink)
    _show(ax2, image_grid(recons, cols=8), "reconstructions", ink)
    fig.suptitle(title)
    _save(fig, path)


def per_class(originals: np.ndarray, recons: np.ndarray, class_names: Sequence[str], title: str, path: Path,
              ink: bool = True) -> None:
    """For each class, a row of test images above a row of their reconstructions.

    ``originals`` and ``recons`` are (classes, per_class, H, W) or (classes, per_class, H, W, 3).
    """
    n_classes, per, h, w = originals.shape[:4]
    rows = []
    for c in range(n_classes):
        rows.append(originals[c])
        rows.append(recons[c])
    grid = image_grid(np.concatenate(rows), cols=per)
    fig, ax = plt.subplots(figsize=(per * 0.62 + 1.6, n_classes * 1.25 + 0.6))
    _show(ax, grid, title, ink)
    ax.set_yticks([(2 * c + 1) * (h + 1) - 0.5 for c in range(n_classes)])
    ax.set_yticklabels([f"{name}\n(image / recon.)" for name in class_names], fontsize=7)
    ax.tick_params(left=False)
    _save(fig, path)


def probe_curve(
    epochs: Sequence[int],
    accuracy: Sequence[float],
    baselines: dict[str, float],
    title: str,
    path: Path,
) -> None:
    """Linear-probe test accuracy after each pretraining epoch, with reference lines."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.plot(epochs, [100 * a for a in accuracy], "o-", label="linear probe on codes", zorder=3)
    styles = ["--", ":", "-."]
    for i, (name, value) in enumerate(baselines.items()):
        if value is not None and value == value:  # skip missing / NaN
            ax.axhline(100 * value, linestyle=styles[i % len(styles)], color=f"C{i + 1}", label=f"{name}: {100 * value:.2f}%")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("pretraining epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    _save(fig, path)


def label_efficiency(series: dict[str, dict[str, dict] | None], full: dict[str, float | None], full_n: int,
                     title: str, path: Path) -> None:
    """Probe accuracy against the number of labels (log scale): mean and spread of the draws per budget,
    each line ending at the probe on every train label (``full``, at ``full_n``)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for i, (name, budgets) in enumerate(series.items()):
        if not budgets:
            continue
        points = sorted((int(n), r["mean"], r["std"]) for n, r in budgets.items() if "mean" in r)
        if full.get(name) is not None:
            points.append((full_n, full[name], 0.0))
        if not points:
            continue
        xs, means, stds = zip(*points)
        ax.errorbar(xs, [100 * m for m in means], yerr=[100 * s for s in stds], fmt="o-" if i == 0 else "s--",
                    capsize=3, color=f"C{i}", label=name, zorder=3 - i)
    ax.set_xscale("log")
    ax.set_xlabel("labelled train examples (class-balanced draws; the last point: every label)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)


def latent_scatter(points: np.ndarray, labels: np.ndarray | None, class_names: Sequence[str], title: str, axis: str,
                   path: Path) -> None:
    """2-D codes of test images, one colour per class (``labels`` None: one colour, named by ``class_names[0]``);
    ``axis`` is a label with ``{}`` for 1 and 2.  More than 10 classes take colours from tab20, then repeat."""
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    cmap = plt.get_cmap("tab10" if len(class_names) <= 10 else "tab20")
    if labels is None:
        labels = np.zeros(len(points), dtype=int)
    for c, name in enumerate(class_names):
        sel = labels == c
        ax.scatter(points[sel, 0], points[sel, 1], s=3, alpha=0.6, color=cmap(c % cmap.N), label=name, rasterized=True)
    ax.set_xlabel(axis.format(1))
    ax.set_ylabel(axis.format(2))
    ax.set_title(title)
    ax.legend(markerscale=4, fontsize=7, loc="best", frameon=True)
    _save(fig, path)


def image_sheet(images: np.ndarray, cols: int, title: str, path: Path, xlabel: str | None = None,
                ink: bool = True) -> None:
    """A grid of images (prior samples, interpolation paths)."""
    rows = -(-len(images) // cols)
    fig, ax = plt.subplots(figsize=(cols * 0.6 + 0.4, rows * 0.6 + 0.8))
    _show(ax, image_grid(images, cols=cols), title, ink)
    if xlabel:
        ax.set_xlabel(xlabel)
    _save(fig, path)


def traversals(panels: np.ndarray, row_labels: Sequence[str], active: Sequence[bool], column_note: str, title: str,
               path: Path, ink: bool = True) -> None:
    """Latent traversals: ``panels`` is (images, units, steps, H, W[, 3]); one panel per test image, side by side,
    a row per unit (labelled ``row_labels``, inactive ones greyed and marked), a column per step of the range."""
    n, units, steps, h, w = panels.shape[:5]
    fig, axes = plt.subplots(1, n, figsize=(n * (steps * 0.42 + 0.3) + 2.0, units * 0.42 + 1.3), squeeze=False)
    for i, ax in enumerate(axes[0]):
        _show(ax, image_grid(panels[i].reshape(units * steps, *panels.shape[3:]), cols=steps),
              f"test image {i + 1}", ink)
        ax.set_xlabel(column_note, fontsize=7)
    left = axes[0][0]
    left.set_yticks([r * (h + 1) + h / 2 - 0.5 for r in range(units)])
    left.set_yticklabels([label if on else f"{label} (inactive)" for label, on in zip(row_labels, active)], fontsize=7)
    for tick, on in zip(left.get_yticklabels(), active):
        if not on:
            tick.set_color("0.55")
    left.tick_params(left=False)
    fig.suptitle(title)
    _save(fig, path)


def factor_matrix(normalised: np.ndarray, factor_names: Sequence[str], mig: float, title: str, path: Path) -> None:
    """The (units, factors) mutual information over each factor's entropy as a heat map, a column per factor; in
    each column the most informative unit is outlined, the second dashed, and the gap between them written below."""
    units, k = normalised.shape
    fig, ax = plt.subplots(figsize=(max(4.8, 1.1 * k + 2.6), max(3.2, 0.3 * units + 1.9)))
    image = ax.imshow(normalised, cmap="viridis", vmin=0, vmax=max(1e-9, float(normalised.max())), aspect="auto")
    fig.colorbar(image, ax=ax, label="I(unit; factor) / H(factor)")
    gaps = []
    for j in range(k):
        ranked = np.argsort(-normalised[:, j], kind="stable")
        first, second = ranked[0], ranked[1] if units > 1 else ranked[0]
        gap = float(normalised[first, j] - (normalised[second, j] if units > 1 else 0.0))
        gaps.append(gap)
        ax.add_patch(matplotlib.patches.Rectangle((j - 0.5, first - 0.5), 1, 1, fill=False, edgecolor="red", lw=2))
        if units > 1:
            ax.add_patch(matplotlib.patches.Rectangle((j - 0.5, second - 0.5), 1, 1, fill=False, edgecolor="orange",
                                                      lw=1.5, ls="--"))
    ax.set_xticks(range(k))
    ax.set_xticklabels([f"{name}\ngap {g:.2f}" for name, g in zip(factor_names, gaps)], fontsize=8)
    ax.set_yticks(range(units))
    ax.set_yticklabels([f"unit {u}" for u in range(units)], fontsize=7)
    ax.set_xlabel(f"factor; gap = top unit (red) - second (orange dashed); MIG = mean gap = {mig:.3f}")
    ax.set_title(title)
    _save(fig, path)


# ---------------------------------------------------------------- sweep comparisons


def metric_vs_latent(series: dict[str, dict[int, tuple[float, float | None, float | None]]],
                     references: dict[str, dict[int, float]], ylabel: str, title: str, path: Path,
                     percent: bool = False, noise: str | None = None) -> None:
    """One line per (objective, network) (``series[name][latent] = (value, low, high)``), reference lines dashed.

    [low, high] (None: no interval) is drawn as an error bar; ``noise`` says what the bars are (one kind per
    axis, e.g. "95 % t-interval over seeds"), in the legend's title."""
    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    scale = 100 if percent else 1
    # series that share a latent size are drawn side by side (a few % apart on the log axis), so their error
    # bars do not hide each other; the ticks stay at the true sizes
    spread = 1.035  # per series; a lone series sits at its true size (exponent 0)
    for i, (name, points) in enumerate(series.items()):
        xs = sorted(points)
        at = [x * spread ** (i - (len(series) - 1) / 2) for x in xs]
        means = np.array([scale * points[x][0] for x in xs])
        lows = np.array([scale * (points[x][1] if points[x][1] is not None else points[x][0]) for x in xs])
        highs = np.array([scale * (points[x][2] if points[x][2] is not None else points[x][0]) for x in xs])
        if np.any(highs > lows):
            ax.errorbar(at, means, yerr=[np.maximum(means - lows, 0), np.maximum(highs - means, 0)], fmt="o-", capsize=3,
                        label=name)
        else:
            ax.plot(at, means, "o-", label=name)
    for i, (name, points) in enumerate(references.items()):
        xs = sorted(points)
        if len(xs) == 1 or len({points[x] for x in xs}) == 1:
            ax.axhline(scale * points[xs[0]], linestyle=(":", "-.", "--")[i % 3], color="gray", label=name)
        else:
            ax.plot(xs, [scale * points[x] for x in xs], "--", color=f"C{7 + i}", label=name)
    ax.set_xscale("log")
    ax.minorticks_off()
    all_x = sorted({x for pts in series.values() for x in pts})
    if all_x:
        ax.set_xticks(all_x)
        ax.set_xticklabels([str(x) for x in all_x])
    ax.set_xlabel("latent size")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    # beside the axes: with many groups (a leaderboard has 8) a legend inside would cover points
    ax.legend(fontsize=8, title=f"error bars: {noise}" if noise else None, title_fontsize=8,
              loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _save(fig, path)


def all_loss_curves(curves: dict[str, tuple[list[int], list[float]]], ylabel: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for name, (epochs, values) in curves.items():
        ax.plot(epochs, values, "-", marker=".", label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_yscale("log")
    ax.set_title("Test reconstruction error of every job")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    _save(fig, path)


def reconstruction_rows(originals: np.ndarray, rows: dict[str, np.ndarray], path: Path, ink: bool = True) -> None:
    """The same test images (top row) reconstructed by each job (one row per job)."""
    names = ["test images", *rows]
    stack = np.concatenate([originals, *rows.values()])
    cols = len(originals)
    h = originals.shape[1]
    fig, ax = plt.subplots(figsize=(cols * 0.55 + 2.5, len(names) * 0.55 + 0.8))
    _show(ax, image_grid(stack, cols=cols), "The same test images, reconstructed by each job", ink)
    ax.set_yticks([i * (h + 1) + h / 2 for i in range(len(names))])
    ax.set_yticklabels(names, fontsize=7)
    ax.tick_params(left=False)
    _save(fig, path)
