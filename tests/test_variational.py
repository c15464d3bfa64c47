"""The VAE family: each objective's loss against the VAE's, beta-TCVAE's decomposition, the discriminator's own
step, the capacity schedule, and exact resume of each new objective in the training loop."""

from __future__ import annotations

import math
import signal

import pytest
import torch

from aebench import config, data, models, rundir
from aebench.errors import Interrupted
from aebench.models.variational import dip_covariance, log_normal, permute_units, tc_decomposition
from aebench.train import SelfSignal, Trainer

NEW = ("beta_tcvae", "factor_vae", "dip_vae", "annealed_vae")
SMALL = ["latent=4", "arch.hidden=[32]", "model.discriminator_hidden=32", "model.discriminator_layers=2"]


def build(name: str, *overrides: str, shape=(1, 8, 8), dataset_size: int = 512):
    cfg = config.compose([f"model={name}", *SMALL, *overrides])
    config.validate(cfg)
    return models.from_config(cfg, shape, dataset_size=dataset_size)


def same_draw(model, x, seed=3):
    return model.loss(x, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name, off", [("factor_vae", ["model.gamma=0"]),
                                       ("dip_vae", ["model.lambda_od=0", "model.lambda_d=0"]),
                                       ("dip_vae", ["model.dip_type=ii", "model.lambda_od=0", "model.lambda_d=0"]),
                                       ("annealed_vae", ["model.gamma=1", "model.capacity_max=0"])])
def test_with_its_extra_term_off_an_objective_is_the_vae_on_the_same_batch_and_draw(name, off):
    torch.manual_seed(0)
    vae = build("vae")
    other = build(name, *off)
    missing, unexpected = other.load_state_dict(vae.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("discriminator.") for k in missing)
    x = torch.rand(64, 64)
    mine, theirs = same_draw(other, x), same_draw(vae, x)
    assert torch.equal(mine["loss"], theirs["loss"]), (mine["loss"], theirs["loss"])
    assert torch.equal(mine["neg_elbo"], theirs["neg_elbo"])


def posteriors(m: int, d: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    mu = torch.randn(m, d, generator=gen, dtype=torch.float64)
    logvar = torch.randn(m, d, generator=gen, dtype=torch.float64) * 0.5 - 1
    z = mu + torch.randn(m, d, generator=gen, dtype=torch.float64) * torch.exp(0.5 * logvar)
    return z, mu, logvar


@pytest.mark.parametrize("dataset_size", [64, 10_000, 737_280])
def test_beta_tcvae_parts_sum_to_log_q_z_given_x_minus_log_p_z_whatever_q_z(dataset_size):
    z, mu, logvar = posteriors(64, 5)
    mi, tc, dw = tc_decomposition(z, mu, logvar, dataset_size)
    log_qz_x = log_normal(z, mu, logvar).sum(1)
    log_pz = log_normal(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)
    torch.testing.assert_close(mi + tc + dw, log_qz_x - log_pz, rtol=0, atol=1e-9)


def test_beta_tcvae_parts_are_the_same_computed_in_blocks_of_rows(monkeypatch):
    from aebench.models import variational

    z, mu, logvar = posteriors(300, 4, seed=5)
    whole = tc_decomposition(z, mu, logvar, 1000)
    monkeypatch.setattr(variational, "PAIR_FLOATS", 7 * 300 * 4)  # blocks of 7 rows, the last one short
    for a, b in zip(whole, tc_decomposition(z, mu, logvar, 1000)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_beta_tcvae_parts_average_to_the_analytic_kl_over_a_large_batch():
    z, mu, logvar = posteriors(20_000, 4, seed=1)
    mi, tc, dw = tc_decomposition(z[:4000], mu[:4000], logvar[:4000], 20_000)  # the estimator on a batch of 4000
    total = mi + tc + dw
    analytic = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1))[:4000]
    error = (total - analytic).mean()
    standard_error = (total - analytic).std() / math.sqrt(len(total))
    assert abs(error) < 4 * standard_error, (error, standard_error)
    assert abs(error) / analytic.mean() < 0.02


