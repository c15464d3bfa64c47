"""The pretraining loop: batches by index from tensors already on the device.

Per epoch: a fresh permutation from the run's own generator, one optimiser step
per batch, loss parts summed on the device (no host synchronisation per step),
then a batched test-set evaluation and an atomic checkpoint.  SIGINT/SIGTERM end
the current step, write a mid-epoch checkpoint and raise
:class:`~aebench.errors.Interrupted`; resuming from it gives the same numbers as an
uninterrupted run.

Everything else that happens during training (the accuracy curve, ``history.csv``, the
trackers, a test's signal) is a :class:`Callback`: the loop's one event protocol.

On several processes (:mod:`aebench.distributed`) the same loop runs on every rank, with the model under
DistributedDataParallel: every rank draws the same seeded permutation and takes its contiguous share of each
global batch (``train.batch_size``), the loss of a share smaller than the others' weighted so that the averaged
gradient is the global batch's mean; the noise (a VAE's draws) comes from a generator per rank; the epoch's loss
sums and the test evaluation (each rank a share of the test images) are summed over ranks once per epoch; a stop
signal on any rank stops every rank after the same step; rank 0 writes the checkpoint, with every rank's
generators, while the others wait.  With one process nothing of this happens, and the numbers are those of
aebench without it, bit for bit.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from . import atomic, distributed, rundir
from .data import ImageData, Split
from .errors import CheckpointError, ConfigError, Interrupted, TrainingDiverged, first_line, squashed

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
EVAL_BATCH = 10_000  # images per evaluation or encoding batch (MNIST, Fashion-MNIST: the whole test set at once)
# Larger images go fewer to a batch, so that a batch's input floats stay under this (its activations take a few
# times more): 2 730 CIFAR-10 images, 303 STL-10 ones.  Memory then does not grow with the number of images.
EVAL_BYTES = 32 * 2**20


def eval_batch(pixels: int) -> int:
    """Images per batch when evaluating or encoding images of ``pixels`` values (10 000 for 28x28 images)."""
    return max(1, min(EVAL_BATCH, EVAL_BYTES // (4 * pixels)))


def batches(x: torch.Tensor | Split, size: int) -> Iterator[torch.Tensor]:
    """``x`` (a tensor of flat images or a :class:`~aebench.data.Split`) in batches of ``size`` rows."""
    if isinstance(x, Split):
        yield from x.batches(size)
    else:
        for start in range(0, len(x), size):
            yield x[start : start + size]


@torch.no_grad()
def encode_all(model: nn.Module, x: torch.Tensor | Split, batch: int | None = None) -> torch.Tensor:
    """The codes (float32) of every image of ``x`` (flat images, or a split), in batches of :func:`eval_batch`."""
    was_training = model.training
    model.eval()
    batch = batch or eval_batch(x.shape[1] if isinstance(x, torch.Tensor) else x.pixels)
    codes = torch.cat([model.encode(b).float() for b in batches(x, batch)])
    model.train(was_training)
    return codes


class Callback:
    """What happens around the loop: every method is optional, and they are called in the order the
    callbacks were given.

    - ``on_step_start(trainer)``: before every step's loss (``trainer.global_step`` steps are done);
    - ``on_step_end(trainer, x, parts)``: after every optimiser step, with the batch and its loss parts;
    - ``on_epoch_end(trainer, row)``: after the epoch's test evaluation; may add numbers to ``row`` (the
      epoch's line of the history), which then goes into the checkpoint;
    - ``on_epoch_saved(trainer, history)``: once the row is in the history and the checkpoint is written;
    - ``state_dict()`` / ``load_state_dict(state)``: a callback whose ``name`` is set keeps its state in
      the checkpoint under that name, so a resumed run goes on exactly as it would have.

    An objective that needs more than its loss's gradient step (a discriminator's own step, a schedule over
    training) owns a callback for it: the Trainer runs the ones its model's ``training_callbacks()`` gives first.
    """

    name: str | None = None

    def on_step_start(self, trainer: "Trainer") -> None:
        pass

    def on_step_end(self, trainer: "Trainer", x: torch.Tensor, parts: dict[str, torch.Tensor]) -> None:
        pass

    def on_epoch_end(self, trainer: "Trainer", row: dict[str, Any]) -> None:
        pass

    def on_epoch_saved(self, trainer: "Trainer", history: list[dict[str, Any]]) -> None:
        pass

    def state_dict(self) -> Any:
        return None

    def load_state_dict(self, state: Any) -> None:
        pass


class OnEpochSaved(Callback):
    """``fn(history)`` after every epoch's checkpoint (``history.csv``, a tracker)."""

    def __init__(self, fn: Callable[[list[dict[str, Any]]], None]):
        self.fn = fn

    def on_epoch_saved(self, trainer: "Trainer", history: list[dict[str, Any]]) -> None:
        self.fn(history)


