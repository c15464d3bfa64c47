"""The training loop on its own: divergence is caught at the end of an epoch, the last finite checkpoint kept."""

from __future__ import annotations

import pytest
import torch

from aebench import config, data, rundir
from aebench.errors import TrainingDiverged
from aebench.train import Trainer

from conftest import build_model


def tiny_data(n: int = 512) -> data.ImageData:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n, 64, generator=gen)
    y = torch.randint(0, 10, (n,), generator=gen)
    return data.ImageData.of_tensors("synthetic", tuple(map(str, range(10))), x, y, x[:128], y[:128], (1, 8, 8))


def test_divergence_stops_the_run_and_keeps_the_last_finite_checkpoint(tmp_path):
    torch.manual_seed(0)
    overrides = ["latent=4", "arch.hidden=[16]", "arch.activation=relu", "model.recon_loss=mse", "train.batch_size=64", "train.lr=1e-3",
                 "train.scheduler=none"]
    model = build_model(64, *overrides)
    path = tmp_path / rundir.CHECKPOINT
    trainer = Trainer(model, tiny_data(), config.compose(overrides).train, epochs=1, seed=0, run_dir=tmp_path, meta={})
    trainer.fit()
    saved = torch.load(path, weights_only=False)
    assert saved["epoch"] == 1
    with torch.no_grad():
        next(model.parameters())[0, 0] = float("nan")  # as if a step had blown up
    trainer.epochs = 3
    with pytest.raises(TrainingDiverged, match=r"diverged in epoch 2: the training loss \(nan\).*smaller train.lr.*epoch 1"):
        trainer.fit()
    kept = torch.load(path, weights_only=False)
    assert kept["epoch"] == 1 and all(torch.isfinite(t).all() for t in kept["model"].values())
