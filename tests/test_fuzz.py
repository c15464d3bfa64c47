"""Random combinations of valid and invalid overrides never end in a traceback."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import run_in_process

VALUES = {
    "model": ["ae", "vae", "dae", "sae", "gan", "AE", ""],
    "arch": ["mlp", "conv", "rnn"],
    "latent": ["1", "2", "7", "0", "-4", "2.5", "x", "[3]", "null"],
    "epochs": ["1", "0", "-1", "one", "1.0"],
    "device": ["cpu", "auto", "cuda", "cuda:1", "tpu", "''"],
    "train.lr": ["1e-3", "0.01", "0", "-1e-3", "fast", "inf"],
    "train.batch_size": ["32", "300", "0", "-5", "a"],
    "train.scheduler": ["none", "step", "cosine", "linear"],
    "arch.hidden": ["[32]", "[64,16]", "[]", "[0]", "[-3,4]", "wide", "[1.5]"],
    "arch.channels": ["[4]", "[4,8]", "[]", "[0]", "[2,2,2,2,2,2]"],
    "model.beta": ["0", "0.5", "4", "-1", "big"],
    "arch.activation": ["relu", "gelu", "elu", "swish"],
    "model.noise_level": ["0", "0.5", "1", "-0.1"],
    "probe.knn_k": ["1", "5", "0", "k"],
    "seed": ["0", "7", "-1", "s"],
}
TINY = ["data.train_subset=300", "data.test_subset=100", "figures=false", "probe.every_epoch=false", "progress=false"]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(overrides=st.dictionaries(st.sampled_from(sorted(VALUES)), st.none(), min_size=1, max_size=4).flatmap(
    lambda keys: st.tuples(*[st.sampled_from(VALUES[k]).map(lambda v, k=k: f"{k}={v}") for k in sorted(keys)])))
def test_overrides_never_give_a_traceback(overrides, tmp_path_factory, monkeypatch, data_root):
    cwd = tmp_path_factory.mktemp("fuzz")
    monkeypatch.chdir(cwd)
    if not any(o.startswith("epochs=") for o in overrides):
        overrides = (*overrides, "epochs=1")
    code, err = run_in_process([*overrides, *TINY])
    assert "Traceback" not in err
    if code == 0:
        metrics = [json.loads(p.read_text()) for p in cwd.glob("outputs/*/*/metrics.json")]
        assert len(metrics) == 1 and metrics[0]["status"] == "completed"
        assert 0 <= metrics[0]["probe_accuracy"] <= 1
    else:
        assert code == 2, (overrides, code, err)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("aebench: error: "), (overrides, err)
