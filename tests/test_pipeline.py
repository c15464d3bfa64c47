"""The whole command on a small subset: every file a user relies on, with sane numbers."""

from __future__ import annotations

import csv

import matplotlib.image as mpimg
import pytest
import torch

from conftest import FIGURES, TINY, TINY_ALL_BUDGETS, only_run_dir, read_metrics, run_cli, run_in_process

AE_FIGURES = ["loss.png", "reconstructions.png", "per_digit.png", "probe_accuracy.png", "latent_space.png",
              "label_efficiency.png", "traversals.png"]


def check_png(path):
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 200, path
    assert img[..., :3].std() > 0.01, f"{path} is blank"


@pytest.fixture(scope="module")
def ae_run(tmp_path_factory, data_root):
    cwd = tmp_path_factory.mktemp("ae")
    proc = run_cli("epochs=3", *TINY_ALL_BUDGETS, *FIGURES, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return only_run_dir(cwd), proc


def test_run_directory_holds_every_output(ae_run):
    run, _ = ae_run
    for rel in ["metrics.json", "history.csv", "checkpoints/last.pt", "aebench.log",
                ".hydra/config.yaml", ".hydra/overrides.yaml", ".hydra/hydra.yaml"]:
        assert (run / rel).is_file(), rel
    for name in AE_FIGURES:
        check_png(run / "figures" / name)
    assert not (run / "figures" / "samples.png").exists()  # VAE only
    assert not list(run.rglob("*.tmp"))  # no temporary files left behind


def test_metrics_are_in_range_and_described(ae_run):
    run, proc = ae_run
    m = read_metrics(run)
    assert m["status"] == "completed"
    assert 0.5 < m["probe_accuracy"] <= 1 and 0.5 < m["knn_accuracy"] <= 1
    assert 0.5 < m["pca_probe_accuracy"] <= 1 and 0.5 < m["pixel_probe_accuracy"] <= 1
    assert 0 < m["recon_mse"] < 0.1
    assert "neg_elbo" not in m
    assert m["dead_code_units"] == 0
    # no known factors on MNIST: only the codes' Gaussian total correlation, and why the rest did not run
    assert 0 <= m["gaussian_tc"] < 100 and "mig" not in m
    assert "no known factors" in m["factor_readouts"]["skipped"]
    assert not (run / "factors.npz").exists() and not (run / "figures" / "factors.png").exists()
    assert m["config"]["model"] == "ae" and m["config"]["latent"] == 20 and m["config"]["train_subset"] == 2000
    assert set(m["versions"]) >= {"aebench", "torch", "torchvision", "hydra", "python"}
    assert m["device"].startswith("cpu")
    assert {"data", "pretrain", "probe", "figures", "total"} <= set(m["seconds"])
    assert m["memory"]["peak_host_mib"] > 100
    # the printed summary shows the same numbers
    assert f"{m['probe_accuracy']:.4f}" in proc.stdout


def test_history_has_a_row_per_epoch_matching_the_metrics(ae_run):
    run, _ = ae_run
    rows = list(csv.DictReader(open(run / "history.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    for key in ("train_loss", "test_loss", "test_recon_mse", "probe_accuracy", "lr", "train_seconds"):
        assert all(float(r[key]) >= 0 for r in rows), key
    assert float(rows[0]["train_loss"]) > float(rows[-1]["train_loss"])  # it learns
    m = read_metrics(run)
    assert float(rows[-1]["probe_accuracy"]) == m["probe_accuracy"]
    assert float(rows[-1]["test_recon_mse"]) == m["recon_mse"]


def test_checkpoint_is_complete(ae_run):
    run, _ = ae_run
    ckpt = torch.load(run / "checkpoints/last.pt", weights_only=False)
    for key in ("model", "optimizer", "scheduler", "epoch", "history", "rng", "generator", "config", "aebench_version"):
        assert key in ckpt, key
    assert ckpt["epoch"] == 3 and len(ckpt["history"]) == 3


def test_vae_run_writes_samples_interpolation_and_neg_elbo(tmp_path, data_root):
    proc = run_cli("model=vae", "latent=4", "epochs=2", *TINY, *FIGURES, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run = only_run_dir(tmp_path)
    m = read_metrics(run)
    assert 80 < m["neg_elbo"] < 400 and m["neg_elbo"] == pytest.approx(m["test_loss"])
    assert m["config"]["model"] == "vae" and m["config"]["latent"] == 4
    for name in AE_FIGURES + ["samples.png", "interpolation.png"]:
        check_png(run / "figures" / name)
    rows = list(csv.DictReader(open(run / "history.csv")))
    assert {"test_bce", "test_kl", "test_neg_elbo"} <= set(rows[0])


def test_latent_two_plots_the_code_itself(tmp_path, data_root):
    proc = run_cli("latent=2", "epochs=2", "train.batch_size=64", "probe.every_epoch=false", *TINY, *FIGURES, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run = only_run_dir(tmp_path)
    check_png(run / "figures" / "latent_space.png")
    assert not (run / "figures" / "probe_accuracy.png").exists()  # no curve without per-epoch probes
    assert read_metrics(run)["probe_accuracy"] > 0.3


def test_help_lists_groups_and_options(tmp_path):
    proc = run_cli("--help", cwd=tmp_path)
    assert proc.returncode == 0
    from pathlib import Path

    import aebench.conf

    data_choices = sorted(p.stem for p in (Path(aebench.conf.__file__).parent / "data").glob("*.yaml"))
    for word in ("model: ae, annealed_vae, beta_tcvae, beta_vae, dae, dip_vae, factor_vae, sae, vae", "arch: conv, mlp",
                 f"data: {', '.join(data_choices)}", "experiment: disentanglement, leaderboard, seed_report",
                 "latent: 20", "device: auto"):
        assert word in proc.stdout, word


def test_fashion_mnist_runs(tmp_path):
    from aebench import data

    if not data.FASHION_DEBIAN_DIR.is_dir() and not (data.resolve_root(None) / "FashionMNIST").is_dir():
        pytest.skip("no Fashion-MNIST source here")
    proc = run_cli("data=fashion_mnist", "epochs=1", *TINY, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    m = read_metrics(only_run_dir(tmp_path))
    assert m["config"]["dataset"] == "fashion_mnist" and 0.4 < m["probe_accuracy"] < 1


def test_tiny_shapes_still_draw_every_figure(tmp_path, monkeypatch, data_root):
    """A 1-D VAE code and a test set too small for 8 interpolation pairs."""
    monkeypatch.chdir(tmp_path)
    code, err = run_in_process(["model=vae", "latent=1", "epochs=1", "data.train_subset=300", "data.test_subset=12",
                                "progress=false"])
    assert code == 0, err
    run = only_run_dir(tmp_path)
    for name in ("latent_space.png", "samples.png", "interpolation.png", "reconstructions.png", "loss.png"):
        assert (run / "figures" / name).is_file(), name
    assert read_metrics(run)["config"]["latent"] == 1


def test_label_budgets_report_mean_and_spread_and_skip_what_does_not_fit(ae_run):
    run, _ = ae_run
    m = read_metrics(run)
    for key in ("label_budget_accuracy", "pca_label_budget_accuracy", "pixel_label_budget_accuracy"):
        budgets = m[key]
        assert set(budgets) == {"100", "1000", "10000"}, key
        assert "2000 examples" in budgets["10000"]["skipped"]  # TINY has 2000 train images: a note, not an error
        for n in ("100", "1000"):
            accs = budgets[n]["accuracies"]
            assert len(accs) == 5 and all(0.1 < a <= 1 for a in accs)
            assert budgets[n]["mean"] == pytest.approx(sum(accs) / 5)
            assert budgets[n]["std"] == pytest.approx(float(torch.tensor(accs, dtype=torch.float64).std()))
        assert budgets["100"]["mean"] < budgets["1000"]["mean"]  # more labels help
    assert m["label_budget_accuracy"]["1000"]["mean"] <= m["probe_accuracy"] + 0.02
    assert m["seconds"]["label_budgets"] < m["seconds"]["total"]
