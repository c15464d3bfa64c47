"""aebench.compare.figures: what the comparison figures draw, and how their lines are named."""

from __future__ import annotations

import pytest

from aebench import compare, plots, stats
from fakes import fake_run, read_csv, run_compare, seed_sweep


@pytest.fixture
def drawn(monkeypatch):
    """The series each metric_vs_latent figure is given, by file name (the figures are still drawn)."""
    given = {}
    draw = plots.metric_vs_latent

    def record(series, references, ylabel, title, path, **kwargs):
        given[path.name] = series
        draw(series, references, ylabel, title, path, **kwargs)

    monkeypatch.setattr(plots, "metric_vs_latent", record)
    return given


def test_a_sweep_over_another_setting_draws_every_group_the_table_shows(tmp_path, capsys, drawn):
    """aebench -m seed=1,2 train.precision=fp32,bf16: two groups at one latent size are two lines, each named
    as the table names its group (not one line, the second group's points over the first's)."""
    sweep = tmp_path / "sweep"
    job = 0
    for precision, accuracy in (("fp32", 0.9), ("bf16", 0.8)):
        for seed in (1, 2):
            fake_run(sweep / f"{job}_seed={seed},train.precision={precision}", seed=seed, accuracy=accuracy,
                     overrides=[f"seed={seed}", f"train.precision={precision}"], train_precision=precision,
                     precision_used=precision)
            job += 1
    code, _, err = run_compare(capsys, sweep)
    assert code == 0, err
    groups = {g["group"]: g for g in read_csv(sweep / "groups.csv")}
    assert set(groups) == {"train.precision=fp32", "train.precision=bf16"}
    for figure, key in (("probe_accuracy_vs_latent.png", "probe_accuracy"), ("recon_mse_vs_latent.png", "recon_mse")):
        series = drawn[figure]
        assert set(series) == {f"AE mlp {name}" for name in groups}, figure
        for name, g in groups.items():
            assert series[f"AE mlp {name}"][5] == (float(g[f"{key}_mean"]), float(g[f"{key}_ci_low"]),
                                                   float(g[f"{key}_ci_high"]))
        assert (sweep / figure).stat().st_size > 10_000


def test_lines_nothing_on_the_command_line_tells_apart_are_named_by_where_they_are(tmp_path):
    """Two sweeps with the same overrides but other configs: the tables name their groups alike, the figure
    keeps them as two lines."""
    seed_sweep(tmp_path / "a")
    seed_sweep(tmp_path / "b", accuracy=lambda latent: 0.8)
    for run in (tmp_path / "b").iterdir():
        cfg = (run / ".hydra" / "config.yaml")
        cfg.write_text(cfg.read_text().replace("lr: 0.002", "lr: 0.001"))
    comparison = compare.collect([tmp_path / "a", tmp_path / "b"])
    assert len(comparison.groups) == 4
    series, noise = compare.figure_points(comparison.groups, "probe_accuracy")
    assert set(series) == {"AE mlp (a)", "AE mlp (b)"} and noise == stats.SEED_NOISE
    assert all(set(points) == {5, 10} for points in series.values())
    assert series["AE mlp (a)"][5][0] > series["AE mlp (b)"][5][0]


def test_a_line_joins_the_latent_sizes_of_one_setting(tmp_path):
    """The groups of a `model=ae,dae latent=5,10` sweep: one line per model, over both sizes."""
    sweep = tmp_path / "sweep"
    for job, (model, latent) in enumerate((("ae", 5), ("ae", 10), ("dae", 5), ("dae", 10))):
        run = fake_run(sweep / f"{job}_model={model},latent={latent}", latent=latent,
                       overrides=[f"model={model}", f"latent={latent}"])
        cfg = run / ".hydra" / "config.yaml"
        cfg.write_text(cfg.read_text().replace("name: ae", f"name: {model}"))
    series, noise = compare.figure_points(compare.collect([sweep]).groups, "recon_mse")
    assert set(series) == {"AE mlp", "DAE mlp"} and all(set(p) == {5, 10} for p in series.values())
    assert noise is None  # single runs have no bootstrap of the reconstruction error


def test_groups_at_one_latent_size_are_drawn_side_by_side(tmp_path, monkeypatch):
    """A leaderboard has every group at latent 20: their error bars must not be drawn on one vertical line."""
    drawn = {}
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.setdefault("fig", fig))
    series = {f"{m} mlp": {20: (0.92 + i / 100, 0.91 + i / 100, 0.93 + i / 100)} for i, m in enumerate(("AE", "VAE", "DAE"))}
    plots.metric_vs_latent(series, {}, "acc", "t", tmp_path / "f.png", percent=True, noise=stats.SEED_NOISE)
    ax = drawn["fig"].axes[0]
    xs = [bars.lines[0].get_xdata()[0] for bars in ax.containers if bars.get_label() in series]
    assert len(xs) == 3 and len(set(xs)) == 3 and min(xs) < 20 < max(xs) and max(xs) / min(xs) < 1.1
    assert [t.get_text() for t in ax.get_xticklabels()] == ["20"]  # the tick still names the true size
    plots.plt.close(drawn["fig"])
