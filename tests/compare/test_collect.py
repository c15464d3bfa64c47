"""aebench.compare.rows and .groups: runs found, read through aebench.rundir, labelled and grouped over seeds."""

from __future__ import annotations

import json

import yaml

from aebench import compare, rundir
from fakes import fake_run, read_csv, run_compare, seed_sweep


def test_damaged_files_are_skipped_and_the_rest_compared(tmp_path, capsys, caplog):
    sweep = seed_sweep(tmp_path / "sweep")
    (sweep / "1_latent=5,seed=1" / "metrics.json").write_text('{"status": "completed", "probe_acc')  # half-written
    (sweep / "2_latent=5,seed=2" / ".hydra" / "config.yaml").write_text("model: [ae\nlatent: 5\n")
    metrics = json.loads((sweep / "4_latent=10,seed=1" / "metrics.json").read_text())
    (sweep / "4_latent=10,seed=1" / "metrics.json").write_text(json.dumps({**metrics, "probe_accuracy": "high"}))
    (sweep / "3_latent=10,seed=0" / "metrics.json").unlink()  # killed: incomplete, as before
    code, out, err = run_compare(capsys, sweep, "--baseline", "latent=10")
    assert code == 0, err
    assert "Traceback" not in err + out
    rows = {r["job"].split("_")[0]: r for r in read_csv(sweep / "summary.csv")}
    assert rows["1"]["status"] == "skipped" and "metrics.json: not valid JSON" in rows["1"]["error"]
    assert rows["2"]["status"] == "skipped" and ".hydra/config.yaml: not valid YAML" in rows["2"]["error"]
    assert rows["4"]["status"] == "skipped" and "probe_accuracy is str 'high', not a number" in rows["4"]["error"]
    assert rows["3"]["status"] == "incomplete" and rows["0"]["status"] == rows["5"]["status"] == "completed"
    md = (sweep / "summary.md").read_text()
    assert "3 skipped (files unreadable: 1_latent=5,seed=1: metrics.json" in md
    assert "skipped 2_latent=5,seed=2: .hydra/config.yaml" in caplog.text  # a warning per skipped run


def test_a_damaged_overrides_or_probe_file_costs_only_what_it_holds(tmp_path, caplog):
    """rundir's readers say what is wrong; a damaged overrides file skips its run, a damaged probe.npz only
    costs that run's bootstrap interval."""
    sweep = seed_sweep(tmp_path / "sweep", latents=(5,), seeds=(0, 1, 2))
    (sweep / "0_latent=5,seed=0" / rundir.OVERRIDES).write_text("{not: a list}")
    (sweep / "1_latent=5,seed=1" / rundir.PROBE).write_bytes(b"not a zip file")
    metrics = json.loads((sweep / "2_latent=5,seed=2" / rundir.METRICS).read_text())
    fake_run(sweep / "3_latent=5,seed=3", seed=3)
    (sweep / "3_latent=5,seed=3" / rundir.METRICS).write_text(json.dumps({**metrics, "precision": "bf16"}))
    rows = {r.job.split("_")[0]: r for r in compare.collect([sweep]).rows}
    assert rows["0"].status == "skipped" and rows["0"].error == f"{rundir.OVERRIDES}: not a list of overrides"
    assert rows["1"].completed and rows["1"].interval("probe_accuracy") == (None, None) and not rows["1"].ci_method
    assert rows["2"].completed and None not in rows["2"].interval("probe_accuracy")
    assert "1_latent=5,seed=1: probe.npz" in caplog.text and "no bootstrap interval" in caplog.text
    assert rows["3"].status == "skipped" and rows["3"].error == "metrics.json: precision is 'bf16', not {used, reason}"


def test_every_row_is_labelled_and_grouped_once(tmp_path):
    sweep = seed_sweep(tmp_path / "sweep")
    fake_run(sweep / "6_latent=20,seed=0", latent=20, seed=0, status="failed")
    comparison = compare.collect([sweep])
    assert [r.label for r in comparison.rows] == [
        "0: latent=5 seed=0", "1: latent=5 seed=1", "2: latent=5 seed=2",
        "3: latent=10 seed=0", "4: latent=10 seed=1", "5: latent=10 seed=2", "6: latent=20 seed=0"]
    assert [(g.name, g.seeds, g.jobs) for g in comparison.groups] == [("latent=5", "0 1 2", "0 1 2"),
                                                                     ("latent=10", "0 1 2", "3 4 5")]
    assert comparison.budgets == ("probe_accuracy@100",) and comparison.several_seeds
    assert all(comparison.group_of(r).key == r.group_key for r in comparison.done)


