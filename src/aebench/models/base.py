"""What every objective shares: the decoder side, ``reconstruct``, and the hooks the training loop reads.

An objective is an ``nn.Module`` whose ``forward`` is its loss (so that DistributedDataParallel, which
synchronises gradients through the wrapped module's forward, sees the step), with:

- ``optimised_parameters()``: what the loop's optimiser trains (default: every parameter);
- ``training_callbacks()``: the :class:`aebench.train.Callback` objects the objective needs beside its
  gradient step (a discriminator's own step, a schedule over training); default none;
- ``variational``: True for the VAE family (a posterior, a test negative ELBO, draws from the prior).
"""

from __future__ import annotations

from typing import Any, Iterator

import torch
from torch import nn


class CodeModel(nn.Module):
    """A decoder from codes to pixel logits, ``reconstruct``, and the loop's hooks."""

    decoder: nn.Module
    kind: str
    variational = False

    def __init__(self, latent: int):
        super().__init__()
        self.latent = latent

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        return self.loss(x, generator)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def optimised_parameters(self) -> Iterator[nn.Parameter]:
        return self.parameters()

    def training_callbacks(self) -> list[Any]:
        return []
