"""Autoencoders: a network (:mod:`.nets`, ``arch=``) under an objective (:mod:`.objectives`, ``model=``).

Every objective works on every network through one interface: ``encode``,
``decode``, ``reconstruct`` and ``loss`` (see :mod:`.objectives`).  The settings come
from the config alone (:mod:`aebench.config`): :func:`from_config` builds the model a
config describes, the command's default model from the default config.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from .nets import ACTIVATIONS, ARCHS, ConvNet, MLPNet, mlp, network
from .base import CodeModel
from .objectives import NOISES, OBJECTIVES, SETTINGS, VARIATIONAL, AutoEncoder, DenoisingAE, SparseAE, objective
from .variational import DIP_TYPES, VAE, AnnealedVAE, BetaTCVAE, DIPVAE, FactorVAE

__all__ = ["ACTIVATIONS", "ARCHS", "DIP_TYPES", "NOISES", "OBJECTIVES", "SETTINGS", "VARIATIONAL", "AnnealedVAE",
           "AutoEncoder", "BetaTCVAE", "CodeModel", "ConvNet", "DIPVAE", "DenoisingAE", "FactorVAE", "MLPNet",
           "SparseAE", "VAE", "from_config", "mlp", "network", "objective"]


def from_config(cfg: Any, image_shape: Sequence[int] | int, dataset_size: int | None = None) -> CodeModel:
    """The objective ``cfg.model`` on the network ``cfg.arch`` with a code of ``cfg.latent`` units, for images of
    ``image_shape`` (C, H, W; an int: flat pixels, MLP only).  ``cfg``: a run's config (:func:`aebench.config.compose`).
    ``dataset_size``: the number of training images, which beta_tcvae's loss needs (not its codes).

    A network that cannot be built for these images (too many convolutions for their size, say) is a
    :class:`~aebench.errors.ConfigError` that says what to change.
    """
    from ..errors import ConfigError

    try:
        model = objective(cfg.model.name, network(cfg.arch, image_shape), cfg.latent, cfg.model, dataset_size)
    except ValueError as e:
        shape = "x".join(map(str, image_shape)) if not isinstance(image_shape, int) else f"{image_shape}-pixel"
        fix = ""
        if cfg.arch.name == "conv":
            folder = cfg.get("data") is not None and cfg.data.name == "folder"
            fix = "; give fewer arch.channels" + (" or a larger data.image_size" if folder else "")
        raise ConfigError(f"arch={cfg.arch.name} cannot be built for {shape} images: {e}{fix}") from None
    if cfg.arch.name == "conv":
        model = model.to(memory_format=torch.channels_last)  # the weights too (see nets.ConvNet)
    return model
