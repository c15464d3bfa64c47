#!/usr/bin/env python
"""Memory of a memory-mapped run against the number of images, and the cache's start-up cost.

    python benchmarks/data_memory.py [--work DIR] [--sizes 8000 32000] [--side 64]

For each size N, writes N generated colour images (3 x side x side PNGs, smooth random blobs in
ten classes) as an ImageFolder, then runs ``aebench data=folder data.in_memory=false epochs=1`` on
it twice in a fresh process, sampling the process's own memory (``RssAnon`` in /proc/<pid>/status,
every 20 ms: the page cache of the mapped file, which ``ru_maxrss`` counts, is not the process's
own) and printing, side by side: the peak RssAnon of each run, what the float32 images would take,
and the seconds to data ready (``seconds.data`` of metrics.json; the first run decodes the folder
into the cache, the second maps it).  The raw-pixel probe is switched off: it reads up to 768 MiB
of pixels by design (docs/data.md), which is bounded but not independent of N below that.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image


def write_folder(folder: Path, n: int, side: int, seed: int = 0) -> None:
    if (folder / ".complete").is_file():
        return
    rng = np.random.default_rng(seed)
    for i in range(n):
        c = i % 10
        small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        small[..., c % 3] = 40 + 20 * c  # a class shows in one channel's level
        image = Image.fromarray(small).resize((side, side), Image.BILINEAR)
        (folder / f"class{c}").mkdir(parents=True, exist_ok=True)
        image.save(folder / f"class{c}" / f"{i:06d}.png", compress_level=0)
    (folder / ".complete").touch()


def rss_anon_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


def run(folder: Path, root: Path, out: Path) -> tuple[float, float, dict]:
    cmd = [sys.executable, "-m", "aebench", "data=folder", f"data.path={folder}", f"data.root={root}",
           "data.in_memory=false", "epochs=1", "probe.pixel_baseline=false", "probe.label_budgets=[]", "figures=false",
           "progress=false", f"hydra.run.dir={out}"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            try:
                peak = max(peak, rss_anon_kib(proc.pid))
            except OSError:
                break
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    _, err = proc.communicate()
    done.set()
    sampler.join()
    if proc.returncode:
        raise SystemExit(f"aebench failed ({proc.returncode}): {err[-2000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    return peak / 1024, time.perf_counter() - t0, metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "aebench-data-memory")
    parser.add_argument("--sizes", type=int, nargs="+", default=[8000, 32000])
    parser.add_argument("--side", type=int, default=64)
    args = parser.parse_args()
    rows = []
    for n in args.sizes:
        folder = args.work / f"images-{n}"
        t = time.perf_counter()
        write_folder(folder, n, args.side)
        print(f"{n} images ready in {folder} ({time.perf_counter() - t:.1f} s)", flush=True)
        root = args.work / f"root-{n}"
        for attempt in ("first", "second"):
            out = args.work / f"run-{n}-{attempt}-{os.getpid()}"
            peak, wall, m = run(folder, root, out)
            rows.append((n, attempt, peak, wall, m["seconds"]["data"], m["seconds"].get("baselines", 0.0),
                         m["seconds"]["pretrain"], m["recon_mse"], m["probe_accuracy"]))
            print(f"  {attempt} run: peak RssAnon {peak:.0f} MiB, wall {wall:.1f} s", flush=True)
    float_mib = {n: n * 3 * args.side * args.side * 4 / 2**20 for n in args.sizes}
    print(f"\n{'images':>7} {'run':>7} {'float32 MiB':>12} {'peak RssAnon MiB':>17} {'wall s':>7} {'data s':>7} "
          f"{'baselines s':>12} {'pretrain s':>11} {'recon_mse':>10} {'probe':>7}")
    for n, attempt, peak, wall, data_s, base_s, pre_s, mse, acc in rows:
        print(f"{n:>7} {attempt:>7} {float_mib[n]:>12.0f} {peak:>17.0f} {wall:>7.1f} {data_s:>7.1f} {base_s:>12.1f} "
              f"{pre_s:>11.1f} {mse:>10.4f} {acc:>7.4f}")
    first = {n: peak for n, attempt, peak, *_ in rows if attempt == "second"}
    if len(args.sizes) >= 2:
        lo, hi = min(args.sizes), max(args.sizes)
        print(f"\npeak RssAnon ratio, {hi} against {lo} images (cache already built): {first[hi] / first[lo]:.2f}x "
              f"(the images' float32 size: {hi / lo:.1f}x)")


if __name__ == "__main__":
    main()
