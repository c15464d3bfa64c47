"""aebench against pythae's own TrainingPipeline on identical networks, losses and schedules (issue 12).

The peer is pythae 0.1.2 (PyPI ``pythae``), trained through ``pythae.pipelines.TrainingPipeline``.
Both train, on full MNIST by default (60 000 train / 10 000 test images), for 20 epochs at batch
256 with Adam at lr 2e-3 and no learning-rate schedule:

- AE, latent 20: encoder Linear(784,512)-ReLU-Linear(512,20), decoder
  Linear(20,512)-ReLU-Linear(512,784)-Sigmoid, squared error (pythae sums it over the pixels,
  aebench averages it: 784x apart, which Adam all but ignores: its steps are scale invariant
  up to its eps);
- VAE, latent 10: encoder Linear(784,512)-ReLU, then mu and log-variance heads Linear(512,10),
  the same decoder, BCE summed over the pixels + KL per image in both.

``--latent N`` sets one code size for both models.  aebench gets the overrides in
AEBENCH_OVERRIDES below and otherwise its defaults: the accuracy curve on (a linear probe after
every epoch), the PCA baseline, k-NN, figures, checkpoints.  pythae's pipeline evaluates on the
test set after every epoch; afterwards its process encodes the train and test sets (AE: z,
VAE: mu).  Every timed run is a fresh process, one at a time, in the order aebench AE, pythae
AE, aebench VAE, pythae VAE (``--repeats`` times), each with the same number of torch threads.
pythae's codes are probed afterwards, outside its timed process, with aebench's own
``probe.linear_probe`` and ``probe.knn_accuracy`` at the settings of aebench's run.

Before the timed runs (untimed): ``verify`` builds both libraries' networks from these very
overrides and checks they are the same (parameter shapes, the same initial weights from one
seed, the losses and gradients on a batch: AE 784x apart, VAE equal); then one short aebench
run fills aebench's cached raw-pixel probe for this data root and subset, so the timed runs
find the cache warm as a user's second run does.  After each pair of runs the parameter shapes
of aebench's trained network (from its checkpoint) are checked against pythae's.

Install (pythae and its requirements go into their own venv, .venv-peer, which sees aebench's
venv through a .pth file; nothing in aebench's venv is touched, see
benchmarks/requirements-peer.txt):

    make bench-peer ARGS="--repeats 3 --json peer.json"     # installs on first use, then runs

or by hand, from the repository root after ``make setup``:

    python3 -m venv --clear .venv-peer
    .venv-peer/bin/python -m pip uninstall -y setuptools      # aebench's setuptools is the one to see
    .venv/bin/python -c "import sysconfig; print('import site; site.addsitedir(%r)' % sysconfig.get_paths()['purelib'])" \\
        > "$(.venv-peer/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/aebench-main-venv.pth"
    .venv-peer/bin/python -m pip install --no-deps -r benchmarks/requirements-peer.txt
    .venv/bin/python benchmarks/peer.py --repeats 3 --json peer.json

A quick check that it all works (a few minutes on 2 cores): ``--epochs 1 --train-subset 5000 --test-subset 1000``.
docs/peer-benchmark.md says what every column means.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from aebench import data, probe
from aebench.train import flush_denormals

# ------------------------------------------------------------------ what aebench runs
# aebench's overrides for the networks, losses and schedule of the comparison: the one place to change them.
AEBENCH_OVERRIDES: dict[str, list[str]] = {
    "ae": ["model=ae", "arch=mlp", "arch.hidden=[512]", "arch.activation=relu", "model.recon_loss=mse", "train.scheduler=none"],
    "vae": ["model=vae", "arch=mlp", "arch.hidden=[512]", "arch.activation=relu", "train.scheduler=none"],
}
DEFAULT_LATENT = {"ae": 20, "vae": 10}

HERE = Path(__file__).resolve().parent
WORKER = HERE / "peer_pythae.py"
DEFAULT_PYTHAE_PYTHON = HERE.parent / ".venv-peer" / "bin" / "python"


class ChildFailed(RuntimeError):
    pass


@dataclass
class Run:
    """One timed process: what it cost and what its codes are worth."""

    side: str  # "aebench" or "pythae"
    model: str  # "ae" or "vae"
    repeat: int
    wall_s: float  # the whole process, start to exit, timed by this script
    peak_rss_mib: float  # the process's peak resident set size (ru_maxrss from wait4)
    train_s: float  # aebench: seconds.pretrain; pythae: the TrainingPipeline call
    readout_s: float  # aebench: seconds.baselines + seconds.probe; pythae: encoding train and test
    probe_accuracy: float
    knn_accuracy: float
    test_loss: float  # AE: test MSE per pixel; VAE: test negative ELBO, nats per image
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def rest_s(self) -> float:
        return self.wall_s - self.train_s - self.readout_s


# ------------------------------------------------------------------ running one child process
def run_child(cmd: list[str], log_path: Path, cwd: Path) -> tuple[float, float]:
    """Run ``cmd`` to its end with its output in ``log_path``; return (wall seconds, peak RSS MiB).

    The peak RSS is the child's own ``ru_maxrss`` from ``os.wait4`` (Linux: KiB), which covers
    that process alone (and any children it waited for), unlike RUSAGE_CHILDREN, which keeps
    the maximum over every child this script ever waited for.
    """
    with open(log_path, "w") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = "".join(log_path.read_text(errors="replace").splitlines(keepends=True)[-25:])
        raise ChildFailed(f"{' '.join(cmd)}\nexited with {proc.returncode}; the end of its log ({log_path}):\n{tail}")
    return wall, usage.ru_maxrss / 1024


def aebench_overrides(args: argparse.Namespace, model: str, run_dir: Path, epochs: int) -> list[str]:
    overrides = [
        *AEBENCH_OVERRIDES[model],
        f"latent={latent_of(args, model)}",
        f"epochs={epochs}",
        f"train.batch_size={args.batch_size}",
        f"train.lr={args.lr}",
        f"seed={args.seed}",
        f"threads={args.threads}",
        f"device={args.device}",
        f"data.root={args.data_root}",
        "progress=false",
        f"hydra.run.dir={run_dir}",
    ]
    if args.train_subset is not None:
        overrides.append(f"data.train_subset={args.train_subset}")
    if args.test_subset is not None:
        overrides.append(f"data.test_subset={args.test_subset}")
    return overrides


def latent_of(args: argparse.Namespace, model: str) -> int:
    return args.latent if args.latent is not None else DEFAULT_LATENT[model]


# ------------------------------------------------------------------ the two sides
def run_aebench(args: argparse.Namespace, model: str, repeat: int, work: Path) -> Run:
    run_dir = work / f"{repeat}-{model}-aebench"
    cmd = [sys.executable, "-m", "aebench", *aebench_overrides(args, model, run_dir, args.epochs)]
    wall, rss = run_child(cmd, work / f"{repeat}-{model}-aebench.log", work)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # The trained network's parameter shapes, in order, from its checkpoint (checked against pythae's).
    shapes = [list(t.shape) for t in torch.load(run_dir / "checkpoints" / "last.pt", map_location="cpu",
                                                 weights_only=False)["model"].values()]
    s = metrics["seconds"]
    return Run(
        side="aebench", model=model, repeat=repeat, wall_s=wall, peak_rss_mib=rss,
        train_s=s["pretrain"], readout_s=s["baselines"] + s["probe"],
        probe_accuracy=metrics["probe_accuracy"], knn_accuracy=metrics["knn_accuracy"],
        test_loss=metrics["recon_mse"] if model == "ae" else metrics["neg_elbo"],
        detail={"seconds": s, "peak_host_mib_in_metrics": metrics["memory"]["peak_host_mib"], "run_dir": str(run_dir),
                "param_shapes": shapes, "command": cmd},
    )


def run_pythae(args: argparse.Namespace, model: str, repeat: int, work: Path, labels: tuple[torch.Tensor, torch.Tensor],
               probe_cfg: Any) -> Run:
    out = work / f"{repeat}-{model}-pythae"
    out.mkdir()
    cmd = [str(args.pythae_python), str(WORKER), "train",
           "--model", model, "--latent", str(latent_of(args, model)), "--epochs", str(args.epochs),
           "--batch-size", str(args.batch_size), "--eval-batch-size", str(args.pythae_eval_batch),
           "--lr", str(args.lr), "--seed", str(args.seed), "--threads", str(args.threads),
           "--device", args.device, "--data-root", str(args.data_root), "--out", str(out)]
    if args.train_subset is not None:
        cmd += ["--train-subset", str(args.train_subset)]
    if args.test_subset is not None:
        cmd += ["--test-subset", str(args.test_subset)]
    if args.pythae_ftz:
        cmd.append("--flush-denormals")
    wall, rss = run_child(cmd, work / f"{repeat}-{model}-pythae.log", work)
    result = json.loads((out / "result.json").read_text())

    # Outside the timed process: aebench's own read-outs on pythae's codes, at aebench's settings.
    codes = torch.load(out / "codes.pt")
    train_y, test_y = labels
    t = time.perf_counter()
    fitted = probe.linear_probe(codes["train"], train_y, codes["test"], test_y, 10,
                                probe_cfg.l2, probe_cfg.tol, probe_cfg.max_iter)
    knn = probe.knn_accuracy(codes["train"], train_y, codes["test"], test_y, probe_cfg.knn_k, 10)
    probe_seconds = time.perf_counter() - t

    eval_loss = result["history"][-1]["eval_epoch_loss"]
    return Run(
        side="pythae", model=model, repeat=repeat, wall_s=wall, peak_rss_mib=rss,
        train_s=result["seconds"]["train"], readout_s=result["seconds"]["readout"],
        probe_accuracy=fitted.accuracy, knn_accuracy=knn,
        # pythae's eval loss: the mean over eval batches of each batch's mean loss per image.
        test_loss=eval_loss / 784 if model == "ae" else eval_loss,
        detail={"seconds": result["seconds"], "history": result["history"], "parameters": result["parameters"],
                "param_shapes": result["param_shapes"],
                "probe_converged": fitted.converged, "probe_seconds_outside": round(probe_seconds, 3),
                "device": result["device"], "threads": result["threads"], "command": cmd},
    )


def verify_networks(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Both libraries' networks from the benchmark's settings: same shapes, weights, losses?"""
    models = {m: {"latent": latent_of(args, m), "overrides": [*AEBENCH_OVERRIDES[m], f"latent={latent_of(args, m)}"]}
              for m in args.models}
    out = work / "verify.json"
    cmd = [str(args.pythae_python), str(WORKER), "verify", "--data-root", str(args.data_root),
           "--threads", str(args.threads), "--out", str(out), "--models", json.dumps(models)]
    run_child(cmd, work / "verify.log", work)
    report = json.loads(out.read_text())
    for model, r in report.items():
        print(f"verify {model.upper()}: parameters pythae {r['parameters_pythae']:,} / aebench {r['parameters_aebench']:,}; "
              f"same shapes {r['same_shapes']}, same initial weights {r['same_initial_weights']}; "
              f"loss pythae {r['loss_pythae']:.4f} / aebench {r['loss_aebench']:.6f} = {r['loss_ratio']:.4f} "
              f"(expected {r['expected_loss_ratio']:g}); gradients agree to {r['max_relative_gradient_difference']:.1e}")
        if not (r["same_shapes"] and r["same_initial_weights"] and r["loss_ratio_ok"] and r["gradients_ok"]):
            raise ChildFailed(f"the {model.upper()} networks or losses differ between pythae and aebench: {out}")
    return report


