"""Autoencoders with one interface, whatever the model.

Every model takes flat images in [0, 1] of shape (N, input_dim) and offers:

- ``encode(x)``: the code a probe reads (the AE's z, the VAE's posterior mean mu);
- ``decode(z)``: images in [0, 1] from codes;
- ``reconstruct(x)``: ``decode(encode(x))``;
- ``loss(x, generator=None)``: a dict of named, per-image mean loss parts;
  ``"loss"`` is the one that is optimised.  A deterministic model also returns
  ``"recon_mse"`` (per pixel), the error of ``reconstruct(x)``.

Models know nothing of files, devices or training.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "elu": nn.ELU}


def mlp(sizes: Sequence[int], final_activation: bool, activation: str = "relu") -> nn.Sequential:
    """Linear layers between consecutive ``sizes``, an activation between them (and after the last if asked)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2 or final_activation:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class _Autoencoder(nn.Module):
    """What every model shares: a decoder from codes to pixel logits, and ``reconstruct``."""

    decoder: nn.Sequential

    def __init__(self, latent: int, activation: str):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.latent = latent
        self.activation = activation

    def _make_decoder(self, sizes: Sequence[int]) -> nn.Sequential:
        # built after the encoder, so that weights are drawn encoder first
        return mlp([self.latent, *sizes], final_activation=False, activation=self.activation)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


class AutoEncoder(_Autoencoder):
    """Deterministic MLP autoencoder.

    ``code_activation="relu"`` reproduces the reference report's ReLU on the code,
    which leaves many code units dead; the default ``"none"`` keeps the code linear.
    ``loss="mse"`` is the per-pixel mean squared error; ``"bce"`` the binary cross-entropy
    summed over pixels (both per image).
    """

    kind = "ae"

    def __init__(
        self,
        input_dim: int,
        hidden: Sequence[int],
        latent: int,
        decoder_hidden: Sequence[int] | None = None,
        code_activation: str = "none",
        recon_loss: str = "mse",
        activation: str = "relu",
    ):
        if code_activation not in ("none", "relu"):
            raise ValueError(f"code_activation must be 'none' or 'relu', got {code_activation!r}")
        if recon_loss not in ("mse", "bce"):
            raise ValueError(f"recon_loss must be 'mse' or 'bce', got {recon_loss!r}")
        decoder_hidden = list(reversed(hidden)) if decoder_hidden is None else list(decoder_hidden)
        super().__init__(latent, activation)
        self.recon_loss = recon_loss
        self.encoder = mlp([input_dim, *hidden, latent], final_activation=False, activation=activation)
        if code_activation == "relu":
            self.encoder.append(nn.ReLU())
        self.decoder = self._make_decoder([*decoder_hidden, input_dim])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def loss(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        logits = self.decode_logits(self.encode(x))
        if self.recon_loss == "mse":
            mse = F.mse_loss(torch.sigmoid(logits), x)
            return {"loss": mse, "recon_mse": mse.detach()}
        bce = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.shape[0]
        with torch.no_grad():
            mse = F.mse_loss(torch.sigmoid(logits), x)
        return {"loss": bce, "recon_mse": mse}


class VAE(_Autoencoder):
    """Gaussian-latent variational autoencoder with a Bernoulli decoder.

    Loss per image: BCE summed over pixels + beta * KL(q(z|x) || N(0, I)).  With
    beta = 1 that is the negative ELBO in nats.  The probe reads mu.
    """

    kind = "vae"

    def __init__(
        self,
        input_dim: int,
        hidden: Sequence[int],
        latent: int,
        decoder_hidden: Sequence[int] | None = None,
        beta: float = 1.0,
        activation: str = "relu",
    ):
        if not hidden:
            raise ValueError("a VAE needs at least one hidden layer before its mu/logvar heads")
        decoder_hidden = list(reversed(hidden)) if decoder_hidden is None else list(decoder_hidden)
        super().__init__(latent, activation)
        self.beta = beta
        self.body = mlp([input_dim, *hidden], final_activation=True, activation=activation)
        self.fc_mu = nn.Linear(hidden[-1], latent)
        self.fc_logvar = nn.Linear(hidden[-1], latent)
        self.decoder = self._make_decoder([*decoder_hidden, input_dim])

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.fc_mu(h), self.fc_logvar(h)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x)[0]

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        device = self.fc_mu.weight.device
        z = torch.randn(n, self.latent, device=device, generator=generator)
        return self.decode(z)

    def loss(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        mu, logvar = self.posterior(x)
        eps = torch.randn(mu.shape, device=mu.device, dtype=mu.dtype, generator=generator)
        z = mu + eps * torch.exp(0.5 * logvar)
        logits = self.decode_logits(z)
        n = x.shape[0]
        bce = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / n
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / n
        return {"loss": bce + self.beta * kl, "neg_elbo": (bce + kl).detach(), "bce": bce.detach(), "kl": kl.detach()}


def build(
    name: str,
    input_dim: int,
    latent: int,
    hidden: Sequence[int],
    decoder_hidden: Sequence[int] | None = None,
    code_activation: str = "none",
    recon_loss: str = "mse",
    beta: float = 1.0,
    activation: str = "relu",
) -> nn.Module:
    """Build the model called ``name`` ('ae' or 'vae')."""
    if name == "ae":
        return AutoEncoder(input_dim, hidden, latent, decoder_hidden, code_activation, recon_loss, activation)
    if name == "vae":
        return VAE(input_dim, hidden, latent, decoder_hidden, beta, activation)
    raise ValueError(f"unknown model {name!r}; choose 'ae' or 'vae'")
