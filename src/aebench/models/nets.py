"""Networks (``arch=``): an encoder from images to a feature vector, a decoder from a code to pixel logits.

A network is built for the image shape the data hands over, ``(channels, height,
width)``; images travel flat, ``(N, channels * height * width)``, and come back
flat.  What the code is (a point, a posterior) is the objective's business
(:mod:`aebench.models.objectives`), which puts its own head between the two.

- ``mlp``: Linear layers of widths ``hidden`` (an activation after each); the
  decoder mirrors them (or ``decoder_hidden``).
- ``conv``: one stride-2 4x4 convolution (padding 1) per entry of ``channels``, each
  halving the height and width (rounding down: 28 -> 14 -> 7 -> 3, 32 -> 16 -> 8 -> 4,
  96 -> 48 -> 24 -> 12) for the image's own channels (1 grey, 3 colour); an image must
  keep at least 2x2 pixels before each convolution, so k stages need 2**k x 2**k images.
  Then Linear layers of widths ``hidden``; the decoder mirrors it with
  transposed convolutions, padded so that any image size comes back exactly.  Images
  and weights use the channels-last layout (``torch.channels_last``), the quicker
  one for these convolutions (``benchmarks/conv_speed.py``: docs/speed.md).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "elu": nn.ELU}
ARCHS = ("mlp", "conv")


def mlp(sizes: Sequence[int], final_activation: bool, activation: str) -> nn.Sequential:
    """Linear layers between consecutive ``sizes``, an activation between them (and after the last if asked)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2 or final_activation:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class MLPNet:
    """Fully connected encoder and decoder."""

    def __init__(self, image_shape: Sequence[int] | int, hidden: Sequence[int], *, decoder_hidden: Sequence[int] | None,
                 activation: str):
        self.pixels = _pixels(image_shape)
        self.hidden = list(hidden)
        self.decoder_hidden = list(reversed(self.hidden)) if decoder_hidden is None else list(decoder_hidden)
        self.activation = _checked(activation)

    def encoder(self) -> tuple[nn.Module, int]:
        """The layers from flat images to features, and the feature width (the pixels when ``hidden`` is empty)."""
        return mlp([self.pixels, *self.hidden], final_activation=True, activation=self.activation), ([self.pixels] + self.hidden)[-1]

    def decoder(self, latent: int) -> nn.Module:
        return mlp([latent, *self.decoder_hidden, self.pixels], final_activation=False, activation=self.activation)


class ToChannelsLast(nn.Module):
    """Lay (N, C, H, W) activations out channels-last, the layout the convolution kernels prefer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last)


class ConvNet:
    """Convolutional encoder, transposed-convolution decoder, for ``(channels, height, width)`` images."""

    def __init__(self, image_shape: Sequence[int], channels: Sequence[int], hidden: Sequence[int], *, activation: str):
        if len(image_shape) != 3:
            raise ValueError(f"arch=conv needs (channels, height, width) images, got shape {tuple(image_shape)}")
        self.image_shape = tuple(int(s) for s in image_shape)
        self.channels = list(channels)
        self.hidden = list(hidden)
        self.activation = _checked(activation)
        if not self.channels:
            raise ValueError("arch=conv needs at least one convolution (arch.channels=[] gives none)")
        sizes = [self.image_shape[1:]]
        for _ in self.channels:
            h, w = sizes[-1]
            if h < 2 or w < 2:
                raise ValueError(f"{len(self.channels)} stride-2 convolutions need images of at least "
                                 f"{2 ** len(self.channels)}x{2 ** len(self.channels)} pixels (each halves the image)")
            sizes.append((h // 2, w // 2))
        self.sizes = sizes  # spatial size before each convolution, then after the last
        self.flat = self.channels[-1] * sizes[-1][0] * sizes[-1][1]

    def encoder(self) -> tuple[nn.Module, int]:
        act = ACTIVATIONS[self.activation]
        layers: list[nn.Module] = [nn.Unflatten(1, self.image_shape), ToChannelsLast()]
        previous = self.image_shape[0]
        for ch in self.channels:
            layers += [nn.Conv2d(previous, ch, kernel_size=4, stride=2, padding=1), act()]
            previous = ch
        layers.append(nn.Flatten())
        layers += list(mlp([self.flat, *self.hidden], final_activation=True, activation=self.activation))
        return nn.Sequential(*layers), ([self.flat] + self.hidden)[-1]

    def decoder(self, latent: int) -> nn.Module:
        act = ACTIVATIONS[self.activation]
        layers = list(mlp([latent, *reversed(self.hidden), self.flat], final_activation=True,
                          activation=self.activation))
        last_channels = self.channels[-1]
        layers += [nn.Unflatten(1, (last_channels, *self.sizes[-1])), ToChannelsLast()]
        outs = [*reversed(self.channels[:-1]), self.image_shape[0]]
        for i, (ch_in, ch_out) in enumerate(zip(reversed(self.channels), outs)):
            (h, w), (h_in, w_in) = self.sizes[-2 - i], self.sizes[-1 - i]
            layers.append(nn.ConvTranspose2d(ch_in, ch_out, kernel_size=4, stride=2, padding=1,
                                             output_padding=(h - 2 * h_in, w - 2 * w_in)))
            if i < len(self.channels) - 1:
                layers.append(act())
        layers.append(nn.Flatten())
        return nn.Sequential(*layers)


def network(settings: Any, image_shape: Sequence[int] | int) -> MLPNet | ConvNet:
    """The network ``settings.name`` with the settings of ``settings`` (an ``arch`` config:
    :class:`aebench.config.ArchConfig`), for images of ``image_shape`` (an int: flat images, MLP only)."""
    s = settings
    if s.name == "mlp":
        return MLPNet(image_shape, list(s.hidden), activation=s.activation,
                      decoder_hidden=list(s.decoder_hidden) if s.decoder_hidden is not None else None)
    if s.name == "conv":
        return ConvNet(image_shape, list(s.channels), list(s.hidden), activation=s.activation)
    raise ValueError(f"unknown arch {s.name!r}; choose one of: {', '.join(ARCHS)}")


def _pixels(image_shape: Sequence[int] | int) -> int:
    if isinstance(image_shape, int):
        return image_shape
    total = 1
    for s in image_shape:
        total *= int(s)
    return total


def _checked(activation: str) -> str:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    return activation
