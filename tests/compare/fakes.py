"""Fake run directories for the comparison's tests: written by the test (config, overrides, metrics.json,
probe.npz), no training, seconds in all."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import yaml

N_TEST = 1000


def fake_run(path: Path, *, latent: int = 5, seed: int = 0, accuracy: float | None = 0.9, knn: float | None = 0.92,
             overrides: list[str] | None = None, lr: float = 2e-3, dataset: str = "mnist", predictions: bool = True,
             test_y: np.ndarray | None = None, status: str = "completed", train_precision: str | None = None,
             precision_used: str | None = None, more: dict | None = None) -> Path:
    """A completed run's directory as aebench >= 0.4 leaves it (no checkpoint, no history).

    ``train_precision``: the config's train.precision (absent where None, as in runs before it existed);
    ``precision_used``: metrics.json's precision.used (absent where None, as before aebench 0.5);
    ``more``: further entries of metrics.json (the factor read-outs)."""
    (path / ".hydra").mkdir(parents=True)
    config = {"model": {"name": "ae"}, "arch": {"name": "mlp"}, "data": {"name": dataset, "root": None},
              "latent": latent, "epochs": 2, "seed": seed, "train": {"lr": lr}, "threads": None}
    if train_precision is not None:
        config["train"]["precision"] = train_precision
    (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    overrides = [f"latent={latent}", f"seed={seed}"] if overrides is None else overrides
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    rng = np.random.default_rng([latent, seed, int(1e6 * lr)])
    test_y = rng.integers(0, 10, N_TEST) if test_y is None else test_y
    metrics = {"status": status, "recon_mse": 0.02 / latent + 0.0005 * rng.random(), "neg_elbo": None,
               "probe_accuracy": None, "knn_accuracy": None, "pca_probe_accuracy": 0.7, "pixel_probe_accuracy": 0.9,
               "seconds": {"total": 10.0 + rng.random()},
               "label_budget_accuracy": {"100": {"mean": (accuracy or 0.5) - 0.1 + 0.01 * rng.random()}}}
    if precision_used is not None:
        metrics["precision"] = {"used": precision_used, "reason": f"auto: {precision_used}"}
    arrays = {"test_y": test_y, "format": np.int64(1)}
    for key, name, acc in (("probe_accuracy", "test_pred", accuracy), ("knn_accuracy", "knn_pred", knn)):
        if acc is not None:
            pred = np.where(rng.random(N_TEST) < acc, test_y, (test_y + 1) % 10)
            arrays[name] = pred
            metrics[key] = float(np.mean(pred == test_y))
    if accuracy is None:  # unlabelled data: the probes are skipped, with a note
        metrics["skipped"] = "the data has no labels: no probe"
        metrics["label_budget_accuracy"] = {"skipped": "the data has no labels"}
    metrics.update(more or {})
    (path / "metrics.json").write_text(json.dumps(metrics))
    if predictions and accuracy is not None:
        np.savez(path / "probe.npz", **arrays)
    return path


def seed_sweep(root: Path, latents=(5, 10), seeds=(0, 1, 2), accuracy=lambda latent: 0.85 + latent / 200) -> Path:
    """A fake sweep `-m latent=5,10 seed=range(3)`: 2 settings x 3 seeds."""
    job = 0
    for latent in latents:
        for seed in seeds:
            fake_run(root / f"{job}_latent={latent},seed={seed}", latent=latent, seed=seed, accuracy=accuracy(latent))
            job += 1
    return root


def run_compare(capsys, *argv: str) -> tuple[int, str, str]:
    """``aebench-compare ARGV --no-reconstructions`` in this process: (exit code, stdout, stderr)."""
    from aebench.compare.command import main

    try:
        main([*map(str, argv), "--no-reconstructions"])
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def read_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))
