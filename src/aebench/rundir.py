"""A run's directory: its file names, the one reader of each file beside its writer, and which settings
do not change a run's results.

Everything that reads or writes a run directory goes through here: the pipeline writes it,
``aebench resume=`` and requeued sweep jobs continue it, :func:`aebench.load_run` and the
comparison read it, the launchers record jobs that never started.  So a file's name, its
checks and its "unreadable" error are written once.

    .hydra/config.yaml, overrides.yaml   what ran (Hydra)
    metrics.json                          final numbers, or a status and an error
    history.csv                           one row per epoch
    checkpoints/last.pt                   enough to resume (see :func:`read_checkpoint`)
    probe.npz                             the final probe and its predictions (see :func:`save_probe`)
    factors.npz                           what each code unit holds of each known factor (see :func:`save_factors`)
    figures/                              the run's figures

It imports neither the pipeline nor torch at import time, so the comparison and the API stay light.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import atomic
from .errors import AebenchError, CheckpointError, RunError, first_line

if TYPE_CHECKING:
    import torch
    from omegaconf import DictConfig

METRICS = "metrics.json"
HISTORY = "history.csv"
CHECKPOINT = Path("checkpoints") / "last.pt"
FIGURES = "figures"
PROBE = "probe.npz"  # the final probe and its predictions
PROBE_FORMAT = 1
FACTORS = "factors.npz"  # the unit x factor mutual information behind MIG (data with known factors only)
# The factor read-outs metrics.json gives at its top level (docs/factors.md): all of them on data with known factors,
# gaussian_tc (which needs no factors) on every run.
FACTOR_METRICS = ("mig", "dci_disentanglement", "dci_completeness", "dci_informativeness", "sap", "factor_vae_score",
                  "beta_vae_score", "gaussian_tc")
HYDRA = ".hydra"
CONFIG = Path(HYDRA) / "config.yaml"
OVERRIDES = Path(HYDRA) / "overrides.yaml"

# ------------------------------------------------------------------ settings that do not change results
# The base set: settings that say how or where a run is done, never what it computes.  ``device`` and
# ``threads`` change the summation order and so the last bits, never what is being measured; they count
# as neutral here (docs/compare.md says so).  A key covers every key below it (logger: logger.mlflow.*).
NEUTRAL = frozenset({"threads", "device", "progress", "figures", "logger", "resume",
                     "data.root", "data.download", "data.in_memory"})
# The number of processes a run trained on (torchrun, a submitit job's tasks: metrics.json's ``distributed``) is
# not in the config at all, so it is neutral in every list here as ``threads`` is: it changes the summation
# order and so the last bits (docs/cluster.md gives the measured differences), never what is computed; runs that
# differ only in it are repeats of one setting, and a resume may change it.
# Choices of a sweep's command line that are not settings of the run at all.
SWEEP_CHOICES = frozenset({"hydra/launcher", "hparams_search"})
# Where a resumed run's data live and how they were fetched come from its checkpoint: the images must be those
# it started with (the pipeline checks their identity), so these stay as they were.
DATA_LOCATION = frozenset({"data.root", "data.download", "data.in_memory"})

# What a resume may change; everything else comes from the checkpoint.
RESUME_MAY_CHANGE = NEUTRAL - DATA_LOCATION
# What a job directory's name leaves out (Hydra's override_dirname.exclude_keys, conf/config.yaml: a test checks
# that the YAML spells out exactly this set, every key below each one included).  A job's device stays in its
# name, so that a sweep over devices shows where each job ran; ``resume`` is never a sweep's override.
DIRNAME_EXCLUDES = (NEUTRAL | SWEEP_CHOICES) - {"device", "resume"}
# What seed groups ignore: jobs that differ only in these (and the seed) are repeats of one setting.
GROUP_IGNORES = NEUTRAL | {"seed"}


def under(key: str, names: frozenset[str] | set[str]) -> bool:
    """Whether the dotted ``key`` is one of ``names`` or lies below one (``logger.mlflow.tracking_uri``)."""
    parts = key.split(".")
    return any(".".join(parts[:i]) in names for i in range(1, len(parts) + 1))


def override_key(override: str) -> str:
    """The key an override sets, without its prefix: ``logger.mlflow.tracking_uri`` for ``+logger.mlflow...=x``."""
    return override.split("=", 1)[0].lstrip("+~")


# ------------------------------------------------------------------ directory names
def unique_dir(base: str) -> str:
    """Claim ``base`` (or ``base_1``, ``base_2``, ...) by creating it; never one that exists.

    Creating the folder is atomic, so two runs or sweeps started in the same second
    on the same file system always get different directories.
    """
    candidate, n = base, 0
    while True:
        try:
            os.makedirs(candidate, exist_ok=False)
            return candidate
        except FileExistsError:
            n += 1
            candidate = f"{base}_{n}"


def run_dir(resume: str | None, base: str) -> str:
    """The directory being resumed, else a fresh one claimed from ``base``."""
    return str(Path(resume).expanduser().resolve()) if resume else unique_dir(base)


def job_dir_name(num: int, overrides: str, limit: int = 120) -> str:
    """``<job number>_<overrides>``; long override lists are cut and end in a short hash.

    A path in an override (``data.path=/images/cats``) would nest folders: its separators become ``∕``
    (U+2215, a division slash), which reads the same and is one folder name."""
    name = f"{num}_{overrides}" if overrides else str(num)
    name = name.replace(os.sep, "\u2215")
    if len(name) <= limit:
        return name
    return f"{name[: limit - 9]}~{hashlib.sha1(overrides.encode()).hexdigest()[:8]}"


def output_subdir(resume: str | None) -> str:
    """A resumed run keeps its original .hydra/ files; the resuming command's go beside them."""
    return f"{HYDRA}/resumed" if resume else HYDRA


