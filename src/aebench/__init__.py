"""aebench: what does an autoencoder learn? Pretrain, probe, plot, compare.

``aebench.load_run(run_dir)`` loads a finished run for use in Python (:mod:`aebench.api`); it is
imported on first use, so ``import aebench`` itself stays cheap.
"""

__version__ = "0.6.0"

_API = ("load_run", "Run", "RunError", "ImageError")


def __getattr__(name: str):
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'aebench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
