"""The ``aebench`` command: Hydra composes the config, :mod:`aebench.pipeline` does the work.

Errors a user can fix are printed as one line (``aebench: error: ...``) with a
non-zero exit and no traceback.  In a sweep, a failed job is recorded in its
own ``metrics.json`` (status and first line of the error) and the sweep goes on;
an interrupted job (SIGINT/SIGTERM) ends the sweep with a resumable checkpoint.

One run on several processes (``torchrun -m aebench ...``, or a submitit job of several tasks): Hydra runs in
every process, but only rank 0 claims the run directory and writes there; ranks > 0 get a temporary directory
that Hydra leaves empty (:func:`rank_overrides`) and take rank 0's directory once the process group is up.
"""

from __future__ import annotations

import errno
import gc
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import traceback
import warnings
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from . import config, distributed, rundir
from .errors import AebenchError, CheckpointError, ConfigError, Interrupted, RunFailed, first_line

log = logging.getLogger("aebench")

# ------------------------------------------------------------------ resolvers used by conf/config.yaml
def register_resolvers() -> None:
    # use_cache: one value per process and per argument, so every read of hydra.run.dir agrees.
    OmegaConf.register_new_resolver("aebench.unique_dir", rundir.unique_dir, use_cache=True, replace=True)
    OmegaConf.register_new_resolver("aebench.run_dir", rundir.run_dir, use_cache=True, replace=True)
    OmegaConf.register_new_resolver("aebench.output_subdir", rundir.output_subdir, use_cache=True, replace=True)
    OmegaConf.register_new_resolver("aebench.job_dir", rundir.job_dir_name, replace=True)


register_resolvers()
config.register()
# conf/hydra/launcher/*.yaml set aebench's defaults for the launcher plugins under the plugins' own
# names, so Hydra validates them against the plugins' schemas; its note that this matching is
# deprecated (it still works in the Hydra 1.3 we pin) would only confuse users.
warnings.filterwarnings("ignore", message=r"[\s\S]*is validated against ConfigStore schema with the same name")


# ------------------------------------------------------------------ one job
def launcher_threads(hc: Any) -> int | None:
    """Torch threads for a sweep job: the launcher's cpus_per_task (submitit), or the cores
    split between joblib's parallel jobs; None outside a sweep or with the serial launcher."""
    if hc.mode != RunMode.MULTIRUN:
        return None
    launcher = hc.launcher
    if launcher.get("cpus_per_task"):
        return int(launcher.cpus_per_task)
    n_jobs = launcher.get("n_jobs")
    if n_jobs is None:
        return None
    cores = config.usable_cores()
    jobs_at_once = cores + 1 + n_jobs if n_jobs < 0 else n_jobs  # joblib's meaning of negative n_jobs
    return max(1, cores // max(1, jobs_at_once))


def resume_config(cfg: DictConfig, hc: Any) -> tuple[DictConfig, dict[str, Any]]:
    """The run's own config from its checkpoint, with only the overrides a resume may change applied."""
    target = Path(cfg.resume).expanduser().resolve()
    may_change = sorted(rundir.RESUME_MAY_CHANGE)
    for override in hc.overrides.task:
        if not rundir.under(rundir.override_key(override), rundir.RESUME_MAY_CHANGE):
            raise CheckpointError(
                f"{override} cannot be changed when resuming: a resumed run keeps its own config; "
                f"only {', '.join(k + '=' for k in may_change)} may be given"
            )
    checkpoint = rundir.read_checkpoint(rundir.checkpoint_file(target), strict=True)
    saved = rundir.config_of(checkpoint, strict=True)
    for override in hc.overrides.task:
        key = rundir.override_key(override).split(".", 1)[0]  # logger.mlflow.x=...: the whole logger group
        if key != "resume":
            saved[key] = cfg[key]
    saved.resume = str(target)
    return saved, checkpoint


WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}


def as_write_error(e: OSError) -> AebenchError:
    return AebenchError(
        f"could not write {e.filename or 'a result file'}: {e.strerror}; free space there (or lift the limit), "
        f"or write runs elsewhere with hydra.run.dir=<dir>; the last complete checkpoint is kept"
    )


def _only_hydra_files(path: Path) -> bool:
    return path.is_dir() and all(p.name in (".hydra", "aebench.log") for p in path.iterdir())


def join_processes(cfg: DictConfig, out: Path) -> tuple[distributed.World, Path]:
    """On several processes: refuse what cannot run, join the process group, and take rank 0's run directory."""
    world = distributed.from_environment()
    if not world.several:
        return world, out
    distributed.check_batch(cfg.train.batch_size, world)
    device = distributed.device_for(config.resolve_device(cfg.device), world)
    world = distributed.start(world, device)
    return world, Path(distributed.broadcast_object(str(out)))