def test_beta_tcvae_trains_its_three_weighted_parts():
    torch.manual_seed(0)
    model = build("beta_tcvae", "model.alpha=2", "model.beta=5", "model.gamma=3")
    x = torch.rand(32, 64)
    parts = same_draw(model, x)
    expected = parts["bce"] + 2 * parts["mi"] + 5 * parts["tc"] + 3 * parts["dimwise_kl"]
    torch.testing.assert_close(parts["loss"].detach(), expected, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="dataset_size"):
        build("beta_tcvae", dataset_size=None).loss(x)


def test_dip_covariances_are_those_of_mu_and_of_z():
    z, mu, logvar = posteriors(50_000, 3, seed=2)
    cov_mu = torch.cov(mu.T, correction=0)
    torch.testing.assert_close(dip_covariance(mu, logvar, "i"), cov_mu)
    torch.testing.assert_close(dip_covariance(mu, logvar, "ii"), torch.cov(z.T, correction=0), atol=0.03, rtol=0.03)


def test_permuting_units_keeps_each_units_values_and_breaks_their_pairing():
    z = torch.arange(200, dtype=torch.float32).reshape(100, 2)
    z[:, 1] = z[:, 0]
    p = permute_units(z, torch.Generator().manual_seed(0))
    for d in range(2):
        assert torch.equal(p[:, d].sort().values, z[:, d].sort().values)
    assert (p[:, 0] != p[:, 1]).float().mean() > 0.9


def tiny_data(n: int = 256) -> data.ImageData:
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(n, 64, generator=gen) > 0.5).float()
    y = torch.randint(0, 10, (n,), generator=gen)
    return data.ImageData.of_tensors("synthetic", tuple(map(str, range(10))), x, y, x[:64], y[:64], (1, 8, 8))


def trainer_for(name: str, run_dir, epochs: int = 2, *overrides: str) -> Trainer:
    torch.manual_seed(0)
    ds = tiny_data()
    cfg = config.compose([f"model={name}", *SMALL, "train.batch_size=32", "train.precision=fp32", *overrides])
    model = models.from_config(cfg, ds.image_shape, dataset_size=len(ds.pretrain))
    return Trainer(model, ds, cfg.train, epochs=epochs, seed=0, run_dir=run_dir, meta={})


def test_the_factor_vae_discriminator_takes_its_own_step_with_its_own_adam(tmp_path):
    trainer = trainer_for("factor_vae", tmp_path, 1)
    model = trainer.model
    main = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert main.isdisjoint(id(p) for p in model.discriminator.parameters())
    assert len(main) == len(list(model.parameters())) - len(list(model.discriminator.parameters()))
    (step,) = [c for c in trainer.callbacks if c.name == "factor_vae_discriminator"]
    assert step.optimizer.defaults["lr"] == 1e-4 and step.optimizer.defaults["betas"] == (0.5, 0.9)
    before = [p.detach().clone() for p in model.discriminator.parameters()]
    history = trainer.fit()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.discriminator.parameters()))
    assert 0 < history[-1]["train_discriminator_loss"] < 2  # cross-entropy of 2 classes, near log 2 = 0.69
    assert math.isfinite(history[-1]["train_tc"]) and math.isfinite(history[-1]["test_neg_elbo"])


def test_the_capacity_grows_over_its_share_of_the_steps_then_stays(tmp_path):
    trainer = trainer_for("annealed_vae", tmp_path, 2, "model.capacity_max=10", "model.capacity_ramp=0.5")
    seen = []

    class Watch:
        name = None

        def __getattr__(self, _):
            return lambda *a, **k: None

        def on_step_start(self, t):
            pass

        def on_step_end(self, t, x, parts):
            seen.append(float(parts["capacity"]))

    trainer.callbacks.append(Watch())
    trainer.fit()
    steps = trainer.total_steps  # 8 steps an epoch, 16 in all; C reaches 10 nats at step 8
    assert len(seen) == steps == 16
    assert seen[0] == 0 and seen[4] == pytest.approx(5) and seen[8:] == [10.0] * 8


