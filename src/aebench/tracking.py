"""Run tracking: TensorBoard and MLflow behind the one small interface that :mod:`aebench.pipeline` calls.

    tracker = tracking.start(cfg, run_dir, device, saved, sweep_dir)  # refuses here, before any work
    tracker.log_history(history)        # after each epoch: the rows not logged yet (a resume fills gaps)
    tracker.log_embedding(codes, ...)   # TensorBoard's projector
    tracker.log_figures(fig_dir)
    tracker.log_final(metrics)          # the numbers of metrics.json, nested ones flattened
    tracker.end(status, files)          # metrics.json, history.csv, .hydra/ as MLflow artifacts

Each logger is a thin adapter over its library's own API (``torch.utils.tensorboard``,
``mlflow.MlflowClient``); the libraries are the optional extra ``aebench[tracking]``,
imported only when a logger is on.  Tracking never costs a run: a logger that cannot
start refuses the run at once (one line, nothing trained), and one that fails later is
switched off with one warning while training and every local file go on as without it.
The seconds spent inside logger calls are counted (``seconds.logging`` in metrics.json).

A sweep is one MLflow experiment: :func:`start_sweep` (called by the sweep callback
before the first job) creates a parent run and leaves its id in ``<sweep dir>/mlflow_sweep.json``,
where every job, in whatever process or machine, finds it and starts a nested run;
:func:`end_sweep` logs the comparison to the parent.  A run's MLflow id travels in its
checkpoint, so ``aebench resume=<dir>`` and requeued jobs continue the same MLflow run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Iterator

from omegaconf import DictConfig, OmegaConf

from . import __version__, atomic
from .config import MLflowConfig, TensorBoardConfig, flatten
from .errors import ConfigError, Interrupted, squashed

log = logging.getLogger(__name__)

INSTALL = "pip install 'aebench[tracking]'"
TENSORBOARD_DIR = "tensorboard"
SWEEP_FILE = "mlflow_sweep.json"
# The metric whose MLflow/TensorBoard history tells which epochs a run has logged already.
PROBE_METRIC = "test_loss"
# MLflow's HTTP client retries a failing request 7 times with exponential back-off (minutes) and waits
# 120 s for an answer.  A tracker must never stall training: one quick retry, then the logger goes off.
# Values the user has set in the environment are kept.
MLFLOW_HTTP_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
MLFLOW_STATUS = {"completed": "FINISHED", "interrupted": "KILLED", "failed": "FAILED"}
# metrics.json entries that are not results (the config is logged as params, the rest as tags).
NOT_METRICS = {"config", "versions", "resumed_from", "data", "skipped", "distributed"}
# metrics.json entries that record how their numbers were made, not results: only the parts named here are logged
# (factor_readouts: the seconds each read-out took; its protocol's sizes and seed, the train accuracies of its
# classifiers and its strings are not).  Its results are top-level numbers (mig, gaussian_tc, ...).
LOGGED_PARTS = {"factor_readouts": ("seconds",)}


class TrackerUnavailable(ConfigError):
    """A logger that was asked for cannot start: its package is missing or its server does not answer."""


# ------------------------------------------------------------------ what gets logged

def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def epoch_scalars(row: dict[str, Any]) -> dict[str, float]:
    """Every numeric column of a history.csv row but the epoch itself (the step)."""
    return {k: float(v) for k, v in row.items() if k != "epoch" and _is_number(v)}


def final_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The numbers of metrics.json under flat names.

    ``label_budget_accuracy["100"]`` becomes ``probe_accuracy_at_100`` (the mean over draws) and
    ``probe_accuracy_at_100_std`` (likewise ``pca_``/``pixel_``); other nested numbers join their
    keys with ``_`` (``seconds_total``, ``memory_peak_host_mib``), but of :data:`LOGGED_PARTS`' entries only
    the parts named there (``factor_readouts_seconds_mig``).
    """
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        if key in NOT_METRICS:
            continue
        if key.endswith("label_budget_accuracy") and isinstance(value, dict):
            name = key.replace("label_budget_accuracy", "probe_accuracy")
            for n, result in value.items():
                if result.get("mean") is not None:
                    flat[f"{name}_at_{n}"] = float(result["mean"])
                if result.get("std") is not None:
                    flat[f"{name}_at_{n}_std"] = float(result["std"])
        elif isinstance(value, dict):
            if key in LOGGED_PARTS:
                value = {part: v for part, v in value.items() if part in LOGGED_PARTS[key]}
            flat.update({f"{key}_{k}": float(v) for k, v in flatten(value).items() if _is_number(v)})
        elif _is_number(value):
            flat[key] = float(value)
    return {k.replace(".", "_"): v for k, v in flat.items()}


