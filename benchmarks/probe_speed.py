"""How long the linear probe takes, converged to ``probe.tol``, on the features aebench fits it to.

    python benchmarks/probe_speed.py [--datasets mnist,fashion_mnist] [--tol 1e-5]

For each dataset: the raw-pixel probe (784 features: the baseline computed once per dataset
on a fresh data root), the PCA-20 probe, and the accuracy curve's situation -- the same
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="mnist,fashion_mnist")
    parser.add_argument("--tol", type=float, default=1e-5)
    parser.add_argument("--l2", type=float, default=1e-4)
    args = parser.parse_args()
    flush_denormals()
    root = data.resolve_root(None)
    print(f"{torch.get_num_threads()} threads, probe.l2={args.l2}, probe.tol={args.tol}")
    print(f"{'features':<32}{'seconds':>9}{'iterations':>12}{'max |grad|':>12}{'converged':>11}{'test acc.':>11}")
    for name in args.datasets.split(","):
        ds = data.load(name, root, torch.device("cpu"))
        n_classes = len(ds.classes)
        mean, comps = probe.pca_fit(ds.train_x, 20)
        pca_train, pca_test = probe.pca_project(ds.train_x, mean, comps), probe.pca_project(ds.test_x, mean, comps)
        nudged = pca_train + 0.01 * torch.randn(pca_train.shape, generator=torch.Generator().manual_seed(0))
        rows = [(f"{ds.title} raw pixels (784)", lambda: probe.linear_probe(
                    ds.train_x, ds.train_y, ds.test_x, ds.test_y, n_classes, args.l2, args.tol)),
                (f"{ds.title} PCA-20", lambda: probe.linear_probe(
                    pca_train, ds.train_y, pca_test, ds.test_y, n_classes, args.l2, args.tol))]
        results = {}
        for label, fit in rows:
            seconds, results[label] = timed(fit)
            r = results[label]
            print(f"{label:<32}{seconds:>9.2f}{r.iterations:>12}{r.grad_norm:>12.1e}{str(r.converged):>11}{r.accuracy:>11.4f}",
                  flush=True)
        start = results[f"{ds.title} PCA-20"]
        for label, init in (("PCA-20 nudged, cold", None), ("PCA-20 nudged, warm start", (start.weight, start.bias))):
            seconds, r = timed(lambda: probe.linear_probe(nudged, ds.train_y, pca_test, ds.test_y, n_classes, args.l2,
                                                          args.tol, init=init))
            print(f"{ds.title + ' ' + label:<32}{seconds:>9.2f}{r.iterations:>12}{r.grad_norm:>12.1e}"
                  f"{str(r.converged):>11}{r.accuracy:>11.4f}", flush=True)


if __name__ == "__main__":
    main()
