"""train.precision=auto: bf16 on a CPU with bf16 units, fp32 elsewhere, with the reason recorded; a resumed
run keeps the precision it started in.  Detection is forced both ways here, whatever this machine has."""

from __future__ import annotations

import logging

import pytest
import torch
from conftest import TINY, only_run_dir, read_metrics, run_in_process

from aebench import precision, rundir

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
SMALL = [*TINY, "epochs=1", "arch.hidden=[16]", "latent=4", "probe.every_epoch=false", "probe.label_budgets=[]",
         "probe.pixel_baseline=false"]


@pytest.fixture
def units(monkeypatch):
    """Force what the CPU is said to have: units("avx512_bf16"), units(None)."""
    def force(found: str | None) -> None:
        monkeypatch.setattr(precision, "cpu_bf16_units", lambda: found)
    return force


def test_the_rule_per_kind_of_device(units):
    units("avx512_bf16")
    assert precision.resolve("auto", CPU) == precision.Precision("bf16", "auto: avx512_bf16")
    assert precision.resolve("auto", CUDA) == precision.Precision("fp32", "auto: cuda")
    units("amx")
    assert precision.resolve("auto", CPU) == precision.Precision("bf16", "auto: amx")
    units(None)
    assert precision.resolve("auto", CPU) == precision.Precision("fp32", "auto: no bf16 units")
    assert precision.resolve("fp32", CPU) == precision.Precision("fp32", "forced")


def test_forcing_bf16_without_units_warns_in_one_line(units, caplog):
    units(None)
    with caplog.at_level(logging.WARNING, logger="aebench.precision"):
        assert precision.resolve("bf16", CPU) == precision.Precision("bf16", "forced")
    [record] = caplog.records
    assert "without bf16 units" in record.getMessage() and "\n" not in record.getMessage()
    units("avx512_bf16")
    caplog.clear()
    precision.resolve("bf16", CPU)
    assert not caplog.records


def test_a_checkpoint_keeps_its_precision_on_any_machine(units):
    units(None)  # this machine would choose fp32 ...
    saved = {"precision": {"used": "bf16", "reason": "auto: avx512_bf16"}}
    assert precision.resolve("auto", CPU, saved) == precision.Precision("bf16", "resumed (auto: avx512_bf16)")
    again = {"precision": precision.resolve("auto", CPU, saved).as_dict()}
    assert precision.resolve("auto", CPU, again).reason == "resumed (auto: avx512_bf16)"  # not nested twice


def test_detection_falls_back_to_the_cpu_flags(monkeypatch, tmp_path):
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    info = tmp_path / "cpuinfo"
    monkeypatch.setattr(precision, "CPUINFO", info)
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n")
    assert precision.cpu_bf16_units() == "avx512_bf16"
    info.write_text("flags\t\t: fpu sse2 avx2 amx_tile amx_bf16\n")
    assert precision.cpu_bf16_units() == "amx"
    info.write_text("flags\t\t: fpu sse2 avx2\n")
    assert precision.cpu_bf16_units() is None
    info.unlink()
    assert precision.cpu_bf16_units() is None  # no /proc/cpuinfo: no units claimed


def test_torchs_private_check_that_fails_falls_back_too(monkeypatch, tmp_path):
    def broken() -> bool:
        raise RuntimeError("changed in a later torch")

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", broken, raising=False)
    info = tmp_path / "cpuinfo"
    info.write_text("flags\t\t: avx2 avx512_bf16\n")
    monkeypatch.setattr(precision, "CPUINFO", info)
    assert precision.cpu_bf16_units() == "avx512_bf16"


def test_a_cpu_without_units_runs_fp32_and_says_why(units, tmp_path, monkeypatch, data_root):
    units(None)
    monkeypatch.chdir(tmp_path)
    code, err = run_in_process(SMALL)
    assert code == 0, err
    run = only_run_dir(tmp_path)
    assert read_metrics(run)["precision"] == {"used": "fp32", "reason": "auto: no bf16 units"}
    assert rundir.read_checkpoint(run / rundir.CHECKPOINT)["precision"] == {"used": "fp32", "reason": "auto: no bf16 units"}


def test_a_run_resumed_elsewhere_goes_on_in_the_precision_it_started_in(units, tmp_path, monkeypatch, data_root):
    """Started where bf16 units were found, resumed where none are: it goes on in bf16 (and says so)."""
    units("avx512_bf16")
    monkeypatch.chdir(tmp_path)
    code, err = run_in_process(SMALL)
    assert code == 0, err
    run = only_run_dir(tmp_path)
    first = read_metrics(run)
    assert first["precision"] == {"used": "bf16", "reason": "auto: avx512_bf16"}
    units(None)
    code, err = run_in_process([f"resume={run}", "epochs=1"])  # nothing left to train: the read-outs again
    assert code != 0 and "epochs=1 cannot be changed" in err  # a resume keeps its own config ...
    code, err = run_in_process([f"resume={run}"])
    assert code == 0, err
    again = read_metrics(run)
    assert again["precision"] == {"used": "bf16", "reason": "resumed (auto: avx512_bf16)"}
    assert again["probe_accuracy"] == first["probe_accuracy"]