def last_words(world: distributed.World) -> None:
    """Before a process of a several-process run records and says why it stops: leave the group, and let no
    SIGTERM (torchrun's, sent to every rank once one has failed) cut the line short."""
    distributed.stop()
    if world.several:
        import signal

        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _says_its_error(world: distributed.World, e: BaseException) -> bool:
    """Rank 0 says every error; another rank only what is its own (bad input reads the same on every rank)."""
    return world.main or isinstance(e, distributed.PER_RANK) or not isinstance(e, AebenchError)


def run_job(cfg: DictConfig) -> float:
    hc = HydraConfig.get()
    out = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    world = distributed.SINGLE
    try:
        checkpoint = None
        if cfg.resume:
            cfg, checkpoint = resume_config(cfg, hc)
        world, out = join_processes(cfg, out)
        if multirun and not cfg.resume and rundir.has_unfinished_checkpoint(out):
            # A requeued sweep job (cluster pre-emption, timeout): continue where it stopped.
            log.info("found an unfinished checkpoint in %s; resuming it", out)
            checkpoint = rundir.read_checkpoint(out / rundir.CHECKPOINT, strict=True)
        from . import pipeline  # the one module that imports the pipeline: the command that runs it

        try:
            metrics = pipeline.run(cfg, out, checkpoint, launcher_threads(hc) or distributed.threads(world),
                                   sweep_dir=Path(hc.sweep.dir) if multirun else None)
        except OSError as e:
            if e.errno in WRITE_ERRNOS:
                raise as_write_error(e) from e
            raise
    except Interrupted as e:
        last_words(world)
        if not world.main:  # rank 0 says it and records it
            exit_with("", e.exit_code)
        log.warning("%s", e)
        rundir.write_status(out, cfg, "interrupted", str(e))
        # Also ends a sweep: SystemExit passes through Hydra's launchers, which would
        # otherwise record the job as failed and start the next one.
        exit_with(f"aebench: {e}", e.exit_code)
    except Exception as e:  # noqa: BLE001
        last_words(world)
        error_line = first_line(e)
        if world.several and not _says_its_error(world, e):
            exit_with("", AebenchError.EXIT_CODE)
        if not world.main:  # another rank's own failure: one line that names it; rank 0 keeps the run's records
            if not isinstance(e, AebenchError):
                raise
            exit_with(f"aebench: error: {e}", AebenchError.EXIT_CODE)
        if not multirun:
            if not isinstance(e, AebenchError):
                raise  # a bug: show the traceback
            if isinstance(e, RunFailed):  # e.g. training diverged: say so in metrics.json too
                rundir.write_status(out, cfg, "failed", error_line)
            if isinstance(e, ConfigError) and not cfg.resume and _only_hydra_files(out):
                shutil.rmtree(out, ignore_errors=True)  # bad input: leave nothing behind
                for parent in (out.parent, out.parent.parent):  # outputs/<date>/ if now empty
                    try:
                        parent.rmdir()
                    except OSError:
                        break
            exit_with(f"aebench: error: {e}", AebenchError.EXIT_CODE)
        # In a sweep: record the failure and let the other jobs run.
        log.error("job failed: %s", error_line)
        if not isinstance(e, AebenchError):
            log.debug("".join(traceback.format_exception(e)))
            error_line = f"{type(e).__name__}: {error_line}"
        rundir.write_status(out, cfg, "failed", error_line)
        return math.nan
    distributed.stop()
    if not world.main:
        return math.nan  # rank 0's result is the run's
    print_summary(metrics, out)
    # what a sweeper optimises; NaN for unlabelled images (no probe)
    return float(metrics["probe_accuracy"]) if metrics.get("probe_accuracy") is not None else math.nan


def check_resume_target(argv: list[str]) -> None:
    """Refuse ``resume=<dir>`` without a checkpoint before Hydra creates anything there."""
    for arg in argv:
        if arg.startswith("resume=") and arg[len("resume="):] not in ("", "null"):
            rundir.checkpoint_file(Path(arg[len("resume="):]).expanduser())


def exit_with(line: str, code: int) -> None:
    """End the process here, so that Hydra adds no lines of its own to ours (``line`` empty: none at all)."""
    logging.shutdown()
    if line:
        print(line, file=sys.stderr)
    sys.exit(code)