def config_params(cfg: DictConfig) -> dict[str, str]:
    """The whole config as flat ``key: text`` pairs (``train.lr: 0.002``, ``arch.hidden: [512, 256]``)."""
    return {k: str(v) for k, v in flatten(OmegaConf.to_container(cfg, resolve=True)).items()}


def run_overrides(run_dir: Path) -> str:
    """The command-line overrides the run was started with (Hydra's .hydra/overrides.yaml), space-separated."""
    from . import rundir

    try:
        return " ".join(rundir.read_overrides(run_dir))
    except rundir.Unreadable:  # a damaged file costs the tag only
        return ""


# ------------------------------------------------------------------ the interface the pipeline calls
class Logger:
    """One tracking back-end.  What a back-end has no place for (MLflow: the projector), it leaves out."""

    title = ""

    def log_history(self, history: list[dict[str, Any]]) -> None:
        """Log the rows of ``history`` (one per epoch, step = epoch) that this logger has not logged yet."""

    def log_embedding(self, codes: Any, labels: Any, images: Any, class_names: tuple[str, ...], seed: int,
                      step: int) -> None:
        """The test codes (N, latent), labelled by class (N,; None: unlabelled), with their images (a
        :class:`aebench.data.Split`: ``images.images(idx)`` gives (n, C, H, W))."""

    def log_figures(self, fig_dir: Path, step: int) -> None:
        """The run's figures (PNG files)."""

    def log_final(self, metrics: dict[str, float], params: dict[str, str], last_row: dict[str, Any],
                  step: int) -> None:
        """The final numbers (flat names), with the config for comparing runs."""

    def end(self, status: str, files: list[Path], error: str | None) -> None:
        """Upload ``files`` where the back-end keeps files, mark the run ``status`` and let go."""

    def close(self) -> None:
        """Let go of what the logger holds, after it failed (no network, no raising)."""


class Tracker:
    """The loggers of one run.  Every call is timed (:attr:`seconds`); a logger that raises is switched off."""

    def __init__(self, loggers: list[Logger], state: dict[str, Any], seconds: float = 0.0):
        self.loggers = loggers
        self.state = state  # kept in every checkpoint (what a resume needs to continue the same MLflow run)
        self.seconds = seconds
        self.step = 0  # the last epoch logged

    def _each(self, method: str, *args: Any) -> None:
        t = time.perf_counter()
        for logger in list(self.loggers):
            try:
                getattr(logger, method)(*args)
            except Exception as e:  # noqa: BLE001 - no tracking failure may cost the run
                self.loggers.remove(logger)
                with contextlib.suppress(Exception):
                    logger.close()
                log.warning("%s logging is off from here on: %s failed (%s); the run goes on and writes every "
                            "local file", logger.title, method, reason(e))
        self.seconds += time.perf_counter() - t

    def log_history(self, history: list[dict[str, Any]]) -> None:
        if history:
            self.step = history[-1]["epoch"]
            self._each("log_history", history)

    def log_embedding(self, codes: Any, labels: Any, images: Any, class_names: tuple[str, ...], seed: int) -> None:
        self._each("log_embedding", codes, labels, images, class_names, seed, self.step)

    def log_figures(self, fig_dir: Path) -> None:
        if fig_dir.is_dir():
            self._each("log_figures", fig_dir, self.step)

    def log_final(self, metrics: dict[str, Any], cfg: DictConfig, last_row: dict[str, Any]) -> None:
        if self.loggers:
            params = {k: v for k, v in config_params(cfg).items() if not k.startswith("logger.")}
            self._each("log_final", final_metrics(metrics), params, last_row, self.step)

    def end(self, status: str, files: list[Path] = (), error: str | None = None) -> None:
        self._each("end", status, [f for f in files if f.exists()], error)
        self.loggers = []


