"""What ``gc.freeze()`` at the command's start saves: the ``aebench`` command with and without it.

``aebench.cli.command`` (the console script, ``python -m aebench``) freezes the objects that
importing torch, Hydra and OmegaConf created before it runs ``main()``.  This script runs one
command both ways, one process at a time and interleaved (the baseline replaces ``gc.freeze``
with a no-op), and prints for each: the wall clock, the time outside the run (start-up and
shutdown: wall minus the run's own ``seconds.total``), and the time the cyclic collector spent in
its passes (summed from ``gc.callbacks``).

    python benchmarks/gc_freeze.py                       # experiment=seed_report, 3 pairs
    python benchmarks/gc_freeze.py --pairs 5 -- epochs=1 data.train_subset=3000
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Runs in the child: sums the collector's pauses, reports them at exit, then runs the command.
CHILD = """
import gc, sys, time, atexit
spent, started = [0.0, 0], [0.0]
def watch(phase, info):
    if phase == "start":
        started[0] = time.perf_counter()
    else:
        spent[0] += time.perf_counter() - started[0]
        spent[1] += info["generation"] == 2
gc.callbacks.append(watch)
mode, report = sys.argv.pop(1), sys.argv.pop(1)
atexit.register(lambda: open(report, "w").write(f"{spent[0]} {spent[1]}"))
if mode == "off":
    gc.freeze = lambda: None
from aebench.cli import command
command()
"""


def one(mode: str, overrides: list[str], work: Path) -> dict[str, float]:
    run_dir, gc_file = work / f"run-{mode}", work / f"gc-{mode}.txt"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", CHILD, mode, str(gc_file), *overrides, "progress=false",
                    f"hydra.run.dir={run_dir}"], check=True, capture_output=True)
    wall = time.perf_counter() - t0
    total = json.loads((run_dir / "metrics.json").read_text())["seconds"]["total"]
    gc_seconds, full_passes = gc_file.read_text().split()
    shutil.rmtree(run_dir)  # the next command of this mode writes the same directory
    return {"wall": wall, "outside": wall - total, "gc": float(gc_seconds), "full": int(full_passes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("overrides", nargs="*", default=["experiment=seed_report"])
    args = parser.parse_args()
    rows: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.pairs):
            for mode in ("off", "on"):
                r = one(mode, args.overrides, Path(tmp))
                rows[mode].append(r)
                print(f"pair {i + 1} gc.freeze {mode:>3}: wall {r['wall']:5.1f} s, outside the run {r['outside']:4.2f} s, "
                      f"collector {r['gc']:4.2f} s ({r['full']} full passes)", flush=True)
    print(f"\naebench {' '.join(args.overrides)}, medians of {args.pairs}:")
    print(f"{'':>16}{'wall':>10}{'outside run':>14}{'collector':>12}")
    for mode, label in (("off", "without freeze"), ("on", "with freeze")):
        med = {k: statistics.median(r[k] for r in rows[mode]) for k in ("wall", "outside", "gc")}
        print(f"{label:>16}{med['wall']:>9.1f}s{med['outside']:>13.2f}s{med['gc']:>11.2f}s")


if __name__ == "__main__":
    main()