def test_settings_that_do_not_change_results_neither_split_groups_nor_name_jobs(tmp_path):
    """rundir.GROUP_IGNORES (seeds groups ignore them) and rundir.DIRNAME_EXCLUDES (labels leave them out)."""
    sweep = tmp_path / "sweep"
    for job, (threads, seed) in enumerate(((1, 0), (2, 1))):
        run = fake_run(sweep / f"{job}_seed={seed},threads={threads}", seed=seed,
                       overrides=[f"seed={seed}", f"threads={threads}", "figures=false"])
        cfg = yaml.safe_load((run / rundir.CONFIG).read_text())
        (run / rundir.CONFIG).write_text(yaml.safe_dump({**cfg, "threads": threads, "device": f"cpu{job}"}))
    comparison = compare.collect([sweep])
    assert [r.overrides for r in comparison.rows] == ["seed=0", "seed=1"]
    assert [r.label for r in comparison.rows] == ["0: seed=0", "1: seed=1"]
    assert len(comparison.groups) == 1 and comparison.groups[0].n_seeds == 2


def precision_runs(root, used: dict[str, str], seeds=(0, 1)) -> None:
    """One command (no overrides but the seed) run on machines whose CPUs resolve train.precision=auto apart."""
    for where, precision in used.items():
        for seed in seeds:
            fake_run(root / where / f"{seed}_seed={seed}", seed=seed, overrides=[f"seed={seed}"],
                     train_precision="auto", precision_used=precision)


def test_seed_groups_follow_the_precision_a_run_used_not_its_config(tmp_path, capsys):
    """train.precision=auto trains in bf16 on a CPU with bf16 units and in fp32 elsewhere: the same command on two
    machines makes two groups, each named by the precision it used."""
    precision_runs(tmp_path, {"avx512": "bf16", "avx2": "fp32"})
    comparison = compare.collect([tmp_path / "avx512", tmp_path / "avx2"])
    assert sorted(g.name for g in comparison.groups) == ["train.precision=bf16", "train.precision=fp32"]
    assert all(g.n_seeds == 2 and g.seeds == "0 1" for g in comparison.groups)
    assert {r.precision for r in comparison.groups[0].members} == {comparison.groups[0].varying[0].split("=")[1]}
    assert {r.label for r in comparison.rows} == {"avx2/0: seed=0 train.precision=fp32",
                                                  "avx2/1: seed=1 train.precision=fp32",
                                                  "avx512/0: seed=0 train.precision=bf16",
                                                  "avx512/1: seed=1 train.precision=bf16"}
    code, _, err = run_compare(capsys, tmp_path / "avx512", tmp_path / "avx2", "--out", tmp_path / "r",
                               "--baseline", "train.precision=fp32")
    assert code == 0, err
    assert sorted(g["group"] for g in read_csv(tmp_path / "r" / "groups.csv")) == ["train.precision=bf16",
                                                                                   "train.precision=fp32"]
    assert {d["group"] for d in read_csv(tmp_path / "r" / "differences.csv")} == {"train.precision=bf16"}


def test_one_precision_everywhere_changes_no_name_and_an_override_of_auto_is_shown_as_used(tmp_path):
    precision_runs(tmp_path, {"a": "fp32", "b": "fp32"})
    comparison = compare.collect([tmp_path / "a", tmp_path / "b"])
    assert len(comparison.groups) == 1 and comparison.groups[0].n_seeds == 4
    assert [r.label for r in comparison.rows] == ["a/0: seed=0", "a/1: seed=1", "b/0: seed=0", "b/1: seed=1"]
    # a sweep over train.precision=auto,bf16 on a CPU without bf16 units: auto is named by what it chose
    sweep = tmp_path / "sweep"
    for job, (asked, used) in enumerate((("auto", "fp32"), ("bf16", "bf16"))):
        fake_run(sweep / f"{job}_train.precision={asked}", overrides=[f"train.precision={asked}"],
                 train_precision=asked, precision_used=used)
    labels = [r.label for r in compare.collect([sweep]).rows]
    assert labels == ["0: train.precision=fp32", "1: train.precision=bf16"]


def test_runs_that_record_no_precision_are_grouped_by_their_configs(tmp_path):
    """Runs of aebench < 0.5 have no precision in metrics.json: they trained in their config's train.precision,
    and pool with newer runs that used the same."""
    fake_run(tmp_path / "s" / "0_seed=0", seed=0, overrides=["seed=0"], train_precision="fp32")
    fake_run(tmp_path / "s" / "1_seed=1", seed=1, overrides=["seed=1"], train_precision="auto", precision_used="fp32")
    fake_run(tmp_path / "s" / "2_seed=2", seed=2, overrides=["seed=2"], train_precision="auto", precision_used="bf16")
    comparison = compare.collect([tmp_path / "s"])
    assert [r.precision for r in comparison.rows] == ["fp32", "fp32", "bf16"]
    assert [(g.name, g.seeds) for g in comparison.groups] == [("train.precision=fp32", "0 1"),
                                                              ("train.precision=bf16", "2")]