def is_run(path: Path) -> bool:
    """Whether ``path`` holds any of a run's files (a run that failed early has only some)."""
    return any((path / m).exists() for m in (METRICS, CHECKPOINT.parent, CONFIG, HISTORY))


# ------------------------------------------------------------------ reading: one error for every damaged file
class Unreadable(AebenchError):
    """A run's file that exists but cannot be read or does not hold what it should."""


def read_metrics(run: Path) -> dict[str, Any] | None:
    """``metrics.json`` as a dict; None where there is none (the run was killed, or is still running)."""
    path = Path(run) / METRICS
    if not path.is_file():
        return None
    try:
        metrics = json.loads(path.read_text())
    except (ValueError, OSError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise Unreadable(f"{METRICS}: not valid JSON ({first_line(e)})") from None
    if not isinstance(metrics, dict):
        raise Unreadable(f"{METRICS}: a JSON {type(metrics).__name__}, not an object")
    return metrics


def read_history(run: Path) -> list[dict[str, str]] | None:
    """``history.csv``'s rows as written (strings); None where there is none."""
    path = Path(run) / HISTORY
    if not path.is_file():
        return None
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except (OSError, ValueError, csv.Error) as e:
        raise Unreadable(f"{HISTORY}: {first_line(e)}") from None


def read_config(run: Path) -> "DictConfig":
    """``.hydra/config.yaml``: the run's composed config, as Hydra wrote it (not resolved)."""
    from omegaconf import DictConfig, OmegaConf

    try:
        cfg = OmegaConf.load(Path(run) / CONFIG)
    except Exception as e:  # noqa: BLE001 - yaml's and OmegaConf's errors have no common base worth naming
        raise Unreadable(f"{CONFIG}: not valid YAML ({first_line(e)})") from None
    if not isinstance(cfg, DictConfig):
        raise Unreadable(f"{CONFIG}: not a mapping of settings")
    return cfg


def read_overrides(run: Path) -> list[str]:
    """``.hydra/overrides.yaml``: the command line's overrides ([] where the file is missing)."""
    from omegaconf import ListConfig, OmegaConf

    path = Path(run) / OVERRIDES
    if not path.is_file():
        return []
    try:
        overrides = OmegaConf.load(path)
    except Exception as e:  # noqa: BLE001
        raise Unreadable(f"{OVERRIDES}: not valid YAML ({first_line(e)})") from None
    if not isinstance(overrides, ListConfig) or not all(isinstance(o, str) for o in overrides):
        raise Unreadable(f"{OVERRIDES}: not a list of overrides")
    return list(overrides)


def read_predictions(run: Path) -> dict[str, np.ndarray] | None:
    """``probe.npz``'s test labels and predictions (``test_y``, ``test_pred``, ``knn_pred``, where present);
    None where there is no file.  Raises :class:`Unreadable` for a damaged file or another format."""
    path = Path(run) / PROBE
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in ("test_y", "test_pred", "knn_pred") if k in f.files}
            fmt = int(f["format"]) if "format" in f.files else None
    except Exception as e:  # noqa: BLE001 - any damage reads the same
        raise Unreadable(f"{PROBE}: {first_line(e)}") from None
    test_y = arrays.get("test_y")
    if fmt != PROBE_FORMAT or test_y is None or test_y.ndim != 1 or test_y.dtype.kind not in "iu":
        raise Unreadable(f"{PROBE} is not format {PROBE_FORMAT} with integer test_y")
    return arrays


