"""What run tracking costs: default runs with ``logger=none`` and with a logger, interleaved, side by side.

Each pair runs the ``aebench`` command twice, one process at a time, in the same scratch directory:
once without tracking and once with ``logger=many`` (TensorBoard and MLflow; ``--logger`` picks
another).  The order inside a pair alternates, so that drift in the machine's load falls on both
sides.  Printed per pair: the wall time of each command, the difference, and the seconds the run
itself spent inside logger calls (``seconds.logging`` in its metrics.json: MLflow's import and
connection, the per-epoch entries, figures, projector, final numbers; not the last upload of
metrics.json, history.csv and .hydra/ after metrics.json is written).  Then medians, and the
overhead in percent of the untracked run.  The budget is 3 % of the default run.

MLflow logs into a fresh local store in the scratch directory (``sqlite:///mlflow.db``, MLflow's own
default), created before the first pair: creating a store's tables happens once per store, not per run.
``--tracking-uri http://host:port`` measures against a server instead.

    python benchmarks/tracking_overhead.py                         # 3 pairs of default runs (~15 min on 2 cores)
    python benchmarks/tracking_overhead.py --pairs 5 --logger mlflow
    python benchmarks/tracking_overhead.py --epochs 1 --train-subset 3000   # a quick check of the script itself
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_once(cwd: Path, overrides: list[str], env: dict[str, str]) -> dict[str, float]:
    """One ``aebench`` command; its wall time and the seconds its metrics.json reports."""
    before = set(cwd.glob("outputs/*/*"))
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "aebench", *overrides], cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"aebench {' '.join(overrides)} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    (run_dir,) = set(cwd.glob("outputs/*/*")) - before
    seconds = json.loads((run_dir / "metrics.json").read_text())["seconds"]
    return {"wall": wall, "total": seconds["total"], "logging": seconds.get("logging", 0.0)}


def create_store(uri: str) -> float:
    """Open the MLflow store once (a new SQLite store creates its tables here); seconds it took.

    The experiment is left to the first run: MLflow places a new experiment's artifacts under
    ``./mlruns`` of the process that creates it, and the runs work in the scratch directory.
    """
    import mlflow

    started = time.perf_counter()
    mlflow.MlflowClient(tracking_uri=uri)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=3, help="interleaved pairs of runs (default 3)")
    parser.add_argument("--logger", default="many", choices=["many", "mlflow", "tensorboard"],
                        help="the tracked side (default many: TensorBoard and MLflow)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: a local store in the scratch dir)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run (default: aebench's, 20)")
    parser.add_argument("--train-subset", type=int, default=None, help="first N training images (default: all)")
    parser.add_argument("--test-subset", type=int, default=None, help="first N test images (default: all)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (its path is printed)")
    parser.add_argument("overrides", nargs="*", help="more aebench overrides for both sides, e.g. device=cpu")
    args = parser.parse_args()

    common = ["progress=false", *args.overrides]
    if args.epochs is not None:
        common.append(f"epochs={args.epochs}")
    if args.train_subset is not None:
        common.append(f"data.train_subset={args.train_subset}")
    if args.test_subset is not None:
        common.append(f"data.test_subset={args.test_subset}")

    scratch = Path(tempfile.mkdtemp(prefix="aebench-tracking-"))
    uri = args.tracking_uri or f"sqlite:///{scratch / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    env.pop("HYDRA_FULL_ERROR", None)
    sides = {"none": ["logger=none", *common], args.logger: [f"logger={args.logger}", *common]}
    print(f"aebench {' '.join(common)}: logger=none against logger={args.logger}, {args.pairs} interleaved pair(s)")
    if args.logger != "tensorboard":
        print(f"MLflow store {uri}: opened in {create_store(uri):.1f} s before the first pair (once per store)")

    results: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
    header = f"{'pair':>4}  {'none wall s':>11}  {args.logger + ' wall s':>13}  {'difference s':>12}  {'in logger s':>11}"
    print(header)
    for pair in range(args.pairs):
        order = list(sides) if pair % 2 == 0 else list(sides)[::-1]
        for name in order:
            results[name].append(run_once(scratch, sides[name], env))
        none, tracked = results["none"][-1], results[args.logger][-1]
        print(f"{pair + 1:>4}  {none['wall']:>11.1f}  {tracked['wall']:>13.1f}  {tracked['wall'] - none['wall']:>+12.1f}  "
              f"{tracked['logging']:>11.2f}")

    median = {name: {k: statistics.median(r[k] for r in runs) for k in ("wall", "total", "logging")}
              for name, runs in results.items()}
    base, tracked = median["none"], median[args.logger]
    print(f"{'med.':>4}  {base['wall']:>11.1f}  {tracked['wall']:>13.1f}  {tracked['wall'] - base['wall']:>+12.1f}  "
          f"{tracked['logging']:>11.2f}")
    wall_pct = 100 * (tracked["wall"] - base["wall"]) / base["wall"]
    logging_pct = 100 * tracked["logging"] / base["wall"]
    print(f"overhead of logger={args.logger}: {wall_pct:+.1f} % of the untracked wall time (median difference); "
          f"{logging_pct:.1f} % spent inside logger calls; budget 3 % -> "
          f"{'within' if max(wall_pct, logging_pct) <= 3 else 'OVER'}")
    if args.keep:
        print(f"runs kept in {scratch}")
    else:
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
