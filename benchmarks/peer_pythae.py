"""The pythae side of the peer benchmark (benchmarks/peer.py starts it; not run by hand).

Runs under the peer venv's python (.venv-peer: pythae 0.1.2 on top of aebench's venv), one
fresh process per timed run.  Two commands:

``train``: one pythae ``TrainingPipeline`` run with the networks of aebench's
``'model.hidden=[512]' model.activation=relu`` (AE: MSE; VAE: BCE summed over pixels + KL),
then the codes of the train and test sets (AE: z, VAE: mu), the way a pythae user gets them.
Writes ``codes.pt`` (train and test codes, float32) and ``result.json`` (seconds inside the
process, the network's parameter shapes, pythae's eval loss per epoch) into ``--out``.
The probe on the codes is not run here: benchmarks/peer.py runs aebench's own probe on them
outside this timed process.

``verify``: builds pythae's networks and aebench's (composed by Hydra from the very
overrides the benchmark gives ``aebench``) from the same seed and checks that they are the
same network (parameter shapes and initial values) and that the losses agree on a batch of
MNIST: the AE's pythae loss is 784 x aebench's (a sum over pixels against a per-pixel mean),
the VAE's losses are equal (BCE summed over pixels + KL, with the same noise).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn

from aebench import data

# Imported here, not where first used, so that pythae's import time (pydantic, scikit-learn,
# scipy, imageio: pythae.pipelines imports its samplers) counts in this process's wall time
# only, as it does for any pythae user, and not in the training time.
from pythae.models import AE, VAE, AEConfig, VAEConfig
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder, BaseEncoder
from pythae.pipelines import TrainingPipeline
from pythae.trainers import BaseTrainerConfig
from pythae.trainers.training_callbacks import TrainingCallback

IMAGE_SHAPE = (1, 28, 28)  # pythae's convention: (channels, height, width)
INPUT_DIM = 784
HIDDEN = 512


# ---------------------------------------------------------------- the networks, in pythae's classes
# Built in aebench's order (encoder first, then decoder; the VAE's body, mu head, logvar head),
# so that from the same seed both libraries draw the same initial weights.
class MLPEncoderAE(BaseEncoder):
    """Linear(784,512)-ReLU-Linear(512,latent): aebench's AE encoder with model.hidden=[512], relu."""

    def __init__(self, latent: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(INPUT_DIM, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, latent))

    def forward(self, x: torch.Tensor) -> ModelOutput:
        return ModelOutput(embedding=self.net(x.reshape(x.shape[0], -1)))


class MLPEncoderVAE(BaseEncoder):
    """Linear(784,512)-ReLU, then mu and log-variance heads Linear(512,latent): aebench's VAE encoder."""

    def __init__(self, latent: int):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(INPUT_DIM, HIDDEN), nn.ReLU())
        self.mu = nn.Linear(HIDDEN, latent)
        self.logvar = nn.Linear(HIDDEN, latent)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        h = self.body(x.reshape(x.shape[0], -1))
        return ModelOutput(embedding=self.mu(h), log_covariance=self.logvar(h))


class MLPDecoder(BaseDecoder):
    """Linear(latent,512)-ReLU-Linear(512,784)-Sigmoid: aebench's decoder (it keeps the logits and
    applies the sigmoid inside its loss; pythae's losses take probabilities)."""

    def __init__(self, latent: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, INPUT_DIM), nn.Sigmoid())

    def forward(self, z: torch.Tensor) -> ModelOutput:
        return ModelOutput(reconstruction=self.net(z).reshape(z.shape[0], *IMAGE_SHAPE))


def build_model(kind: str, latent: int, seed: int) -> AE | VAE:
    """pythae's AE (MSE summed over pixels) or VAE (BCE summed over pixels + KL) on the networks above."""
    torch.manual_seed(seed)
    if kind == "ae":
        encoder, decoder = MLPEncoderAE(latent), MLPDecoder(latent)
        return AE(AEConfig(input_dim=IMAGE_SHAPE, latent_dim=latent), encoder=encoder, decoder=decoder)
    encoder, decoder = MLPEncoderVAE(latent), MLPDecoder(latent)
    return VAE(VAEConfig(input_dim=IMAGE_SHAPE, latent_dim=latent, reconstruction_loss="bce"),
               encoder=encoder, decoder=decoder)