def start(cfg: DictConfig, run_dir: Path, device: str, saved: dict[str, Any] | None = None,
          sweep_dir: Path | None = None) -> Tracker:
    """The run's tracker, as ``cfg.logger`` asks; raises :class:`TrackerUnavailable` if a logger cannot start.

    ``saved`` is the tracker state of the checkpoint being resumed (``Tracker.state``);
    ``sweep_dir`` the sweep this run is a job of (its MLflow parent run is found there).
    """
    t = time.perf_counter()
    warn_unused_settings(cfg)
    check_available(cfg)  # every package first: a missing one refuses the run before any logger starts
    loggers: list[Logger] = []
    state: dict[str, Any] = {}
    if cfg.logger.tensorboard.enabled:  # writes nothing before the first epoch
        loggers.append(TensorBoardLogger.start(cfg, run_dir))
    if cfg.logger.mlflow.enabled:  # last: the one that may refuse, when its server does not answer
        mlflow_logger = MLflowLogger.start(cfg, run_dir, device, (saved or {}).get("mlflow"), sweep_dir)
        loggers.append(mlflow_logger)
        state["mlflow"] = {"tracking_uri": mlflow_logger.uri, "run_id": mlflow_logger.run_id}
    return Tracker(loggers, state, seconds=time.perf_counter() - t)


def status_after(e: BaseException) -> str:
    return "interrupted" if isinstance(e, (Interrupted, KeyboardInterrupt)) else "failed"


def warn_unused_settings(cfg: DictConfig) -> None:
    """A logger's settings given while the logger is off: say how to turn it on."""
    for name, title, schema in (("mlflow", "MLflow", MLflowConfig), ("tensorboard", "TensorBoard", TensorBoardConfig)):
        node = cfg.logger[name]
        defaults = OmegaConf.structured(schema)
        changed = [k for k in node if k != "enabled" and node[k] != defaults[k]]
        if not node.enabled and changed:
            log.warning("logger.%s.%s is set, but %s logging is off: add logger=%s (or logger=many)",
                        name, changed[0], title, name)


