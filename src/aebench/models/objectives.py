"""Objectives (``model=``): what the code is and what is optimised, on whichever network they are given.

Every model takes flat images in [0, 1] of shape (N, pixels) and offers:

- ``encode(x)``: the code a probe reads (the AE's z from the clean image, the VAE's posterior mean mu);
- ``decode(z)``: images in [0, 1] from codes;
- ``reconstruct(x)``: ``decode(encode(x))``;
- ``loss(x, generator=None)``: a dict of named, per-image mean loss parts;
  ``"loss"`` is the one that is optimised.  A model whose loss reconstructs the clean
  input also returns ``"recon_mse"`` (per pixel), the error of ``reconstruct(x)``.

Losses, per image (BCE summed over pixels, in nats; MSE a mean per pixel):

- ``ae``:  recon(x, decode(encode(x)))  with recon = BCE or MSE (``recon_loss``)
- ``dae``: recon(x, decode(encode(corrupt(x))))  -- the clean image is the target;
  ``gaussian``: x + sigma * eps;  ``mask``: each pixel set to 0 with probability ``noise_level``
- ``sae``: recon(x, decode(z)) + sparsity * sum_j |z_j|,  z = encode(x)
- ``vae`` and the rest of the VAE family (``beta_tcvae``, ``factor_vae``, ``dip_vae``, ``annealed_vae``):
  BCE(x, decode(z)) + a regulariser of the posterior, z ~ q(z|x) (one sample): :mod:`.variational`

Models know nothing of files or devices; an objective that needs more than its gradient step owns a training
callback for it (:mod:`.base`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import CodeModel
from .nets import ConvNet, MLPNet
from .variational import DIP_TYPES, VAE, AnnealedVAE, BetaTCVAE, DIPVAE, FactorVAE

NOISES = ("mask", "gaussian")

# Each objective and the ``model.*`` settings it reads (the rest are ignored): the one list of both.
SETTINGS: dict[str, tuple[str, ...]] = {
    "ae": ("code_activation", "recon_loss"),
    "vae": ("beta",),
    "dae": ("noise", "noise_level", "code_activation", "recon_loss"),
    "sae": ("sparsity", "code_activation", "recon_loss"),
    "beta_tcvae": ("alpha", "beta", "gamma"),
    "factor_vae": ("beta", "gamma", "discriminator_hidden", "discriminator_layers", "discriminator_lr"),
    "dip_vae": ("beta", "dip_type", "lambda_od", "lambda_d"),
    "annealed_vae": ("gamma", "capacity_max", "capacity_ramp"),
}
OBJECTIVES = tuple(SETTINGS)
VARIATIONAL = ("vae", "beta_tcvae", "factor_vae", "dip_vae", "annealed_vae")


class AutoEncoder(CodeModel):
    """Deterministic autoencoder: the network's features, then a linear code of size ``latent``.

    ``code_activation="relu"`` reproduces the reference report's ReLU on the code,
    which leaves many code units dead; the default ``"none"`` keeps the code linear.
    """

    kind = "ae"

    def __init__(self, net: MLPNet | ConvNet, latent: int, *, code_activation: str, recon_loss: str):
        if code_activation not in ("none", "relu"):
            raise ValueError(f"code_activation must be 'none' or 'relu', got {code_activation!r}")
        if recon_loss not in ("mse", "bce"):
            raise ValueError(f"recon_loss must be 'mse' or 'bce', got {recon_loss!r}")
        super().__init__(latent)
        self.recon_loss = recon_loss
        self.body, features = net.encoder()  # weights drawn body, head, decoder: the order of the reference
        self.head = nn.Sequential(nn.Linear(features, latent), *([nn.ReLU()] if code_activation == "relu" else []))
        self.decoder = net.decoder(latent)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def recon(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction term per image: BCE summed over pixels, or MSE per pixel."""
        if self.recon_loss == "mse":
            return F.mse_loss(torch.sigmoid(logits), x)
        return F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.shape[0]

    def loss(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        logits = self.decode_logits(self.encode(x))
        recon = self.recon(logits, x)
        with torch.no_grad():
            mse = recon.detach() if self.recon_loss == "mse" else F.mse_loss(torch.sigmoid(logits), x)
        return {"loss": recon, "recon_mse": mse}


class DenoisingAE(AutoEncoder):
    """Denoising autoencoder: reconstruct the clean image from a corrupted one; the probe reads the clean image's code."""

    kind = "dae"

    def __init__(self, net: MLPNet | ConvNet, latent: int, *, noise: str, noise_level: float, code_activation: str,
                 recon_loss: str):
        if noise not in NOISES:
            raise ValueError(f"noise must be one of {NOISES}, got {noise!r}")
        super().__init__(net, latent, code_activation=code_activation, recon_loss=recon_loss)
        self.noise, self.noise_level = noise, noise_level

    def corrupt(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.noise == "gaussian":
            return x + self.noise_level * torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)
        keep = torch.rand(x.shape, device=x.device, generator=generator) >= self.noise_level
        return x * keep

    def loss(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        denoised = self.recon(self.decode_logits(self.encode(self.corrupt(x, generator))), x)
        return {"loss": denoised, "denoising": denoised.detach()}


class SparseAE(AutoEncoder):
    """Sparse autoencoder: the reconstruction plus an L1 penalty on the code."""

    kind = "sae"

    def __init__(self, net: MLPNet | ConvNet, latent: int, *, sparsity: float, code_activation: str, recon_loss: str):
        super().__init__(net, latent, code_activation=code_activation, recon_loss=recon_loss)
        self.sparsity = sparsity

    def loss(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        z = self.encode(x)
        logits = self.decode_logits(z)
        recon = self.recon(logits, x)
        l1 = z.abs().sum() / x.shape[0]
        with torch.no_grad():
            mse = F.mse_loss(torch.sigmoid(logits), x)
        return {"loss": recon + self.sparsity * l1, "recon": recon.detach(), "code_l1": l1.detach(), "recon_mse": mse}


def objective(name: str, net: MLPNet | ConvNet, latent: int, settings: Any, dataset_size: int | None = None) -> CodeModel:
    """The model of objective ``name`` on ``net``, with the settings of ``settings`` (a ``model`` config:
    :class:`aebench.config.ModelConfig`, whose defaults are the only ones); settings it does not use are ignored.
    ``dataset_size``: the number of training images (beta_tcvae's estimator needs it to train)."""
    s = settings
    if name == "ae":
        return AutoEncoder(net, latent, code_activation=s.code_activation, recon_loss=s.recon_loss)
    if name == "dae":
        return DenoisingAE(net, latent, noise=s.noise, noise_level=s.noise_level, code_activation=s.code_activation,
                           recon_loss=s.recon_loss)
    if name == "sae":
        return SparseAE(net, latent, sparsity=s.sparsity, code_activation=s.code_activation, recon_loss=s.recon_loss)
    if name == "vae":
        return VAE(net, latent, beta=s.beta)
    if name == "beta_tcvae":
        return BetaTCVAE(net, latent, alpha=s.alpha, beta=s.beta, gamma=s.gamma, dataset_size=dataset_size)
    if name == "factor_vae":
        return FactorVAE(net, latent, beta=s.beta, gamma=s.gamma, hidden=s.discriminator_hidden,
                         layers=s.discriminator_layers, lr=s.discriminator_lr)
    if name == "dip_vae":
        return DIPVAE(net, latent, beta=s.beta, dip_type=s.dip_type, lambda_od=s.lambda_od, lambda_d=s.lambda_d)
    if name == "annealed_vae":
        return AnnealedVAE(net, latent, gamma=s.gamma, capacity_max=s.capacity_max, capacity_ramp=s.capacity_ramp)
    raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(OBJECTIVES)}")
