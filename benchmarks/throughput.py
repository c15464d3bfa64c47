"""aebench's training loop against the reference pipeline, side by side, in one process.

The reference pipeline is the lab report's code with its bugs fixed: the
reference AE (784-256-64-20 with a ReLU on the code), torchvision's MNIST
through a DataLoader with per-image ``transforms.ToTensor()``, batch 64,
``torch.optim.Adam(lr=1e-3)``, MSE against the input, ``loss.item()`` each step
for its running loss.  aebench trains the very same model (same initial
weights) with its own loop: tensors already on the device, batches by index,
fused Adam, losses summed on the device.

Epochs are interleaved (reference, aebench, reference, aebench, ...) so that
both see the same machine state.  Subnormal floats are flushed to zero for the
whole process, as the ``aebench`` command does, so the reference gets that fix
too (the flag is inherited by torch's worker threads and cannot differ between
the two pipelines in one process); ``--no-ftz`` runs both without it, as the
reference runs for its users.  Then, unless --no-e2e, the whole ``aebench``
commands are timed, one process at a time and interleaved: the reference pipeline end to end
(``benchmarks/reference_e2e.py``: its training, then one linear probe on its codes) against
``aebench experiment=seed_report`` (with its accuracy curve, k-NN, baselines and figures), and,
with --e2e-default, aebench at its default setting.

    python benchmarks/throughput.py                  # CPU, 2 epochs each
    python benchmarks/throughput.py --device cuda    # the same on a GPU
    python benchmarks/throughput.py --profile        # where aebench's step time goes
    python benchmarks/throughput.py --no-ftz         # both without flushing subnormals
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from aebench import config, data, models
from aebench.train import Trainer, flush_denormals


def reset_peak_host() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM, the peak resident set size
    except OSError:
        pass


def peak_host_mib() -> float:
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def peak_device_mib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reference_model() -> torch.nn.Module:
    return models.from_config(config.compose(["experiment=seed_report"]), 784)  # the reference report's AE


def reference_epoch(model, loader, optimizer, device) -> float:
    """One epoch exactly as the reference pipeline trains (its bugs fixed)."""
    model.train()
    running = 0.0
    for images, _ in loader:
        x = images.view(-1, 784).to(device)
        loss = F.mse_loss(model.reconstruct(x), x)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        running += loss.item()
    return running / len(loader)


def run_command(cmd: list[str], cwd: str) -> tuple[float, subprocess.CompletedProcess]:
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    return time.perf_counter() - t, proc


def end_to_end(args: argparse.Namespace, results: dict) -> None:
    """Whole commands, wall clock including start-up, one process at a time: the reference pipeline end to
    end (benchmarks/reference_e2e.py) and ``aebench experiment=seed_report`` interleaved, then aebench's default."""
    print("\nwhole command, wall clock including start-up (one process at a time, interleaved):")
    common = [f"device={args.device}", "progress=false", f"train.precision={args.precision}"]
    ours_cmd = [sys.executable, "-m", "aebench", "experiment=seed_report", f"epochs={args.epochs}", *common]
    ref_cmd = [sys.executable, str(Path(__file__).with_name("reference_e2e.py")), f"--epochs={args.epochs}"]
    pairs = []
    for _ in range(args.e2e_repeats):
        with tempfile.TemporaryDirectory() as cwd:
            ref_wall, ref_proc = run_command(ref_cmd, cwd)
            our_wall, our_proc = run_command(ours_cmd, cwd)
            if ref_proc.returncode or our_proc.returncode:
                bad = ref_proc if ref_proc.returncode else our_proc
                print(f"  failed: {(bad.stderr.strip().splitlines() or ['?'])[-1]}")
                return
            ref_acc = json.loads(ref_proc.stdout.strip().splitlines()[-1])["probe_accuracy"]
            our_acc = json.loads(next(Path(cwd).glob("outputs/*/*/metrics.json")).read_text())["probe_accuracy"]
        pairs.append((ref_wall, our_wall))
        print(f"  reference pipeline ({args.epochs} epochs + one probe) {ref_wall:6.1f} s (probe {ref_acc:.4f}) | "
              f"aebench experiment=seed_report epochs={args.epochs} {our_wall:6.1f} s (probe {our_acc:.4f}, "
              f"with the accuracy curve, k-NN, baselines, figures) | {ref_wall / our_wall:.2f}x", flush=True)
    results["e2e_reference_wall_s"] = [p[0] for p in pairs]
    results["e2e_seed_report_wall_s"] = [p[1] for p in pairs]
    results["e2e_speedup"] = [p[0] / p[1] for p in pairs]
    if args.e2e_default:
        with tempfile.TemporaryDirectory() as cwd:
            wall, proc = run_command([sys.executable, "-m", "aebench", *common], cwd)
            if proc.returncode == 0:
                metrics = json.loads(next(Path(cwd).glob("outputs/*/*/metrics.json")).read_text())
                stages = ", ".join(f"{k} {v:.1f}" for k, v in metrics["seconds"].items())
                results["e2e_default_wall_s"] = wall
                results["e2e_default_probe_accuracy"] = metrics["probe_accuracy"]
                print(f"  aebench (default setting) {wall:6.1f} s   probe_accuracy {metrics['probe_accuracy']:.4f}   ({stages})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of each pipeline (interleaved)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all usable cores)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--compile", action="store_true", help="aebench's loop with torch.compile")
    parser.add_argument("--no-e2e", action="store_true", help="skip timing the whole commands")
    parser.add_argument("--e2e-repeats", type=int, default=2, help="interleaved pairs of whole commands")
    parser.add_argument("--e2e-default", action="store_true", help="also time aebench at its default setting")
    parser.add_argument("--profile", action="store_true", help="print torch.profiler's top ops for aebench's loop")
    parser.add_argument("--no-ftz", action="store_true",
                        help="do not flush subnormals to zero (in both pipelines; aebench's command does flush)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()
    if not args.no_ftz:
        flush_denormals()  # before the first parallel torch operation, for both pipelines (see above)

    import torchvision
    from torch.utils.data import DataLoader
    from torchvision import transforms

    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    root = data.resolve_root(None)
    data.prepare("mnist", root)
    print(f"device: {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{torch.get_num_threads()} threads'}), "
          f"torch {torch.__version__}, batch {args.batch_size}, {args.epochs} epoch(s) each, interleaved, "
          f"subnormals {'kept (--no-ftz)' if args.no_ftz else 'flushed to zero in both'}\n")

    # the reference: torchvision dataset, per-image ToTensor, DataLoader
    ref_set = torchvision.datasets.MNIST(str(root), train=True, download=False, transform=transforms.ToTensor())
    ref_loader = DataLoader(ref_set, batch_size=args.batch_size, shuffle=True)
    torch.manual_seed(0)
    ref = reference_model().to(device)
    ref_opt = torch.optim.Adam(ref.parameters(), lr=1e-3)

    # aebench: the same model and initial weights, its own loop
    reset_peak_host()
    ds = data.load("mnist", root, device)
    ours = reference_model().to(device)
    ours.load_state_dict(ref.state_dict())
    train = config.compose(["experiment=seed_report", f"train.batch_size={args.batch_size}", "train.lr=1e-3",
                            "train.scheduler=none", f"train.precision={args.precision}", f"train.compile={args.compile}"]).train
    tmp = Path(tempfile.mkdtemp(prefix="aebench-bench-"))
    trainer = Trainer(ours, ds, train, epochs=1, seed=0, run_dir=tmp, meta={})
    trainer.save_checkpoint = lambda: None  # time the training loop, not the disk

    n = len(ds.train_x)
    ref_times, our_times = [], []
    ref_peak = our_peak = 0.0
    for epoch in range(args.epochs):
        reset_peak_host()
        sync(device)
        t = time.perf_counter()
        ref_loss = reference_epoch(ref, ref_loader, ref_opt, device)
        sync(device)
        ref_times.append(time.perf_counter() - t)
        ref_peak = max(ref_peak, peak_host_mib())

        reset_peak_host()
        trainer.s.epochs = epoch + 1
        sync(device)
        t = time.perf_counter()
        history = trainer.fit()
        sync(device)
        # fit() also evaluates the test set once per epoch; count only its training seconds
        our_times.append(history[-1]["train_seconds"])
        our_peak = max(our_peak, peak_host_mib())
        print(f"epoch {epoch + 1}: reference {ref_times[-1]:6.2f} s (loss {ref_loss:.4f}) | "
              f"aebench {our_times[-1]:6.2f} s (loss {history[-1]['train_loss']:.4f})", flush=True)

    ref_best, our_best = min(ref_times), min(our_times)
    ref_all, our_all = sum(ref_times), sum(our_times)
    results = {
        "device": str(device),
        "batch_size": args.batch_size,
        "flush_subnormals": not args.no_ftz,
        "reference_images_per_s": n / ref_best,
        "aebench_images_per_s": n / our_best,
        "speedup": ref_best / our_best,
        "speedup_all_epochs": ref_all / our_all,
        "reference_epoch_s": ref_best,
        "aebench_epoch_s": our_best,
        "reference_peak_host_mib": ref_peak,
        "aebench_peak_host_mib": our_peak,
        "aebench_peak_device_mib": peak_device_mib(device),
    }
    print()
    print(f"{'':28}{'reference':>14}{'aebench':>14}")
    print(f"{'images / s (best epoch)':28}{results['reference_images_per_s']:>14,.0f}{results['aebench_images_per_s']:>14,.0f}")
    print(f"{'images / s (all epochs)':28}{n * args.epochs / ref_all:>14,.0f}{n * args.epochs / our_all:>14,.0f}")
    print(f"{'seconds / epoch (best)':28}{ref_best:>14.2f}{our_best:>14.2f}")
    print(f"{'peak host memory (MiB)':28}{ref_peak:>14.0f}{our_peak:>14.0f}")
    if device.type == "cuda":
        print(f"{'peak device memory (MiB)':28}{'':>14}{results['aebench_peak_device_mib']:>14.0f}")
    print(f"{'speed-up (best epochs)':28}{'':>14}{results['speedup']:>13.1f}x")
    print(f"{'speed-up (all epochs)':28}{'':>14}{results['speedup_all_epochs']:>13.1f}x")

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        trainer.s.epochs += 1
        with profile(activities=activities) as prof:
            trainer.fit()
        print("\nwhere aebench's epoch goes (torch.profiler, top 15 by self time):")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))

    if not args.no_e2e:
        end_to_end(args, results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
