"""How long the linear probe takes, converged to ``probe.tol``, on the features aebench fits it to.

    python benchmarks/probe_speed.py [--datasets mnist,fashion_mnist] [--tol 1e-5]

For each dataset: the two forward layouts of the raw-pixel objective side by side (``x @ W``
with W (features, classes), as before 0.3.0's lean probe, against ``F.linear(x, W.T)``); the
raw-pixel probe (784 features: the baseline computed once per dataset on a fresh data root)
with the L-BFGS history before (``--baseline-history``, 20 pairs) and now
(``probe.HISTORY``); the PCA-20 probe; and the accuracy curve's situation -- the same
features nudged a little, fitted cold and warm-started from the previous fit.  Prints
seconds, L-BFGS iterations, the largest gradient entry reached (the convergence test) and
the test accuracy.  One process, one thing at a time; nothing is cached.
"""

from __future__ import annotations

import argparse
import time

import torch

from aebench import data, probe
from aebench.train import flush_denormals


def timed(fit):
    t = time.perf_counter()
    result = fit()
    return time.perf_counter() - t, result


def kernel_ms(f, repeats: int = 10) -> float:
    f()
    t = time.perf_counter()
    for _ in range(repeats):
        f()
    return (time.perf_counter() - t) / repeats * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="mnist,fashion_mnist")
    parser.add_argument("--tol", type=float, default=1e-5)
    parser.add_argument("--l2", type=float, default=1e-4)
    parser.add_argument("--baseline-history", type=int, default=20, help="L-BFGS pairs of the baseline row (0: skip it)")
    args = parser.parse_args()
    flush_denormals()
    root = data.resolve_root(None)
    print(f"{torch.get_num_threads()} threads, probe.l2={args.l2}, probe.tol={args.tol}")
    print(f"{'features':<36}{'seconds':>9}{'iterations':>12}{'max |grad|':>12}{'converged':>11}{'test acc.':>11}")
    for name in args.datasets.split(","):
        ds = data.load(name, root, torch.device("cpu"))
        n_classes = len(ds.classes)
        x, _ = probe.standardise(ds.train_x, ds.test_x)
        w = torch.randn(x.shape[1], n_classes, generator=torch.Generator().manual_seed(0)) * 0.01
        layouts = []
        for _ in range(3):  # interleaved rounds
            layouts.append((kernel_ms(lambda: x @ w), kernel_ms(lambda: torch.nn.functional.linear(x, w.T.contiguous()))))
        print(f"{ds.title} raw-pixel logits, ms per product (3 interleaved rounds): x @ W "
              + " / ".join(f"{a:.1f}" for a, _ in layouts) + ";  F.linear(x, W.T) " + " / ".join(f"{b:.1f}" for _, b in layouts))
        del x
        mean, comps = probe.pca_fit(ds.train_x, 20)
        pca_train, pca_test = probe.pca_project(ds.train_x, mean, comps), probe.pca_project(ds.test_x, mean, comps)
        nudged = pca_train + 0.01 * torch.randn(pca_train.shape, generator=torch.Generator().manual_seed(0))
        def pixels(history: int):
            def fit():
                saved, probe.HISTORY = probe.HISTORY, history
                try:
                    return probe.linear_probe(ds.train_x, ds.train_y, ds.test_x, ds.test_y, n_classes, args.l2, args.tol)
                finally:
                    probe.HISTORY = saved
            return fit

        baseline = [(f"{ds.title} pixels, {args.baseline_history} pairs", pixels(args.baseline_history))] \
            if args.baseline_history else []
        rows = [*baseline,
                (f"{ds.title} pixels, {probe.HISTORY} pairs", pixels(probe.HISTORY)),
                (f"{ds.title} PCA-20", lambda: probe.linear_probe(
                    pca_train, ds.train_y, pca_test, ds.test_y, n_classes, args.l2, args.tol))]
        results = {}
        for label, fit in rows:
            seconds, results[label] = timed(fit)
            r = results[label]
            print(f"{label:<36}{seconds:>9.2f}{r.iterations:>12}{r.grad_norm:>12.1e}{str(r.converged):>11}{r.accuracy:>11.4f}",
                  flush=True)
        start = results[f"{ds.title} PCA-20"]
        for label, init in (("PCA-20 nudged, cold", None), ("PCA-20 nudged, warm start", (start.weight, start.bias))):
            seconds, r = timed(lambda: probe.linear_probe(nudged, ds.train_y, pca_test, ds.test_y, n_classes, args.l2,
                                                          args.tol, init=init))
            print(f"{ds.title + ' ' + label:<36}{seconds:>9.2f}{r.iterations:>12}{r.grad_norm:>12.1e}"
                  f"{str(r.converged):>11}{r.accuracy:>11.4f}", flush=True)


if __name__ == "__main__":
    main()
