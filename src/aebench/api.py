"""Use what a run learned: load a run directory, encode new images, decode codes, classify, export.

    import aebench
    run = aebench.load_run("outputs/2026-11-29/10-00-00")      # a run, or one job of a sweep
    codes = run.encode(images)       # uint8 0-255 or float 0-1 arrays/tensors, PIL images, files, folders
    run.classify(images)             # the run's own final linear probe (its standardisation included)

Images are brought to the run's shape exactly as its data were (:mod:`aebench.data.images`: channels,
size; uint8 / 255), then encoded in batches of :func:`aebench.train.eval_batch` (10 000 for MNIST) by
the training loop's own :func:`~aebench.train.encode_all`, with the model built by
:func:`aebench.models.from_config`: on a CPU the codes are the ones the run's probe read, bit for bit.

Every refusal is one line (a :class:`RunError` or :class:`ImageError`, both :class:`AebenchError`).
Runs written by aebench 0.3.0 (no ``probe.npz``, no ``data`` in metrics.json) load too: their probe is
the checkpoint's last one, with the standardisation recomputed from the run's train codes
(:attr:`Run.probe_source` says which).  See docs/api.md.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from . import __version__, data, models, probe, rundir
from .errors import AebenchError, RunError, squashed
from .train import encode_all, eval_batch

log = logging.getLogger(__name__)

__all__ = ["ImageError", "Preprocessing", "Probe", "Run", "RunError", "image_files", "load_run"]


class ImageError(AebenchError):
    """Images that cannot be brought to a run's shape and scaling."""


@dataclass(frozen=True)
class Preprocessing:
    """How the run's images were prepared: what new images are brought to."""

    image_shape: tuple[int, int, int]  # (channels, height, width)
    image_size: int | None  # shorter side resized to this, centre cropped (None: images used as they are)

    @property
    def channels(self) -> int:
        return self.image_shape[0]

    @property
    def pixels(self) -> int:
        return int(np.prod(self.image_shape))

    def describe(self) -> str:
        c, h, w = self.image_shape
        kind = "grey" if c == 1 else "RGB"
        how = f"resized to {self.image_size} px on the shorter side and centre-cropped" if self.image_size else "not resized"
        return f"{h}x{w} {kind} images ({how})"


@dataclass
class Probe:
    """A linear probe: z = (codes - mean) * scale (float32), then argmax of z @ weight + bias in weight's dtype."""

    weight: torch.Tensor  # (features, classes)
    bias: torch.Tensor  # (classes,)
    mean: torch.Tensor  # (features,) float32
    scale: torch.Tensor  # (features,) float32
    source: str  # where it came from (probe.npz, the checkpoint, a re-fit)


# --------------------------------------------------------------------------------------------- loading
def load_run(path: str | Path, device: str | torch.device = "cpu", allow_incomplete: bool = False) -> "Run":
    """The run in ``path`` (a run directory, or one job of a sweep), its model in eval mode on ``device``.

    ``device``: "cpu" (the default: the codes the run computed on a CPU, bit for bit), "cuda", "cuda:N" or "auto".
    ``allow_incomplete``: load a run that did not complete (interrupted, failed) from its last checkpoint.
    """
    from . import config

    run_dir = Path(path).expanduser()
    _check_is_run(run_dir)
    try:
        metrics = rundir.read_metrics(run_dir)
    except rundir.Unreadable as e:
        raise RunError(f"{run_dir / rundir.METRICS} cannot be read ({e}); it is damaged") from None
    ckpt_path = run_dir / rundir.CHECKPOINT
    if not ckpt_path.is_file():
        raise RunError(f"run {run_dir} has no checkpoint ({rundir.CHECKPOINT}): nothing to load "
                       "(it stopped before its first epoch ended, or the file was removed); run it again")
    # The forgiving read: resuming refuses other versions (training goes on with this code); using the weights does not.
    ckpt = rundir.read_checkpoint(ckpt_path, strict=False)
    version = str(ckpt.get("aebench_version", "unknown"))
    cfg = rundir.config_of(ckpt, strict=False)
    status = metrics.get("status") if metrics else None
    if status != "completed" and not allow_incomplete:
        what = f"status: {status}" if status else f"no {rundir.METRICS}"
        raise RunError(f"run {run_dir} did not complete ({what}; checkpoint after epoch {ckpt.get('epoch', '?')} of "
                       f"{cfg.get('epochs', '?')}); load_run(..., allow_incomplete=True) takes its last checkpoint, "
                       f"or finish it: aebench resume={run_dir}")
    recorded = (metrics or {}).get("data") or ckpt.get("data") or {}  # the checkpoint's: also for runs that did not complete
    prep = _preprocessing(run_dir, cfg, recorded)
    device = config.resolve_device(str(device)) if not isinstance(device, torch.device) else device
    try:
        model = models.from_config(cfg, prep.image_shape, dataset_size=recorded.get("pretrain_images"))
        model.load_state_dict(ckpt["model"])
    except (AebenchError, RuntimeError, KeyError, ValueError, TypeError) as e:
        raise RunError(f"run {run_dir} was written by aebench {version} and cannot be loaded by aebench {__version__}: "
                       f"its model does not fit ({squashed(e, 160)}); load it with aebench {version}") from None
    model.to(device).eval()
    return Run(run_dir, cfg, metrics or {}, list(ckpt.get("history") or []), model, device, prep, version,
               _classes(cfg, recorded), ckpt)


