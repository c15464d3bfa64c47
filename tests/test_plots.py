"""Figures (aebench.plots): every title and label fits on its canvas, whatever the data's label."""

from __future__ import annotations

import numpy as np
import pytest

from aebench import plots

LONG = "folder:photos_of_the_garden_taken_every_morning_in_2026@64px"


@pytest.fixture
def drawn(monkeypatch):
    """The texts that lie outside their figure, for every figure saved while the test runs."""
    outside: list[str] = []

    def check(fig, path, **kwargs):
        fig.canvas.draw()
        box = fig.bbox
        texts = [fig._suptitle] if fig._suptitle is not None else []
        for ax in fig.axes:  # titles, axis labels, legends (tick labels beyond the view limits are never drawn)
            texts += [ax.title, ax.xaxis.label, ax.yaxis.label]
            texts += ax.get_legend().get_texts() if ax.get_legend() is not None else []
        for text in texts:
            if not text.get_visible() or not text.get_text().strip():
                continue
            e = text.get_window_extent()
            if e.x0 < box.x0 - 1 or e.x1 > box.x1 + 1 or e.y0 < box.y0 - 1 or e.y1 > box.y1 + 1:
                outside.append(f"{path.name}: {text.get_text()!r}")

    monkeypatch.setattr(plots.atomic, "save_figure", check)
    return outside


def test_every_figure_title_fits_for_a_long_data_label(drawn, tmp_path):
    rng = np.random.default_rng(0)
    images = rng.random((3, 10, 28, 28))
    label = f"AE (mlp), latent 20, {LONG}"
    plots.per_class(images, images, ["cats", "dogs", "owls"], f"10 random test images per class ({label})",
                    tmp_path / "per_digit.png")
    plots.reconstructions(images[0], images[1], f"Reconstructions of test images ({label})", tmp_path / "r.png")
    plots.probe_curve([1, 2, 3], [0.5, 0.6, 0.7], {"PCA probe (same size)": 0.55}, f"Linear probe ({label})",
                      tmp_path / "probe.png")
    plots.latent_scatter(rng.random((50, 2)), rng.integers(0, 3, 50), ["cats", "dogs", "owls"], f"Codes ({label})",
                         "principal component {} of the codes", tmp_path / "latent.png")
    plots.image_sheet(images[0], 8, f"Decoded draws from the prior N(0, I) ({label})", tmp_path / "samples.png")
    plots.loss_curves([{"epoch": 1, "train_loss": 2.0, "test_loss": 2.1, "test_recon_mse": 0.1}],
                      f"BCE + 4·KL (nats per image) of a model on {LONG}", tmp_path / "loss.png")
    plots.traversals(rng.random((3, 20, 9, 28, 28)), [f"unit {u}: KL {u / 7:.3g}" for u in range(20)], [True] * 19 + [False],
                     "each unit from -2 to +2 (the prior's ±2σ)", f"Traversals: one code unit varied ({label})",
                     tmp_path / "traversals.png")
    assert drawn == []


def test_a_short_title_is_left_as_it_is(drawn, tmp_path, monkeypatch):
    titles = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: (plots._fit_text(fig), titles.append(fig._suptitle.get_text())))
    images = np.zeros((4, 8, 8))
    plots.reconstructions(images, images, "Reconstructions of test images (AE (mlp), latent 20, mnist)", tmp_path / "r.png")
    assert titles == ["Reconstructions of test images (AE (mlp), latent 20, mnist)"]
