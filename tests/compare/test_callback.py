"""aebench.compare.callback: the comparison at the end of every multirun, and its verdict on the sweep."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from aebench.compare.callback import SweepSummaryCallback
from fakes import seed_sweep


def sweep_config(sweep):
    return OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})


def test_the_sweep_callback_survives_a_damaged_job(tmp_path, capsys):
    sweep = seed_sweep(tmp_path / "sweep", latents=(5,), seeds=(0, 1))
    (sweep / "0_latent=5,seed=0" / "metrics.json").write_text("{")
    callback = SweepSummaryCallback()
    with pytest.raises(SystemExit) as stopped:
        callback.on_multirun_end(sweep_config(sweep))
    assert (sweep / "summary.md").is_file()
    assert callback.problem and "1 of 2 job(s) did not complete" in callback.problem
    # the process ends with the verdict as one line and exit status 2, as the aebench command's errors do
    err = capsys.readouterr().err.strip().splitlines()
    assert stopped.value.code == 2 and err[-1] == f"aebench: error: {callback.problem}"


def test_a_sweep_whose_jobs_all_completed_ends_as_hydra_ends_it(tmp_path, capsys):
    sweep = seed_sweep(tmp_path / "sweep", latents=(5,), seeds=(0, 1))
    callback = SweepSummaryCallback()
    callback.on_multirun_end(sweep_config(sweep))  # no SystemExit
    out = capsys.readouterr().out
    assert callback.problem is None and f"summary: {sweep / 'summary.md'}" in out
    assert callback.summarise(sweep) is None  # the same verdict, without ending anything


def test_a_comparison_that_fails_says_where_the_results_are(tmp_path, monkeypatch):
    from aebench.compare import callback as module

    sweep = seed_sweep(tmp_path / "sweep", latents=(5,), seeds=(0,))
    monkeypatch.setattr(module, "write_report", lambda *a, **k: (_ for _ in ()).throw(OSError(28, "No space left")))
    problem = SweepSummaryCallback().summarise(sweep)
    assert problem.startswith("the comparison of the sweep failed (")
    assert f"every job's results are in its own directory under {sweep}; try: aebench-compare {sweep}" in problem