class EpochLog(TrainingCallback):
    """Keeps what pythae logs after each epoch (its train and eval loss)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def on_log(self, training_config, logs, **kwargs):  # noqa: D102 - pythae's callback signature
        self.rows.append({k: float(v) for k, v in logs.items()})


@torch.no_grad()
def encode(model: AE | VAE, x: torch.Tensor, batch: int = 10_000) -> torch.Tensor:
    """The codes a probe reads: the encoder's ``embedding`` (AE: z; VAE: mu), in batches of 10 000
    as aebench encodes.  Not pythae's ``model.embed``: that runs the whole forward pass (decoder and
    loss too) and, for the VAE, returns a sample z instead of mu."""
    model.eval()
    return torch.cat([model.encoder(x[i : i + batch]).embedding.float() for i in range(0, len(x), batch)])


def encoder_decoder_params(model: AE | VAE) -> list[nn.Parameter]:
    """pythae's parameters, encoder first, then decoder: aebench's order.  (``model.parameters()``
    lists the decoder first: pythae's BaseAE registers the decoder before the encoder.)"""
    return [*model.encoder.parameters(), *model.decoder.parameters()]


def param_shapes(params: list[torch.Tensor]) -> list[list[int]]:
    return [list(p.shape) for p in params]


# ---------------------------------------------------------------- train
def train(args: argparse.Namespace) -> None:
    if args.flush_denormals:  # aebench does this; pythae does not (off unless asked)
        torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    seconds: dict[str, float] = {}

    t = time.perf_counter()
    ds = data.load(args.dataset, Path(args.data_root), torch.device("cpu"), args.train_subset, args.test_subset,
                   download=False)
    train_x = ds.train_x.reshape(-1, *IMAGE_SHAPE)
    test_x = ds.test_x.reshape(-1, *IMAGE_SHAPE)
    seconds["data"] = time.perf_counter() - t

    model = build_model(args.model, args.latent, args.seed)
    config = BaseTrainerConfig(
        output_dir=str(out / "pythae"),
        num_epochs=args.epochs,
        learning_rate=args.lr,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.eval_batch_size,
        optimizer_cls="Adam",
        scheduler_cls=None,
        steps_saving=None,
        seed=args.seed,
        no_cuda=args.device == "cpu",
    )
    epoch_log = EpochLog()
    pipeline = TrainingPipeline(model=model, training_config=config)

    t = time.perf_counter()
    pipeline(train_data=train_x, eval_data=test_x, callbacks=[epoch_log])
    seconds["train"] = time.perf_counter() - t

    # pipeline.model: the model after the last epoch, as aebench's codes are.  (pythae also keeps a
    # copy of the epoch with the lowest eval loss, and saves that one as its final_model.)
    t = time.perf_counter()
    codes = {"train": encode(pipeline.model, train_x.to(pipeline.trainer.device)).cpu(),
             "test": encode(pipeline.model, test_x.to(pipeline.trainer.device)).cpu()}
    seconds["readout"] = time.perf_counter() - t

    torch.save(codes, out / "codes.pt")
    result = {
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "param_shapes": param_shapes(encoder_decoder_params(pipeline.model)),
        "parameters": sum(p.numel() for p in pipeline.model.parameters()),
        "history": epoch_log.rows,
        "device": str(pipeline.trainer.device),
        "threads": torch.get_num_threads(),
    }
    (out / "result.json").write_text(json.dumps(result, indent=1))


# ---------------------------------------------------------------- verify
def aebench_model(overrides: list[str]) -> nn.Module:
    """aebench's model, composed by Hydra from ``overrides`` exactly as the ``aebench`` command would."""
    from aebench import config, models

    return models.from_config(config.compose(overrides), (1, *IMAGE_SHAPE[-2:]))


def verify(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    ds = data.load(args.dataset, Path(args.data_root), torch.device("cpu"), train_subset=512, test_subset=1,
                   download=False)
    x = ds.train_x
    report = {}
    for kind, spec in json.loads(args.models).items():
        latent, seed = spec["latent"], 0
        ours = build_model(kind, latent, seed)
        torch.manual_seed(seed)
        theirs = aebench_model(spec["overrides"])
        p_ours, p_theirs = encoder_decoder_params(ours), list(theirs.parameters())
        shapes_match = param_shapes(p_ours) == param_shapes(p_theirs)
        same_init = shapes_match and all(torch.equal(a, b) for a, b in zip(p_ours, p_theirs))

        # The losses on one batch of 512 training images, with identical weights.
        if kind == "ae":
            loss_pythae = ours({"data": x.reshape(-1, *IMAGE_SHAPE)}).loss
            loss_aebench = theirs.loss(x)["loss"]
            expected_ratio = float(INPUT_DIM)  # pythae: squared error summed over pixels; aebench: mean per pixel
        else:
            torch.manual_seed(1)  # pythae draws the noise with torch.randn_like from the global generator
            loss_pythae = ours({"data": x.reshape(-1, *IMAGE_SHAPE)}).loss
            loss_aebench = theirs.loss(x, generator=torch.Generator().manual_seed(1))["loss"]
            expected_ratio = 1.0  # both: BCE summed over the 784 pixels + KL, per image
        loss_pythae.backward()
        loss_aebench.backward()
        ratio = (loss_pythae / loss_aebench).item()
        grad_ratio = max(((a.grad - expected_ratio * b.grad).abs().max() / (expected_ratio * b.grad).abs().max()).item()
                         for a, b in zip(p_ours, p_theirs))
        report[kind] = {
            "overrides": spec["overrides"],
            "parameters_pythae": sum(p.numel() for p in p_ours),
            "parameters_aebench": sum(p.numel() for p in p_theirs),
            "param_shapes_pythae": param_shapes(p_ours),
            "param_shapes_aebench": param_shapes(p_theirs),
            "same_shapes": shapes_match,
            "same_initial_weights": same_init,
            "loss_pythae": loss_pythae.item(),
            "loss_aebench": loss_aebench.item(),
            "loss_ratio": ratio,
            "expected_loss_ratio": expected_ratio,
            "loss_ratio_ok": abs(ratio / expected_ratio - 1) < 1e-4,
            "max_relative_gradient_difference": grad_ratio,
            "gradients_ok": grad_ratio < 1e-3,
        }
    Path(args.out).write_text(json.dumps(report, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("train", "verify"):
        p = sub.add_parser(name)
        p.add_argument("--data-root", required=True)
        p.add_argument("--dataset", default="mnist")
        p.add_argument("--threads", type=int, default=2)
        p.add_argument("--out", required=True, help="train: a directory; verify: a JSON file")
    t = sub.choices["train"]
    t.add_argument("--model", choices=["ae", "vae"], required=True)
    t.add_argument("--latent", type=int, required=True)
    t.add_argument("--epochs", type=int, required=True)
    t.add_argument("--batch-size", type=int, required=True)
    t.add_argument("--eval-batch-size", type=int, required=True)
    t.add_argument("--lr", type=float, required=True)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    t.add_argument("--train-subset", type=int, default=None)
    t.add_argument("--test-subset", type=int, default=None)
    t.add_argument("--flush-denormals", action="store_true", help="treat subnormal floats as zero, as aebench does")
    sub.choices["verify"].add_argument("--models", required=True,
                                       help='JSON: {"ae": {"latent": 20, "overrides": [...]}, "vae": {...}}')
    args = parser.parse_args()
    {"train": train, "verify": verify}[args.command](args)


if __name__ == "__main__":
    main()