def _check_is_run(run_dir: Path) -> None:
    if not run_dir.is_dir():
        raise RunError(f"{run_dir} is not a directory; give a run's directory (outputs/<date>/<time>, "
                       "or a sweep job: multirun/<date>/<time>/<n>)")
    if rundir.is_run(run_dir):
        return
    jobs = sorted(p.name for p in run_dir.iterdir() if p.is_dir() and rundir.is_run(p))
    if jobs:
        raise RunError(f"{run_dir} is a sweep, not a run; give one of its jobs, e.g. {run_dir / jobs[0]}")
    raise RunError(f"{run_dir} is not an aebench run: no {rundir.METRICS}, {rundir.CHECKPOINT} or .hydra/ there; "
                   "give a run's directory (outputs/<date>/<time>, or a sweep job: multirun/<date>/<time>/<n>)")


def _preprocessing(run_dir: Path, cfg: DictConfig, recorded: dict[str, Any]) -> Preprocessing:
    """How the run's images were prepared, from what its metrics.json or checkpoint recorded (``data``)."""
    if recorded.get("image_shape"):
        c, h, w = (int(s) for s in recorded["image_shape"])
        return Preprocessing((c, h, w), recorded.get("image_size"))
    name = cfg.data.name
    if name in data.SPECS:  # runs of aebench 0.3.0: MNIST-like sets, used as they are
        return Preprocessing(tuple(data.spec_for(name).image_shape), None)  # type: ignore[arg-type]
    size, channels = cfg.data.get("image_size"), str(cfg.data.get("channels"))
    if size and channels in ("1", "3"):
        return Preprocessing((int(channels), int(size), int(size)), int(size))
    raise RunError(f"run {run_dir} does not record its images' shape (neither {rundir.METRICS} nor its checkpoint "
                   "has 'data'); load it with the aebench that wrote it")


def _classes(cfg: DictConfig, recorded: dict[str, Any]) -> tuple[str, ...] | None:
    if "classes" in recorded:
        return tuple(recorded["classes"]) if recorded["classes"] is not None else None
    if cfg.data.name in data.SPECS:
        return tuple(data.spec_for(cfg.data.name).classes)
    return None


