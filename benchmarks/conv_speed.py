"""Training speed of the networks on this machine: conv (default memory layout vs channels-last) and MLP.

    python benchmarks/conv_speed.py [--steps 40] [--rounds 3] [--batch 256] [--device cpu]

Times optimiser steps of aebench's default AE objective (BCE, fused Adam) on random
MNIST-shaped batches, exactly as the training loop runs them (a batch gathered by
index from one tensor, forward, backward, step).  Variants are timed in interleaved
rounds in one process, so a machine whose speed drifts affects them alike; the best
round of each is reported with the median, as images per second and seconds per
60 000-image epoch.

Channels-last: aebench's conv networks lay images and weights out as ``torch.channels_last``
(NHWC, the layout oneDNN prefers on CPUs); the "conv" row undoes that to show what it buys.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from aebench import config, models
from aebench.train import flush_denormals


def build(arch: str, channels_last: bool, device: torch.device, channels: list[int], hidden: list[int]) -> nn.Module:
    torch.manual_seed(0)
    if arch == "mlp":
        model = models.from_config(config.compose([]), (1, 28, 28))  # the default MLP AE
    else:
        conv = ["arch=conv", f"arch.channels=[{','.join(map(str, channels))}]", f"arch.hidden=[{','.join(map(str, hidden))}]"]
        model = models.from_config(config.compose(conv), (1, 28, 28))
        if not channels_last:  # aebench builds conv networks channels-last; undo it for the comparison
            for m in model.modules():
                if isinstance(m, models.nets.ToChannelsLast):
                    m.forward = lambda x: x.contiguous()
            model = model.to(memory_format=torch.contiguous_format)
    return model.to(device)


def time_steps(model: nn.Module, opt: torch.optim.Optimizer, data: torch.Tensor, batch: int, steps: int,
               gen: torch.Generator) -> None:
    device = data.device
    for _ in range(steps):
        idx = torch.randint(0, len(data), (batch,), device=device, generator=gen)
        x = torch.index_select(data, 0, idx)
        loss = model.loss(x)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="optimiser steps per timed block")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--channels", type=int, nargs="+", default=[16, 32, 64], help="conv filters (aebench's default: 16 32 64)")
    parser.add_argument("--hidden", type=int, nargs="*", default=[512], help="conv dense widths (aebench's default: 512)")
    args = parser.parse_args()
    flush_denormals()
    device = torch.device(args.device)
    data = torch.rand(60_000, 784, device=device)
    variants = {"mlp": ("mlp", False), "conv": ("conv", False), "conv channels-last": ("conv", True)}
    built = {}
    for name, (arch, cl) in variants.items():
        model = build(arch, cl, device, args.channels, args.hidden)
        opt = torch.optim.Adam(model.parameters(), lr=2e-3, fused=True)
        time_steps(model, opt, data, args.batch, 5, torch.Generator(device=device).manual_seed(0))  # warm-up
        built[name] = (model, opt)
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, (model, opt) in built.items():
            gen = torch.Generator(device=device).manual_seed(1)
            t = time.perf_counter()
            time_steps(model, opt, data, args.batch, args.steps, gen)
            seconds[name].append((time.perf_counter() - t) / args.steps)
    print(f"{device}, {torch.get_num_threads()} threads, batch {args.batch}, {args.steps} steps x {args.rounds} rounds, "
          f"conv channels {args.channels}, hidden {args.hidden}")
    print(f"{'network':<20}{'ms/step best':>14}{'ms/step median':>16}{'images/s':>11}{'s/epoch':>9}")
    for name, times in seconds.items():
        best, median = min(times), statistics.median(times)
        print(f"{name:<20}{1000 * best:>14.2f}{1000 * median:>16.2f}{args.batch / best:>11.0f}"
              f"{60_000 / args.batch * best:>9.1f}")


if __name__ == "__main__":
    main()
