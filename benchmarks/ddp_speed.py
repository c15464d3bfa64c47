"""One run on 2 processes (torchrun, gloo, 1 thread each) against 1 process (threads = 2), as a user runs them.

    python benchmarks/ddp_speed.py [--rounds 2] [--images 12000] [--epochs 2] [-- more overrides]

Interleaved: each round runs the one-process run, then the two-process run, in fresh directories; per run it
reads history.csv's ``train_seconds`` (the training steps of every epoch, the test evaluation and the probe left
out) and metrics.json's total seconds, and prints each with the ratio two processes / one (below 1: faster).
Run with nothing else busy: on a 2-core machine the two processes take one core each, as the one process's two
threads do.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def run(cmd: list[str], cwd: Path) -> tuple[float, float]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    run_dir = next(cwd.glob("outputs/*/*"))
    train = sum(float(r["train_seconds"]) for r in csv.DictReader(open(run_dir / "history.csv")))
    total = json.loads((run_dir / "metrics.json").read_text())["seconds"]["total"]
    return train, total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--images", type=int, default=12000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("extra", nargs="*", help="more overrides for both runs")
    a = ap.parse_args()
    common = [f"data.train_subset={a.images}", f"epochs={a.epochs}", "figures=false", "progress=false",
              "probe.every_epoch=false", *a.extra]
    one = [sys.executable, "-m", "aebench", "threads=2", *common]
    two = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "aebench", *common]
    times: dict[str, list[tuple[float, float]]] = {"1 process x 2 threads": [], "2 processes x 1 thread": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            for label, cmd in zip(times, (one, two)):
                cwd = Path(tmp) / f"{r}-{len(times[label])}-{label[0]}"
                cwd.mkdir()
                times[label].append(run(cmd, cwd))
                print(f"round {r + 1} {label}: train {times[label][-1][0]:.2f} s, run {times[label][-1][1]:.2f} s",
                      flush=True)
    (one_label, one_t), (two_label, two_t) = times.items()
    for i, what in enumerate(("training steps (history.csv train_seconds)", "whole run (metrics.json seconds.total)")):
        m1, m2 = statistics.median(t[i] for t in one_t), statistics.median(t[i] for t in two_t)
        print(f"{what}: {one_label} {m1:.2f} s, {two_label} {m2:.2f} s, ratio {m2 / m1:.2f}")


if __name__ == "__main__":
    main()
