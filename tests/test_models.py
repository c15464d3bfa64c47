"""Models: one interface, the reference architecture reproduced exactly, losses as documented."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from aebench import config, models

from conftest import build_model


def compose_cfg(*overrides: str):
    return config.compose(overrides)


def layer_sizes(seq: nn.Sequential) -> list:
    return [(m.in_features, m.out_features) if isinstance(m, nn.Linear) else type(m).__name__ for m in seq]


def test_seed_report_is_the_reference_autoencoder():
    cfg = compose_cfg("experiment=seed_report")
    model = models.from_config(cfg, (1, 28, 28))
    assert layer_sizes(model.body) + layer_sizes(model.head) == [(784, 256), "ReLU", (256, 64), "ReLU", (64, 20), "ReLU"]
    assert layer_sizes(model.decoder) == [(20, 64), "ReLU", (64, 256), "ReLU", (256, 784)]  # + sigmoid in decode()
    assert (cfg.train.batch_size, cfg.train.lr, cfg.train.scheduler, cfg.train.step_size, cfg.train.gamma) == (
        64, 1e-3, "step", 6, 0.1)
    assert cfg.epochs == 2 and cfg.model.recon_loss == "mse"


def test_seed_report_vae_is_the_reference_vae():
    cfg = compose_cfg("experiment=seed_report_vae")
    model = models.from_config(cfg, (1, 28, 28))
    assert layer_sizes(model.body) == [(784, 256), "ReLU", (256, 64), "ReLU", (64, 20), "ReLU"]
    assert (model.fc_mu.in_features, model.fc_mu.out_features) == (20, 10)
    assert (model.fc_logvar.in_features, model.fc_logvar.out_features) == (20, 10)
    assert layer_sizes(model.decoder) == [(10, 64), "ReLU", (64, 256), "ReLU", (256, 784)]


def test_default_autoencoder_code_is_linear():
    cfg = compose_cfg()
    model = models.from_config(cfg, (1, 28, 28))
    assert layer_sizes(model.head) == [(256, 20)]  # a linear code
    x = torch.rand(256, 784)
    z = model.encode(x)
    assert (z < 0).any() and (z.std(0) > 0).all()  # no unit clamped at zero


@pytest.mark.parametrize("arch", ["mlp", "conv"])
@pytest.mark.parametrize("name", ["ae", "vae", "dae", "sae"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_one_interface_for_every_objective_on_every_network(name, arch, shape):
    """Synthetic 3x32x32 images too: networks are built for the data's image shape, not for MNIST."""
    torch.manual_seed(0)
    model = build_model(shape, f"model={name}", f"arch={arch}", "latent=7", "arch.hidden=[32,16]", "arch.channels=[8,16]",
                        "arch.activation=relu", "model.recon_loss=mse")
    pixels = shape[0] * shape[1] * shape[2]
    x = torch.rand(5, pixels)
    assert model.encode(x).shape == (5, 7)
    out = model.decode(model.encode(x))
    assert out.shape == (5, pixels) and out.min() >= 0 and out.max() <= 1
    assert torch.equal(model.reconstruct(x), out)
    parts = model.loss(x, generator=torch.Generator().manual_seed(0))
    assert parts["loss"].requires_grad and parts["loss"].ndim == 0
    parts["loss"].backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_conv_network_is_convolutional_and_mirrors_itself():
    model = build_model((3, 32, 32), "arch=conv", "latent=10", "arch.hidden=[64]", "arch.channels=[16,32]", "arch.activation=relu")
    convs = [m for m in model.body if isinstance(m, nn.Conv2d)]
    deconvs = [m for m in model.decoder if isinstance(m, nn.ConvTranspose2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(3, 16), (16, 32)]
    assert [(c.in_channels, c.out_channels) for c in deconvs] == [(32, 16), (16, 3)]
    assert layer_sizes(model.head) == [(64, 10)]


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_the_default_three_convolutions_come_back_to_the_image_size(shape):
    """28 -> 14 -> 7 -> 3: the decoder pads 3 -> 7 back (odd sizes), so every pixel is reconstructed."""
    torch.manual_seed(0)
    model = build_model(shape, "arch=conv", "latent=5", "arch.hidden=[16]", "arch.channels=[4,8,16]", "arch.activation=relu")
    pixels = shape[0] * shape[1] * shape[2]
    x = torch.rand(3, pixels)
    assert model.reconstruct(x).shape == (3, pixels)
    assert len([m for m in model.body if isinstance(m, nn.Conv2d)]) == 3


def test_denoising_corrupts_the_input_and_targets_the_clean_image():
    torch.manual_seed(0)
    model = build_model(784, "model=dae", "latent=4", "arch.hidden=[16]", "model.noise=mask", "model.noise_level=0.5",
                        "model.recon_loss=bce", "arch.activation=relu")
    x = torch.rand(64, 784) * 0.9 + 0.1  # no zero pixels, so every zero below is a dropped one
    dropped = (model.corrupt(x, torch.Generator().manual_seed(1)) == 0).float().mean().item()
    assert 0.45 < dropped < 0.55
    g1, g2 = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    recon = model.decode_logits(model.encode(model.corrupt(x, g2)))
    expected = F.binary_cross_entropy_with_logits(recon, x, reduction="sum") / 64
    assert model.loss(x, generator=g1)["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    gauss = build_model(784, "model=dae", "latent=4", "arch.hidden=[16]", "model.noise=gaussian", "model.noise_level=0.2",
                        "arch.activation=relu")
    noise = gauss.corrupt(x, torch.Generator().manual_seed(3)) - x
    assert abs(noise.std().item() - 0.2) < 0.01


def test_sparse_loss_adds_the_l1_of_the_code():
    torch.manual_seed(0)
    model = build_model(784, "model=sae", "latent=6", "arch.hidden=[16]", "model.sparsity=0.5", "model.recon_loss=bce", "arch.activation=relu")
    x = torch.rand(8, 784)
    parts = model.loss(x)
    l1 = model.encode(x).abs().sum(1).mean()
    assert parts["code_l1"].item() == pytest.approx(l1.item(), rel=1e-5)
    assert parts["loss"].item() == pytest.approx((parts["recon"] + 0.5 * l1).item(), rel=1e-5)


def test_arch_mlp_draws_the_weights_of_aebench_0_2():
    """The network/objective split kept the order of weight draws: the same seed, the same model."""
    torch.manual_seed(0)
    model = build_model(784)  # the default network: 784-512-256-20 and back, GELU
    torch.manual_seed(0)
    old = [nn.Linear(784, 512), nn.Linear(512, 256), nn.Linear(256, 20), nn.Linear(20, 256), nn.Linear(256, 512),
           nn.Linear(512, 784)]  # aebench 0.2's encoder, then decoder
    ours = [m for m in model.modules() if isinstance(m, nn.Linear)]
    for a, b in zip(ours, old, strict=True):
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)


