"""One run on several processes (aebench.distributed, DDP in the training loop): fast checks in this process and in
two spawned gloo processes.  The full-size torchrun runs are in tests/test_distributed_runs.py (slow)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from aebench import config, data, distributed, rundir
from aebench.errors import ConfigError
from aebench.train import Trainer

from conftest import TINY, build_model, run_cli, run_in_process

# 69 images in global batches of 32: steps of 32, 32 and 5 images; the last splits 3 + 2 over two processes.
IMAGES = 69
OVERRIDES = ["latent=4", "arch.hidden=[16]", "train.batch_size=32", "train.lr=1e-2", "train.scheduler=none",
             "train.precision=fp32"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def images() -> data.ImageData:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(IMAGES, 64, generator=gen)
    y = torch.randint(0, 10, (IMAGES,), generator=gen)
    return data.ImageData.of_tensors("synthetic", tuple(map(str, range(10))), x, y, x[:40], y[:40], (1, 8, 8))


def train_one_epoch(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict]:
    torch.manual_seed(0)
    model = build_model(64, *OVERRIDES)
    trainer = Trainer(model, images(), config.compose(OVERRIDES).train, epochs=1, seed=0, run_dir=run_dir, meta={})
    history = trainer.fit()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, history[-1]


def batch_statistics(rows: slice | None = None) -> dict[str, torch.Tensor]:
    """beta-TCVAE's and DIP-VAE's penalties and their gradients on a fixed global batch of 16 codes (``rows``:
    this process's share)."""
    gen = torch.Generator().manual_seed(1)
    mu, logvar, z = (torch.randn(16, 4, generator=gen) for _ in range(3))
    rows = rows or slice(None)
    out = {}
    for name in ("beta_tcvae", "dip_vae"):
        model = build_model(64, f"model={name}", "latent=4", "arch.hidden=[16]")
        if name == "beta_tcvae":
            model.dataset_size = 1000
        m, lv, zz = (t[rows].clone().requires_grad_() for t in (mu, logvar, z))
        kl = torch.zeros(())
        penalty, _ = model.regulariser(m, lv, zz, kl)
        penalty.backward()
        out[f"{name}_loss"] = penalty.detach()
        for label, t in (("mu", m), ("logvar", lv), ("z", zz)):
            out[f"{name}_grad_{label}"] = t.grad
    return out


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank), "WORLD_SIZE": "2",
                       "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": "2"})
    torch.set_num_threads(1)
    world = distributed.start(distributed.from_environment(), torch.device("cpu"))
    try:
        params, last = train_one_epoch(Path(out) / "run")
        stats = batch_statistics(slice(8 * rank, 8 * rank + 8))
        uneven = torch.arange(3 - rank, dtype=torch.float32).reshape(-1, 1) + 10 * rank  # 3 rows, then 2
        uneven.requires_grad_()
        gathered = distributed.gather_rows(uneven)
        (gathered * torch.arange(1, 6).reshape(-1, 1)).sum().backward()
        own = torch.nn.Linear(2, 1)  # a step DDP does not see (FactorVAE's discriminator): its gradients averaged
        for q in own.parameters():
            q.grad = torch.full_like(q, float(rank + 1))
        distributed.average_gradients(own.parameters())
        torch.save({"params": params, "history": last, "stats": stats, "gathered": gathered.detach(),
                    "gathered_grad": uneven.grad, "backend": world.backend,
                    "averaged": [q.grad for q in own.parameters()]}, Path(out) / f"rank{rank}.pt")
    finally:
        distributed.stop()


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(free_port(), str(out)), nprocs=2, join=True)
    return out, [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    return train_one_epoch(tmp_path_factory.mktemp("single"))


def test_two_processes_train_the_same_weights_as_one_with_the_same_global_batch(two_processes, one_process):
    _, ranks = two_processes
    params, last = one_process
    assert ranks[0]["backend"] == "gloo"
    for name, value in params.items():  # 3 steps, the last on 3 + 2 images
        for r in ranks:
            torch.testing.assert_close(r["params"][name], value, rtol=1e-5, atol=1e-7, msg=name)
    for key in ("train_loss", "test_loss", "test_recon_mse"):  # the epoch's sums over ranks, the sharded evaluation
        assert ranks[0]["history"][key] == pytest.approx(last[key], rel=1e-5)
        assert ranks[1]["history"][key] == ranks[0]["history"][key]


def test_rank_0_alone_writes_the_checkpoint_with_every_ranks_generators(two_processes):
    out, _ = two_processes
    ckpt = torch.load(out / "run" / rundir.CHECKPOINT, weights_only=False)
    assert ckpt["world_size"] == 2 and len(ckpt["ranks"]) == 2
    assert not torch.equal(ckpt["ranks"][0]["generator"], ckpt["ranks"][1]["generator"])  # noise per rank
    assert sorted(p.name for p in (out / "run").rglob("*")) == ["checkpoints", "last.pt"]


def test_batch_statistics_over_two_processes_equal_one_process_on_the_global_batch(two_processes):
    _, ranks = two_processes
    whole = batch_statistics()
    for name in ("beta_tcvae", "dip_vae"):
        # DDP averages over the 2 processes: the mean of the ranks' losses, each rank's gradient halved
        torch.testing.assert_close((ranks[0]["stats"][f"{name}_loss"] + ranks[1]["stats"][f"{name}_loss"]) / 2,
                                   whole[f"{name}_loss"], rtol=1e-5, atol=1e-6)
        for label in ("mu", "logvar", "z"):
            if whole[f"{name}_grad_{label}"] is None:  # DIP-VAE's penalty does not use the drawn code
                assert all(r["stats"][f"{name}_grad_{label}"] is None for r in ranks)
                continue
            both = torch.cat([r["stats"][f"{name}_grad_{label}"] for r in ranks]) / 2
            torch.testing.assert_close(both, whole[f"{name}_grad_{label}"], rtol=1e-5, atol=1e-6, msg=f"{name} {label}")


def test_gather_rows_takes_shares_of_different_sizes(two_processes):
    _, ranks = two_processes
    expected = torch.tensor([[0.0], [1.0], [2.0], [10.0], [11.0]])
    for r in ranks:
        torch.testing.assert_close(r["gathered"], expected)
    # every rank's loss (sum of row i times i + 1) reaches every rank's rows: twice the weight per row
    torch.testing.assert_close(ranks[0]["gathered_grad"], torch.tensor([[2.0], [4.0], [6.0]]))
    torch.testing.assert_close(ranks[1]["gathered_grad"], torch.tensor([[8.0], [10.0]]))


def test_gradients_of_a_step_ddp_does_not_see_are_averaged_over_the_ranks(two_processes):
    _, ranks = two_processes
    for r in ranks:  # rank 0's gradients were 1, rank 1's 2
        assert all(torch.equal(g, torch.full_like(g, 1.5)) for g in r["averaged"])


# ------------------------------------------------------------------ the world from the environment, bad input
def test_one_process_is_the_world_unless_torchrun_or_submitit_says_otherwise(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "SUBMITIT_EXECUTOR"):
        monkeypatch.delenv(key, raising=False)
    assert distributed.from_environment() == distributed.SINGLE
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")  # torchrun --nproc-per-node=1: one process, no group
    assert distributed.from_environment() == distributed.SINGLE
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    world = distributed.from_environment()
    assert (world.rank, world.size, world.local_rank, world.local_size, world.source) == (3, 4, 1, 2, "torchrun")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert distributed.threads(world) == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert distributed.threads(world) == max(1, config.usable_cores() // 2)


def test_shares_of_a_batch_are_contiguous_and_as_even_as_can_be():
    def shares(n, size):
        return [distributed.share(10, 10 + n, distributed.World(rank=r, size=size)) for r in range(size)]

    assert shares(8, 2) == [(10, 14), (14, 18)]
    assert shares(5, 2) == [(10, 13), (13, 15)]
    assert shares(7, 3) == [(10, 13), (13, 15), (15, 17)]


def test_a_batch_that_does_not_divide_among_the_processes_is_refused_in_one_line(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "3")
    code, err = run_in_process([*TINY, "train.batch_size=256"])
    assert code == 2
    assert err.strip() == ("aebench: error: train.batch_size=256 does not divide among 3 processes; train.batch_size "
                           "is the global batch: give a multiple of 3 (e.g. 255 or 258)")
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").rglob("*.json"))


def test_cuda_with_fewer_gpus_than_local_ranks_is_refused_in_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    world = distributed.World(rank=1, size=2, local_rank=1, local_size=2, source="torchrun")
    with pytest.raises(ConfigError, match=r"device=cuda with 2 processes on this node needs 2 GPUs .* 1 are visible"):
        distributed.device_for(torch.device("cuda"), world)
    assert distributed.device_for(torch.device("cpu"), world) == torch.device("cpu")


def test_an_unreachable_rendezvous_ends_in_one_line_and_leaves_no_run(tmp_path, data_root):
    env = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(free_port()), "AEBENCH_RENDEZVOUS_TIMEOUT": "3"}  # rank 1 never comes
    proc = run_cli(*TINY, cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aebench: error: rank 0 of 2 could not meet the run's other "
                                                   "processes at 127.0.0.1:"), proc.stderr
    assert "within 3 s" in lines[0]
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").iterdir())


def test_a_sweep_under_torchrun_is_refused_in_one_line(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    code, err = run_in_process(["-m", "latent=2,3"])
    assert code == 2
    assert err.strip().startswith("aebench: error: a sweep (-m) cannot run under torchrun")
    assert not (tmp_path / "multirun").exists()