class SelfSignal(Callback):
    """Sends this process a signal after a given global step: how the tests interrupt a run at an exact
    point.  Installed only where ``AEBENCH_SELF_SIGNAL`` is set (``TERM@37``: SIGTERM after step 37;
    ``KILL@37:1``: SIGKILL after step 37, to rank 1 only of a several-process run)."""

    ENV = "AEBENCH_SELF_SIGNAL"

    def __init__(self, signum: int, step: int, rank: int | None = None):
        self.signum, self.step, self.rank = signum, step, rank

    @classmethod
    def from_environment(cls) -> "SelfSignal | None":
        spec = os.environ.get(cls.ENV)
        if not spec:
            return None
        name, _, where = spec.partition("@")
        step, _, rank = where.partition(":")
        return cls(getattr(signal, f"SIG{name}"), int(step), int(rank) if rank else None)

    def on_step_end(self, trainer: "Trainer", x: torch.Tensor, parts: dict[str, torch.Tensor]) -> None:
        if trainer.global_step == self.step and self.rank in (None, trainer.world.rank):
            os.kill(os.getpid(), self.signum)


@dataclass
class TrainState:
    """Where training stands; everything here goes into the checkpoint."""

    epoch: int = 0  # completed epochs
    step: int = 0  # steps completed in the epoch under way (0 at an epoch boundary)
    perm: torch.Tensor | None = None  # the permutation of the epoch under way
    sums: dict[str, torch.Tensor] = field(default_factory=dict)  # loss parts summed over images so far
    epoch_seconds: float = 0.0  # training seconds spent in the epoch under way
    history: list[dict[str, Any]] = field(default_factory=list)


class StopFlag:
    """Set by SIGINT/SIGTERM while training; the loop checks it after each step."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.signum = signum


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopFlag]:
    flag = StopFlag()
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):  # not the main thread (e.g. some launchers)
            previous[sig] = signal.signal(sig, flag)
    try:
        yield flag
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def flush_denormals() -> bool:
    """Treat subnormal floats as zero on the CPU (FTZ/DAZ) in this thread and the threads it starts.

    Units that stop receiving gradient (a ReLU that died, say) leave Adam's moment
    estimates decaying towards zero until they reach the subnormal range, where x86
    arithmetic is tens of times slower; values below 1.2e-38 carry nothing training
    needs (what it cost the reference AE: docs/speed.md, "Training step").

    The flag is per thread and torch's worker threads copy it when they are created,
    so call this before the first parallel torch operation of the process
    (:func:`aebench.pipeline.run` does); called later it reaches only the calling
    thread.  It stays set afterwards.  Returns False where torch cannot set it on this CPU.
    """
    supported = torch.set_flush_denormal(True)
    if not supported:
        log.debug("this CPU cannot flush subnormal floats to zero; training may slow down when units die")
    return supported


def rng_states() -> dict[str, Any]:
    states = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def noise_seed(seed: int, rank: int, *more: int) -> int:
    """The seed of rank ``rank``'s noise generator in a several-process run (``more``: e.g. the step a run
    resumed at on another number of processes), from ``seed`` by numpy's SeedSequence (independent streams)."""
    return int(np.random.SeedSequence(seed, spawn_key=(rank, *more)).generate_state(1, dtype=np.uint64)[0] >> 1)


