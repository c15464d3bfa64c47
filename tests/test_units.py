"""What each code unit carries and the traversals that show it (aebench.units)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from aebench import units
from aebench.data import Split


class Identity(nn.Module):
    """A deterministic 'autoencoder' whose codes are its pixels: a traversal's images are its codes."""

    def __init__(self, width: int):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.width = width

    def encode(self, x):
        return x

    def decode(self, z):
        return z


class Gaussian(Identity):
    """A 'VAE' with a fixed posterior per image: mu = x, log variance = -1 everywhere."""

    def posterior(self, x):
        return x, torch.full_like(x, -1.0)


def split(x: torch.Tensor) -> Split:
    return Split.of_tensor(x, None, (x.shape[1],))


def test_deterministic_units_are_ordered_by_variance_and_traversed_over_their_spread():
    gen = torch.Generator().manual_seed(0)
    codes = torch.randn(4000, 4, generator=gen) * torch.tensor([1.0, 3.0, 0.0, 0.5]) + torch.tensor([0, 5.0, 2, 0])
    stats = units.unit_stats(Identity(4), split(codes), codes)
    assert stats.order().tolist() == [1, 0, 3, 2]
    assert stats.active.tolist() == [True, True, False, True]  # unit 2 is constant: dead
    assert np.allclose(stats.low[1], 5 - 2 * 3, atol=0.15) and np.allclose(stats.high[1], 5 + 2 * 3, atol=0.15)
    assert stats.measure == "variance"


def test_variational_units_carry_their_kl_to_the_prior():
    gen = torch.Generator().manual_seed(1)
    mu = torch.randn(3000, 3, generator=gen) * torch.tensor([2.0, 0.5, 0.001])
    stats = units.unit_stats(Gaussian(3), split(mu), mu)
    expected = (0.5 * (mu.double().pow(2) + np.exp(-1.0) + 1.0 - 1.0)).mean(0).numpy()  # logvar = -1
    assert np.allclose(stats.carried, expected, rtol=1e-9)
    assert stats.order().tolist() == [0, 1, 2]
    assert stats.active.tolist() == [True, True, False]  # mu of unit 2 varies by 1e-6: inactive (Burda et al.)
    assert stats.low.tolist() == [-2.0] * 3 and stats.high.tolist() == [2.0] * 3


def test_each_row_of_a_traversal_moves_one_unit_over_its_range_and_holds_the_others():
    codes = torch.tensor([[0.0, 10.0, -1.0], [1.0, 2.0, 3.0], [5.0, 5.0, 5.0], [-4.0, 0.0, 1.0]])
    stats = units.unit_stats(Identity(3), split(codes), codes)
    base = codes[:2]
    out = units.traverse(Identity(3), base, stats, steps=5)  # decode is the identity: the images are the codes
    assert out.shape == (2, 3, 5, 3)
    for row, unit in enumerate(stats.order().tolist()):
        for i in range(2):
            moved = out[i, row]
            expected = torch.linspace(float(stats.low[unit]), float(stats.high[unit]), 5)
            assert torch.allclose(moved[:, unit], expected, atol=1e-5)
            others = [u for u in range(3) if u != unit]
            assert torch.equal(moved[:, others], base[i, others].repeat(5, 1))