def rank_overrides(argv: list[str], scratch: str) -> list[str]:
    """The command line of a process of a several-process run (torchrun): a sweep refused; ranks > 0 run Hydra in
    ``scratch`` (a temporary directory, removed at exit), with no ``.hydra/``, no log file and only warnings on the
    console, so that rank 0 alone claims and fills the run directory."""
    world = distributed.from_environment()
    if not world.several:
        return argv
    if any(a in ("-m", "--multirun") for a in argv):
        raise ConfigError(f"a sweep (-m) cannot run under torchrun ({world.size} processes): a sweep's jobs are runs "
                          "of their own; run one configuration per torchrun, or sweep with hydra/launcher=submitit_slurm "
                          "and hydra.launcher.tasks_per_node=N (each job one run on N processes)")
    if world.main:
        return argv
    from .launchers import rank_overrides as quiet

    return [*argv, *quiet(scratch, "hydra.run.dir")]


def print_summary(metrics: dict[str, Any], out: Path) -> None:
    rows = [
        ("probe_accuracy", "linear probe on the codes, test accuracy"),
        ("knn_accuracy", "k-NN on the codes, test accuracy"),
        ("pca_probe_accuracy", "linear probe on a PCA of the pixels, same size"),
        ("pixel_probe_accuracy", "linear probe on the raw pixels"),
        ("recon_mse", "test MSE per pixel"),
        ("neg_elbo", "test negative ELBO, nats per image"),
    ]
    c = metrics["config"]
    lines = [f"aebench: {c['model']} ({c['arch']}) latent={c['latent']} finished in {metrics['seconds']['total']:.1f} s -> {out}"]
    if metrics.get("skipped"):
        lines.append(f"  skipped: {metrics['skipped']}")
    for key, meaning in rows:
        value = metrics.get(key)
        if value is not None:
            lines.append(f"  {key:<22}{value:>10.4f}   {meaning}")
    for n, result in (metrics.get("label_budget_accuracy") or {}).items():
        if "mean" in result:
            lines.append(f"  {'probe_accuracy@' + n:<22}{result['mean']:>10.4f}   the probe with {n} labels "
                         f"(mean of {len(result['accuracies'])} draws, std {result['std']:.4f})")
    log.info("\n".join(lines))


@hydra.main(version_base="1.3", config_path="pkg://aebench.conf", config_name="config")
def _hydra_main(cfg: DictConfig) -> float:
    return run_job(cfg)


# ------------------------------------------------------------------ one-line errors
def hydra_error_line(e: BaseException) -> str:
    """Hydra's multi-line composition errors, folded into one line that names the options."""
    text = str(e).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if isinstance(e, OverrideParseException):
        return f"cannot parse the override {e.override!r}: {lines[0] if lines else e.message}; write key=value (lists as key=[a,b])"
    if isinstance(e, MissingConfigException) and e.options:
        head = lines[0].removeprefix("In 'config': ").removeprefix("In 'experiment': ")
        return f"{head}; choose one of: {', '.join(sorted(e.options))}"
    first = lines[0] if lines else type(e).__name__
    cause = e.__cause__
    if cause is not None and str(cause).strip():
        cause_line = first_line(cause)
        if cause_line not in first:
            first = f"{first}: {cause_line}"
    return first


def _another_rank_says_it(e: BaseException) -> bool:
    """Under torchrun, bad input (the same command line in every process) is said once, by rank 0."""
    world = distributed.from_environment()
    return world.several and not world.main and not isinstance(e, distributed.PER_RANK)


def main() -> None:
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach us; we print them as one line
    scratch = None
    argv = sys.argv
    try:
        check_resume_target(sys.argv[1:])
        if distributed.from_environment().several:
            scratch = tempfile.mkdtemp(prefix="aebench-rank-")
            sys.argv = [argv[0], *rank_overrides(argv[1:], scratch)]
        _hydra_main()  # a sweep with jobs that did not complete ends in its callback (aebench.compare.callback)
    except AebenchError as e:
        if not _another_rank_says_it(e):
            print(f"aebench: error: {e}", file=sys.stderr)
        sys.exit(AebenchError.EXIT_CODE)
    except (HydraException, OmegaConfBaseException) as e:
        if not _another_rank_says_it(e):
            print(f"aebench: error: {hydra_error_line(e)}", file=sys.stderr)
        sys.exit(AebenchError.EXIT_CODE)
    except KeyboardInterrupt:
        print("aebench: stopped by Ctrl-C", file=sys.stderr)
        sys.exit(130)
    finally:
        sys.argv = argv
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def command() -> None:
    """The ``aebench`` command and ``python -m aebench``: :func:`main` in a process of its own.

    Importing torch, Hydra and OmegaConf leaves ~200 000 objects that live as long as the process;
    frozen out of the cyclic collector's sight (``gc.freeze``), they are no longer walked by its
    full passes during the run nor by the interpreter's shutdown (docs/speed.md, "Start-up and
    shutdown").  Objects made later are collected as before.  ``main()`` itself does not freeze:
    tests call it in their own process, where a freeze would keep earlier tests' garbage for good.
    """
    gc.freeze()
    main()


if __name__ == "__main__":
    command()