# ------------------------------------------------------------------ reporting
COLUMNS = [  # (key, heading, format)
    ("wall_s", "wall s", "{:.1f}"),
    ("train_s", "train s", "{:.1f}"),
    ("readout_s", "read-out s", "{:.1f}"),
    ("rest_s", "rest s", "{:.1f}"),
    ("peak_rss_mib", "peak RSS MiB", "{:.0f}"),
    ("probe_accuracy", "probe acc %", "{:.2%}"),
    ("knn_accuracy", "kNN acc %", "{:.2%}"),
    ("test_loss", "test loss", "{:.4g}"),
]
ACCURACIES = {"probe_accuracy", "knn_accuracy"}


def medians(runs: list[Run]) -> dict[str, float]:
    return {key: statistics.median(getattr(r, key) for r in runs) for key, _, _ in COLUMNS}


def comparison(a: dict[str, float], p: dict[str, float]) -> dict[str, float]:
    """aebench against pythae: ratios of times and memory, differences of accuracy in points."""
    return {key: (100 * (a[key] - p[key]) if key in ACCURACIES else a[key] / p[key] if p[key] else float("nan"))
            for key, _, _ in COLUMNS}


def table(summary: dict[str, dict[str, float]], title: str) -> str:
    rows = [["", *(heading for _, heading, _ in COLUMNS)]]
    for side in ("aebench", "pythae"):
        rows.append([side, *(fmt.format(summary[side][key]).rstrip("%") for key, _, fmt in COLUMNS)])
    rows.append(["aebench vs pythae", *((f"{summary['compare'][key]:+.2f} pt" if key in ACCURACIES
                                          else f"{summary['compare'][key]:.2f}x") for key, _, _ in COLUMNS)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [title] + ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
                       for row in rows]
    return "\n".join(lines)


def describe(r: Run) -> str:
    return (f"{r.side} {r.model.upper()} (repeat {r.repeat}): wall {r.wall_s:.1f} s, train {r.train_s:.1f} s, "
            f"read-out {r.readout_s:.1f} s, peak RSS {r.peak_rss_mib:.0f} MiB, probe {r.probe_accuracy:.2%}, "
            f"kNN {r.knn_accuracy:.2%}")


# ------------------------------------------------------------------ main
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=20, help="pretraining epochs (default 20)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="rounds of (aebench AE, pythae AE, aebench VAE, pythae VAE); the table shows medians (default 1)")
    parser.add_argument("--models", default="ae,vae", help="comma-separated, from: ae, vae (default ae,vae)")
    parser.add_argument("--latent", type=int, default=None, help="one code size for both models (default: AE 20, VAE 10)")
    parser.add_argument("--batch-size", type=int, default=256, help="training batch (default 256)")
    parser.add_argument("--lr", type=float, default=2e-3, help="Adam's learning rate (default 2e-3, aebench's train.lr)")
    parser.add_argument("--pythae-eval-batch", type=int, default=256,
                        help="pythae's per_device_eval_batch_size (default 256; aebench evaluates in batches of 10 000)")
    parser.add_argument("--pythae-ftz", action="store_true",
                        help="give pythae's process aebench's flush of subnormal floats to zero (pythae does not do it)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads in every process (default 2)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="(default cpu)")
    parser.add_argument("--seed", type=int, default=0, help="(default 0)")
    parser.add_argument("--train-subset", type=int, default=None, help="the first N training images (quick checks)")
    parser.add_argument("--test-subset", type=int, default=None, help="the first N test images (quick checks)")
    parser.add_argument("--data-root", default=None,
                        help="MNIST's data root (default aebench's: $AEBENCH_DATA, else ~/.cache/aebench)")
    parser.add_argument("--pythae-python", type=Path, default=DEFAULT_PYTHAE_PYTHON,
                        help="the python of the venv that holds pythae (default .venv-peer/bin/python)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep every run's files and logs here (default: a temporary directory, removed at the end)")
    parser.add_argument("--json", type=Path, default=None, help="write the settings, every run and the summary here")
    parser.add_argument("--no-verify", action="store_true", help="skip the check that the networks and losses agree")
    args = parser.parse_args()
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = set(args.models) - set(AEBENCH_OVERRIDES)
    if unknown or not args.models:
        parser.error(f"--models takes ae and/or vae, got {sorted(unknown) or 'nothing'}")
    # Absolute (the children run in the work directory), but not resolved: a venv's python is a
    # symlink, and only the path inside the venv makes it that venv's python.
    args.pythae_python = Path(os.path.abspath(args.pythae_python))
    if not args.pythae_python.exists():
        parser.error(f"no python at {args.pythae_python}: install the peer venv first (`make bench-peer` does)")
    return args


def main() -> None:
    args = parse_args()
    args.data_root = data.resolve_root(args.data_root).resolve()
    data.prepare("mnist", args.data_root)
    torch.set_num_threads(args.threads)
    flush_denormals()  # as aebench runs its probe; the probe of pythae's codes runs in this process
    ds = data.load("mnist", args.data_root, torch.device("cpu"), args.train_subset, args.test_subset, download=False)
    labels = (ds.train_y, ds.test_y)
    sizes = f"{len(ds.train_y)} train / {len(ds.test_y)} test images"
    del ds

    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    settings["latents"] = {m: latent_of(args, m) for m in args.models}
    settings["aebench_overrides"] = {m: AEBENCH_OVERRIDES[m] for m in args.models}
    epochs = f"{args.epochs} epoch{'s' if args.epochs != 1 else ''}"
    print(f"MNIST, {sizes}, {epochs}, batch {args.batch_size}, Adam lr {args.lr:g}, no schedule, "
          f"{args.threads} threads, {args.device}; data root {args.data_root}")

    with tempfile.TemporaryDirectory(prefix="aebench-peer-") as tmp:
        work = args.workdir.resolve() if args.workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)

        verify = {} if args.no_verify else verify_networks(args, work)

        # Warm-up, untimed: fills aebench's raw-pixel probe cache for this root and subset.
        warm_dir = work / "warmup-aebench"
        warm_cmd = [sys.executable, "-m", "aebench", *aebench_overrides(args, args.models[0], warm_dir, 1),
                    "figures=false", "probe.every_epoch=false"]
        wall, _ = run_child(warm_cmd, work / "warmup-aebench.log", work)
        probe_cfg = OmegaConf.load(warm_dir / ".hydra" / "config.yaml").probe
        print(f"warm-up aebench run (1 epoch, untimed): {wall:.1f} s; the raw-pixel probe is cached in {args.data_root}")

        runs: list[Run] = []
        for repeat in range(1, args.repeats + 1):
            for model in args.models:
                aebench_run = run_aebench(args, model, repeat, work)
                print(describe(aebench_run), flush=True)
                pythae_run = run_pythae(args, model, repeat, work, labels, probe_cfg)
                print(describe(pythae_run), flush=True)
                if aebench_run.detail["param_shapes"] != pythae_run.detail["param_shapes"]:
                    raise ChildFailed(f"aebench trained a {model.upper()} with parameters {aebench_run.detail['param_shapes']}, "
                                      f"pythae one with {pythae_run.detail['param_shapes']}: not the same network; "
                                      "fix AEBENCH_OVERRIDES")
                runs += [aebench_run, pythae_run]

        summary: dict[str, Any] = {}
        print()
        for model in args.models:
            side_medians = {side: medians([r for r in runs if r.model == model and r.side == side])
                            for side in ("aebench", "pythae")}
            side_medians["compare"] = comparison(side_medians["aebench"], side_medians["pythae"])
            summary[model] = side_medians
            loss = "MSE per pixel" if model == "ae" else "neg. ELBO, nats"
            print(table(side_medians,
                        f"{model.upper()}, latent {latent_of(args, model)} (median of {args.repeats}; test loss: {loss})"))
            print()

        if args.json:
            report = {"settings": settings, "sizes": sizes, "verify": verify, "summary": summary,
                      "runs": [{**{k: v for k, v in vars(r).items() if k != "detail"}, "rest_s": r.rest_s, **r.detail}
                               for r in runs]}
            args.json.write_text(json.dumps(report, indent=1, default=str))
            print(f"wrote {args.json}")


if __name__ == "__main__":
    try:
        main()
    except ChildFailed as e:
        print(f"peer benchmark: {e}", file=sys.stderr)
        sys.exit(1)
