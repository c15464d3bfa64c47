"""Shared fixtures: the prepared MNIST under the data root, and a way to run the real command."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aebench.train import flush_denormals

# As the command does before its first parallel torch operation: the in-process runs below then compute
# exactly as a subprocess run would (torch's worker threads inherit the flag).
flush_denormals()

# conf/debug/tiny.yaml: small but real, enough images for every class to appear in every figure, and no
# figures (matplotlib's import and the drawing cost seconds a run): the tests of a run's own figures add FIGURES.
TINY = ["debug=tiny"]
FIGURES = ["figures=true"]  # a value on the command line wins over the preset's
# TINY with the default label budgets (100, 1000, 10000), for the tests of the budgets themselves.
TINY_ALL_BUDGETS = [*TINY, "probe.label_budgets=[100,1000,10000]"]


@pytest.fixture(scope="session")
def data_root() -> Path:
    """MNIST prepared once (offline source if needed) under the user's data root."""
    from aebench import data

    root = data.resolve_root(None)
    data.prepare("mnist", root)
    return root


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600,
            module: str = "aebench") -> subprocess.CompletedProcess:
    """Run ``python -m aebench ARGS`` in ``cwd`` as a user would; capture its output."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def run_in_process(overrides: list[str]) -> tuple[int, str]:
    """Run aebench's main() in this process (fast); return (exit code, what it wrote to stderr)."""
    import contextlib
    import io

    from hydra.core.global_hydra import GlobalHydra

    from aebench import cli

    GlobalHydra.instance().clear()
    argv, sys.argv = sys.argv, ["aebench", *overrides]
    # Hydra's job logging adds handlers (one writes the run's aebench.log); put the root logger back as it was,
    # so that later tests do not log into a run directory that a test has removed since.
    root, handlers, level = logging.getLogger(), list(logging.getLogger().handlers), logging.getLogger().level
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            cli.main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    finally:
        sys.argv = argv
        GlobalHydra.instance().clear()
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(level)
    return code, err.getvalue()


def build_model(image_shape, *overrides: str):
    """The model ``aebench OVERRIDES`` would train, for images of ``image_shape`` (an int: flat pixels)."""
    from aebench import config, models

    return models.from_config(config.compose(overrides), image_shape)


def only_run_dir(base: Path) -> Path:
    runs = [p.parent for p in base.glob("outputs/*/*/metrics.json")]
    assert len(runs) == 1, f"expected one run under {base}/outputs, found {runs}"
    return runs[0]


def read_metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


NUMBER_KEYS = ("recon_mse", "neg_elbo", "probe_accuracy", "knn_accuracy", "pca_probe_accuracy",
               "pixel_probe_accuracy", "test_loss", "dead_code_units", "epochs_trained")


def numbers(metrics: dict) -> dict:
    """The result numbers of metrics.json, without timings, memory and versions."""
    return {k: metrics.get(k) for k in NUMBER_KEYS}
