"""Run tracking against the real things: an `mlflow server` on this machine, TensorBoard's own event reader.

One server (SQLite backend, temporary artifact root, a free port) serves the module; every run is the
real command in a subprocess, read back with ``mlflow.MlflowClient``.  The last test kills that server
in the middle of a run (the tests run in file order): the run must finish as if it had no logger.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import FIGURES as DRAW, TINY, read_metrics, run_in_process
from test_errors import assert_one_line

mlflow = pytest.importorskip("mlflow", reason="the tracking extra: pip install -e '.[tracking]'")
pytest.importorskip("tensorboard", reason="the tracking extra: pip install -e '.[tracking]'")

from mlflow import MlflowClient  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

# Service tests: they start a real MLflow server (make test-services; CI runs them).
pytestmark = pytest.mark.service

RUN = [*TINY, *DRAW, "epochs=2", "probe.budget_draws=2"]
# 2000 images at batch 256: 8 steps an epoch; step 12 is the middle of epoch 2.
INTERRUPT_AT = "TERM@12"
FIGURES = "figures"


# ------------------------------------------------------------------ a real MLflow server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


class MlflowServer:
    """``mlflow server`` in its own process group (it starts a uvicorn child), stopped by that group's id."""

    def __init__(self, root: Path):
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.db = root / "server.db"
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no background job workers
        env.pop("MLFLOW_TRACKING_URI", None)
        self.log = open(root / "server.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", "1", "--backend-store-uri", f"sqlite:///{self.db}",
             "--artifacts-destination", str(root / "artifacts")],
            cwd=root, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.pgid = self.proc.pid
        self._wait_until_it_answers(timeout=120)

    def _wait_until_it_answers(self, timeout: float) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"mlflow server exited: {(self.db.parent / 'server.log').read_text()[-2000:]}"
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise AssertionError(f"mlflow server gave no answer within {timeout} s")

    def kill(self) -> None:
        """As a crash would: SIGKILL to the whole group."""
        os.killpg(self.pgid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.pgid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.pgid, signal.SIGKILL)
                self.proc.wait(timeout=20)
        deadline = time.monotonic() + 20
        while group_members(self.pgid) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = group_members(self.pgid)
        if left:
            os.killpg(self.pgid, signal.SIGKILL)
        self.log.close()
        assert not left, f"mlflow server processes left running: {left}"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    yield srv
    srv.stop()


