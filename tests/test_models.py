"""Models: one interface, the reference architecture reproduced exactly, losses as documented."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_module
from torch import nn

from aebench import models, pipeline
import aebench.cli  # noqa: F401  (registers the schema and resolvers)


def compose_cfg(*overrides: str):
    with initialize_config_module(version_base="1.3", config_module="aebench.conf"):
        return compose(config_name="config", overrides=list(overrides))


def layer_sizes(seq: nn.Sequential) -> list:
    return [(m.in_features, m.out_features) if isinstance(m, nn.Linear) else type(m).__name__ for m in seq]


def test_seed_report_is_the_reference_autoencoder():
    cfg = compose_cfg("experiment=seed_report")
    model = pipeline.build_model(cfg, 784)
    assert layer_sizes(model.encoder) == [(784, 256), "ReLU", (256, 64), "ReLU", (64, 20), "ReLU"]
    assert layer_sizes(model.decoder) == [(20, 64), "ReLU", (64, 256), "ReLU", (256, 784)]  # + sigmoid in decode()
    assert (cfg.train.batch_size, cfg.train.lr, cfg.train.scheduler, cfg.train.step_size, cfg.train.gamma) == (
        64, 1e-3, "step", 6, 0.1)
    assert cfg.epochs == 2 and cfg.model.recon_loss == "mse"


def test_seed_report_vae_is_the_reference_vae():
    cfg = compose_cfg("experiment=seed_report_vae")
    model = pipeline.build_model(cfg, 784)
    assert layer_sizes(model.body) == [(784, 256), "ReLU", (256, 64), "ReLU", (64, 20), "ReLU"]
    assert (model.fc_mu.in_features, model.fc_mu.out_features) == (20, 10)
    assert (model.fc_logvar.in_features, model.fc_logvar.out_features) == (20, 10)
    assert layer_sizes(model.decoder) == [(10, 64), "ReLU", (64, 256), "ReLU", (256, 784)]


def test_default_autoencoder_code_is_linear():
    cfg = compose_cfg()
    model = pipeline.build_model(cfg, 784)
    assert isinstance(model.encoder[-1], nn.Linear) and model.encoder[-1].out_features == 20
    x = torch.rand(256, 784)
    z = model.encode(x)
    assert (z < 0).any() and (z.std(0) > 0).all()  # no unit clamped at zero


@pytest.mark.parametrize("name", ["ae", "vae"])
def test_one_interface(name):
    torch.manual_seed(0)
    model = models.build(name, 784, latent=7, hidden=[32, 16])
    x = torch.rand(5, 784)
    assert model.encode(x).shape == (5, 7)
    out = model.decode(model.encode(x))
    assert out.shape == (5, 784) and out.min() >= 0 and out.max() <= 1
    assert torch.equal(model.reconstruct(x), out)
    parts = model.loss(x)
    assert parts["loss"].requires_grad and parts["loss"].ndim == 0


def test_vae_loss_is_bce_plus_beta_kl_per_image():
    torch.manual_seed(0)
    model = models.VAE(784, [32], latent=4, beta=0.5)
    x = torch.rand(8, 784)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    parts = model.loss(x, generator=g1)
    mu, logvar = model.posterior(x)
    z = mu + torch.randn(mu.shape, generator=g2) * torch.exp(0.5 * logvar)
    bce = F.binary_cross_entropy(model.decode(z), x, reduction="sum") / 8
    kl = (-0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(1)).mean()
    assert parts["bce"].item() == pytest.approx(bce.item(), rel=1e-4)
    assert parts["kl"].item() == pytest.approx(kl.item(), rel=1e-5)
    assert parts["loss"].item() == pytest.approx((bce + 0.5 * kl).item(), rel=1e-4)
    assert parts["neg_elbo"].item() == pytest.approx((bce + kl).item(), rel=1e-4)


def test_mse_autoencoder_loss_is_per_pixel_mean():
    model = models.AutoEncoder(784, [16], 3, recon_loss="mse")
    x = torch.rand(4, 784)
    assert model.loss(x)["loss"].item() == pytest.approx(F.mse_loss(model.reconstruct(x), x).item(), rel=1e-6)
