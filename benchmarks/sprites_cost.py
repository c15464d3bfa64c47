"""What data=sprites costs: drawing and caching a grid once, and one training step of the MLP on it.

    python benchmarks/sprites_cost.py [--data sprites sprites_full] [--steps 30] [--rounds 5] [--no-step]

For each ``data=`` choice: the seconds to draw the grid and write it into a fresh cache (a temporary data
root, removed after), its size on disk, and the best and median milliseconds of one training step of
``model=vae`` (the default MLP, batch 256, the run's precision) on batches of its images, timed in
``--rounds`` rounds of ``--steps`` steps.  On a shared machine take the best: other processes only add.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from aebench import config, data, models, precision
from aebench.train import flush_denormals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=["sprites"])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-step", action="store_true", help="time the drawing and caching only")
    args = parser.parse_args()
    flush_denormals()
    cpu = torch.device("cpu")
    for choice in args.data:
        cfg = config.compose([f"data={choice}", "model=vae"])
        root = Path(tempfile.mkdtemp(prefix="aebench-sprites-"))
        try:
            started = time.perf_counter()
            ds = data.load(cfg.data, root, cpu)
            seconds = time.perf_counter() - started
            size = sum(p.stat().st_size for p in (root / "cache").rglob("*") if p.is_file()) / 2**20
            print(f"data={choice} ({ds.label}): {len(ds.train) + len(ds.test)} images drawn and cached in "
                  f"{seconds:.1f} s, {size:.0f} MiB on disk, {'resident' if ds.train.resident else 'memory-mapped'}")
            if args.no_step:
                continue
            model = models.from_config(cfg, ds.image_shape)
            opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
            use_bf16 = precision.resolve(cfg.train.precision, cpu).used == "bf16"
            generator = torch.Generator().manual_seed(0)
            times = []
            for _ in range(args.rounds):
                started = time.perf_counter()
                for _ in range(args.steps):
                    idx = torch.randint(len(ds.train), (cfg.train.batch_size,), generator=generator)
                    x = ds.train.take(idx)
                    with torch.autocast("cpu", torch.bfloat16, enabled=use_bf16):
                        loss = model.loss(x)["loss"]
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                times.append((time.perf_counter() - started) / args.steps * 1000)
            steps_per_epoch = -(-len(ds.pretrain) // cfg.train.batch_size)
            print(f"  one step of model=vae (MLP, batch {cfg.train.batch_size}, {'bf16' if use_bf16 else 'fp32'}): "
                  f"best {min(times):.1f} ms, median {statistics.median(times):.1f} ms; {steps_per_epoch} steps an "
                  f"epoch: {min(times) * steps_per_epoch / 1000:.1f} s at best")
        finally:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