def make_optimizer(model: nn.Module, s: Any) -> torch.optim.Optimizer:
    """Adam over the parameters the loss's gradient step trains (an objective's own networks, a FactorVAE's
    discriminator say, have their own optimiser in the objective's callback)."""
    params = model.optimised_parameters() if hasattr(model, "optimised_parameters") else model.parameters()
    # The fused Adam kernel is the quicker step on the CPU and on CUDA (docs/speed.md, "Training step").
    return torch.optim.Adam(params, lr=s.lr, weight_decay=s.weight_decay, fused=True)


def make_scheduler(opt: torch.optim.Optimizer, s: Any, epochs: int) -> torch.optim.lr_scheduler.LRScheduler:
    if s.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=s.step_size, gamma=s.gamma)
    if s.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 1.0)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor | Split, seed: int, precision: str) -> dict[str, float]:
    """Test-set loss parts (per image) and ``recon_mse`` (per pixel), in large batches.

    The VAE's sampled terms use a generator seeded with ``seed``, so the same
    model always gets the same numbers.  On several processes each rank evaluates its share of every batch
    (a model's batch statistics still see the whole batch) with a noise generator of its own, and the sums
    are added over ranks.
    """
    world = distributed.current()
    was_training = model.training
    model.eval()
    gen = torch.Generator(device=x.device).manual_seed(noise_seed(seed, world.rank) if world.several else seed)
    sums: dict[str, torch.Tensor] = {}
    size = eval_batch(x.shape[1] if isinstance(x, torch.Tensor) else x.pixels)
    for batch in batches(x, size):
        if world.several:
            first, last = distributed.share(0, len(batch), world)
            batch = batch[first:last]
        with _autocast(x.device, precision):
            parts = model.loss(batch, generator=gen)
            if "recon_mse" not in parts:  # a VAE: reconstruct from mu, not from a sampled code
                recon = model.reconstruct(batch)
                parts["recon_mse"] = (recon.float() - batch).pow(2).mean()
        if len(batch) == 0:  # a share with no rows (a last batch smaller than the world): it took part, adds nothing
            parts = {k: v.new_zeros(()) for k, v in parts.items()}
        for k, v in parts.items():
            sums[k] = sums.get(k, 0) + v.double() * len(batch)
    model.train(was_training)
    with distributed.peers_watched("while the test images were evaluated"):
        sums = distributed.all_reduce_sum(sums)
    return {k: (v / len(x)).item() for k, v in sums.items()}


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class Trainer:
    """Trains ``model`` on ``data.pretrain`` with the settings ``train`` (a ``train`` config:
    :class:`aebench.config.TrainConfig`) for ``epochs`` epochs; writes ``run_dir``'s checkpoint after every epoch.

    ``meta``: what identifies the run, stored in every checkpoint beside the training state
    (:func:`aebench.rundir.checkpoint_meta`).  ``callbacks``: see :class:`Callback`.

    A loss or weight that stops being finite is caught once per epoch (the loss sums live on
    the device, so no step waits for the host): the run stops with
    :class:`~aebench.errors.TrainingDiverged`, keeping the checkpoint of the last finite epoch.

    On several processes (:func:`aebench.distributed.current`) the model trains under DistributedDataParallel
    and only rank 0 writes the checkpoint (see the module's docstring).
    """

    def __init__(self, model: nn.Module, data: ImageData, train: Any, *, epochs: int, seed: int, run_dir: Path,
                 meta: dict[str, Any], callbacks: list[Callback] = (), progress: bool = False):
        self.model = model
        self.data = data
        self.s = train
        self.epochs = epochs
        self.seed = seed
        self.device = data.device
        self.world = distributed.current()
        self.run_dir = Path(run_dir)
        self.checkpoint_path = self.run_dir / rundir.CHECKPOINT
        self.meta = meta
        own = model.training_callbacks() if hasattr(model, "training_callbacks") else []
        self.callbacks = [*own, *callbacks]
        self.progress = progress
        self.optimizer = make_optimizer(model, train)
        self.scheduler = make_scheduler(self.optimizer, train, epochs)
        # The noise (a VAE's draws, FactorVAE's permutation).  On one process the same generator also draws each
        # epoch's permutation, as it always has; on several, every rank draws the permutation from a generator
        # seeded alike and the noise from its own.
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.batch_generator = self.generator
        if self.world.several:
            self.generator = torch.Generator(device=self.device).manual_seed(noise_seed(seed, self.world.rank))
        self.state = TrainState()
        self.steps_per_epoch = math.ceil(len(data.pretrain) / train.batch_size)
        self.total_steps = epochs * self.steps_per_epoch
        self.loss_fn: Callable[..., dict[str, torch.Tensor]] = model.loss
        if self.world.several:
            distributed.check_batch(train.batch_size, self.world)
            last = len(data.pretrain) % train.batch_size
            if 0 < last < self.world.size:
                raise ConfigError(
                    f"the epoch's last batch holds {last} image(s) ({len(data.pretrain)} images in batches of "
                    f"{train.batch_size}), fewer than the {self.world.size} processes; give another train.batch_size "
                    f"(a multiple of {self.world.size}) or another number of images")
            self.loss_fn = self._wrap(model)
        self.eager_loss = self.loss_fn
        if train.compile:
            mode = "reduce-overhead" if self.device.type == "cuda" else None
            self.loss_fn = torch.compile(self.loss_fn, mode=mode)

    def _wrap(self, model: nn.Module) -> nn.Module:
        """The model under DistributedDataParallel; the parameters the main optimiser does not train (a FactorVAE's
        discriminator, which averages its own gradients in its step) left out of DDP's gradient all-reduce."""
        from torch.nn.parallel import DistributedDataParallel

        trained = {id(p) for p in (model.optimised_parameters() if hasattr(model, "optimised_parameters")
                                   else model.parameters())}
        ignored = [name for name, p in model.named_parameters() if id(p) not in trained]
        if ignored:
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, ignored)
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids, process_group=distributed.group())

    def autocast(self) -> contextlib.AbstractContextManager:
        """The run's precision for a forward pass (bf16 autocast or nothing): what an objective's own step uses."""
        return _autocast(self.device, self.s.precision)

    @property
    def global_step(self) -> int:
        """Optimiser steps taken since the run began (over every epoch)."""
        return self.state.epoch * self.steps_per_epoch + self.state.step

    def _loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        try:
            return self.loss_fn(x, generator=self.generator)
        except Exception as e:  # noqa: BLE001 - a compiler failure must not cost the run
            if self.loss_fn is self.eager_loss:
                raise  # eager: a real error
            log.warning("torch.compile failed (%s); training continues without it", first_line(e))
            self.loss_fn = self.eager_loss
            return self.loss_fn(x, generator=self.generator)

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self) -> dict[str, Any]:
        """The checkpoint: ``format``, the run's ``meta``, and the training state, which is the Trainer's alone to
        write and read: weights, optimiser and scheduler, where the epoch stands (its permutation, step and partial
        sums), the history, the batch generator, every RNG stream, and the callbacks' states by name.

        On several processes every rank must call it (it gathers each rank's generators, RNG streams and partial
        sums: ``ranks``); ``generator`` is then the permutation's generator, ``sums`` the sums over ranks and
        ``rng`` rank 0's streams, so that a run on another number of processes can go on from it.  Returns None
        on ranks > 0."""
        st = self.state
        mid_epoch = st.step > 0
        sums = {k: v.cpu() for k, v in st.sums.items()} if mid_epoch else {}
        ranks = None
        if self.world.several:
            mine = {"generator": self.generator.get_state(), "rng": rng_states(), "sums": sums}
            with distributed.peers_watched("while the checkpoint was gathered"):
                ranks = distributed.gather_object(mine)
            if not self.world.main:
                return None
            sums = {k: sum(r["sums"][k].double() for r in ranks).float() for k in sums}
        return {
            "format": CHECKPOINT_FORMAT,
            **self.meta,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": st.epoch,
            "step": st.step,
            "perm": st.perm.cpu() if st.perm is not None and mid_epoch else None,
            "sums": sums,
            "epoch_seconds": st.epoch_seconds,
            "history": st.history,
            "generator": self.batch_generator.get_state(),
            "device_type": self.device.type,
            "rng": rng_states(),
            "callbacks": {c.name: c.state_dict() for c in self.callbacks if c.name},
            "world_size": self.world.size,
            **({"ranks": ranks} if ranks is not None else {}),
        }

    def save_checkpoint(self) -> None:
        """Write the checkpoint (rank 0; every rank takes part and waits until it is written)."""
        ckpt = self.checkpoint()
        if ckpt is not None:
            atomic.save_torch(self.checkpoint_path, ckpt)
        with distributed.peers_watched("while rank 0 wrote the checkpoint"):
            distributed.barrier()

    def load_checkpoint(self, ckpt: dict[str, Any]) -> None:
        try:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
        except (RuntimeError, KeyError, ValueError) as e:
            raise CheckpointError(
                f"checkpoint {self.checkpoint_path} does not fit this model ({squashed(e)}); "
                "resume it with its own config, or start a new run"
            ) from None
        st = self.state
        st.epoch, st.step = ckpt["epoch"], ckpt["step"]
        st.perm = ckpt["perm"].to(self.device) if ckpt["perm"] is not None else None
        st.epoch_seconds = ckpt["epoch_seconds"]
        st.history = list(ckpt["history"])
        saved_type = ckpt.get("device_type", "cpu")
        if saved_type != self.device.type:
            raise CheckpointError(
                f"checkpoint {self.checkpoint_path} was written on a {saved_type} device and this run is on "
                f"{self.device.type}; resume it with device={saved_type} (its batch order and noise live there)"
            )
        saved_world, world = ckpt.get("world_size", 1), self.world
        sums = ckpt["sums"]
        if saved_world == world.size and world.several:  # the same processes: each goes on exactly where it was
            mine = ckpt["ranks"][world.rank]
            self.batch_generator.set_state(ckpt["generator"])
            self.generator.set_state(mine["generator"])
            set_rng_states(mine["rng"])
            sums = mine["sums"]
        else:  # one process, or another number of them: the same batches; each rank's noise from a fresh stream
            self.batch_generator.set_state(ckpt["generator"])
            if world.several:
                self.generator.manual_seed(noise_seed(self.seed, world.rank, self.global_step))
            set_rng_states(ckpt["rng"])
            if not world.main:
                sums = {k: torch.zeros_like(v) for k, v in sums.items()}  # rank 0 carries the sums so far
        st.sums = {k: v.to(self.device) for k, v in sums.items()}
        states = ckpt.get("callbacks") or {}
        for c in self.callbacks:
            if c.name and states.get(c.name) is not None:
                c.load_state_dict(states[c.name])

    def check_finite(self, epoch: int, sums: dict[str, torch.Tensor], lr: float) -> None:
        """One host sync per epoch: are the epoch's summed loss and every weight finite?"""
        loss = sums.get("loss")
        flags = [torch.isfinite(p).all() for p in self.model.parameters()]
        if loss is not None and not bool(torch.isfinite(loss)):
            what = f"the training loss ({loss.item():g})"
        elif not bool(torch.stack(flags).all()):
            what = "a weight of the model"
        else:
            return
        kept = str(self.checkpoint_path) if self.checkpoint_path.is_file() else None
        raise TrainingDiverged(epoch, what, lr, kept)

    def _stopping(self, stop: StopFlag) -> bool:
        """Whether a stop signal reached this process, or any process of the run (they all agree after each step)."""
        if not self.world.several:
            return stop.signum is not None
        with distributed.peers_watched("during training"):
            return distributed.any_rank(stop.signum is not None, self.device)

    # ------------------------------------------------------------------ the loop
    def fit(self) -> list[dict[str, Any]]:
        images = self.data.pretrain
        n, batch, steps_per_epoch = len(images), self.s.batch_size, self.steps_per_epoch
        world = self.world
        self.model.train()
        with stop_on_signals() as stop:
            while self.state.epoch < self.epochs:
                st = self.state
                epoch = st.epoch + 1
                if st.step == 0:
                    st.perm = torch.randperm(n, device=self.device, generator=self.batch_generator)
                    st.sums = {}
                    st.epoch_seconds = 0.0
                lr = self.optimizer.param_groups[0]["lr"]
                t0 = time.perf_counter()
                bar = tqdm(
                    total=steps_per_epoch,
                    initial=st.step,
                    desc=f"epoch {epoch}/{self.epochs}",
                    unit="batch",
                    disable=not self.progress,
                    leave=False,
                    file=sys.stderr,
                )
                with bar:
                    for step in range(st.step, steps_per_epoch):
                        start, stop_row = step * batch, min((step + 1) * batch, n)
                        weight = 1.0
                        if world.several:  # this rank's share; a smaller share's loss weighs less
                            first, last = distributed.share(start, stop_row, world)
                            if (stop_row - start) % world.size:
                                weight = (last - first) * world.size / (stop_row - start)
                            start, stop_row = first, last
                        idx = st.perm[start:stop_row]
                        x = images.take(idx)
                        with distributed.peers_watched(f"in epoch {epoch}, step {step + 1}"):
                            for c in self.callbacks:
                                c.on_step_start(self)
                            with _autocast(self.device, self.s.precision):
                                parts = self._loss(x)
                            self.optimizer.zero_grad(set_to_none=True)
                            (parts["loss"] * weight if weight != 1.0 else parts["loss"]).backward()
                            self.optimizer.step()
                            for k, v in parts.items():
                                contrib = v.detach().float() * len(idx)
                                st.sums[k] = st.sums[k] + contrib if k in st.sums else contrib
                            st.step = step + 1
                            bar.update(1)
                            for c in self.callbacks:
                                c.on_step_end(self, x, parts)
                        if st.step < steps_per_epoch and self._stopping(stop):
                            st.epoch_seconds += time.perf_counter() - t0
                            self.save_checkpoint()
                            raise Interrupted(stop.signum or signal.SIGTERM, str(self.run_dir),
                                              f"in epoch {epoch} after step {st.step}/{steps_per_epoch}")
                train_seconds = st.epoch_seconds + time.perf_counter() - t0
                with distributed.peers_watched(f"at the end of epoch {epoch}"):
                    st.sums = distributed.all_reduce_sum(st.sums)  # the epoch's sums over every rank: one collective
                self.check_finite(epoch, st.sums, lr)
                row: dict[str, Any] = {"epoch": epoch, "lr": lr}
                row.update({f"train_{k}": (v / n).item() for k, v in st.sums.items()})
                t1 = time.perf_counter()
                row.update({f"test_{k}": v for k, v in evaluate(self.model, self.data.test, self.seed, self.s.precision).items()})
                for c in self.callbacks:
                    c.on_epoch_end(self, row)
                row["train_seconds"] = round(train_seconds, 4)
                row["eval_seconds"] = round(time.perf_counter() - t1, 4)
                self.scheduler.step()
                st.epoch, st.step, st.perm, st.sums, st.epoch_seconds = epoch, 0, None, {}, 0.0
                st.history.append(row)
                self.save_checkpoint()
                for c in self.callbacks:
                    c.on_epoch_saved(self, st.history)
                log.info(
                    "epoch %d/%d: %s",
                    epoch,
                    self.epochs,
                    ", ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch" and isinstance(v, float)),
                )
                if self._stopping(stop):  # signal arrived during the last step or the evaluation
                    if st.epoch < self.epochs:
                        raise Interrupted(stop.signum or signal.SIGTERM, str(self.run_dir), f"after epoch {epoch}")
        return self.state.history
