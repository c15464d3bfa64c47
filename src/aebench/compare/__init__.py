"""Compare runs: one table and a few figures from any set of run or sweep directories.

Used two ways: by :class:`~aebench.compare.callback.SweepSummaryCallback` at the end of every Hydra
multirun (into the sweep directory), and by the ``aebench-compare`` command on existing directories
(several sweeps, partial sweeps and single runs mix).

A run is any folder with ``.hydra/config.yaml``; its numbers come from its ``metrics.json``.  A job
without one (killed hard, or still running) is listed with status ``incomplete``; a failed job with its
status and first error line; a run whose files cannot be read (invalid JSON or YAML, wrong types) as
``skipped`` with the reason, and the others are compared.

Noise (definitions in docs/compare.md; the statistics in :mod:`aebench.stats`): a seed group's means get a
95 % t-interval over its seeds; a single run's accuracies a 95 % bootstrap over the test images, from its
saved predictions (``probe.npz``).  ``--baseline`` sets every group against one, with the interval of the
difference (paired by seed, Welch, or a paired bootstrap for two single runs) and a verdict: better, worse
or within noise.

One module per step, data flowing down the list:

    rows.py         one run directory read into a :class:`Row` (through :mod:`aebench.rundir`'s readers)
    groups.py       :func:`collect`: every row labelled, and the seed groups (:class:`Group`, :class:`Comparison`)
    differences.py  a group against a baseline: the difference, its interval, the verdict; the best probe
    tables.py       numbers and tables as text (Markdown and the terminal's)
    figures.py      the comparison figures; reconstructions by :func:`aebench.load_run`
    report.py       :func:`write_report` (summary.csv, summary.md, groups.csv, differences.csv) and the prose
    command.py      the ``aebench-compare`` command (``python -m aebench.compare``)
    callback.py     the Hydra callback that ends every multirun with its comparison
"""

from .differences import BaselineError, Difference, difference, differences, resolve_baseline
from .figures import figure_points
from .groups import Comparison, Group, collect, group_by_seed
from .report import format_table, write_report
from .rows import Row, find_runs

__all__ = ["BaselineError", "Comparison", "Difference", "Group", "Row", "collect", "difference", "differences",
           "figure_points", "find_runs", "format_table", "group_by_seed", "resolve_baseline", "write_report"]