@pytest.mark.parametrize("name", NEW)
def test_sigterm_mid_epoch_then_resume_gives_the_uninterrupted_numbers(name, tmp_path, monkeypatch):
    straight = trainer_for(name, tmp_path / "straight", 2)
    expected = straight.fit()
    weights = {k: v.clone() for k, v in straight.model.state_dict().items()}

    interrupted = trainer_for(name, tmp_path / "cut", 2)
    interrupted.callbacks.append(SelfSignal(signal.SIGTERM, 11))  # in epoch 2 (8 steps an epoch)
    with pytest.raises(Interrupted):
        interrupted.fit()
    ckpt = torch.load(tmp_path / "cut" / rundir.CHECKPOINT, weights_only=False)
    assert (ckpt["epoch"], ckpt["step"]) == (1, 3)
    resumed = trainer_for(name, tmp_path / "cut", 2)
    resumed.load_checkpoint(ckpt)
    history = resumed.fit()
    strip = lambda rows: [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in rows]  # noqa: E731
    assert strip(history) == strip(expected)
    for k, v in resumed.model.state_dict().items():
        assert torch.equal(v, weights[k]), k


SPRITES = ["data=sprites", "data.scales=2", "data.orientations=4", "data.positions=4", "data.image_size=16",
           "probe.label_budgets=[]", "probe.pixel_baseline=false"]
MNIST = ["data.train_subset=1000", "data.test_subset=300", "probe.label_budgets=[]", "probe.pixel_baseline=false"]
# Each new objective on both networks and both kinds of data, in two runs.
RUNS = [(name, arch, source) for i, name in enumerate(NEW)
        for arch, source in ((("mlp", "sprites"), ("conv", "mnist")) if i % 2 else (("conv", "sprites"), ("mlp", "mnist")))]


@pytest.mark.parametrize("name, arch, source", RUNS)
def test_each_new_objective_trains_on_sprites_and_mnist_on_both_networks(name, arch, source, tmp_path, monkeypatch,
                                                                          data_root):
    from conftest import only_run_dir, read_metrics, run_in_process

    monkeypatch.chdir(tmp_path)
    data_args = SPRITES if source == "sprites" else MNIST
    code, err = run_in_process([f"model={name}", f"arch={arch}", *data_args, "latent=5", "epochs=2", "threads=1",
                                "train.batch_size=64", "probe.every_epoch=false", "progress=false", "figures=true",
                                "model.discriminator_hidden=64", "model.discriminator_layers=2",
                                f"data.root={data_root if source == 'mnist' else tmp_path / 'root'}"])
    assert code == 0, err
    run = only_run_dir(tmp_path)
    metrics = read_metrics(run)
    assert metrics["status"] == "completed" and metrics["config"]["model"] == name
    assert 0 < metrics["neg_elbo"] < 700 and 0.1 < metrics["probe_accuracy"] <= 1
    rows = rundir.read_history(run)
    last = {k: float(v) for k, v in rows[-1].items() if v}
    if name == "annealed_vae":  # its capacity grows over these two epochs (it may trade BCE for it): KL follows C
        pixels = metrics["data"]["image_shape"][1] * metrics["data"]["image_shape"][2]
        assert last["test_bce"] < pixels * math.log(2) and last["test_kl"] > float(rows[0]["test_kl"])
    else:
        assert last["test_bce"] < float(rows[0]["test_bce"])  # it learns to reconstruct
    own = {"beta_tcvae": "train_tc", "factor_vae": "train_discriminator_loss", "dip_vae": "train_dip_diagonal",
           "annealed_vae": "train_capacity"}[name]
    assert math.isfinite(float(rows[-1][own]))
    assert (run / "figures" / "samples.png").is_file() and (run / "figures" / "traversals.png").is_file()
    if source == "sprites":
        assert 0 <= metrics["mig"] <= 1 and 0 <= metrics["dci_disentanglement"] <= 1
    import aebench

    loaded = aebench.load_run(run)  # the model as it trained, its loss usable again (beta_tcvae: the data's size)
    assert loaded.model.kind == name
    x = torch.rand(8, int(torch.tensor(loaded.image_shape).prod()))
    assert math.isfinite(float(loaded.model.loss(x.to(loaded.device))["neg_elbo"]))
