"""Seconds per training step of each VAE-family objective, side by side, on one network and batch.

    python benchmarks/objective_step.py [--arch mlp|conv] [--batch 64] [--steps 40] [--size 32]

Interleaved: every objective is timed once per round, over several rounds; the median per step is printed
with its ratio to the plain VAE's.  Images: random binary 1-channel size x size images (the step's cost does not
depend on what they show); the precision is what train.precision=auto picks here.  Run with nothing else busy.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from aebench import config, data, models, precision
from aebench.train import Trainer

OBJECTIVES = ["model=vae", "model=beta_tcvae", "model=factor_vae", "model=dip_vae", "model=annealed_vae"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="conv")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--extra", nargs="*", default=[], help="more overrides for every objective")
    a = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    n, px = a.batch * a.steps, a.size * a.size
    x = (torch.rand(n, px) > 0.8).float()
    y = torch.zeros(n, dtype=torch.long)
    ds = data.ImageData.of_tensors("synthetic", ("a",), x, y, x[:64], y[:64], (1, a.size, a.size))
    chosen = precision.resolve("auto", torch.device("cpu"), None)
    print(f"arch={a.arch} batch={a.batch} {a.size}x{a.size} precision={chosen.used} threads={torch.get_num_threads()}")
    trainers = {}
    for name in OBJECTIVES:
        cfg = config.compose([name, f"arch={a.arch}", "latent=10", f"train.batch_size={a.batch}",
                              f"train.precision={chosen.used}", *a.extra])
        model = models.from_config(cfg, ds.image_shape, dataset_size=n)
        trainers[name] = Trainer(model, ds, cfg.train, epochs=10**6, seed=0, run_dir="/tmp/aebench-bench-unused", meta={})
    times: dict[str, list[float]] = {k: [] for k in trainers}
    for _ in range(a.rounds):
        for name, t in trainers.items():
            opt, model = t.optimizer, t.model
            t0 = time.perf_counter()
            for step in range(a.steps):
                xb = x[step * a.batch : (step + 1) * a.batch]
                for c in t.callbacks:
                    c.on_step_start(t)
                with t.autocast():
                    parts = model.loss(xb, t.generator)
                opt.zero_grad(set_to_none=True)
                parts["loss"].backward()
                opt.step()
                for c in t.callbacks:
                    c.on_step_end(t, xb, parts)
            times[name].append((time.perf_counter() - t0) / a.steps)
    base = statistics.median(times["model=vae"])
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"{name:22s} {1000 * m:8.2f} ms/step  {m / base:5.2f}x the VAE")


if __name__ == "__main__":
    main()