# --------------------------------------------------------------------------------------------- the run
class Run:
    """A trained run: its config, metrics, history and model, and what can be done with them.

    ``encode``/``decode``/``reconstruct``/``classify`` take images in any of the forms
    :meth:`encode` lists and return CPU tensors.
    """

    def __init__(self, path: Path, cfg: DictConfig, metrics: dict[str, Any], history: list[dict[str, Any]],
                 model: torch.nn.Module, device: torch.device, preprocessing: Preprocessing, version: str,
                 classes: tuple[str, ...] | None, checkpoint: dict[str, Any]):
        self.path = path
        self.config = cfg
        self.metrics = metrics
        self.history = history
        self.model = model
        self.device = device
        self.preprocessing = preprocessing
        self.version = version  # the aebench that wrote the run
        self.classes = classes
        self.epoch = int(checkpoint.get("epoch", len(history)))
        # the accuracy curve's last fit: under "callbacks" since 0.5, "epoch_metrics" in 0.3 and 0.4 checkpoints
        saved_curve = (checkpoint.get("callbacks") or {}).get("probe") or checkpoint.get("epoch_metrics") or {}
        self._last_probe = saved_curve.get("init")
        self._probe: Probe | None = None

    def __repr__(self) -> str:
        return (f"Run({str(self.path)!r}: {self.kind} on {self.config.arch.name}, latent {self.latent}, "
                f"{self.preprocessing.describe()}, epoch {self.epoch}, aebench {self.version})")

    @property
    def kind(self) -> str:
        return str(self.config.model.name)

    @property
    def latent(self) -> int:
        return int(self.config.latent)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.preprocessing.image_shape

    # ----------------------------------------------------------------------------------- images in
    def images(self, images: Any) -> "Images":
        """``images`` as a sequence of batches in the run's shape (what :meth:`encode` reads)."""
        return Images.of(images, self.preprocessing)

    @torch.no_grad()
    def encode(self, images: Any, *, sample: bool = False, generator: torch.Generator | None = None,
               seed: int | None = None, progress: bool = False) -> torch.Tensor:
        """Codes (N, latent), float32 on the CPU: the AE's z, the VAE's mu (what the probe reads).

        ``images``: a tensor or numpy array, uint8 0-255 or float 0-1, of shape (N, H, W) (grey),
        (N, C, H, W), (N, H, W, C) or flat (N, C*H*W); a PIL image or a list of them; a path to an image
        file or a folder of images (searched recursively, sorted), or a list of paths.  Files and PIL
        images are converted and resized as the run's data were; arrays must already have its shape.
        ``sample=True`` (VAE): a draw z = mu + sigma * eps instead, from ``generator`` (or one seeded with ``seed``).
        """
        source = self.images(images)
        if sample:
            if not hasattr(self.model, "posterior"):
                raise ImageError(f"sample=True draws from a VAE's posterior; this run's model is '{self.kind}', "
                                 "whose code is deterministic: leave sample out")
            if generator is None:
                generator = torch.Generator(device=self.device)
                if seed is not None:
                    generator.manual_seed(seed)
                else:
                    generator.seed()
        parts = []
        for x in source.batches(self.device, progress):
            if sample:
                parts.append(self.model.draw(*self.model.posterior(x), generator).float().cpu())
            else:
                parts.append(encode_all(self.model, x, batch=len(x)).cpu())
        return torch.cat(parts) if parts else torch.zeros(0, self.latent)

    @torch.no_grad()
    def decode(self, codes: Any) -> torch.Tensor:
        """Images (N, C, H, W) in [0, 1], float32 on the CPU, from codes (N, latent) (tensor or array)."""
        z = torch.as_tensor(np.asarray(codes) if not isinstance(codes, torch.Tensor) else codes).float()
        if z.ndim != 2 or z.shape[1] != self.latent:
            raise ImageError(f"codes of shape {tuple(z.shape)} do not fit this run: give (N, {self.latent}) codes")
        step = eval_batch(self.preprocessing.pixels)
        parts = [self.model.decode(z[i : i + step].to(self.device)).float().cpu() for i in range(0, len(z), step)]
        out = torch.cat(parts) if parts else torch.zeros(0, self.preprocessing.pixels)
        return out.reshape(-1, *self.image_shape)

    @torch.no_grad()
    def reconstruct(self, images: Any, progress: bool = False) -> torch.Tensor:
        """``decode(encode(images))``: images (N, C, H, W) in [0, 1] (a VAE decodes its mu)."""
        return self.decode(self.encode(images, progress=progress))

    # ----------------------------------------------------------------------------------- the probe
    @property
    def probe(self) -> Probe:
        """The run's final linear probe (loaded, or for older runs rebuilt, on first use)."""
        if self._probe is None:
            self._probe = self._load_probe()
        return self._probe

    @property
    def probe_source(self) -> str:
        return self.probe.source

    def standardise(self, codes: Any) -> torch.Tensor:
        """Codes as the probe reads them: z = (codes - mean) * scale, float32, the train codes' statistics."""
        p = self.probe
        return probe.apply_standardisation(torch.as_tensor(np.asarray(codes) if not isinstance(codes, torch.Tensor)
                                                           else codes), p.mean, p.scale)

    def predict(self, codes: Any) -> torch.Tensor:
        """Class indices (int64) the probe gives codes (N, latent)."""
        p = self.probe
        return probe.predict(self.standardise(codes), p.weight, p.bias)

    def classify(self, images: Any, names: bool = False, progress: bool = False) -> torch.Tensor | list[str]:
        """Class indices (int64, into :attr:`classes`) of images, by the run's own final probe; ``names``: class names."""
        pred = self.predict(self.encode(images, progress=progress))
        return [self.classes[i] for i in pred.tolist()] if names else pred  # type: ignore[index]

    def _load_probe(self) -> Probe:
        if self.classes is None:
            raise RunError(f"run {self.path} has no classes (its images had no labels), so it has no probe to classify with")
        try:
            arrays = rundir.read_probe(self.path)
        except rundir.Unreadable as e:
            raise RunError(str(e)) from None
        if arrays is not None:
            t = {k: torch.from_numpy(v) for k, v in arrays.items()}
            return Probe(t["weight"], t["bias"], t["mean"].float(), t["scale"].float(), f"{rundir.PROBE}: the run's final probe")
        train_x, train_y = self.dataset("train")
        train_codes = self.encode(train_x)
        mean, scale = probe.standardisation(train_codes)
        n = len(train_codes)
        if self._last_probe is not None:
            weight, bias = (t.detach().float().cpu() for t in self._last_probe)
            source = (f"the checkpoint's last probe (epoch {self.epoch}, float32), standardised with the {n} train codes "
                      f"recomputed (aebench {self.version} saved no {rundir.PROBE})")
        else:
            p = self.config.probe
            z = probe.apply_standardisation(train_codes, mean, scale)
            y = torch.from_numpy(train_y)
            fit = probe.fit_standardised(z, y, z[:1], y[:1], len(self.classes), p.l2, p.tol, p.max_iter)
            weight, bias = fit.exact_weight, fit.exact_bias
            source = (f"re-fitted on the {n} train codes with the run's probe settings "
                      f"(the run saved no probe: no {rundir.PROBE}, none in its checkpoint)")
        log.warning("run %s: classifying with %s", self.path, source)
        return Probe(weight, bias, mean, scale, source)

    # ----------------------------------------------------------------------------------- its data
    def dataset(self, split: str = "test") -> tuple[np.ndarray, np.ndarray | None]:
        """The run's own images of ``split`` ("train" or "test", with the run's subsets) as uint8 (N, C, H, W), and labels."""
        return dataset_arrays(self.config.data, split)


