"""aebench's submitit launchers: hydra-submitit-launcher's, with two changes for sweeps that hold up.

``conf/hydra/launcher/submitit_slurm.yaml`` and ``submitit_local.yaml`` name them
(``hydra_plugins.aebench_launcher.SlurmLauncher`` and ``.LocalLauncher``: Hydra takes launchers
only from the ``hydra_plugins`` namespace); their keys are the plugin's own, and Hydra still
validates them against the plugin's schemas.

1. **A job that ends without a result does not end the sweep.**  The plugin waits for the jobs
   in order and raises on the first one that ended without a result (cancelled with ``scancel``,
   killed at its time limit, lost with its node): a traceback, the later jobs never collected,
   no summary.  Here every job is waited for; one without a result is logged, recorded in its
   ``metrics.json`` when the job could not do it itself (it never started, or was killed outside
   training), and handed to Hydra as a NaN result, as :func:`aebench.cli.run_job` does for a job
   that failed inside aebench.  The sweep's summary callback then lists it as not completed, and
   ``aebench`` exits 2 naming it.

2. **A time-limit warning stops training at a checkpoint before the job is requeued.**  Slurm
   warns ``signal_delay_s`` before the limit with SIGUSR2; submitit's handler then requeues the job
   and exits on the spot, from inside the signal handler, so the epoch under way is lost.  Here,
   while training runs, the warning is handed to the training loop's own stop flag (as SIGTERM
   would be): it ends the step, writes a mid-epoch checkpoint and returns, and only then does
   submitit requeue the job (up to ``max_num_timeout`` times).  The requeued job finds the
   checkpoint in its directory and resumes (``cli.run_job``).  Outside training (start-up, probe,
   figures) submitit's handler runs as it is: the job is requeued at once and redoes that stage.

3. **A job of several tasks is one run on several processes** (``hydra.launcher.tasks_per_node=N``,
   ``nodes=M``): every task runs the job, and :mod:`aebench.distributed` joins them into one DDP run whose
   rendezvous comes from submitit's job environment.  Only the first task (rank 0) claims the job's
   directory: the others run Hydra in a temporary directory that it leaves empty (no ``.hydra/``, no log file)
   and take rank 0's directory once the process group is up; the job's result is rank 0's.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import DictConfig, OmegaConf, open_dict

from . import atomic

log = logging.getLogger(__name__)


@contextlib.contextmanager
def checkpoint_before_requeue() -> Iterator[None]:
    """In a submitit job: route the time-limit signal (SIGUSR2) through the training loop's stop flag."""
    from .train import StopFlag  # the training loop's SIGTERM/SIGINT handler while it runs

    requeue = signal.getsignal(signal.SIGUSR2)  # submitit's: re-pickle the job, scontrol requeue, exit
    if not callable(requeue):  # not under submitit
        yield
        return
    warned: list[int] = []

    def on_warning(signum: int, frame: Any) -> None:
        stop_training = signal.getsignal(signal.SIGTERM)
        if isinstance(stop_training, StopFlag):
            log.warning("signal %d: time limit or pre-emption near; stopping training at a checkpoint, "
                        "then requeueing", signum)
            warned.append(signum)
            stop_training(signum, frame)
        else:
            requeue(signum, frame)

    signal.signal(signal.SIGUSR2, on_warning)
    try:
        yield
    except BaseException as e:
        signal.signal(signal.SIGUSR2, requeue)
        if isinstance(e, SystemExit) and warned:  # training stopped at a checkpoint: now requeue
            requeue(warned[0], None)  # exits, or raises once max_num_timeout requeues are spent
        raise
    # Done: a warning from here on would requeue, and so rerun, a finished job (or, once Python
    # has begun to exit, kill it: Slurm would then record it FAILED).
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


