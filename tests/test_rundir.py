"""The run directory's contract (aebench.rundir): every file written and read back, one error for damage,
the setting lists derived from one base set, and a light import for aebench.load_run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import aebench
from aebench import config, probe, rundir
from aebench.errors import CheckpointError, RunError


def schema_keys() -> set[str]:
    return set(config.flatten(OmegaConf.to_container(OmegaConf.structured(config.Config))))


def test_the_yaml_excludes_exactly_the_settings_rundir_names():
    """conf/config.yaml spells out DIRNAME_EXCLUDES for Hydra, every key below each one included."""
    yaml = OmegaConf.load(Path(aebench.__file__).parent.parent.parent / "conf" / "config.yaml")
    excluded = set(yaml.hydra.job.config.override_dirname.exclude_keys)
    below = {k for k in schema_keys() if rundir.under(k, rundir.DIRNAME_EXCLUDES)}
    assert excluded == set(rundir.DIRNAME_EXCLUDES) | below


def test_the_named_sets_derive_from_one_base_set():
    assert rundir.GROUP_IGNORES == rundir.NEUTRAL | {"seed"}
    assert rundir.RESUME_MAY_CHANGE <= rundir.NEUTRAL and "data.root" not in rundir.RESUME_MAY_CHANGE
    assert {"resume", "device", "threads", "progress", "figures", "logger"} == set(rundir.RESUME_MAY_CHANGE)
    assert "device" not in rundir.DIRNAME_EXCLUDES and "hydra/launcher" in rundir.DIRNAME_EXCLUDES
    # every base setting is a real key of the schema (or a group of them): a typo would exclude nothing
    keys = schema_keys()
    assert all(any(rundir.under(k, {name}) for k in keys) for name in rundir.NEUTRAL)
    assert rundir.under("logger.mlflow.tracking_uri", rundir.NEUTRAL) and not rundir.under("latent", rundir.NEUTRAL)


def test_metrics_history_and_status_round_trip(tmp_path):
    assert rundir.read_metrics(tmp_path) is None and rundir.read_history(tmp_path) is None
    rundir.write_metrics(tmp_path, {"status": "completed", "probe_accuracy": 0.9})
    assert rundir.read_metrics(tmp_path) == {"status": "completed", "probe_accuracy": 0.9}
    rundir.write_history(tmp_path, [{"epoch": 1, "test_loss": 2.5}, {"epoch": 2, "test_loss": 2.0}])
    assert rundir.read_history(tmp_path) == [{"epoch": "1", "test_loss": "2.5"}, {"epoch": "2", "test_loss": "2.0"}]
    rundir.write_status(tmp_path, config.compose(["latent=7"]), "failed", "it broke")
    status = rundir.read_metrics(tmp_path)
    assert status["status"] == "failed" and status["error"] == "it broke" and status["config"]["latent"] == 7
    rundir.write_status(tmp_path, None, "failed", "no config at all")  # a broken config still gets its record
    assert rundir.read_metrics(tmp_path) == {"status": "failed", "error": "no config at all", "config": {}}


@pytest.mark.parametrize("content, why", [("{not json", "not valid JSON"), ("[1, 2]", "a JSON list, not an object")])
def test_a_damaged_metrics_file_is_unreadable_with_the_reason(tmp_path, content, why):
    (tmp_path / rundir.METRICS).write_text(content)
    with pytest.raises(rundir.Unreadable, match=why):
        rundir.read_metrics(tmp_path)


def test_overrides_and_config_are_read_and_checked(tmp_path):
    (tmp_path / rundir.HYDRA).mkdir()
    assert rundir.read_overrides(tmp_path) == []
    (tmp_path / rundir.OVERRIDES).write_text("- latent=5\n- model=vae\n")
    assert rundir.read_overrides(tmp_path) == ["latent=5", "model=vae"]
    (tmp_path / rundir.OVERRIDES).write_text("latent: 5\n")
    with pytest.raises(rundir.Unreadable, match="not a list of overrides"):
        rundir.read_overrides(tmp_path)
    (tmp_path / rundir.CONFIG).write_text("- a list\n")
    with pytest.raises(rundir.Unreadable, match="not a mapping"):
        rundir.read_config(tmp_path)


def test_the_probe_file_round_trips(tmp_path):
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(60, 4, generator=gen), torch.arange(60) % 3
    result = probe.linear_probe(x, y, x[:20], y[:20], 3, 1e-4, 1e-5, 200)
    rundir.save_probe(tmp_path / rundir.PROBE, result, ("a", "b", "c"), y[:20], y[:20].flip(0))
    predictions = rundir.read_predictions(tmp_path)
    assert np.array_equal(predictions["test_y"], y[:20].numpy()) and np.array_equal(predictions["knn_pred"], y[:20].flip(0).numpy())
    assert np.array_equal(predictions["test_pred"], result.test_pred.numpy())
    saved = rundir.read_probe(tmp_path)
    assert torch.equal(torch.from_numpy(saved["weight"]), result.exact_weight) and saved["mean"].dtype == np.float32
    (tmp_path / rundir.PROBE).write_bytes(b"not a zip file")
    with pytest.raises(rundir.Unreadable):
        rundir.read_predictions(tmp_path)


def test_checkpoints_read_strictly_for_resume_and_forgivingly_for_use(tmp_path):
    path = tmp_path / "last.pt"
    torch.save({"aebench_version": "0.0.1", "config": {"latent": 3}, "model": {}}, path)
    with pytest.raises(CheckpointError, match=r"written by aebench 0\.0\.1, this is aebench .*start a new run"):
        rundir.read_checkpoint(path, strict=True)
    assert rundir.read_checkpoint(path, strict=False)["config"] == {"latent": 3}
    torch.save({"weights": 1}, path)
    with pytest.raises(CheckpointError, match="not an aebench checkpoint"):
        rundir.read_checkpoint(path, strict=True)
    with pytest.raises(RunError, match="no model weights and config"):
        rundir.read_checkpoint(path, strict=False)
    path.write_bytes(b"\x00garbage")
    for strict, error in ((True, CheckpointError), (False, RunError)):
        with pytest.raises(error, match="cannot be read.*damaged"):
            rundir.read_checkpoint(path, strict=strict)
    with pytest.raises(CheckpointError, match="nothing to resume"):
        rundir.checkpoint_file(tmp_path / "elsewhere")


def test_config_of_fills_settings_added_since_and_keeps_unknown_ones_when_forgiving():
    cfg = rundir.config_of({"config": {"model": {"name": "vae"}, "arch": {"name": "mlp"}, "data": {"name": "mnist"}}})
    assert cfg.model.beta == 1.0 and cfg.train.batch_size == 256  # defaults for what the old run did not save
    old = {"config": {"model": {"name": "ae"}, "arch": {"name": "mlp"}, "data": {"name": "mnist"}, "gone": 1}}
    with pytest.raises(CheckpointError, match="does not fit this aebench"):
        rundir.config_of(old, strict=True)
    assert rundir.config_of(old, strict=False).gone == 1


def test_an_unfinished_checkpoint_is_one_without_completed_metrics(tmp_path):
    assert not rundir.has_unfinished_checkpoint(tmp_path)
    (tmp_path / rundir.CHECKPOINT).parent.mkdir()
    (tmp_path / rundir.CHECKPOINT).write_bytes(b"x")
    assert rundir.has_unfinished_checkpoint(tmp_path)
    rundir.write_metrics(tmp_path, {"status": "interrupted"})
    assert rundir.has_unfinished_checkpoint(tmp_path)
    rundir.write_metrics(tmp_path, {"status": "completed"})
    assert not rundir.has_unfinished_checkpoint(tmp_path)


def test_resuming_refuses_other_images(tmp_path):
    saved = {"data": {"identity": "mnist", "pretrain_images": 60000, "label": "mnist"}}
    rundir.check_same_images(saved, {"identity": "mnist", "pretrain_images": 60000})
    with pytest.raises(CheckpointError, match="the images changed.*60000 images to train on, now 2000"):
        rundir.check_same_images(saved, {"identity": "mnist", "pretrain_images": 2000})
    rundir.check_same_images({}, {"identity": "x", "pretrain_images": 1})  # aebench < 0.4 recorded none


def test_load_run_leaves_the_pipeline_tracking_and_baselines_unimported(tmp_path):
    """Using a run needs neither the pipeline nor its trackers: ``import aebench; aebench.load_run`` stays light."""
    from aebench import models

    cfg = config.compose(["latent=3", "arch.hidden=[8]"])
    model = models.from_config(cfg, (1, 28, 28))
    (tmp_path / rundir.CHECKPOINT).parent.mkdir()
    torch.save({**rundir.checkpoint_meta(cfg, {}, None), "model": model.state_dict()}, tmp_path / rundir.CHECKPOINT)
    rundir.write_metrics(tmp_path, {"status": "completed", "data": {"image_shape": [1, 28, 28], "classes": None}})
    code = ("import sys, torch, aebench\n"
            "run = aebench.load_run(sys.argv[1])\n"
            "assert run.encode(torch.zeros(2, 1, 28, 28)).shape == (2, 3)\n"
            "print(sorted(m for m in ('aebench.pipeline', 'aebench.tracking', 'aebench.baselines', 'aebench.figures',"
            " 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
