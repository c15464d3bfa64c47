"""The factor read-outs in a run (aebench.readouts.factor_readouts): metrics.json, factors.npz, factors.png."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aebench import readouts, rundir
from conftest import read_metrics, run_in_process

# A 3 x 2 x 4 x 4 x 4 sprites grid at 16x16 (384 images), a small MLP, one thread: seconds.
SMALL_SPRITES = ["data=sprites", "data.scales=2", "data.orientations=4", "data.positions=4", "data.image_size=16",
                 "epochs=3", "train.batch_size=32", "threads=1", "progress=false", "probe.label_budgets=[]",
                 "probe.every_epoch=false", "probe.pixel_baseline=false", "arch.hidden=[64]", "latent=5"]


def test_factor_sizes_keep_the_protocols_ratios_under_a_cap():
    full = readouts.factor_sizes(None)
    assert (full.dci_train, full.dci_test, full.factor_vae_train, full.factor_vae_eval) == (10_000, 5_000, 10_000, 5_000)
    capped = readouts.factor_sizes(2_000)
    assert (capped.dci_train, capped.dci_test, capped.mig_points) == (2_000, 1_000, 2_000)
    assert capped.batch == full.batch == 64  # a vote's batch is the protocol's, whatever the points


@pytest.fixture(scope="module")
def sprites_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("sprites")
    code, err = run_in_process([*SMALL_SPRITES, "model=vae", "model.beta=4", f"data.root={cwd / 'root'}",
                                f"hydra.run.dir={cwd / 'run'}", "figures=true"])
    assert code == 0, err
    return cwd / "run"


def test_a_run_on_data_with_factors_reports_every_factor_read_out(sprites_run):
    m = read_metrics(sprites_run)
    for key in rundir.FACTOR_METRICS:
        assert isinstance(m[key], float) and math.isfinite(m[key]), key
    for key in ("mig", "dci_disentanglement", "dci_completeness", "sap"):
        assert 0 <= m[key] <= 1, key
    assert 0 < m["dci_informativeness"] <= 1
    # the two scores are majority votes / a classifier over 5 factors: above chance for any trained code
    assert 0.2 <= m["factor_vae_score"] <= 1 and 0.2 <= m["beta_vae_score"] <= 1
    assert m["gaussian_tc"] >= 0
    record = m["factor_readouts"]
    assert record["protocol"]["dci"]["protocol"] == "default"
    assert record["protocol"]["pool_points"] == 384  # every train and test image: the whole grid
    assert record["protocol"]["factors"] == ["shape", "scale", "orientation", "posX", "posY"]
    assert set(record["seconds"]) >= {"mig", "dci", "sap", "factor_vae", "beta_vae", "gaussian_tc"}
    assert "factors" in m["seconds"]


def test_the_unit_by_factor_information_is_saved_and_drawn(sprites_run):
    saved = rundir.read_factors(sprites_run)
    assert saved["mutual_information"].shape == (5, 5)  # latent units x factors
    assert saved["factor_names"].tolist() == ["shape", "scale", "orientation", "posX", "posY"]
    assert (saved["mutual_information"] >= -1e-12).all() and (saved["entropy"] > 0).all()
    # MIG is the mean over factors of the normalised gap between the two most informative units
    normalised = np.sort(saved["mutual_information"] / saved["entropy"][None, :], axis=0)
    assert np.isclose(np.mean(normalised[-1] - normalised[-2]), read_metrics(sprites_run)["mig"], atol=1e-9)
    for name in ("factors.png", "traversals.png"):
        assert (sprites_run / "figures" / name).stat().st_size > 10_000, name


@pytest.mark.parametrize("override, expected", [
    ("probe.factor_protocol=fast", "probe.factor_protocol='fast' is not accepted"),
    ("probe.factor_points=10", "probe.factor_points=10 is not accepted"),
])
def test_bad_factor_settings_get_one_line(tmp_path, monkeypatch, override, expected):
    monkeypatch.chdir(tmp_path)
    code, err = run_in_process([*SMALL_SPRITES, f"data.root={tmp_path / 'root'}", override])
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and expected in lines[0], err
    assert not list(tmp_path.glob("outputs/*/*/metrics.json"))
