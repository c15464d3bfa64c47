"""fp32 against bf16 autocast, through aebench's own sweep and comparison: speed and quality, over seeds.

For each setting (the default MLP AE, the conv AE, the MLP VAE) one sweep
``aebench -m seed=1,2,3 train.precision=fp32,bf16 <setting>``: the basic launcher runs its jobs one at a
time in the order seed 1 fp32, seed 1 bf16, seed 2 fp32, ... (interleaved, so the machine's drift hits both
alike).  Then ``aebench-compare --baseline train.precision=fp32`` gives every metric's mean, 95 % interval
over the seeds and the paired verdict (the probe, the label budgets, k-NN, recon MSE, neg. ELBO), and this
script prints the pretraining time of each pair and its ratio.

    .venv/bin/python benchmarks/precision.py --out /tmp/precision        # ~1.5 h on a 2-core bf16 CPU
    .venv/bin/python benchmarks/precision.py --quick --out /tmp/p         # minutes: tiny runs, seeds 1-2

On a CPU without bf16 units (no avx512_bf16 or amx in /proc/cpuinfo) bf16 is emulated and many times slower:
the script says so in one line and stops, unless ``--allow-emulated`` (only to check the script itself).
The results belong in docs/speed.md, "Precision", with the CPU's flags.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from aebench import precision

SETTINGS = {"mlp-ae": [], "conv-ae": ["arch=conv"], "mlp-vae": ["model=vae"]}
QUICK = ["debug=tiny", "epochs=2"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="a folder for the sweeps and their comparisons")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--only", choices=sorted(SETTINGS), action="append", help="some settings only (repeatable)")
    parser.add_argument("--quick", action="store_true", help="tiny runs (debug=tiny, 2 epochs), seeds 1,2")
    parser.add_argument("--allow-emulated", action="store_true", help="run even where bf16 is emulated")
    args = parser.parse_args()
    units = precision.cpu_bf16_units()
    if units is None and not args.allow_emulated:
        print("precision.py: this CPU has no bf16 units (no avx512_bf16 or amx in /proc/cpuinfo): bf16 is emulated "
              "here and would take hours; run it on a CPU with them (or --allow-emulated to check the script)",
              file=sys.stderr)
        sys.exit(2)
    seeds = "1,2" if args.quick else args.seeds
    print(f"CPU bf16 units: {units or 'none (emulated)'}")
    for name in args.only or SETTINGS:
        sweep = args.out / name
        overrides = [*SETTINGS[name], *(QUICK if args.quick else []), "device=cpu", "progress=false"]
        command = [sys.executable, "-m", "aebench", "-m", f"seed={seeds}", "train.precision=fp32,bf16", *overrides,
                   f"hydra.sweep.dir={sweep}"]
        print("$", " ".join(command[2:]), flush=True)
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        subprocess.run([sys.executable, "-m", "aebench.compare", str(sweep), "--baseline", "train.precision=fp32",
                        "--no-reconstructions"], check=True)
        report_times(sweep)


def report_times(sweep: Path) -> None:
    """Each seed's pretraining seconds at both precisions, and the ratio fp32 / bf16 (> 1: bf16 quicker)."""
    pretrain: dict[tuple[int, str], float] = {}
    for metrics_file in sweep.glob("*/metrics.json"):
        m = json.loads(metrics_file.read_text())
        pretrain[(m["config"]["seed"], m["precision"]["used"])] = m["seconds"]["pretrain"]
    ratios = []
    for seed in sorted({s for s, _ in pretrain}):
        fp32, bf16 = pretrain.get((seed, "fp32")), pretrain.get((seed, "bf16"))
        if fp32 and bf16:
            ratios.append(fp32 / bf16)
            print(f"  seed {seed}: pretrain fp32 {fp32:7.1f} s   bf16 {bf16:7.1f} s   fp32/bf16 {fp32 / bf16:.2f}x")
    if ratios:
        print(f"  median fp32/bf16: {statistics.median(ratios):.2f}x over {len(ratios)} interleaved pairs\n")


if __name__ == "__main__":
    main()
