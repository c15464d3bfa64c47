"""Which precision a run trains in: ``train.precision=auto`` resolved by a fixed rule per kind of device.

The rule (the measurements behind it: docs/speed.md, "Precision"):

- a CPU with bf16 units (AVX512_BF16 or AMX): bf16 autocast, which roughly halves the MLP's training step
  there with no measurable loss of probe quality over seeds;
- any other CPU: fp32, since bf16 products are emulated there and many times slower;
- a GPU: fp32, since the default models are small enough that a step is bound by kernel launches, and bf16
  measured no quicker there.

``fp32`` and ``bf16`` can still be forced; forcing bf16 on a CPU without the units warns that it will be slow.
A resumed run keeps the precision it started with (the checkpoint records it), on whatever machine it resumes.
The weights stay float32 whatever the step uses: checkpoints, ``load_run``, encoding and export are float32.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

CHOICES = ("auto", "fp32", "bf16")
CPUINFO = Path("/proc/cpuinfo")
# The CPU flags (as /proc/cpuinfo names them) that mean bf16 products run in hardware.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class Precision:
    """The precision a run trains in, and why (metrics.json's ``precision``)."""

    used: str  # fp32 | bf16
    reason: str  # "auto: avx512_bf16", "auto: no bf16 units", "auto: cuda", "forced", "resumed (auto: ...)"

    def as_dict(self) -> dict[str, str]:
        return {"used": self.used, "reason": self.reason}


def cpu_bf16_units() -> str | None:
    """The bf16 units of this CPU (``"avx512_bf16"``, ``"amx"``), or None where it has none.

    torch's own checks are private functions: each is guarded, and where they are missing (or fail) the
    CPU's flags in /proc/cpuinfo answer instead."""
    for name, check in (("amx", "_is_amx_tile_supported"), ("avx512_bf16", "_is_avx512_bf16_supported")):
        fn = getattr(torch.cpu, check, None)
        if fn is None:
            break
        try:
            if fn():
                return name
        except Exception:  # noqa: BLE001 - a private helper that changed: fall back to the flags
            break
    else:
        return None
    return _units_from_flags(_cpu_flags())


def _cpu_flags() -> set[str]:
    try:
        text = CPUINFO.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def _units_from_flags(flags: set[str]) -> str | None:
    if "amx_bf16" in flags or "amx_tile" in flags:
        return "amx"
    return "avx512_bf16" if "avx512_bf16" in flags else None


def resolve(asked: str, device: torch.device, checkpoint: dict[str, Any] | None = None) -> Precision:
    """The precision for ``train.precision=asked`` on ``device``; a checkpoint's own where the run resumes."""
    saved = (checkpoint or {}).get("precision")
    if saved:  # resumed or requeued: go on as it started, whatever this machine would choose
        reason = saved["reason"] if saved["reason"].startswith("resumed") else f"resumed ({saved['reason']})"
        return Precision(saved["used"], reason)
    if asked != "auto":
        if asked == "bf16" and device.type == "cpu" and cpu_bf16_units() is None:
            log.warning("train.precision=bf16 on a CPU without bf16 units (no avx512_bf16 or amx): bf16 is emulated "
                        "here and many times slower than fp32; use train.precision=auto or fp32")
        return Precision(asked, "forced")
    if device.type != "cpu":
        return Precision("fp32", f"auto: {device.type}")
    units = cpu_bf16_units()
    return Precision("bf16", f"auto: {units}") if units else Precision("fp32", "auto: no bf16 units")