# ------------------------------------------------------------------ TensorBoard
class TensorBoardLogger(Logger):
    """Event files in ``<run dir>/tensorboard/``: scalars per epoch, figures, hparams, the projector."""

    title = "TensorBoard"

    def __init__(self, log_dir: Path, embedding_points: int):
        self.log_dir = log_dir
        self.embedding_points = embedding_points
        self._writer: Any = None
        self.logged = self._epochs_on_disk()

    @classmethod
    def start(cls, cfg: DictConfig, run_dir: Path) -> "TensorBoardLogger":
        _import_tensorboard()
        return cls(run_dir / TENSORBOARD_DIR, cfg.logger.tensorboard.embedding_points)

    @property
    def writer(self) -> Any:
        """Made at the first entry, so that a run refused at start leaves no event file."""
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.log_dir))
        return self._writer

    def _epochs_on_disk(self) -> set[int]:
        """Epochs an earlier attempt of this run logged (a resumed run); read with TensorBoard's own reader."""
        if not self.log_dir.is_dir():
            return set()
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(self.log_dir), size_guidance={"scalars": 0, "images": 1, "tensors": 1})
        events.Reload()
        if PROBE_METRIC not in events.Tags()["scalars"]:
            return set()
        return {e.step for e in events.Scalars(PROBE_METRIC)}

    def log_history(self, history: list[dict[str, Any]]) -> None:
        for row in history:
            if row["epoch"] not in self.logged:
                for key, value in epoch_scalars(row).items():
                    self.writer.add_scalar(key, value, row["epoch"])
                self.logged.add(row["epoch"])
        self.writer.flush()  # on disk now: a killed run loses no epoch it logged

    def log_embedding(self, codes: Any, labels: Any, images: Any, class_names: tuple[str, ...], seed: int,
                      step: int) -> None:
        """At most ``embedding_points`` codes (a sample fixed by the seed): a sprite of 2 000 digits is
        1 260 pixels square, quick to write and to load in the projector; all 10 000 would be 2 800."""
        import torch

        if not self.embedding_points:
            return
        pick = torch.randperm(len(codes), generator=torch.Generator().manual_seed(seed))[: self.embedding_points]
        names = [class_names[int(i)] for i in labels.cpu()[pick]] if labels is not None else None
        self.writer.add_embedding(codes.cpu()[pick].float(), metadata=names, label_img=images.images(pick).float().cpu(),
                                  global_step=step, tag="test_codes")

    def log_figures(self, fig_dir: Path, step: int) -> None:
        """Each figure's PNG file as it is (``add_image`` would decode and encode it again: 10x slower)."""
        from PIL import Image
        from tensorboard.compat.proto.summary_pb2 import Summary

        for png in sorted(fig_dir.glob("*.png")):
            with Image.open(png) as image:  # reads the header only
                width, height, channels = *image.size, len(image.getbands())
            picture = Summary.Image(height=height, width=width, colorspace=channels, encoded_image_string=png.read_bytes())
            self.writer.file_writer.add_summary(Summary(value=[Summary.Value(tag=f"figures/{png.stem}", image=picture)]), step)
        self.writer.flush()

    def log_final(self, metrics: dict[str, float], params: dict[str, str], last_row: dict[str, Any],
                  step: int) -> None:
        from torch.utils.tensorboard.summary import hparams

        finals = {f"final/{k}": v for k, v in metrics.items() if math.isfinite(v)}
        # The hparams summaries go into this run's own event file (SummaryWriter.add_hparams would
        # open a second run in a sub-directory); the HParams view reads the final/ scalars beside them.
        for summary in hparams({k: _hparam_value(v) for k, v in params.items()}, finals):
            self.writer.file_writer.add_summary(summary)
        for key, value in finals.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def end(self, status: str, files: list[Path], error: str | None) -> None:
        self.close()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _import_tensorboard() -> None:
    try:
        import torch.utils.tensorboard  # noqa: F401 - torch's writer; fails without the tensorboard package
    except ImportError:
        raise TrackerUnavailable(f"logger=tensorboard needs the tensorboard package, which is not installed: "
                                 f"{INSTALL}") from None


def _hparam_value(text: str) -> float | str | bool:
    """Config values for TensorBoard's HParams view: numbers as numbers (sortable), the rest as text."""
    if text in ("True", "False"):
        return text == "True"
    try:
        return float(text)
    except ValueError:
        return text


# ------------------------------------------------------------------ MLflow
def _import_mlflow() -> Any:
    try:
        import mlflow
    except ImportError:
        raise TrackerUnavailable(f"logger=mlflow needs the mlflow package, which is not installed: {INSTALL}") from None
    for key, value in MLFLOW_HTTP_ENV.items():
        os.environ.setdefault(key, value)
    # MLflow's own progress lines (database migrations) and urllib3's retry warnings would only repeat,
    # less clearly, what aebench says itself.
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    return mlflow


def absolute_uri(uri: str) -> str:
    """A local store's URI with an absolute path, so that every job and a later resume find the same store."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri[len("sqlite:///"):]).expanduser().resolve())
    if "://" not in uri and not uri.startswith(("file:", "databricks", "sqlite:")):
        return Path(uri).expanduser().resolve().as_uri()  # a plain directory: MLflow's legacy file store
    return uri


def resolve_uri(configured: str | None, sweep: dict[str, Any] | None = None) -> str:
    """``logger.mlflow.tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else the sweep's, else MLflow's local default."""
    mlflow = _import_mlflow()
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or (sweep or {}).get("tracking_uri")
    return absolute_uri(uri or mlflow.get_tracking_uri())


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """Serialise creating a local SQLite store and its experiment across processes (parallel jobs)."""
    if uri.startswith("sqlite:////"):
        db = Path(uri[len("sqlite:///"):])
        with atomic.file_lock(db.with_name(f".{db.name}.lock")):
            yield
    else:
        yield


def connect(uri: str) -> Any:
    """An ``MlflowClient`` for ``uri``; it opens the store at once (a new SQLite store: creates its tables)."""
    import mlflow

    with _store_lock(uri):
        return mlflow.MlflowClient(tracking_uri=uri)


def reason(e: BaseException) -> str:
    """A failed request in a few words: MLflow's messages nest the whole urllib3 story."""
    text = str(e)
    for needle, words in (("Connection refused", "connection refused"), ("timed out", "no answer in time"),
                          ("Name or service not known", "unknown host"), ("Failed to resolve", "unknown host"),
                          ("Max retries exceeded", "no connection")):
        if needle in text:
            return words
    return squashed(e, 160)