# ------------------------------------------------------------------ helpers
def aebench(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """The real command, with no MLFLOW_TRACKING_URI from the caller's environment."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    if "MLFLOW_TRACKING_URI" not in (env or {}):
        full_env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", "aebench", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def one_run_dir(cwd: Path) -> Path:
    runs = [p for p in cwd.glob("outputs/*/*") if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def history_rows(run: Path) -> list[dict[str, str]]:
    with open(run / "history.csv") as f:
        return list(csv.DictReader(f))


def scalar_columns(rows: list[dict[str, str]]) -> list[str]:
    return [k for k in rows[0] if k != "epoch"]


def runs_of(client: MlflowClient, experiment: str) -> list:
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment {experiment!r}"
    return client.search_runs([exp.experiment_id])


def assert_metric_histories_equal_history_csv(client: MlflowClient, run_id: str, run_dir: Path) -> None:
    rows = history_rows(run_dir)
    for key in scalar_columns(rows):
        logged = sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
        assert logged == [(int(r["epoch"]), float(r[key])) for r in rows], key


FINAL_NAMES = {  # MLflow metric name: where metrics.json has it
    "probe_accuracy": ("probe_accuracy",), "knn_accuracy": ("knn_accuracy",), "recon_mse": ("recon_mse",),
    "pca_probe_accuracy": ("pca_probe_accuracy",), "pixel_probe_accuracy": ("pixel_probe_accuracy",),
    "test_loss": ("test_loss",), "dead_code_units": ("dead_code_units",), "epochs_trained": ("epochs_trained",),
    "probe_accuracy_at_100": ("label_budget_accuracy", "100", "mean"),
    "probe_accuracy_at_100_std": ("label_budget_accuracy", "100", "std"),
    "pca_probe_accuracy_at_100": ("pca_label_budget_accuracy", "100", "mean"),
    "pixel_probe_accuracy_at_100": ("pixel_label_budget_accuracy", "100", "mean"),
    "seconds_total": ("seconds", "total"),
}


def dig(tree: dict, path: tuple[str, ...]):
    for key in path:
        tree = tree[key]
    return tree


# ------------------------------------------------------------------ one run: MLflow and TensorBoard at once
@pytest.fixture(scope="module")
def many_run(server, tmp_path_factory, data_root):
    cwd = tmp_path_factory.mktemp("many")
    proc = aebench("logger=many", f"logger.mlflow.tracking_uri={server.uri}", "logger.mlflow.experiment_name=single",
                   "logger.tensorboard.embedding_points=300", *RUN, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return one_run_dir(cwd), proc


def test_a_run_is_one_mlflow_run_with_config_epochs_results_and_files(server, many_run, tmp_path):
    run_dir, proc = many_run
    client = MlflowClient(server.uri)
    (run,) = runs_of(client, "single")
    metrics = read_metrics(run_dir)
    assert run.info.status == "FINISHED"

    # the whole config as flat params, train.precision as the run trained (auto resolved, as in its checkpoint)
    config = config_as_params(run_dir / ".hydra" / "config.yaml")
    assert config["train.precision"] == "auto"
    assert run.data.params == {**config, "train.precision": metrics["precision"]["used"]}
    assert run.data.params["train.precision"] in ("fp32", "bf16")
    assert run.data.params["latent"] == "20" and run.data.params["train.lr"] == "0.002"

    # per-epoch metrics, step = epoch, exactly history.csv; final metrics exactly metrics.json
    assert_metric_histories_equal_history_csv(client, run.info.run_id, run_dir)
    for name, path in FINAL_NAMES.items():
        assert run.data.metrics[name] == dig(metrics, path), name

    tags = run.data.tags
    assert tags["aebench.version"] == metrics["versions"]["aebench"]
    assert tags["aebench.device"] == metrics["device"]
    assert Path(tags["aebench.run_dir"]) == run_dir.resolve()
    assert "logger=many" in tags["aebench.overrides"] and "epochs=2" in tags["aebench.overrides"]
    assert "mlflow.parentRunId" not in tags

    # the run's files as artifacts, the same bytes
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"metrics.json", "history.csv", ".hydra", FIGURES} <= artifacts
    figures = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, FIGURES)}
    assert figures == {p.name for p in (run_dir / FIGURES).glob("*.png")} and "reconstructions.png" in figures
    assert {Path(a.path).name for a in client.list_artifacts(run.info.run_id, ".hydra")} >= {"config.yaml", "overrides.yaml"}
    local = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="metrics.json",
                                                     dst_path=str(tmp_path), tracking_uri=server.uri))
    assert json.loads(local.read_text()) == metrics

    # the time spent inside logger calls is recorded, and the run says where it logged
    assert 0 < metrics["seconds"]["logging"] < metrics["seconds"]["total"]
    assert f"at {server.uri}" in proc.stdout


def config_as_params(path: Path) -> dict[str, str]:
    from omegaconf import OmegaConf

    from aebench.tracking import flatten

    return {k: str(v) for k, v in flatten(OmegaConf.to_container(OmegaConf.load(path), resolve=True)).items()}


def test_tensorboard_has_every_epoch_scalar_the_hparams_figures_and_the_projector(many_run):
    run_dir, _ = many_run
    log_dir = run_dir / "tensorboard"
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    rows = history_rows(run_dir)
    for key in scalar_columns(rows):  # every numeric column of history.csv at every epoch (float32 in TensorBoard)
        logged = [(e.step, e.value) for e in events.Scalars(key)]
        assert logged == [(int(r["epoch"]), float(np.float32(float(r[key])))) for r in rows], key

    metrics = read_metrics(run_dir)
    (final,) = events.Scalars("final/probe_accuracy")
    assert final.value == pytest.approx(metrics["probe_accuracy"], rel=1e-6)
    assert events.Scalars("final/probe_accuracy_at_100")[0].value == pytest.approx(
        metrics["label_budget_accuracy"]["100"]["mean"], rel=1e-6)

    from tensorboard.plugins.hparams import plugin_data_pb2

    hparams = {tag: plugin_data_pb2.HParamsPluginData.FromString(content)
               for tag, content in events.PluginTagToContent("hparams").items()}
    start = next(h.session_start_info for h in hparams.values() if h.HasField("session_start_info"))
    assert start.hparams["latent"].number_value == 20 and start.hparams["model.name"].string_value == "ae"
    assert not any(k.startswith("logger.") for k in start.hparams)  # where it was logged is not a hyper-parameter
    experiment = next(h.experiment for h in hparams.values() if h.HasField("experiment"))
    assert "final/probe_accuracy" in {m.name.tag for m in experiment.metric_infos}

    images = set(events.Tags()["images"])
    assert images == {f"figures/{p.stem}" for p in (run_dir / FIGURES).glob("*.png")}
    picture = events.Images("figures/reconstructions")[0]
    assert picture.encoded_image_string == (run_dir / FIGURES / "reconstructions.png").read_bytes()

    # the projector: 300 test codes (the cap set on the command line), labelled by class, digits as the sprite
    from google.protobuf import text_format
    from PIL import Image
    from tensorboard.plugins.projector import projector_config_pb2

    config = text_format.Parse((log_dir / "projector_config.pbtxt").read_text(), projector_config_pb2.ProjectorConfig())
    (embedding,) = config.embeddings
    codes = np.loadtxt(log_dir / embedding.tensor_path, delimiter="\t")
    assert codes.shape == (300, 20)
    labels = (log_dir / embedding.metadata_path).read_text().split("\n")
    assert len([x for x in labels if x]) == 300 and set(labels) - {""} <= {str(d) for d in range(10)}
    assert list(embedding.sprite.single_image_dim) == [28, 28]
    with Image.open(log_dir / embedding.sprite.image_path) as sprite:
        assert sprite.size == (28 * math.ceil(math.sqrt(300)),) * 2


# ------------------------------------------------------------------ a sweep: one experiment, a parent run
def test_sweep_is_one_experiment_with_a_parent_run_and_a_nested_run_per_job(server, tmp_path, data_root):
    # 2x1 (two latent sizes) through joblib: the jobs run in other processes than the one that made the parent
    # run.  The jobs draw no figures of their own (a run's figures are checked above); the sweep draws its own.
    proc = aebench("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "latent=2,5", "logger=mlflow",
                   f"logger.mlflow.tracking_uri={server.uri}", "logger.mlflow.experiment_name=sweep",
                   *TINY, "epochs=1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (sweep,) = [p.parent for p in tmp_path.glob("multirun/*/*/summary.csv")]
    jobs = sorted(p for p in sweep.iterdir() if (p / "metrics.json").is_file())
    assert [j.name.split("_")[0] for j in jobs] == ["0", "1"]
    assert not any("logger" in j.name for j in jobs)  # where a job is logged does not name it

    client = MlflowClient(server.uri)
    runs = runs_of(client, "sweep")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(runs) == 3 and len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED" and Path(parent.data.tags["aebench.sweep_dir"]) == sweep.resolve()
    parent_files = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"summary.csv", "summary.md", "probe_accuracy_vs_latent.png", "loss_curves.png"} <= parent_files

    children = {r.info.run_name: r for r in runs if r is not parent}
    assert set(children) == {j.name for j in jobs}
    assert {c.data.params["latent"] for c in children.values()} == {"2", "5"}
    for job in jobs:
        child = children[job.name]
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.status == "FINISHED"
        assert child.data.params["latent"] == str(read_metrics(job)["config"]["latent"])
        assert child.data.metrics["probe_accuracy"] == read_metrics(job)["probe_accuracy"]
        assert_metric_histories_equal_history_csv(client, child.info.run_id, job)
    assert "logger" not in (sweep / "summary.csv").read_text()  # nor in the comparison's overrides


# ------------------------------------------------------------------ interrupted, then resumed: one run
def test_interrupted_then_resumed_run_logs_into_the_same_run_once_per_epoch(server, tmp_path, data_root):
    args = ["logger=many", f"logger.mlflow.tracking_uri={server.uri}", "logger.mlflow.experiment_name=resume",
            *TINY, "epochs=3"]
    proc = aebench(*args, cwd=tmp_path, env={"AEBENCH_SELF_SIGNAL": INTERRUPT_AT})
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
    run_dir = one_run_dir(tmp_path)
    client = MlflowClient(server.uri)
    (first,) = runs_of(client, "resume")
    assert first.info.status == "KILLED"
    assert [m.step for m in client.get_metric_history(first.info.run_id, "test_loss")] == [1]

    proc = aebench(f"resume={run_dir}", "progress=false", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (run,) = runs_of(client, "resume")
    assert run.info.run_id == first.info.run_id and run.info.status == "FINISHED"
    assert_metric_histories_equal_history_csv(client, run.info.run_id, run_dir)  # epochs 1-3, each once
    assert run.data.metrics["probe_accuracy"] == read_metrics(run_dir)["probe_accuracy"]

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    rows = history_rows(run_dir)
    assert [e.step for e in events.Scalars("test_loss")] == [1, 2, 3] == [int(r["epoch"]) for r in rows]


# ------------------------------------------------------------------ the local default store, parallel jobs
def test_local_default_store_takes_two_runs_started_at_once(tmp_path, data_root):
    """MLflow's local default (sqlite:///mlflow.db here): two runs create the store and experiment at once."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("HYDRA_FULL_ERROR", None)
    procs = [subprocess.Popen([sys.executable, "-m", "aebench", "logger=mlflow", f"seed={seed}", "threads=1",
                               *TINY, *DRAW, "epochs=1"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for seed in (0, 1)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    assert (tmp_path / "mlflow.db").is_file()
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = runs_of(client, "aebench")
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    assert {r.data.params["seed"] for r in runs} == {"0", "1"}
    for r in runs:
        assert_metric_histories_equal_history_csv(client, r.info.run_id, Path(r.data.tags["aebench.run_dir"]))
        assert {"metrics.json", FIGURES} <= {a.path for a in client.list_artifacts(r.info.run_id)}


# ------------------------------------------------------------------ what a user gets when tracking cannot work
def test_unreachable_server_is_refused_before_any_training(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    code, err = run_in_process(["logger=mlflow", f"logger.mlflow.tracking_uri={uri}", *TINY])
    assert_one_line(code, err, f"MLflow tracking at {uri} cannot be used", "logger.mlflow.tracking_uri=")
    assert time.monotonic() - started < 60  # a few quick tries, not MLflow's minutes of back-off
    assert not list(tmp_path.rglob("history.csv")) and not list(tmp_path.rglob("*.pt"))
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").rglob("*.json"))

    code, err = run_in_process(["-m", "latent=2,3", "logger=mlflow", f"logger.mlflow.tracking_uri={uri}", *TINY])
    assert_one_line(code, err, f"MLflow tracking at {uri} cannot be used")
    assert not list(tmp_path.rglob("metrics.json"))  # the sweep was refused before its first job


@pytest.mark.parametrize("overrides, expected", [
    (["logger=wandb"], "choose one of: many, mlflow, none, tensorboard"),
    (["logger=tensorboard", "logger.tensorboard.embedding_points=-1"], "logger.tensorboard.embedding_points=-1 is not accepted"),
    (["logger=mlflow", "logger.mlflow.experiment_name=''"], "logger.mlflow.experiment_name='' is not accepted"),
    (["logger=mlflow", "logger.mlflow.tracking_uri=' '"], "logger.mlflow.tracking_uri=' ' is not accepted"),
])
def test_bad_logger_settings_get_one_line(overrides, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = run_in_process([*overrides, *TINY])
    assert_one_line(code, err, expected)


@pytest.mark.parametrize("logger, module", [("mlflow", "mlflow"), ("tensorboard", "torch.utils.tensorboard"),
                                            ("many", "torch.utils.tensorboard")])
def test_missing_package_says_how_to_install_it(logger, module, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if the package were not installed
    code, err = run_in_process([f"logger={logger}", *TINY])
    assert_one_line(code, err, "is not installed: pip install 'aebench[tracking]'")
    assert not list(tmp_path.rglob("history.csv"))
    code, err = run_in_process(["-m", "latent=2,3", f"logger={logger}", *TINY])
    assert_one_line(code, err, "pip install 'aebench[tracking]'")
    assert not list(tmp_path.rglob("metrics.json"))


def test_aebench_imports_without_the_tracking_packages():
    blocked = "import sys; [sys.modules.__setitem__(m, None) for m in ('mlflow', 'tensorboard', 'torch.utils.tensorboard')]"
    code = f"{blocked}; import aebench.cli, aebench.compare.callback, aebench.pipeline, aebench.tracking; print('imported')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "imported" in proc.stdout, proc.stderr


# ------------------------------------------------------------------ last: the server dies in the middle of a run
def test_server_killed_mid_run_costs_one_warning_and_nothing_else(server, tmp_path, data_root):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.Popen([sys.executable, "-m", "aebench", "logger=many", f"logger.mlflow.tracking_uri={server.uri}",
                             "logger.mlflow.experiment_name=killed", *TINY, *DRAW, "epochs=6"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    client = MlflowClient(server.uri)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:  # until epoch 1 has reached the server
        experiment = client.get_experiment_by_name("killed")
        runs = client.search_runs([experiment.experiment_id]) if experiment else []
        if runs and client.get_metric_history(runs[0].info.run_id, "test_loss"):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before the server could be killed"
    server.kill()
    out, err = proc.communicate(timeout=600)

    assert proc.returncode == 0, err
    assert "Traceback" not in out + err
    warnings = [ln for ln in (out + err).splitlines() if "logging is off" in ln]
    assert len(warnings) == 1 and warnings[0].startswith("MLflow logging is off from here on"), out + err
    run_dir = one_run_dir(tmp_path)
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed" and metrics["epochs_trained"] == 6
    assert len(history_rows(run_dir)) == 6 and (run_dir / "checkpoints" / "last.pt").is_file()
    assert (run_dir / FIGURES / "reconstructions.png").is_file()
    # TensorBoard, which did not fail, logged every epoch
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("test_loss")] == [1, 2, 3, 4, 5, 6]
    # no stall: one failed request and a quick retry (MLflow's own default: minutes of back-off), then no waiting
    assert metrics["seconds"]["logging"] < 30
    # what reached the server before it died is in its store: the run, as far as it got
    store = MlflowClient(f"sqlite:///{server.db}")
    (run,) = runs_of(store, "killed")
    assert run.info.status == "RUNNING" and 1 in {m.step for m in store.get_metric_history(run.info.run_id, "test_loss")}
