"""The one exception type a user is meant to see (a clear, one-line message), and how to shorten others."""


def first_line(e: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type name if it has none."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def squashed(e: BaseException, limit: int = 200) -> str:
    """An exception's whole message on one line (whitespace collapsed, cut to ``limit``), or its type name."""
    text = " ".join(str(e).split())
    return (text if len(text) <= limit else text[: limit - 1] + "…") or type(e).__name__


class AebenchError(Exception):
    """Bad input or an environment problem the user can fix.

    The message is printed as one line (``aebench: error: <message>``), with no
    traceback, and the process exits with :data:`EXIT_CODE`.  Every message says
    what is wrong and what would be right.
    """

    EXIT_CODE = 2


class ConfigError(AebenchError):
    """A configuration value is out of range or inconsistent."""


class DataError(AebenchError):
    """A dataset is missing, unreadable, corrupted or cannot be written."""


class CheckpointError(AebenchError):
    """A checkpoint cannot be resumed with this config or this aebench."""


class RunError(AebenchError):
    """A directory that cannot be loaded as a run: not a run, no checkpoint, damaged, incomplete, another version."""


class RunFailed(AebenchError):
    """The run started but cannot finish; its ``metrics.json`` records ``status: failed`` and why."""


class TrainingDiverged(RunFailed):
    """The training loss (or the weights) stopped being finite."""

    def __init__(self, epoch: int, what: str, lr: float, checkpoint: str | None):
        kept = f"the last finite checkpoint (epoch {epoch - 1}) is kept in {checkpoint}" if checkpoint else "no checkpoint was kept"
        super().__init__(f"training diverged in epoch {epoch}: {what} is not finite; "
                         f"try a smaller train.lr (this run: {lr:g}); {kept}")


class Interrupted(Exception):
    """Training stopped on SIGINT/SIGTERM after writing a resumable checkpoint."""

    def __init__(self, signum: int, run_dir: str, where: str):
        self.signum = signum
        super().__init__(f"interrupted by signal {signum} {where}; resume with: aebench resume={run_dir}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