def _unreachable(uri: str, e: Exception) -> TrackerUnavailable:
    return TrackerUnavailable(
        f"MLflow tracking at {uri} cannot be used ({reason(e)}); start the server, give another "
        f"logger.mlflow.tracking_uri=, or run without logger=mlflow"
    )


def get_or_create_experiment(client: Any, uri: str, name: str) -> str:
    """The id of experiment ``name``, created if missing (a parallel job may create it at the same moment)."""
    from mlflow.exceptions import MlflowException

    with _store_lock(uri):
        found = client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                raise TrackerUnavailable(f"the MLflow experiment {name!r} at {uri} is deleted; restore it "
                                         f"(mlflow experiments restore) or give logger.mlflow.experiment_name=")
            return found.experiment_id
        try:
            return client.create_experiment(name)
        except MlflowException:  # created meanwhile by another client of the same server
            return client.get_experiment_by_name(name).experiment_id


def read_sweep_file(sweep_dir: Path | None) -> dict[str, Any] | None:
    path = sweep_dir / SWEEP_FILE if sweep_dir is not None else None
    return json.loads(path.read_text()) if path is not None and path.is_file() else None


class MLflowLogger(Logger):
    """One MLflow run per aebench run, through ``mlflow.MlflowClient`` (no global active run)."""

    title = "MLflow"

    def __init__(self, client: Any, uri: str, run_id: str, logged: set[int]):
        self.client, self.uri, self.run_id, self.logged = client, uri, run_id, logged

    @classmethod
    def start(cls, cfg: DictConfig, run_dir: Path, device: str, saved: dict[str, Any] | None,
              sweep_dir: Path | None) -> "MLflowLogger":
        _import_mlflow()
        from mlflow.exceptions import MlflowException

        sweep = read_sweep_file(sweep_dir)
        uri = resolve_uri(cfg.logger.mlflow.tracking_uri, sweep)
        try:
            client = connect(uri)
            if saved and saved.get("tracking_uri") == uri:  # a resumed run: continue its MLflow run
                try:
                    client.update_run(saved["run_id"], status="RUNNING")
                    logged = {m.step for m in client.get_metric_history(saved["run_id"], PROBE_METRIC)}
                    log.info("MLflow: continuing run %s at %s", saved["run_id"], uri)
                    return cls(client, uri, saved["run_id"], logged)
                except MlflowException as e:
                    if e.error_code != "RESOURCE_DOES_NOT_EXIST":
                        raise
                    log.warning("MLflow run %s is gone from %s; logging into a new run", saved["run_id"], uri)
            parent = sweep if sweep and sweep.get("tracking_uri") == uri else None
            if parent:
                exp_id = parent["experiment_id"]
            else:
                exp_id = get_or_create_experiment(client, uri, cfg.logger.mlflow.experiment_name)
            tags = {
                "aebench.version": __version__,
                "aebench.device": device,
                "aebench.run_dir": str(run_dir.resolve()),
                "aebench.overrides": run_overrides(run_dir),
            }
            if sweep_dir is not None:
                tags["aebench.sweep_dir"] = str(sweep_dir.resolve())
            if parent:
                tags["mlflow.parentRunId"] = parent["run_id"]
            name = run_dir.name if sweep_dir is not None else \
                f"{cfg.model.name} latent={cfg.latent} {run_dir.parent.name} {run_dir.name}"
            run = client.create_run(exp_id, run_name=name, tags=tags)
            from mlflow.entities import Param

            client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in config_params(cfg).items()])
        except TrackerUnavailable:
            raise
        except Exception as e:  # noqa: BLE001 - connection refused, timeouts, a store that cannot be opened
            raise _unreachable(uri, e) from None
        log.info("MLflow: run %s in experiment %s at %s", run.info.run_id, exp_id, uri)
        return cls(client, uri, run.info.run_id, set())

    def log_history(self, history: list[dict[str, Any]]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        rows = [row for row in history if row["epoch"] not in self.logged]
        metrics = [Metric(k, v, now, row["epoch"]) for row in rows for k, v in epoch_scalars(row).items()]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)
            self.logged.update(row["epoch"] for row in rows)

    def log_figures(self, fig_dir: Path, step: int) -> None:
        self.client.log_artifacts(self.run_id, str(fig_dir), "figures")

    def log_final(self, metrics: dict[str, float], params: dict[str, str], last_row: dict[str, Any],
                  step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        # probe_accuracy and test_loss are also per-epoch columns: their last epoch is already logged at this step
        final = [Metric(k, v, now, step) for k, v in metrics.items() if not (k in last_row and last_row[k] == v)]
        self.client.log_batch(self.run_id, metrics=final)

    def end(self, status: str, files: list[Path], error: str | None) -> None:
        for path in files:
            if path.is_dir():
                self.client.log_artifacts(self.run_id, str(path), path.name)
            else:
                self.client.log_artifact(self.run_id, str(path))
        if error:
            self.client.set_tag(self.run_id, "aebench.error", error[:5000])
        self.client.set_terminated(self.run_id, MLFLOW_STATUS[status])


# ------------------------------------------------------------------ a sweep: one parent run
def check_available(cfg: DictConfig) -> None:
    """Refuse a run or a sweep whose loggers cannot be imported, before anything starts."""
    if cfg.logger.tensorboard.enabled:
        _import_tensorboard()
    if cfg.logger.mlflow.enabled:
        _import_mlflow()


def start_sweep(cfg: DictConfig, sweep_dir: Path) -> None:
    """With MLflow on: the sweep's parent run, its id left in ``<sweep dir>/mlflow_sweep.json`` for the jobs."""
    check_available(cfg)
    if not cfg.logger.mlflow.enabled:
        return
    uri = resolve_uri(cfg.logger.mlflow.tracking_uri)
    overrides = " ".join(OmegaConf.to_container(cfg.hydra.overrides.task)) if "hydra" in cfg else ""
    try:
        client = connect(uri)
        exp_id = get_or_create_experiment(client, uri, cfg.logger.mlflow.experiment_name)
        run = client.create_run(exp_id, run_name=f"sweep {sweep_dir.parent.name} {sweep_dir.name}", tags={
            "aebench.version": __version__,
            "aebench.sweep_dir": str(sweep_dir.resolve()),
            "aebench.overrides": overrides,
        })
    except TrackerUnavailable:
        raise
    except Exception as e:  # noqa: BLE001
        raise _unreachable(uri, e) from None
    atomic.write_json(sweep_dir / SWEEP_FILE, {"tracking_uri": uri, "experiment_id": exp_id,
                                                "run_id": run.info.run_id})
    log.info("MLflow: sweep run %s in experiment %s at %s", run.info.run_id, exp_id, uri)


def end_sweep(sweep_dir: Path, completed: bool) -> None:
    """Log the sweep's comparison (summary, groups, figures) to its parent run and end it; never raises."""
    sweep = read_sweep_file(sweep_dir)
    if sweep is None:
        return
    try:
        _import_mlflow()
        client = connect(sweep["tracking_uri"])
        for name in ("summary.csv", "summary.md", "groups.csv", *sorted(p.name for p in sweep_dir.glob("*.png"))):
            if (sweep_dir / name).is_file():
                client.log_artifact(sweep["run_id"], str(sweep_dir / name))
        client.set_terminated(sweep["run_id"], "FINISHED" if completed else "FAILED")
    except Exception as e:  # noqa: BLE001 - the sweep's own files are written; tracking must not fail it
        log.warning("MLflow: the sweep's comparison was not logged to run %s (%s); it is in %s",
                    sweep["run_id"], squashed(e, 240), sweep_dir)
