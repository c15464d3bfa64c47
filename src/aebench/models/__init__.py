"""Autoencoders: a network (:mod:`.nets`, ``arch=``) under an objective (:mod:`.objectives`, ``model=``).

Every objective works on every network through one interface: ``encode``,
``decode``, ``reconstruct`` and ``loss`` (see :mod:`.objectives`).
"""

from __future__ import annotations

from typing import Sequence

import torch

from .nets import ACTIVATIONS, ARCHS, CONV_CHANNELS, ConvNet, MLPNet, mlp, network
from .objectives import NOISES, OBJECTIVES, VAE, AutoEncoder, DenoisingAE, SparseAE, objective

__all__ = ["ACTIVATIONS", "ARCHS", "CONV_CHANNELS", "NOISES", "OBJECTIVES", "AutoEncoder", "ConvNet", "DenoisingAE", "MLPNet",
           "SparseAE", "VAE", "build", "mlp", "network", "objective"]


def build(name: str, image_shape: Sequence[int] | int, latent: int, hidden: Sequence[int], *, arch: str = "mlp",
          decoder_hidden: Sequence[int] | None = None, activation: str = "relu", channels: Sequence[int] = CONV_CHANNELS,
          **objective_settings) -> AutoEncoder | VAE:
    """Objective ``name`` on the network ``arch`` for images of ``image_shape`` (an int: flat pixels, MLP only)."""
    net = network(arch, image_shape, hidden, decoder_hidden, activation, channels)
    model = objective(name, net, latent, **objective_settings)
    if arch == "conv":
        model = model.to(memory_format=torch.channels_last)  # the weights too (see nets.ConvNet)
    return model