def rank_overrides(scratch: str, key: str = "hydra.sweep.dir") -> list[str]:
    """Hydra's settings for a process of a several-process run other than rank 0: its directory ``key`` in
    ``scratch``, no ``.hydra/``, no log file, only warnings on the console."""
    return [f"{key}={scratch}", "hydra.output_subdir=null", "hydra.job_logging.root.level=WARNING",
            "hydra.job_logging.root.handlers=[console]", "~hydra.job_logging.handlers.file"]


class SweepThatHoldsUp:
    """What aebench adds to hydra-submitit-launcher's launchers: mixed into them in
    ``hydra_plugins.aebench_launcher`` (where Hydra finds them) ahead of the plugin's class."""

    _EXECUTOR: str
    params: dict[str, Any]
    config: DictConfig | None
    hydra_context: Any

    def __call__(self, sweep_overrides: list[str], *args: Any, **kwargs: Any) -> JobReturn:
        from . import distributed

        world = distributed.from_environment()
        scratch = None
        if world.several and not world.main:  # rank 0 alone writes the job's directory
            scratch = tempfile.mkdtemp(prefix=f"aebench-rank{world.rank}-")
            sweep_overrides = [*sweep_overrides, *rank_overrides(scratch)]
        try:
            with checkpoint_before_requeue():
                return super().__call__(sweep_overrides, *args, **kwargs)  # type: ignore[misc]
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        # As hydra-submitit-launcher 1.2's launch(), except for how the results are collected.
        import submitit

        assert self.config is not None and len(job_overrides) > 0
        init_keys = {"submitit_folder", "max_num_timeout"}
        init_params = {"folder": self.params["submitit_folder"]}
        if "max_num_timeout" in self.params:
            init_params[f"{self._EXECUTOR}_max_num_timeout"] = self.params["max_num_timeout"]
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init_params)
        shared = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in shared else f"{self._EXECUTOR}_{k}": v
                                      for k, v in self.params.items() if k not in init_keys})

        log.info(f"Submitit '{self._EXECUTOR}' sweep output dir : {self.config.hydra.sweep.dir}")
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            sweep_dir.chmod(int(str(self.config.hydra.sweep.mode), 8))

        job_params = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            job_params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))
        jobs = executor.map_array(self, *zip(*job_params))
        return [self._result(job, overrides, idx)
                for job, (overrides, _, idx, _, _) in zip(jobs, job_params)]

    def _result(self, job: Any, overrides: list[str], idx: int) -> JobReturn:
        try:
            return job.results()[0]
        except Exception:  # noqa: BLE001 - submitit's UncompletedJobError/FailedJobError: no result came back
            state = job.state
            reason = f"{self._EXECUTOR} job {job.job_id} ended without a result (state {state})"
            if job.paths.stderr.is_file():
                reason += f"; its log: {job.paths.stderr}"
            log.error("job #%d (%s): %s", idx, " ".join(filter_overrides(overrides)), reason)
            status = "cancelled" if state.upper().startswith("CANCELLED") else "failed"
            job_dir = self._record(overrides, idx, status, reason)
            return JobReturn(overrides=overrides, working_dir=str(job_dir), status=JobStatus.COMPLETED,
                             _return_value=math.nan)

    def _record(self, overrides: list[str], idx: int, status: str, reason: str) -> Path:
        """Give a job that ended without a result what the sweep summary reads: its config and a status.

        Leaves a ``metrics.json`` the job wrote itself (e.g. ``interrupted``, with how to resume) alone.
        """
        from . import rundir

        assert self.hydra_context is not None and self.config is not None
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(cfg.hydra.job):
            cfg.hydra.job.num = idx
        job_dir = Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)
        if (job_dir / rundir.METRICS).is_file():
            return job_dir
        task_cfg: DictConfig = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
        if not (job_dir / rundir.CONFIG).is_file():  # the job never started
            atomic.write_text(job_dir / rundir.CONFIG, OmegaConf.to_yaml(task_cfg))
            atomic.write_text(job_dir / rundir.OVERRIDES, OmegaConf.to_yaml(OmegaConf.create(list(overrides))))
        rundir.write_status(job_dir, task_cfg, status, reason)
        return job_dir