def read_probe(run: Path) -> dict[str, np.ndarray] | None:
    """``probe.npz``'s classifier: ``weight``, ``bias``, ``mean``, ``scale``; None where there is no file."""
    return _read_npz(Path(run) / PROBE, ("weight", "bias", "mean", "scale"))


def _read_npz(path: Path, keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray] | None:
    """The arrays ``keys`` (None: all) of an .npz written here, None where there is no file; damage: :class:`Unreadable`."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: np.array(f[k]) for k in (keys or f.files)}
    except Exception as e:  # noqa: BLE001
        raise Unreadable(f"{path} cannot be read ({first_line(e)}); it is damaged") from None


# ------------------------------------------------------------------ the checkpoint
def checkpoint_file(run: Path) -> Path:
    """``run``'s checkpoint, or the one-line error that there is nothing to resume."""
    path = Path(run) / CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"nothing to resume in {run}: no {CHECKPOINT} there; give resume=<a run directory with a checkpoint>")
    return path


def read_checkpoint(path: Path, strict: bool = True) -> dict[str, Any]:
    """The checkpoint at ``path``: the one reader every user of a checkpoint calls.

    ``strict`` (resuming): it must be this aebench version's, since training goes on with this code;
    errors are :class:`~aebench.errors.CheckpointError`.  Not strict (using the weights: ``load_run``,
    comparisons): any aebench checkpoint with weights and a config; errors are
    :class:`~aebench.errors.RunError`.  A checkpoint is a pickle: load runs you trust.
    """
    import torch

    from . import __version__

    error = CheckpointError if strict else RunError
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - whatever the unpickler says, the file is damaged
        detail = type(e).__name__ if strict else f"{type(e).__name__}: {first_line(e)[:100]}"
        raise error(f"checkpoint {path} cannot be read ({detail}); it is damaged: "
                    + ("start a new run" if strict else "restore it, or run again")) from None
    if strict:
        if not isinstance(ckpt, dict) or "aebench_version" not in ckpt or "config" not in ckpt:
            raise error(f"{path} is not an aebench checkpoint; give resume=<a run directory made by aebench>")
        if ckpt["aebench_version"] != __version__:
            raise error(f"checkpoint {path} was written by aebench {ckpt['aebench_version']}, this is aebench "
                        f"{__version__}; resume it with aebench {ckpt['aebench_version']} or start a new run")
    elif not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise error(f"{path} is not an aebench checkpoint (no model weights and config in it); "
                    "give a run directory made by aebench")
    return ckpt


def checkpoint_meta(cfg: "DictConfig", data: dict[str, Any], tracking: dict[str, Any] | None,
                    precision: dict[str, str] | None = None) -> dict[str, Any]:
    """What identifies a run in its checkpoint, beside the training state the Trainer keeps there
    (:meth:`aebench.train.Trainer.checkpoint`): the aebench version (a resume needs the same code), the whole
    config (a resume takes it from here), the images it trains on (``data``: their identity and count, checked
    again on resume), the trackers' ids (a resumed run goes on logging into the same MLflow run) and the precision
    it trains in with the reason (a resumed or requeued run goes on in it, on whatever machine)."""
    from . import __version__, config

    return {"aebench_version": __version__, "config": config.to_container(cfg), "tracking": tracking, "data": data,
            "precision": precision}


def check_same_images(checkpoint: dict[str, Any], data: dict[str, Any]) -> None:
    """Refuse to resume on other images than the checkpoint's (a folder changed since, say); ``data``: what
    :meth:`aebench.data.ImageData.describe` says of the images now."""
    saved = checkpoint.get("data")  # absent in checkpoints of aebench < 0.4
    now = (data.get("identity"), data.get("pretrain_images"))
    if saved and (saved.get("identity"), saved.get("pretrain_images")) != now:
        raise CheckpointError(
            f"the images changed since the checkpoint was written ({saved.get('label')}: {saved.get('pretrain_images')} "
            f"images to train on, now {now[1]}; data identity {saved.get('identity')}, now {now[0]}); "
            "a resumed run needs the images it started with: restore them, or start a new run")


