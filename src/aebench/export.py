"""Export a run's encoder and decoder for use without aebench: ONNX, or a ``torch.export`` program (.pt2).

Both take and give flat float32 arrays, as the models do: the encoder reads images (N, C*H*W) in
[0, 1] (uint8 pixels / 255, channel planes then rows then columns) and gives the code (N, latent);
a VAE's encoder gives two outputs, ``mu`` (what the probe reads) and ``logvar``.  The decoder reads
codes (N, latent) and gives images (N, C*H*W) in [0, 1].  The batch size N is free.

Each file is checked after it is written: ONNX by running it with onnxruntime, .pt2 by loading it
back, both against the PyTorch model on the same images (largest absolute difference <= 1e-4, or
the export is refused).  A JSON sidecar (``model.json``) says all of the above.  ONNX needs the
``export`` extra: ``pip install 'aebench[export]'``.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import __version__, atomic
from .errors import AebenchError, squashed

FORMATS = ("onnx", "pt2")
SIDECAR = "model.json"
SIDECAR_FORMAT = 1
TOLERANCE = 1e-4  # largest absolute difference allowed between the exported and the PyTorch model
CHECK_IMAGES = 64


class ExportError(AebenchError):
    """A format that is not offered, a missing optional dependency, or an export that does not match its model."""


class Encoder(nn.Module):
    """Images (N, C*H*W) -> code (N, latent); a VAE: (mu, logvar)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> Any:
        if hasattr(self.model, "posterior"):
            return self.model.posterior(images)
        return self.model.encode(images)