def test_vae_loss_is_bce_plus_beta_kl_per_image():
    torch.manual_seed(0)
    model = build_model(784, "model=vae", "latent=4", "arch.hidden=[32]", "model.beta=0.5", "arch.activation=relu")
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
    model = build_model(784, "latent=3", "arch.hidden=[16]", "model.recon_loss=mse", "arch.activation=relu")
    x = torch.rand(4, 784)
    assert model.loss(x)["loss"].item() == pytest.approx(F.mse_loss(model.reconstruct(x), x).item(), rel=1e-6)


def test_from_config_on_the_default_config_is_the_commands_default_model(tmp_path, monkeypatch, data_root):
    """The config is the one source of defaults: Python callers build exactly the model ``aebench`` trains."""
    from conftest import TINY, only_run_dir, run_in_process

    from aebench import rundir

    monkeypatch.chdir(tmp_path)
    code, err = run_in_process([*TINY, "epochs=1"])
    assert code == 0, err
    trained = rundir.read_checkpoint(only_run_dir(tmp_path) / rundir.CHECKPOINT, strict=True)
    ours = models.from_config(config.compose([]), (1, 28, 28))
    assert type(ours) is models.AutoEncoder and ours.recon_loss == "bce"
    assert [type(m).__name__ for m in ours.modules()].count("GELU") == 4  # after 512, 256 and mirrored
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in trained["model"].items()}
    assert sum(p.numel() for p in ours.parameters()) == sum(v.numel() for v in trained["model"].values()) == 1_077_540
    rebuilt = models.from_config(rundir.config_of(trained), (1, 28, 28))
    assert repr(rebuilt) == repr(ours)