# --------------------------------------------------------------------------------------------- data access
# Everything that reads a dataset or an image file is here, in a few small functions.
def dataset_arrays(data_cfg: DictConfig | str, split: str = "test") -> tuple[np.ndarray, np.ndarray | None]:
    """A dataset's ``split`` as uint8 images (N, C, H, W) and int64 labels (None without labels).

    ``data_cfg``: a run's ``data`` config (its subsets apply), or a dataset name (the whole split).
    """
    if split not in ("train", "test"):
        raise ImageError(f"unknown split '{split}'; choose train or test")
    cfg = data.as_config(data_cfg)
    arrays = data.open_arrays(cfg, data.resolve_root(cfg.root), (split,))
    x, y = arrays.splits[split]
    return x, (np.asarray(y, dtype=np.int64) if y is not None else None)


def image_files(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    """Image files of ``paths``: files as given, folders searched recursively (sorted by path)."""
    from .data import images as image_io

    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and image_io.is_image(f))
            if not found:
                raise ImageError(f"no image files in {p} (looked for {', '.join(image_io.IMAGE_SUFFIXES)})")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise ImageError(f"{p} does not exist; give image files or folders of them")
    return files


class Images:
    """Images of some form, handed out in batches of float32 (n, C*H*W) in [0, 1] in a run's shape."""

    def __init__(self, n: int, read: Any, prep: Preprocessing):
        self.n, self._read, self.prep = n, read, prep  # read(start, stop) -> uint8/float array or tensor (n, C, H, W)

    def __len__(self) -> int:
        return self.n

    @classmethod
    def of(cls, images: Any, prep: Preprocessing) -> "Images":
        if isinstance(images, Images):
            return images
        if isinstance(images, (str, Path)) or (isinstance(images, (list, tuple)) and images
                                               and all(isinstance(i, (str, Path)) for i in images)):
            files = image_files(images)
            return cls(len(files), lambda a, b: _read_files(files[a:b], prep), prep)
        if _is_pil(images) or (isinstance(images, (list, tuple)) and images and all(_is_pil(i) for i in images)):
            pictures = [images] if _is_pil(images) else list(images)
            return cls(len(pictures), lambda a, b: _read_pil(pictures[a:b], a, prep), prep)
        if isinstance(images, (np.ndarray, torch.Tensor)):
            return cls.of_array(images, prep)
        if isinstance(images, (list, tuple)) and not images:
            raise ImageError("no images given (an empty list)")
        raise ImageError(f"cannot read images from a {type(images).__name__}; give a tensor or numpy array "
                         "(uint8 0-255 or float 0-1), PIL images, or paths to image files or folders")

    @classmethod
    def of_array(cls, x: np.ndarray | torch.Tensor, prep: Preprocessing) -> "Images":
        c, h, w = prep.image_shape
        shape = tuple(x.shape)
        if len(shape) == 4 and shape[1:] == (c, h, w):
            view = x
        elif len(shape) == 4 and shape[1:] == (h, w, c):
            view = x.permute(0, 3, 1, 2) if isinstance(x, torch.Tensor) else x.transpose(0, 3, 1, 2)
        elif len(shape) == 3 and c == 1 and shape[1:] == (h, w):
            view = x[:, None]
        elif len(shape) == 2 and shape[1] == c * h * w:
            view = x.reshape(len(x), c, h, w)
        else:
            grey = f"(N, {h}, {w}), " if c == 1 else ""
            raise ImageError(f"images of shape {shape} do not fit this run's {c}x{h}x{w} images; give arrays of shape "
                             f"{grey}(N, {c}, {h}, {w}), (N, {h}, {w}, {c}) or (N, {c * h * w}), "
                             "or image files / PIL images (converted and resized as the run's data were)")
        dtype = x.dtype
        floating = dtype.is_floating_point if isinstance(x, torch.Tensor) else np.issubdtype(dtype, np.floating)
        integer = (not floating and dtype != torch.bool) if isinstance(x, torch.Tensor) else np.issubdtype(dtype, np.integer)
        if not (floating or integer):
            raise ImageError(f"images of dtype {dtype}: give uint8 (0-255) or float (0-1) images")
        return cls(len(x), lambda a, b: view[a:b], prep)

    def batches(self, device: torch.device, progress: bool = False) -> Iterator[torch.Tensor]:
        """Float32 (n, C*H*W) batches in [0, 1] on ``device``, of :func:`~aebench.train.eval_batch` images."""
        from tqdm.auto import tqdm

        size = eval_batch(self.prep.pixels)
        with tqdm(total=self.n, unit="img", desc="encoding", disable=not progress, leave=False) as bar:
            for start in range(0, self.n, size):
                yield _to_float(self._read(start, start + size), device, start)
                bar.update(min(size, self.n - start))


