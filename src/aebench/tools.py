"""The console scripts of :mod:`aebench.api`: ``aebench-encode`` and ``aebench-export`` (thin: parse, call, report).

Every error is one line (``aebench-encode: error: ...``), exit status 2, no traceback, and no output
file half-written (outputs are written atomically).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import AebenchError


def _one_line_errors(prog: str, body: Callable[[argparse.Namespace], None], parser: argparse.ArgumentParser,
                     argv: list[str] | None) -> None:
    args = parser.parse_args(argv)  # argparse's own errors: usage + one line, exit 2
    try:
        body(args)
    except AebenchError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        sys.exit(AebenchError.EXIT_CODE)
    except OSError as e:
        print(f"{prog}: error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr)
        sys.exit(AebenchError.EXIT_CODE)
    except KeyboardInterrupt:
        print(f"{prog}: stopped by Ctrl-C; nothing was written", file=sys.stderr)
        sys.exit(130)


# --------------------------------------------------------------------------------------------- aebench-encode
def encode_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="aebench-encode",
        description="Encode images with a trained run: codes, labels and class predictions where known, into one .npz.",
        epilog="INPUT: an image folder (searched recursively) or image files; a dataset name (mnist, fashion_mnist, "
               "...: its test split; mnist:train for the train split); or a .npy array of images "
               "(uint8 0-255 or float 0-1). Output keys: codes, and where known labels, pred, classes, files.")
    p.add_argument("run", help="a run directory (or one job of a sweep)")
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument("--out", required=True, help="the .npz file to write")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    p.add_argument("--allow-incomplete", action="store_true", help="load a run that did not complete from its last checkpoint")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="a progress bar (default: only on a terminal)")
    return p


def read_input(text: str) -> dict[str, Any]:
    """One INPUT as {"images": what Run.encode takes, "labels": int64 array or None, "files": list or None}."""
    from . import api, data

    path = Path(text)
    if path.suffix == ".npy" and path.is_file():
        try:
            return {"images": np.load(path, mmap_mode="r", allow_pickle=False), "labels": None, "files": None}
        except (ValueError, OSError) as e:
            raise api.ImageError(f"{path} cannot be read as a .npy array ({e}); give a numpy array of images") from None
    if path.exists():
        files = api.image_files(path)
        return {"images": files, "labels": None, "files": [str(f) for f in files]}
    name, _, split = text.partition(":")
    if name in data.SOURCES and name != "folder":
        x, y = api.dataset_arrays(name, split or "test")
        return {"images": x, "labels": y, "files": None}
    raise api.ImageError(f"INPUT '{text}' is neither a file, a folder nor a dataset; give an image folder, image files, "
                         f"a .npy array, or one of: {', '.join(n for n in data.SOURCES if n != 'folder')} (':train' for its train split)")


def encode_command(args: argparse.Namespace) -> None:
    from . import api, atomic

    out = Path(args.out)
    if out.suffix != ".npz":
        raise api.ImageError(f"--out {out}: give a file name ending in .npz")
    run = api.load_run(args.run, device=args.device, allow_incomplete=args.allow_incomplete)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    inputs = [read_input(text) for text in args.inputs]
    codes = np.concatenate([run.encode(i["images"], progress=progress).numpy() for i in inputs])
    result: dict[str, np.ndarray] = {"codes": codes}
    if all(i["labels"] is not None for i in inputs):
        result["labels"] = np.concatenate([i["labels"] for i in inputs]).astype(np.int64)
    if run.classes is not None:
        result["pred"] = run.predict(codes).numpy().astype(np.int64)
        result["classes"] = np.array(run.classes, dtype=np.str_)
    if all(i["files"] is not None for i in inputs):
        result["files"] = np.array([f for i in inputs for f in i["files"]], dtype=np.str_)
    with atomic.atomic_path(out) as tmp, open(tmp, "wb") as f:
        np.savez(f, **result)
    known = ", ".join(k for k in result if k != "codes")
    print(f"{len(codes)} codes of size {codes.shape[1]} ({known or 'nothing else known'}) -> {out}", file=sys.stderr)


def encode_main(argv: list[str] | None = None) -> None:
    _one_line_errors("aebench-encode", encode_command, encode_parser(), argv)


# --------------------------------------------------------------------------------------------- aebench-export
def export_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="aebench-export",
        description="Write a run's encoder and decoder for use without aebench (ONNX or torch.export), "
                    "checked against the model, with a JSON sidecar (model.json) that says how to feed them.")
    p.add_argument("run", help="a run directory (or one job of a sweep)")
    p.add_argument("--format", required=True, help="onnx or pt2")
    p.add_argument("--out", default=None, help="the folder to write into (default: RUN/export/FORMAT)")
    p.add_argument("--allow-incomplete", action="store_true", help="export a run that did not complete from its last checkpoint")
    return p


def export_command(args: argparse.Namespace) -> None:
    from . import api, export

    export.check_format(args.format)  # before any loading
    run = api.load_run(args.run, device="cpu", allow_incomplete=args.allow_incomplete)
    sidecar = export.export(run, args.format, args.out)
    out = Path(args.out) if args.out else run.path / "export" / args.format
    diffs = ", ".join(f"{k} {v['max_abs_diff']:.1e}" for k, v in sidecar["checked"].items())
    print(f"wrote {out}/encoder.{args.format}, decoder.{args.format} and {export.SIDECAR} "
          f"(checked on {export.CHECK_IMAGES} images: largest difference {diffs})", file=sys.stderr)


def export_main(argv: list[str] | None = None) -> None:
    _one_line_errors("aebench-export", export_command, export_parser(), argv)
