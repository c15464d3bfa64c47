"""What each code unit carries, and the range a traversal moves it over (figures/traversals.png).

- The VAE family (any model with a ``posterior``): a unit carries its KL to the prior, averaged over the
  images given (a run's train images, whose codes the probe already holds; the test images where the data have
  no labels), in nats; it is *active* where its mean (mu) varies over the data by more than 0.01 in variance
  (Burda et al. 2016's activity); it is traversed over the prior's ±2σ, i.e. from -2 to 2.
- Every other objective: a unit carries its variance over the codes; it is inactive where it is constant
  (the criterion of ``dead_code_units``); it is traversed over its own spread, mean ± 2 standard deviations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .data import Split
from .train import batches, eval_batch

ACTIVE_VARIANCE = 0.01  # Burda et al. 2016: a VAE unit whose mean varies less than this over the data is inactive
DEAD_STD = 1e-8  # probe.dead_units: a deterministic unit this constant carries nothing
SPREAD = 2.0  # traversals cover ±2 standard deviations (of the prior, or of the unit's own codes)


@dataclass(frozen=True)
class UnitStats:
    """Per code unit: how much it carries, whether it is active, and its traversal range."""

    carried: np.ndarray  # (latent,) KL in nats (VAE family) or the codes' variance
    measure: str  # what ``carried`` is, for a figure's labels
    active: np.ndarray  # (latent,) bool
    low: np.ndarray  # (latent,) traversal range
    high: np.ndarray

    def order(self) -> np.ndarray:
        """Units from the one that carries most to the one that carries least (ties: lower index first)."""
        return np.lexsort((np.arange(len(self.carried)), -self.carried))


def is_variational(model: torch.nn.Module) -> bool:
    return callable(getattr(model, "posterior", None))


@torch.no_grad()
def unit_stats(model: torch.nn.Module, images: Split, codes: torch.Tensor) -> UnitStats:
    """The statistics of each unit: ``codes`` are the model's codes (mu for the VAE family) of ``images``."""
    codes64 = codes.double().cpu()
    variance = codes64.var(0, unbiased=False).numpy() if len(codes64) > 1 else np.zeros(codes.shape[1])
    if not is_variational(model):
        mean, std = codes64.mean(0).numpy(), np.sqrt(variance)
        return UnitStats(variance, "variance", std > DEAD_STD, mean - SPREAD * std, mean + SPREAD * std)
    was_training = model.training
    model.eval()
    kl = torch.zeros(codes.shape[1], dtype=torch.float64)
    for x in batches(images, eval_batch(images.pixels)):
        mu, logvar = model.posterior(x)
        mu, logvar = mu.double().cpu(), logvar.double().cpu()
        kl += (0.5 * (mu.pow(2) + logvar.exp() - logvar - 1)).sum(0)
    model.train(was_training)
    latent = codes.shape[1]
    return UnitStats((kl / max(len(images), 1)).numpy(), "KL to the prior (nats)", variance > ACTIVE_VARIANCE,
                     np.full(latent, -SPREAD), np.full(latent, SPREAD))


@torch.no_grad()
def traverse(model: torch.nn.Module, base_codes: torch.Tensor, stats: UnitStats, steps: int) -> torch.Tensor:
    """Decoded traversals: for each base code (n, latent) and each unit in ``stats.order()``, the unit set to
    ``steps`` evenly spaced values of its range, the other units held.  Returns (n, latent, steps, pixels)."""
    n, latent = base_codes.shape
    order = torch.as_tensor(stats.order().copy())
    fractions = torch.linspace(0, 1, steps, dtype=torch.float64)
    values = (torch.as_tensor(stats.low)[:, None] + fractions[None, :] * torch.as_tensor(stats.high - stats.low)[:, None])
    z = base_codes.detach().float().cpu()[:, None, None, :].repeat(1, latent, steps, 1)  # (n, latent, steps, latent)
    for row, unit in enumerate(order.tolist()):
        z[:, row, :, unit] = values[unit].float()
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    decoded = model.decode(z.reshape(-1, latent).to(device)).float().cpu()
    model.train(was_training)
    return decoded.reshape(n, latent, steps, -1)