class Decoder(nn.Module):
    """Codes (N, latent) -> images (N, C*H*W) in [0, 1]."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.model.decode(codes)


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format '{fmt}'; choose one of: {', '.join(FORMATS)}")
    return fmt


def export(run: Any, fmt: str, out: str | Path | None = None) -> dict[str, Any]:
    """Write ``run``'s (an :class:`aebench.api.Run`) encoder and decoder as ``fmt`` into ``out``
    (default ``<run>/export/<fmt>``), check them, write the sidecar; return the sidecar."""
    check_format(fmt)
    if fmt == "onnx":
        _need("onnx", "onnxscript", "onnxruntime")
    out = Path(out) if out is not None else run.path / "export" / fmt
    out.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(run.model).to("cpu", torch.float32).to(memory_format=torch.contiguous_format).eval()
    vae = hasattr(model, "posterior")
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(CHECK_IMAGES, run.preprocessing.pixels, generator=gen)
    codes = torch.randn(CHECK_IMAGES, run.latent, generator=gen)
    parts = {
        "encoder": (Encoder(model).eval(), images, "images", ["mu", "logvar"] if vae else ["code"]),
        "decoder": (Decoder(model).eval(), codes, "codes", ["images"]),
    }
    checked = {}
    for name, (module, example, input_name, output_names) in parts.items():
        target = out / f"{name}.{fmt}"
        writer = _write_onnx if fmt == "onnx" else _write_pt2
        with atomic.atomic_path(target) as tmp:
            writer(module, example, input_name, output_names, tmp)
            checked[name] = check(module, tmp, fmt, example)
    c, h, w = run.image_shape
    sidecar = {
        "format": SIDECAR_FORMAT,
        "export_format": fmt,
        "aebench_version": __version__,
        "run": str(run.path),
        "model": run.kind,
        "arch": str(run.config.arch.name),
        "code_size": run.latent,
        "input": {
            "name": "images", "shape": ["N", c * h * w], "dtype": "float32", "range": [0.0, 1.0],
            "scaling": "uint8 pixels / 255", "layout": "flat (N, C*H*W): channel planes, each row by row",
            "image_shape": [c, h, w], "channels": "grey" if c == 1 else "RGB",
            "image_size": run.preprocessing.image_size,
            "preprocessing": run.preprocessing.describe(),
        },
        "encoder": {
            "file": f"encoder.{fmt}", "input": "images",
            "outputs": [{"name": n, "shape": ["N", run.latent], "dtype": "float32"} for n in parts["encoder"][3]],
            "code": "mu" if vae else "code",
            "note": ("a VAE: output 0 is mu, the posterior mean (what aebench's probe reads), output 1 its log-variance"
                     if vae else "the code aebench's probe reads"),
        },
        "decoder": {
            "file": f"decoder.{fmt}", "input": {"name": "codes", "shape": ["N", run.latent], "dtype": "float32"},
            "outputs": [{"name": "images", "shape": ["N", c * h * w], "dtype": "float32", "range": [0.0, 1.0]}],
        },
        "classes": list(run.classes) if run.classes is not None else None,
        "checked": {name: {"by": "onnxruntime" if fmt == "onnx" else "torch.export.load", "images": CHECK_IMAGES,
                           "max_abs_diff": diff, "tolerance": TOLERANCE} for name, diff in checked.items()},
    }
    atomic.write_text(out / SIDECAR, json.dumps(sidecar, indent=2) + "\n")
    return sidecar


def _need(*modules: str) -> None:
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ExportError(f"--format onnx needs {', '.join(missing)}: pip install 'aebench[export]'")


def _write_onnx(module: nn.Module, example: torch.Tensor, input_name: str, output_names: list[str], path: Path) -> None:
    import contextlib
    import io
    import warnings

    import logging

    quiet = [logging.getLogger(n) for n in ("onnxscript", "onnx_ir", "torch.onnx")]  # the optimiser's INFO lines
    levels = [q.level for q in quiet]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.ExitStack() as restore:
        warnings.simplefilter("ignore")
        for q, level in zip(quiet, levels):
            q.setLevel(logging.WARNING)
            restore.callback(q.setLevel, level)
        try:
            program = torch.onnx.export(module, (example,), dynamo=True, input_names=[input_name],
                                        output_names=output_names, dynamic_shapes=({0: torch.export.Dim("batch")},),
                                        verbose=False)
        except Exception as e:  # noqa: BLE001 - the exporter's errors are long; one line of it
            raise ExportError(f"the ONNX exporter failed ({type(e).__name__}: {squashed(e, 160)})") from None
        program.save(str(path), external_data=False)


def _write_pt2(module: nn.Module, example: torch.Tensor, input_name: str, output_names: list[str], path: Path) -> None:
    try:
        program = torch.export.export(module, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"torch.export failed ({type(e).__name__}: {squashed(e, 160)})") from None
    with open(path, "wb") as f:  # a file object: torch.export wants names ending in .pt2, the temporary one does not
        torch.export.save(program, f)


def run_exported(path: Path, fmt: str, x: torch.Tensor) -> list[np.ndarray]:
    """The outputs of an exported file on ``x`` (float32), as numpy arrays."""
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with open(path, "rb") as f:
        program = torch.export.load(f)
    with torch.no_grad():
        out = program.module()(x)
    return [t.numpy() for t in (out if isinstance(out, (tuple, list)) else (out,))]


@torch.no_grad()
def check(module: nn.Module, path: Path, fmt: str, x: torch.Tensor) -> float:
    """Largest absolute difference between the exported file and ``module`` on ``x``; refuses one above TOLERANCE."""
    expected = module(x)
    expected = [t.numpy() for t in (expected if isinstance(expected, (tuple, list)) else (expected,))]
    got = run_exported(path, fmt, x)
    if len(got) != len(expected) or any(g.shape != e.shape for g, e in zip(got, expected)):
        raise ExportError(f"the exported {fmt} file gives outputs of shapes {[g.shape for g in got]}, "
                          f"the model {[e.shape for e in expected]}; the file was not kept")
    diff = max(float(np.abs(g - e).max()) if e.size else 0.0 for g, e in zip(got, expected))
    if not diff <= TOLERANCE:
        raise ExportError(f"the exported {fmt} file differs from the model by {diff:.3g} (> {TOLERANCE:g}); the file was not kept")
    return diff
