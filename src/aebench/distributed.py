"""One run on several processes: the process group, and the few collectives the loop and the command need.

Started by ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``,
``MASTER_ADDR``/``MASTER_PORT``) or by Slurm/submitit (a submitit job of several tasks: the rendezvous is
taken from submitit's job environment, as ``submitit.helpers.TorchDistributedEnvironment`` reads it).
Anything else is one process, and nothing here does anything: :func:`current` is :data:`SINGLE`.

    world = distributed.from_environment()       # who we are; no process group yet
    distributed.start(world, device)              # the rendezvous (bounded), gloo on CPUs, NCCL on GPUs
    ...  distributed.barrier(), broadcast_object(), any_rank(), all_reduce_sum(), gather_object()
    distributed.stop()                            # the group's teardown

Two timeouts: the rendezvous and the default group's collectives (the gather of batch statistics a model
makes) wait ``AEBENCH_RENDEZVOUS_TIMEOUT`` seconds (default 120); the loop's own collectives and DDP's gradient
all-reduce run in a group of their own that waits ``AEBENCH_COLLECTIVE_TIMEOUT`` seconds (default 1800), since
ranks > 0 wait there while rank 0 alone probes, evaluates and writes the run's files.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import re
from dataclasses import dataclass, replace
from typing import Any, Iterable, Iterator

import torch

from .errors import ConfigError, RunFailed, first_line

log = logging.getLogger(__name__)

RENDEZVOUS_TIMEOUT_ENV = "AEBENCH_RENDEZVOUS_TIMEOUT"
COLLECTIVE_TIMEOUT_ENV = "AEBENCH_COLLECTIVE_TIMEOUT"
DEFAULT_RENDEZVOUS_S = 120.0
DEFAULT_COLLECTIVE_S = 1800.0


@dataclass(frozen=True)
class World:
    """Where this process stands among the run's processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1
    source: str | None = None  # "torchrun" | "submitit"; None: one process
    master: str = ""  # host:port of the rendezvous
    backend: str | None = None  # set once the group is up: "gloo" | "nccl"

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes the run's files and runs its read-outs."""
        return self.rank == 0

    @property
    def several(self) -> bool:
        return self.size > 1

    def describe(self, batch_size: int) -> dict[str, Any]:
        """metrics.json's ``distributed``: world size, backend, the share of each global batch per rank."""
        return {"world_size": self.size, "backend": self.backend, "batch_per_rank": batch_size // self.size}


SINGLE = World()
_world = SINGLE
_group: Any = None  # the loop's own group (long timeout); None: one process


class RendezvousFailed(ConfigError):
    """The processes of a run could not meet (a wrong or unreachable MASTER_ADDR, a rank that never came)."""


class PeerLost(RunFailed):
    """Another process of the run stopped (killed, crashed, its node lost) while this one waited on it."""


class TooFewGPUs(ConfigError):
    """``device=cuda`` on a node with fewer GPUs than local ranks."""


# Errors that belong to one rank (its node, its peers): every rank says its own; other errors read the same on
# every rank, and rank 0 alone says them.
PER_RANK = (RendezvousFailed, PeerLost, TooFewGPUs)


def _int_env(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else None


def _seconds_env(name: str, default: float) -> float:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ConfigError(f"{name}={value!r} is not accepted; give a number of seconds > 0")
    return seconds


def from_environment() -> World:
    """This process's place in the run: torchrun's variables, else a submitit job's tasks, else one process."""
    size = _int_env("WORLD_SIZE")
    if size is not None and _int_env("RANK") is not None:
        rank = _int_env("RANK") or 0
        local_size = _int_env("LOCAL_WORLD_SIZE") or size
        master = f"{os.environ.get('MASTER_ADDR', '127.0.0.1')}:{os.environ.get('MASTER_PORT', '29500')}"
        return World(rank, size, _int_env("LOCAL_RANK") or 0, local_size, "torchrun", master) if size > 1 else SINGLE
    if os.environ.get("SUBMITIT_EXECUTOR"):
        return _from_submitit()
    return SINGLE


def _from_submitit() -> World:
    import submitit

    try:
        env = submitit.JobEnvironment()
        tasks = env.num_tasks
    except Exception:  # noqa: BLE001 - not inside a submitit job after all
        return SINGLE
    if tasks <= 1:
        return SINGLE
    from submitit.helpers import TorchDistributedEnvironment

    torch_env = TorchDistributedEnvironment()  # the rendezvous: the job's first host, a port from the job id
    return World(torch_env.rank, torch_env.world_size, torch_env.local_rank, torch_env.local_world_size, "submitit",
                 f"{torch_env.master_addr}:{torch_env.master_port}")


def check_batch(batch_size: int, world: World) -> None:
    """``train.batch_size`` is the global batch: each rank takes an equal share of it."""
    if world.several and batch_size % world.size:
        below = batch_size - batch_size % world.size
        fits = [b for b in (below, below + world.size) if b > 0]
        raise ConfigError(f"train.batch_size={batch_size} does not divide among {world.size} processes; "
                          f"train.batch_size is the global batch: give a multiple of {world.size} "
                          f"(e.g. {' or '.join(map(str, fits))})")


def device_for(device: torch.device, world: World) -> torch.device:
    """The device of this rank: one GPU per local rank (``cuda:<local rank>``); the CPU stays the CPU."""
    if not world.several or device.type != "cuda":
        return device
    count = torch.cuda.device_count()
    if count < world.local_size:
        raise TooFewGPUs(f"device=cuda with {world.local_size} processes on this node needs {world.local_size} GPUs "
                          f"(one per local rank), and {count} are visible; start as many processes as GPUs "
                          f"(torchrun --nproc-per-node={count}) or use device=cpu")
    return torch.device("cuda", world.local_rank)


def threads(world: World) -> int | None:
    """Torch threads per process of a several-process run: torchrun's OMP_NUM_THREADS where set, else the usable
    cores split between the local ranks; None for one process (the run's own rule applies)."""
    if not world.several:
        return None
    omp = _int_env("OMP_NUM_THREADS")
    if omp:
        return omp
    from .config import usable_cores

    return max(1, usable_cores() // world.local_size)


def start(world: World, device: torch.device) -> World:
    """Join the run's process group (nothing for one process); returns the world with its backend."""
    global _world, _group
    if not world.several:
        _world = world
        return world
    import torch.distributed as dist

    backend = "nccl" if device.type == "cuda" else "gloo"
    rendezvous_s = _seconds_env(RENDEZVOUS_TIMEOUT_ENV, DEFAULT_RENDEZVOUS_S)
    collective_s = _seconds_env(COLLECTIVE_TIMEOUT_ENV, DEFAULT_COLLECTIVE_S)
    if world.source == "submitit":  # torch's env:// reads these; submitit's own helper computes them
        addr, port = world.master.rsplit(":", 1)
        os.environ.update({"MASTER_ADDR": addr, "MASTER_PORT": port, "RANK": str(world.rank),
                           "WORLD_SIZE": str(world.size), "LOCAL_RANK": str(world.local_rank),
                           "LOCAL_WORLD_SIZE": str(world.local_size)})
    if backend == "nccl":
        torch.cuda.set_device(device)
    try:
        dist.init_process_group(backend, init_method="env://", rank=world.rank, world_size=world.size,
                                timeout=datetime.timedelta(seconds=rendezvous_s),
                                device_id=device if backend == "nccl" else None)
        _group = dist.new_group(timeout=datetime.timedelta(seconds=collective_s), use_local_synchronization=False)
    except Exception as e:  # noqa: BLE001 - the store's timeout, a refused connection, a name that does not resolve
        with contextlib.suppress(Exception):
            dist.destroy_process_group()
        raise RendezvousFailed(
            f"rank {world.rank} of {world.size} could not meet the run's other processes at {world.master} within "
            f"{rendezvous_s:g} s ({first_line(e)}); check MASTER_ADDR and MASTER_PORT (torchrun: --master-addr, "
            f"--master-port or --rdzv-endpoint) and that every rank starts, or raise {RENDEZVOUS_TIMEOUT_ENV}"
        ) from None
    _world = replace(world, backend=backend)
    log.info("process %d of %d (local rank %d, %s, rendezvous %s via %s)", world.rank, world.size, world.local_rank,
             backend, world.master, world.source)
    return _world


def stop() -> None:
    """Leave the process group (where there is one)."""
    global _world, _group
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.destroy_process_group()
    _world, _group = SINGLE, None


def current() -> World:
    """This process's world (:data:`SINGLE` unless :func:`start` joined a group)."""
    return _world


def group() -> Any:
    """The loop's process group (long timeout), for DDP and the loop's collectives."""
    return _group


# ------------------------------------------------------------------ collectives (no-ops for one process)
# What gloo and NCCL say when the process at the other end of a collective is gone.
PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "gloo", "NCCL", "timed out")


@contextlib.contextmanager
def peers_watched(where: str) -> Iterator[None]:
    """Turn a collective that fails because another process is gone into one line naming this rank."""
    try:
        yield
    except RuntimeError as e:
        import torch.distributed as dist

        if not _world.several or not (isinstance(e, dist.DistError) or any(w in str(e) for w in PEER_GONE)):
            raise
        other = f"rank {1 - _world.rank}" if _world.size == 2 else "another process"
        raise PeerLost(f"rank {_world.rank} of {_world.size}: {other} of the run stopped {where} ({_said(e)}); "
                       f"torchrun's or Slurm's report says why it stopped; the last checkpoint is kept") from None


def _said(e: BaseException) -> str:
    """What gloo or NCCL said, without its source location and advice: ``Connection closed by peer [host]:port``."""
    text = re.sub(r"^\[[^\]]*\]\s*", "", first_line(e))
    return text.split(". ", 1)[0][:160]


def barrier() -> None:
    if _world.several:
        import torch.distributed as dist

        dist.barrier(group=_group)


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not _world.several:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0, group=_group)
    return box[0]


def gather_object(obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` in rank order, on rank 0 (None on the others); ``[obj]`` for one process."""
    if not _world.several:
        return [obj]
    import torch.distributed as dist

    out: list[Any] | None = [None] * _world.size if _world.main else None
    dist.gather_object(obj, out, dst=0, group=_group)
    return out


def any_rank(flag: bool, device: torch.device) -> bool:
    """Whether ``flag`` is set on any rank (the stop flag every rank agrees on)."""
    if not _world.several:
        return flag
    import torch.distributed as dist

    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=_group)
    return bool(t.item())


def all_reduce_sum(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The sum over ranks of each tensor (same keys, shapes and order on every rank), in one collective."""
    if not _world.several or not tensors:
        return tensors
    import torch.distributed as dist

    keys = sorted(tensors)
    flat = torch.stack([tensors[k].reshape(()).to(torch.float64) for k in keys])
    dist.all_reduce(flat, group=_group)
    return {k: flat[i].to(tensors[k].dtype) for i, k in enumerate(keys)}


def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """Average the gradients of ``params`` over the ranks: for a step DDP does not see (FactorVAE's discriminator)."""
    if not _world.several:
        return
    import torch.distributed as dist

    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= _world.size


def share(start: int, stop: int, world: World) -> tuple[int, int]:
    """This rank's contiguous part of the rows ``start:stop`` of a global batch, as even as can be (the first
    ``(stop - start) % size`` ranks take one row more)."""
    n = stop - start
    base, extra = divmod(n, world.size)
    first = start + world.rank * base + min(world.rank, extra)
    return first, first + base + (1 if world.rank < extra else 0)


class _GatherRows(torch.autograd.Function):
    """Every rank's rows in rank order, shares of any size; the gradient of one's own rows summed over ranks."""

    @staticmethod
    def forward(ctx: Any, t: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        size = dist.get_world_size()
        rows = torch.tensor([t.shape[0]], device=t.device)
        counts = [torch.empty_like(rows) for _ in range(size)]
        dist.all_gather(counts, rows)
        sizes = [int(c.item()) for c in counts]
        most = max(sizes)
        padded = t.new_zeros((most, *t.shape[1:]))
        padded[: t.shape[0]] = t
        parts = [torch.empty_like(padded) for _ in range(size)]
        dist.all_gather(parts, padded.contiguous())
        ctx.sizes, ctx.rank = sizes, dist.get_rank()
        return torch.cat([p[:n] for p, n in zip(parts, sizes)])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        grad = grad.contiguous()
        dist.all_reduce(grad)  # every rank's loss reaches every rank's rows
        first = sum(ctx.sizes[: ctx.rank])
        return grad[first : first + ctx.sizes[ctx.rank]]


def gather_rows(t: torch.Tensor) -> torch.Tensor:
    """``t`` (this rank's rows of a batch) with every other rank's rows, in rank order; autograd-aware, and the
    ranks' shares may differ in size (an epoch's last, partial batch).  ``t`` itself for one process."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return t
    return _GatherRows.apply(t)
