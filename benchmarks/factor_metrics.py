"""The factor read-outs at disentanglement_lib's sizes: what each costs, and DCI's default against its exact protocol.

    python benchmarks/factor_metrics.py [--codes vae,beta_vae,ae] [--seed 0] [--workers N]

On the full dSprites factor grid (shape 3, scale 6, orientation 40, x 32, y 32: 737 280 points, each combination
once), codes of 10 units that mimic trained models' (below), ``aebench.factors.factor_metrics`` runs at its full
sizes (10 000 points; 10 000 / 5 000 train / test) once with DCI's ``default`` protocol and once with ``exact``.
Prints each metric's seconds, both protocols' DCI numbers and their differences (docs/factors.md has the table).
Each family takes about 5 minutes on a 2-core CPU, most of it the exact DCI.

The code families (deterministic functions of the factors, a fixed random mixing, noise):
- ``beta_vae``: one unit per underlying feature (x, y, scale, orientation as sine and cosine scaled by shape,
  shape x scale) with 10 % mixing and little noise, four dead units (std 0.01): a disentangled model.
- ``vae``: eight units mixing the same features (35 % off-diagonal), more noise, two dead units.
- ``ae``: a random rotation of the features into all ten units through a softplus: entangled, every unit active.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from aebench import factors

SIZES = (3, 6, 40, 32, 32)
NAMES = ("shape", "scale", "orientation", "x", "y")


def full_grid() -> np.ndarray:
    return np.stack(np.meshgrid(*[np.arange(s) for s in SIZES], indexing="ij"), -1).reshape(-1, len(SIZES))


def features(f: np.ndarray) -> np.ndarray:
    shape, scale = f[:, 0] / 2.0, 0.5 + f[:, 1] / 10.0
    angle = f[:, 2] / 40 * 2 * np.pi
    x, y = f[:, 3] / 31.0, f[:, 4] / 31.0
    return np.stack([np.tanh(2.5 * (x - 0.5)), np.tanh(2.5 * (y - 0.5)), scale, np.sin(angle) * (0.2 + 0.4 * shape),
                     np.cos(angle) * (0.2 + 0.4 * shape), shape * scale], 1)


def codes_like(kind: str, f: np.ndarray, rng: np.random.Generator, units: int = 10) -> np.ndarray:
    b, n = features(f), len(f)
    if kind == "beta_vae":
        mix = np.eye(6) + 0.1 * rng.standard_normal((6, 6))
        live = b @ mix.T * 1.5 + 0.02 * rng.standard_normal((n, 6))
        return np.concatenate([live, 0.01 * rng.standard_normal((n, units - 6))], 1)
    if kind == "vae":
        mix = np.eye(8, 6) + 0.35 * rng.standard_normal((8, 6))
        live = b @ mix.T + 0.05 * rng.standard_normal((n, 8))
        return np.concatenate([live, 0.02 * rng.standard_normal((n, units - 8))], 1)
    if kind == "ae":
        rotation = np.linalg.qr(rng.standard_normal((units, units)))[0][:, :6]
        return np.logaddexp(0, 3 * b @ rotation.T) + 0.01 * rng.standard_normal((n, units))
    raise SystemExit(f"unknown code family {kind!r}: beta_vae, vae or ae")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--codes", default="vae,beta_vae,ae")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="DCI's threads (default: one per usable CPU)")
    args = parser.parse_args()
    pool = full_grid()
    for kind in args.codes.split(","):
        codes = codes_like(kind, pool, np.random.default_rng(7))
        dci = {}
        for protocol in ("default", "exact"):
            start = time.perf_counter()
            report = factors.factor_metrics(codes, pool, NAMES, seed=args.seed, protocol=protocol,
                                            workers=args.workers)
            total = time.perf_counter() - start
            m = report.metrics
            dci[protocol] = np.array([m["dci_disentanglement"], m["dci_completeness"], m["dci_informativeness"],
                                      m["dci_informativeness_train"]])
            print(f"{kind} {protocol}: total {total:.1f} s; "
                  + ", ".join(f"{k} {v:.2f} s" for k, v in report.seconds.items()), flush=True)
            print("   " + ", ".join(f"{k} {v:.4f}" for k, v in m.items()), flush=True)
        diff = dci["default"] - dci["exact"]
        print(f"{kind} DCI default - exact: disentanglement {diff[0]:+.4f}, completeness {diff[1]:+.4f}, "
              f"informativeness {diff[2]:+.4f} (train {diff[3]:+.4f})", flush=True)


if __name__ == "__main__":
    main()