def _to_float(batch: np.ndarray | torch.Tensor, device: torch.device, start: int) -> torch.Tensor:
    """One batch as float32 (n, pixels) in [0, 1]: integers / 255 (as the run's data were scaled), floats as they are."""
    t = batch if isinstance(batch, torch.Tensor) else torch.from_numpy(np.array(batch))  # a copy: the caller's array may be read-only
    t = t.reshape(len(t), -1)
    if not t.dtype.is_floating_point:
        if t.dtype != torch.uint8:
            lo, hi = (int(t.min()), int(t.max())) if t.numel() else (0, 0)
            if lo < 0 or hi > 255:
                raise ImageError(f"integer images must be in 0-255 (these reach {lo if lo < 0 else hi}); "
                                 "give uint8 (0-255) or float (0-1) images")
            t = t.to(torch.uint8)
        # as a run's split is made: uint8 moved to the device, then converted and divided by 255 there
        return data.base.to_float(t.contiguous(), device)
    if t.numel():
        lo, hi = float(t.min()), float(t.max())
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo < 0 or hi > 1:
            bad = hi if (not math.isfinite(hi) or hi > 1) else lo
            raise ImageError(f"float images must be in [0, 1] (these reach {bad:g}, from image {start} on); "
                             "divide 0-255 pixels by 255, or pass them as uint8")
    return t.to(device, torch.float32).contiguous()


def _is_pil(x: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with torchvision
        return False
    return isinstance(x, Image.Image)


def _check_shape(pixels: np.ndarray, prep: Preprocessing, what: str) -> np.ndarray:
    if tuple(pixels.shape) != prep.image_shape:
        _, h, w = pixels.shape
        raise ImageError(f"{what} is {w}x{h}; this run takes {prep.describe()}: give {prep.image_shape[2]}x"
                         f"{prep.image_shape[1]} images")
    return pixels


def _read_files(files: Iterable[Path], prep: Preprocessing) -> np.ndarray:
    from .data import images as image_io

    return np.stack([_check_shape(image_io.load(f, prep.channels, prep.image_size), prep, f"the image {f}") for f in files])


def _read_pil(pictures: list[Any], offset: int, prep: Preprocessing) -> np.ndarray:
    from .data import images as image_io

    return np.stack([_check_shape(image_io.to_array(p, prep.channels, prep.image_size), prep, f"image {offset + i} of the list")
                     for i, p in enumerate(pictures)])
