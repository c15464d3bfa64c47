"""Where runs, sweeps and comparisons are written: directory names that never collide.

Shared by :mod:`aebench.cli` (Hydra's resolvers for ``hydra.run.dir`` and
``hydra.sweep.*``) and :mod:`aebench.compare` (``comparisons/<date>_<time>``),
so it sits below both.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


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
    return ".hydra/resumed" if resume else ".hydra"
