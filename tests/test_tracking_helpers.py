"""aebench.tracking's pure parts, in the fast suite: what gets logged under which name, how a failure reads,
where a store is, and the rule that a logger that fails is switched off while the run goes on.  Neither
mlflow nor tensorboard is needed; tests/test_tracking.py runs the loggers against a real server."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from aebench import config, rundir, tracking
from aebench.errors import Interrupted


def test_epoch_scalars_are_the_numbers_of_a_history_row_but_the_epoch():
    row = {"epoch": 3, "train_loss": 0.5, "test_recon_mse": 1e-2, "probe_accuracy": None, "note": "x", "lr": 2,
           "diverged": False}
    assert tracking.epoch_scalars(row) == {"train_loss": 0.5, "test_recon_mse": 0.01, "lr": 2.0}


def test_final_metrics_flatten_metrics_json_into_names_mlflow_accepts():
    metrics = {
        "status": "completed", "probe_accuracy": 0.93, "neg_elbo": None, "diverged": False, "epochs_trained": 2,
        "seconds": {"total": 12.5, "pretrain": 10.0, "note": "s"},
        "memory": {"peak": {"host_mib": 800}},
        "label_budget_accuracy": {"100": {"mean": 0.7, "std": 0.01, "accuracies": [0.69, 0.71]},
                                  "1000": {"mean": 0.85, "std": None}},
        "pca_label_budget_accuracy": {"100": {"mean": 0.6, "std": 0.02}},
        "precision": {"used": "bf16", "reason": "auto: avx512_bf16"},
        "config": {"latent": 20}, "data": {"images": 60000}, "versions": {"torch": "2.5"}, "skipped": "x",
    }
    assert tracking.final_metrics(metrics) == {
        "probe_accuracy": 0.93, "epochs_trained": 2.0, "seconds_total": 12.5, "seconds_pretrain": 10.0,
        "memory_peak_host_mib": 800.0, "probe_accuracy_at_100": 0.7, "probe_accuracy_at_100_std": 0.01,
        "probe_accuracy_at_1000": 0.85, "pca_probe_accuracy_at_100": 0.6, "pca_probe_accuracy_at_100_std": 0.02,
    }


def test_factor_read_outs_are_logged_as_their_numbers_and_their_record_is_not():
    """The factor read-outs' results are top-level numbers; factor_readouts records how they were made (sizes,
    seed, classifier names, train accuracies): of it only the seconds are logged."""
    readouts = {"mig": 0.31, "dci_disentanglement": 0.4, "dci_completeness": 0.35, "dci_informativeness": 0.9,
                "sap": 0.05, "factor_vae_score": 0.7, "beta_vae_score": 0.8, "gaussian_tc": 2.5}
    record = {"protocol": {"seed": 0, "pool_points": 737280, "factors": ["shape", "scale"],
                           "mig": {"points": 10000, "bins": 20, "binning": "equal-width"},
                           "dci": {"protocol": "fast", "train": 10000, "classifier": "sklearn ..."}},
              "train_accuracies": {"factor_vae_train_accuracy": 0.72, "beta_vae_train_accuracy": 0.85},
              "seconds": {"mig": 1.25, "dci": 30.5, "gaussian_tc": 0.1}}
    metrics = {"status": "completed", "probe_accuracy": 0.93, **readouts, "factor_readouts": record}
    assert tracking.final_metrics(metrics) == {
        "probe_accuracy": 0.93, **readouts, "factor_readouts_seconds_mig": 1.25, "factor_readouts_seconds_dci": 30.5,
        "factor_readouts_seconds_gaussian_tc": 0.1}
    # data without factors: gaussian_tc alone, and a record that says why the rest are missing
    skipped = {"gaussian_tc": 1.5, "factor_readouts": {"skipped": "mnist has no known factors of variation",
                                                       "gaussian_tc": {"points": 10000, "of": "test codes"}}}
    assert tracking.final_metrics(skipped) == {"gaussian_tc": 1.5}


def test_config_params_are_the_whole_config_flat_and_as_text():
    cfg = OmegaConf.create({"train": {"lr": 2e-3, "precision": "auto"}, "arch": {"hidden": [512, 256]}, "seed": 0,
                            "logger": {"mlflow": {"enabled": False}}})
    assert tracking.config_params(cfg) == {"train.lr": "0.002", "train.precision": "auto",
                                           "arch.hidden": "[512, 256]", "seed": "0", "logger.mlflow.enabled": "False"}


def test_run_overrides_are_the_command_line_and_a_damaged_file_costs_only_the_tag(tmp_path):
    (tmp_path / rundir.HYDRA).mkdir()
    (tmp_path / rundir.OVERRIDES).write_text("- latent=5\n- model=vae\n")
    assert tracking.run_overrides(tmp_path) == "latent=5 model=vae"
    (tmp_path / rundir.OVERRIDES).write_text("[unclosed")
    assert tracking.run_overrides(tmp_path) == ""
    assert tracking.run_overrides(tmp_path / "no-such-run") == ""


@pytest.mark.parametrize("text, value", [("0.002", 0.002), ("20", 20.0), ("True", True), ("False", False),
                                         ("mlp", "mlp"), ("[512, 256]", "[512, 256]"), ("None", "None")])
def test_hparams_are_numbers_where_they_can_be(text, value):
    assert tracking._hparam_value(text) == value and type(tracking._hparam_value(text)) is type(value)


def test_local_stores_get_absolute_uris_so_every_job_finds_the_same_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert tracking.absolute_uri("sqlite:///mlflow.db") == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert tracking.absolute_uri("sqlite:////abs/m.db") == "sqlite:////abs/m.db"
    assert tracking.absolute_uri("mlruns") == (tmp_path / "mlruns").as_uri()
    assert tracking.absolute_uri("~/runs").startswith(Path.home().as_uri())
    for uri in ("http://127.0.0.1:5000", "https://host/x", "file:///tmp/mlruns", "databricks"):
        assert tracking.absolute_uri(uri) == uri


@pytest.mark.parametrize("message, words", [
    ("HTTPConnectionPool(host='127.0.0.1', port=1): Max retries exceeded (Caused by [Errno 111] Connection refused)",
     "connection refused"),
    ("Read timed out. (read timeout=10)", "no answer in time"),
    ("[Errno -2] Name or service not known", "unknown host"),
    ("Failed to resolve 'nohost'", "unknown host"),
    ("HTTPSConnectionPool: Max retries exceeded with url: /api", "no connection"),
])
def test_a_failed_request_reads_in_a_few_words(message, words):
    assert tracking.reason(ConnectionError(message)) == words


def test_any_other_failure_reads_as_its_message_on_one_short_line():
    text = tracking.reason(RuntimeError("the store\nsaid   no " + "x" * 300))
    assert text.startswith("the store said no x") and len(text) == 160 and "\n" not in text


def test_status_after_an_error():
    assert tracking.status_after(Interrupted(15, "outputs/run", "in epoch 2")) == "interrupted"
    assert tracking.status_after(KeyboardInterrupt()) == "interrupted"
    assert tracking.status_after(ValueError("x")) == "failed"


def test_the_sweep_file_is_read_where_there_is_one(tmp_path):
    assert tracking.read_sweep_file(None) is None and tracking.read_sweep_file(tmp_path) is None
    (tmp_path / tracking.SWEEP_FILE).write_text('{"tracking_uri": "http://h", "parent_run_id": "abc"}')
    assert tracking.read_sweep_file(tmp_path) == {"tracking_uri": "http://h", "parent_run_id": "abc"}


class Recording(tracking.Logger):
    title = "Recording"

    def __init__(self, fail_on: str | None = None):
        self.calls, self.fail_on, self.closed = [], fail_on, False

    def log_history(self, history):
        self._call("log_history", [r["epoch"] for r in history])

    def log_final(self, metrics, params, last_row, step):
        self._call("log_final", (metrics, params, step))

    def end(self, status, files, error):
        self._call("end", (status, files, error))

    def close(self):
        self.closed = True

    def _call(self, name, args):
        if name == self.fail_on:
            raise ConnectionError("Max retries exceeded: Connection refused")
        self.calls.append((name, args))


def test_a_logger_that_fails_is_switched_off_with_one_warning_and_the_others_go_on(tmp_path, caplog):
    good, bad = Recording(), Recording(fail_on="log_history")
    tracker = tracking.Tracker([bad, good], {"mlflow": {"run_id": "r"}})
    with caplog.at_level(logging.WARNING, logger="aebench.tracking"):
        tracker.log_history([{"epoch": 1}])
        tracker.log_history([{"epoch": 2}])
    assert good.calls == [("log_history", [1]), ("log_history", [2])] and bad.calls == []
    assert tracker.loggers == [good] and bad.closed and tracker.step == 2
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == ["Recording logging is off from here on: log_history failed (connection refused); "
                        "the run goes on and writes every local file"]
    cfg = OmegaConf.create({"seed": 1, "logger": {"mlflow": {"tracking_uri": "secret"}}})
    tracker.log_final({"probe_accuracy": 0.9, "config": {"x": 1}}, cfg, {"epoch": 2})
    assert good.calls[-1] == ("log_final", ({"probe_accuracy": 0.9}, {"seed": "1"}, 2))  # logger.* are not params
    missing = tmp_path / "missing.json"
    tracker.end("completed", [tmp_path, missing])
    assert good.calls[-1] == ("end", ("completed", [tmp_path], None)) and tracker.loggers == []
    assert tracker.seconds >= 0 and tracker.state == {"mlflow": {"run_id": "r"}}


def test_a_loggers_settings_given_while_it_is_off_say_how_to_turn_it_on(caplog):
    cfg = OmegaConf.structured(config.Config)
    with caplog.at_level(logging.WARNING, logger="aebench.tracking"):
        tracking.warn_unused_settings(cfg)
        assert caplog.records == []
        cfg.logger.mlflow.tracking_uri = "http://127.0.0.1:5000"
        tracking.warn_unused_settings(cfg)
        cfg.logger.mlflow.enabled = True
        tracking.warn_unused_settings(cfg)
    assert [r.getMessage() for r in caplog.records] == [
        "logger.mlflow.tracking_uri is set, but MLflow logging is off: add logger=mlflow (or logger=many)"]
