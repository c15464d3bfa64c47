"""One training step of the default MLP and conv networks in fp32 and three ways of using the CPU's bf16 units.

    python benchmarks/precision_step.py [--steps 40] [--rounds 5] [--batch 256] [--arch mlp conv]

Variants, timed in interleaved rounds in one process (a drifting machine hits them alike), each on the
default AE objective exactly as the training loop runs it (a batch gathered by index, forward, backward,
fused Adam):

- ``fp32``: everything float32;
- ``autocast``: ``torch.autocast("cpu", torch.bfloat16)`` around the loss (what ``train.precision=bf16`` does);
- ``bf16 weights``: a bf16 copy of the model does the forward and backward on bf16 inputs; its gradients are
  cast up onto float32 master weights, which fused Adam updates and copies back (the mixed-precision recipe
  of frameworks without autocast);
- ``onednn implicit``: float32 tensors, ``torch.backends.mkldnn.matmul.fp32_precision = "bf16"`` (oneDNN
  rounds the inputs of float32 matrix products to bf16 inside the kernel).

Prints the best and median ms per step of each and its ratio to fp32.  On a CPU without bf16 units (no
avx512_bf16 or amx) bf16 is emulated and many times slower: the script says so and stops.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from conv_speed import build  # noqa: E402  (benchmarks/ is not a package)

from aebench import precision  # noqa: E402
from aebench.train import flush_denormals  # noqa: E402


class Variant:
    """A model, its optimiser and one step under one precision recipe."""

    def __init__(self, recipe: str, model: nn.Module) -> None:
        self.recipe = recipe
        self.model = model
        self.opt = torch.optim.Adam(model.parameters(), lr=2e-3, fused=True)
        self.low = copy.deepcopy(model).to(torch.bfloat16) if recipe == "bf16 weights" else None

    def context(self) -> contextlib.AbstractContextManager:
        if self.recipe == "autocast":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def step(self, x: torch.Tensor) -> None:
        if self.low is None:
            with self.context():
                loss = self.model.loss(x)["loss"]
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            return
        for p in self.low.parameters():
            p.grad = None
        self.low.loss(x.to(torch.bfloat16))["loss"].float().backward()
        for master, low in zip(self.model.parameters(), self.low.parameters()):
            master.grad = low.grad.float()
        self.opt.step()
        with torch.no_grad():
            for master, low in zip(self.model.parameters(), self.low.parameters()):
                low.copy_(master)


def run_steps(variant: Variant, data: torch.Tensor, batch: int, steps: int, seed: int) -> float:
    gen = torch.Generator().manual_seed(seed)
    implicit = variant.recipe == "onednn implicit"
    before = torch.backends.mkldnn.matmul.fp32_precision
    if implicit:
        torch.backends.mkldnn.matmul.fp32_precision = "bf16"
    try:
        t = time.perf_counter()
        for _ in range(steps):
            idx = torch.randint(0, len(data), (batch,), generator=gen)
            variant.step(torch.index_select(data, 0, idx))
        return (time.perf_counter() - t) / steps
    finally:
        torch.backends.mkldnn.matmul.fp32_precision = before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="optimiser steps per timed block")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--arch", nargs="+", default=["mlp", "conv"], choices=["mlp", "conv"])
    parser.add_argument("--allow-emulated", action="store_true", help="run even where bf16 is emulated")
    args = parser.parse_args()
    units = precision.cpu_bf16_units()
    if units is None and not args.allow_emulated:
        sys.exit("precision_step.py: this CPU has no bf16 units (no avx512_bf16 or amx): bf16 is emulated here and "
                 "many times slower, so there is nothing to time; run it on a CPU with them")
    flush_denormals()
    data = torch.rand(60_000, 784)
    recipes = ["fp32", "autocast", "bf16 weights", "onednn implicit"]
    print(f"cpu, bf16 units: {units or 'none (emulated)'}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"{args.steps} steps x {args.rounds} rounds, torch {torch.__version__}")
    print(f"{'network':<8}{'recipe':<18}{'ms/step best':>14}{'median':>10}{'fp32/this (median)':>20}")
    for arch in args.arch:
        variants = [Variant(r, build(arch, True, torch.device("cpu"), [16, 32, 64], [512])) for r in recipes]
        for v in variants:  # warm-up: oneDNN picks and caches its kernels
            run_steps(v, data, args.batch, 5, 0)
        seconds: dict[str, list[float]] = {r: [] for r in recipes}
        for round_ in range(args.rounds):
            for v in variants:
                seconds[v.recipe].append(run_steps(v, data, args.batch, args.steps, round_ + 1))
        base = statistics.median(seconds["fp32"])
        for r, times in seconds.items():
            median = statistics.median(times)
            print(f"{arch:<8}{r:<18}{1000 * min(times):>14.2f}{1000 * median:>10.2f}{base / median:>19.2f}x")


if __name__ == "__main__":
    main()