def config_of(checkpoint: dict[str, Any], strict: bool = True) -> "DictConfig":
    """The run's config from its checkpoint, on today's schema (keys added since get their defaults).

    ``strict``: a config that does not fit the schema is a :class:`~aebench.errors.CheckpointError`; else it
    is kept as saved (an older run whose keys the schema no longer has still loads its weights).
    """
    from omegaconf import OmegaConf

    from . import config

    try:
        return OmegaConf.merge(OmegaConf.structured(config.Config), checkpoint["config"])  # type: ignore[return-value]
    except Exception as e:  # noqa: BLE001 - OmegaConf's errors and a missing key read the same
        if strict:
            raise CheckpointError(f"the checkpoint's config does not fit this aebench ({first_line(e)}); "
                                  "start a new run") from None
        return OmegaConf.create(checkpoint["config"])


def has_unfinished_checkpoint(run: Path) -> bool:
    """A checkpoint and no completed metrics.json: a job that was stopped (pre-empted, timed out) and can go on."""
    if not (Path(run) / CHECKPOINT).is_file():
        return False
    try:
        metrics = read_metrics(run)
    except Unreadable:
        return True
    return metrics is None or metrics.get("status") != "completed"


# ------------------------------------------------------------------ writing
def write_metrics(run: Path, metrics: dict[str, Any]) -> None:
    atomic.write_json(Path(run) / METRICS, metrics)


def write_history(run: Path, history: list[dict[str, Any]]) -> None:
    atomic.write_csv(Path(run) / HISTORY, history)


def write_status(run: Path, cfg: Any, status: str, error: str) -> None:
    """Record a run that did not complete (interrupted, failed, never started), so a comparison can list it.

    ``cfg``: the run's config (a DictConfig); where even that is broken, the record has no config summary."""
    from . import config

    try:
        summary = config.summary(cfg)
    except Exception:  # noqa: BLE001 - the config itself may be what failed
        summary = {}
    write_metrics(run, {"status": status, "error": error, "config": summary})


def save_probe(path: Path, result: Any, classes: tuple[str, ...], test_y: "torch.Tensor",
               knn_pred: "torch.Tensor") -> None:
    """Write the final linear probe with what it predicted, atomically (``aebench.load_run`` classifies with it).

    ``result``: a :class:`aebench.probe.ProbeResult`.  ``weight`` (features, classes) and ``bias`` in the dtype
    the fit ended in (float32 or float64); ``mean``, ``scale`` (float32): the standardisation
    z = (x - mean) * scale of the train codes; ``classes``; ``test_y``, ``test_pred`` (the probe's) and
    ``knn_pred`` (k-NN's), int64; ``format``.
    """
    as_np = lambda t: t.detach().cpu().numpy()  # noqa: E731
    arrays = {
        "weight": as_np(result.exact_weight), "bias": as_np(result.exact_bias),
        "mean": as_np(result.mean).astype(np.float32), "scale": as_np(result.scale).astype(np.float32),
        "classes": np.array([str(c) for c in classes], dtype=np.str_),
        "test_y": as_np(test_y).astype(np.int64), "test_pred": as_np(result.test_pred).astype(np.int64),
        "knn_pred": as_np(knn_pred).astype(np.int64), "format": np.array(PROBE_FORMAT),
    }
    with atomic.atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: np.savez would add ".npz" to a name
        np.savez(f, **arrays)


def save_factors(path: Path, mutual_information: np.ndarray, entropy: np.ndarray, factor_names: list[str],
                 importance: np.ndarray | None) -> None:
    """Write what the factor read-outs measured per unit and factor, atomically: ``mutual_information`` (units,
    factors) in nats over MIG's points, each factor's ``entropy`` (nats), ``factor_names``, and DCI's
    ``importance`` (units, factors) where it ran."""
    arrays = {"mutual_information": np.asarray(mutual_information, dtype=np.float64),
              "entropy": np.asarray(entropy, dtype=np.float64),
              "factor_names": np.array([str(n) for n in factor_names], dtype=np.str_)}
    if importance is not None:
        arrays["importance"] = np.asarray(importance, dtype=np.float64)
    with atomic.atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def read_factors(run: Path) -> dict[str, np.ndarray] | None:
    """``factors.npz``'s arrays (see :func:`save_factors`); None where the run has none."""
    return _read_npz(Path(run) / FACTORS)
