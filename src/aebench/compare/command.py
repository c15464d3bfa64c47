"""The ``aebench-compare`` command (also ``python -m aebench.compare``): a report from run or sweep directories.

Exit status 0 when something was compared; 2, with one line, when nothing could be (no runs, every run
unreadable, no job completed) or ``--baseline`` names no group or several.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import sys
from pathlib import Path
from typing import NoReturn

from .. import rundir
from .differences import BaselineError, resolve_baseline
from .groups import collect, warn_skipped
from .report import format_table, write_report


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="aebench-compare",
        description="Compare aebench runs: summary.csv, summary.md and figures from run or sweep directories.",
    )
    p.add_argument("dirs", nargs="+", type=Path, help="run or sweep directories (mixing works)")
    p.add_argument("--out", type=Path, default=None,
                   help="where to write the report (default: the directory itself when one is given, "
                        "else comparisons/<date>_<time>)")
    p.add_argument("--baseline", default=None, metavar="GROUP_OR_JOB",
                   help="set every group against this one (a group's name, or a job's number, label or "
                        "directory name): the difference, its 95 %% interval and better / worse / within noise")
    p.add_argument("--no-reconstructions", action="store_true", help="skip the figure that reloads every model")
    return p


def fail(message: str) -> NoReturn:
    print(f"aebench-compare: error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    missing = [str(d) for d in args.dirs if not d.is_dir()]
    if missing:
        fail(f"not a directory: {', '.join(missing)}; give run or sweep directories")
    try:
        comparison = collect(args.dirs, warn=False)
    except OSError as e:
        fail(str(e))
    rows = comparison.rows
    if not rows:
        fail(f"no aebench runs (folders with {rundir.CONFIG}) under {', '.join(map(str, args.dirs))}")
    if all(r.status == "skipped" for r in rows):
        fail(f"nothing to compare: every run's files are unreadable ({'; '.join(f'{r.job}: {r.error}' for r in rows)})")
    warn_skipped(rows)
    try:
        baseline = resolve_baseline(args.baseline, comparison) if args.baseline is not None else None
    except BaselineError as e:  # refused before anything is written
        fail(str(e))
    if args.out is not None:
        out = args.out
    elif len(args.dirs) == 1:
        out = args.dirs[0]
    else:
        out = Path(rundir.unique_dir(f"comparisons/{datetime.datetime.now():%Y-%m-%d_%H-%M-%S}"))
    write_report(comparison, out, baseline, reconstructions=not args.no_reconstructions)
    print(format_table(comparison, baseline))
    print(f"report: {out / 'summary.md'}")
    if not comparison.done:
        fail(f"nothing to compare: no job completed (the report lists them: {out / 'summary.md'})")
