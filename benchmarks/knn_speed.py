"""k-NN read-out: the query block sized for the CPU's cache against the 64-MiB block, side by side.

    python benchmarks/knn_speed.py [--train 60000] [--test 10000] [--dim 20] [--rounds 3]

Times ``aebench.probe.knn_accuracy`` (k = 5, standardised Euclidean, the run's read-out) on random
codes of the given shape in interleaved rounds, once with blocks of ``KNN_CPU_CHUNK_BYTES`` (what a
CPU run uses) and once with ``CHUNK_BYTES`` (what it used before, and what a GPU uses), and checks
that both give the same accuracy.
"""

from __future__ import annotations

import argparse
import time

import torch

from aebench import probe
from aebench.train import flush_denormals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=int, default=60_000)
    parser.add_argument("--test", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    flush_denormals()
    gen = torch.Generator().manual_seed(0)
    train, test = torch.randn(args.train, args.dim, generator=gen), torch.randn(args.test, args.dim, generator=gen)
    train_y = torch.randint(0, 10, (args.train,), generator=gen)
    test_y = torch.randint(0, 10, (args.test,), generator=gen)
    blocks = {f"{probe.KNN_CPU_CHUNK_BYTES >> 20} MiB blocks (aebench, CPU)": probe.KNN_CPU_CHUNK_BYTES,
              f"{probe.CHUNK_BYTES >> 20} MiB blocks (before; GPU)": probe.CHUNK_BYTES}
    rows = {name: probe.rows_per_chunk(args.train, itemsize=4, budget=budget) for name, budget in blocks.items()}
    seconds: dict[str, list[float]] = {name: [] for name in blocks}
    accuracy: dict[str, float] = {}
    for _ in range(args.rounds):
        for name in blocks:
            t = time.perf_counter()
            accuracy[name] = probe.knn_accuracy(train, train_y, test, test_y, 5, 10, chunk=rows[name])
            seconds[name].append(time.perf_counter() - t)
    print(f"k-NN, {args.test} queries against {args.train} codes of {args.dim} dims, {torch.get_num_threads()} threads, "
          f"best of {args.rounds} interleaved rounds")
    for name in blocks:
        print(f"  {name:<32} {rows[name]:>5} queries a block   {min(seconds[name]):6.2f} s   accuracy {accuracy[name]:.4f}")
    assert len(set(accuracy.values())) == 1, "the block size changed the result"


if __name__ == "__main__":
    main()
