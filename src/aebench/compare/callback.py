"""The Hydra callback that ends every multirun (conf/config.yaml, ``hydra.callbacks.sweep_summary``): it compares
the sweep's jobs into the sweep directory and, where jobs did not complete or the comparison failed, ends the
``aebench -m`` process with one line and exit status 2.

Why the callback ends the process itself: Hydra turns an exception raised by a callback into a warning, and
gives the command nothing back from a multirun, so the verdict cannot travel as an exception or a return value.
``SystemExit`` passes through Hydra, and Hydra notifies ``on_multirun_end`` in reverse order, so this callback
(the first configured) runs after any other a user adds: nothing is left undone when it exits.  The verdict
stays readable as :attr:`SweepSummaryCallback.problem`, and :meth:`~SweepSummaryCallback.summarise` returns it
without exiting.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ..errors import AebenchError, first_line
from .groups import collect
from .report import format_table, write_report

log = logging.getLogger("aebench.compare")

COMPARISON_FAILED = ("the comparison of the sweep failed ({error}); every job's results are in its own directory "
                     "under {sweep}; try: aebench-compare {sweep}")
NOT_COMPLETED = ("{n} of {total} job(s) did not complete ({which}); the others' results and the reasons are in "
                 "{summary}")


class SweepSummaryCallback(Callback):
    """Hydra callback: at the end of a multirun, compare its jobs inside the sweep directory.

    With logger=mlflow the sweep is also one MLflow parent run (:mod:`aebench.tracking`): made
    before the first job, nesting every job's run, holding the comparison at the end.
    """

    def __init__(self) -> None:
        self.problem: str | None = None  # the verdict of the last summary: None, or why the sweep failed

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from .. import tracking

        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            tracking.start_sweep(config, sweep_dir)
        except AebenchError as e:
            # A logger that cannot start refuses the sweep before its first job.  Hydra would turn an
            # exception raised here into a warning and run the jobs anyway, so end the process now.
            try:
                sweep_dir.rmdir()  # only if still empty
            except OSError:
                pass
            _exit(str(e))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if sweep_dir.is_dir() and self.summarise(sweep_dir):
            _exit(self.problem)  # type: ignore[arg-type]

    def summarise(self, sweep_dir: Path) -> str | None:
        """Compare the sweep's jobs into ``sweep_dir``, print the table, close the MLflow sweep run; the problem
        (also kept as :attr:`problem`): None when every job completed."""
        from .. import tracking

        try:
            comparison = collect([sweep_dir])
            write_report(comparison, sweep_dir)
            print(format_table(comparison))
        except Exception as e:  # noqa: BLE001 - the jobs' own results are safe; a failed summary must not hide them
            log.error("the sweep's comparison failed: %s", first_line(e))
            tracking.end_sweep(sweep_dir, completed=False)
            self.problem = COMPARISON_FAILED.format(error=first_line(e), sweep=sweep_dir)
            return self.problem
        print(f"summary: {sweep_dir / 'summary.md'}")
        bad = [r for r in comparison.rows if not r.completed]
        tracking.end_sweep(sweep_dir, completed=not bad)
        self.problem = NOT_COMPLETED.format(n=len(bad), total=len(comparison.rows),
                                            which="; ".join(r.label for r in bad),
                                            summary=sweep_dir / "summary.md") if bad else None
        return self.problem


def _exit(problem: str) -> None:
    print(f"aebench: error: {problem}", file=sys.stderr)
    sys.exit(AebenchError.EXIT_CODE)
