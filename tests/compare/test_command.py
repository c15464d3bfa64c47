"""The aebench-compare command (aebench.compare.command): exit status 0 when something was compared, 2 with one
line when nothing could be."""

from __future__ import annotations

import subprocess
import sys

import yaml

from fakes import read_csv, run_compare, seed_sweep


def test_an_ambiguous_or_unknown_baseline_is_refused_in_one_line(tmp_path, capsys):
    seed_sweep(tmp_path / "a")
    seed_sweep(tmp_path / "b", accuracy=lambda latent: 0.8)  # the same overrides, another config: same names
    for run in (tmp_path / "b").iterdir():
        cfg = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
        cfg["train"]["lr"] = 1e-3
        (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    out_dir = tmp_path / "report"
    code, _, err = run_compare(capsys, tmp_path / "a", tmp_path / "b", "--out", out_dir, "--baseline", "latent=5")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "ambiguous" in err and "a/0" in err and "b/0" in err and not out_dir.exists()
    code, _, err = run_compare(capsys, tmp_path / "a", tmp_path / "b", "--out", out_dir, "--baseline", "latent=7")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "matches no group" in err and "'latent=10'" in err
    code, _, err = run_compare(capsys, tmp_path / "a", tmp_path / "b", "--out", out_dir, "--baseline", "b/0")
    assert code == 0, err
    assert {d["baseline"] for d in read_csv(out_dir / "differences.csv")} == {"latent=5"}


def test_nothing_comparable_is_one_line_and_exit_2(tmp_path, capsys):
    sweep = seed_sweep(tmp_path / "sweep", latents=(5,), seeds=(0, 1))
    for run in sweep.iterdir():
        (run / "metrics.json").write_text("[1, 2")
    code, _, err = run_compare(capsys, sweep)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("aebench-compare: error: nothing to compare") and "0_latent=5,seed=0: metrics.json" in err
    assert not (sweep / "summary.md").exists()


def test_compare_rejects_what_is_not_a_run(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "aebench.compare", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("aebench-compare: error: no aebench runs")
    proc = subprocess.run([sys.executable, "-m", "aebench.compare", str(tmp_path / "nope")], capture_output=True, text=True)
    assert proc.returncode == 2 and "not a directory" in proc.stderr


def test_compare_stands_below_the_entrypoint():
    """One-way rooms: aebench-compare loads without the Hydra entrypoint (no import circle), and reading runs
    neither draws (matplotlib) nor loads models (aebench.api) until a figure needs them."""
    code = ("import sys, aebench.compare, aebench.compare.command; "
            "sys.exit(any(m in sys.modules for m in ('aebench.cli', 'aebench.api', 'aebench.pipeline', 'matplotlib')))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
