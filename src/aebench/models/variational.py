"""The VAE family (``model=vae``, ``beta_tcvae``, ``factor_vae``, ``dip_vae``, ``annealed_vae``): one Gaussian
posterior and Bernoulli decoder, told apart by what they add to the reconstruction.

Every member is a :class:`VAE`: ``posterior``, ``draw``, the probe reads mu, and every loss also reports the
test negative ELBO at beta = 1 (``neg_elbo``, BCE + analytic KL, nats per image), so that they compare.
Per image, with BCE summed over pixels and KL = KL(q(z|x) || N(0, I)) in closed form:

- ``vae``: BCE + beta * KL  (beta = 1: the negative ELBO; ``model=beta_vae`` is beta = 4; Higgins et al. 2017);
- ``beta_tcvae``: BCE + alpha * MI + beta * TC + gamma * DW  (Chen et al. 2018): the KL's sampled estimate
  log q(z|x) - log p(z) split into index-code mutual information, total correlation and dimension-wise KL,
  with q(z) and q(z_d) by the minibatch-weighted estimator (each batch member's posterior weighted 1/(N M),
  N images in the training set, M in the batch);
- ``factor_vae``: BCE + beta * KL + gamma * TC  (Kim & Mnih 2018): TC estimated by a discriminator between
  codes and codes permuted per unit across the batch, as logit(real) - logit(permuted); the discriminator has
  its own Adam (lr 1e-4, betas 0.5, 0.9) and takes its own step after each VAE step (:class:`DiscriminatorStep`),
  on that step's codes permuted within the same batch (disentanglement_lib's choice; Kim & Mnih permute a second batch);
- ``dip_vae``: BCE + beta * KL + lambda_od * sum_{i != j} C_ij^2 + lambda_d * sum_i (C_ii - 1)^2  (Kumar et al. 2018),
  C the covariance over the batch of mu (``dip_type=i``) or of z under q (``ii``: Cov[mu] + E[diag sigma^2]);
- ``annealed_vae``: BCE + gamma * |KL - C|  (Burgess et al. 2018), the batch's mean KL pushed towards a capacity C
  that grows linearly from 0 to ``capacity_max`` nats over the first ``capacity_ramp`` of the run's steps
  (:class:`CapacitySchedule`), then stays.

Batch statistics (beta_tcvae's q(z), dip_vae's covariance) are taken over the whole global batch when the run
is on several processes (:func:`aebench.distributed.gather_rows`: autograd-aware, shares of any size).
"""

from __future__ import annotations

import math
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .. import distributed
from ..train import Callback
from .base import CodeModel
from .nets import ConvNet, MLPNet

LOG_2PI = math.log(2 * math.pi)
PAIR_FLOATS = 2**24  # beta_tcvae: at most this many pairwise log-densities at once (64 MiB of float32)
DIP_TYPES = ("i", "ii")


def log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, exp(logvar)) per element (broadcast)."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) * torch.exp(-logvar))


class VAE(CodeModel):
    """Gaussian-latent variational autoencoder with a Bernoulli decoder.

    Loss per image: BCE summed over pixels + :meth:`regulariser`; for the plain VAE that is beta * KL(q(z|x) ||
    N(0, I)), and with beta = 1 the negative ELBO in nats.  The probe reads mu.
    """

    kind = "vae"
    variational = True

    def __init__(self, net: MLPNet | ConvNet, latent: int, *, beta: float):
        super().__init__(latent)
        self.beta = beta
        self.body, features = net.encoder()
        self.fc_mu = nn.Linear(features, latent)
        self.fc_logvar = nn.Linear(features, latent)
        self.decoder = net.decoder(latent)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.fc_mu(h), self.fc_logvar(h)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x)[0]

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        device = self.fc_mu.weight.device
        z = torch.randn(n, self.latent, device=device, generator=generator)
        return self.decode(z)

    @staticmethod
    def draw(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A code drawn from the posterior: z = mu + sigma * eps (the reparameterisation)."""
        eps = torch.randn(mu.shape, device=mu.device, dtype=mu.dtype, generator=generator)
        return mu + eps * torch.exp(0.5 * logvar)

    def loss(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        mu, logvar = self.posterior(x)
        z = self.draw(mu, logvar, generator)
        logits = self.decode_logits(z)
        n = x.shape[0]
        bce = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / n
        # in float32 also under bf16 autocast (a no-op in fp32): a bf16 sum would round the KL to 1/64 nat
        mu32, logvar32 = mu.float(), logvar.float()
        kl = -0.5 * torch.sum(1 + logvar32 - mu32.pow(2) - logvar32.exp()) / n
        penalty, parts = self.regulariser(mu, logvar, z, kl)
        return {"loss": bce + penalty, "neg_elbo": (bce + kl).detach(), "bce": bce.detach(), "kl": kl.detach(),
                **{k: v.detach() for k, v in parts.items()}}

    def regulariser(self, mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor,
                    kl: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """What the objective adds to the reconstruction (per image), and its parts to report."""
        return self.beta * kl, {}


# ------------------------------------------------------------------------------------------------------ beta-TCVAE
def tc_decomposition(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, dataset_size: int,
                     mu_all: torch.Tensor | None = None, logvar_all: torch.Tensor | None = None,
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per code z_i (drawn from q(z|x_i)): index-code MI, total correlation, dimension-wise KL (each (M,)).

    MI = log q(z|x) - log q(z),  TC = log q(z) - sum_d log q(z_d),  DW = sum_d log q(z_d) - log p(z):
    they sum to log q(z|x) - log p(z) whatever q(z) is.  q(z) and q(z_d) are the minibatch-weighted
    estimates over the posteriors ``mu_all``, ``logvar_all`` (default: the batch's own), each weighted
    1 / (dataset_size * batch).
    """
    mu_all = mu if mu_all is None else mu_all
    logvar_all = logvar if logvar_all is None else logvar_all
    log_qz_x = log_normal(z, mu, logvar).sum(1)
    log_pz = log_normal(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)
    log_weight = math.log(dataset_size * mu_all.shape[0])
    # (rows, M_all, D) log q(z_i,d | x_j) a block of rows at a time: a test batch of 10 000 codes would
    # otherwise hold 10 000 x 10 000 x D floats at once
    rows = max(1, PAIR_FLOATS // (mu_all.shape[0] * mu_all.shape[1]))
    log_qz, log_qz_units = [], []
    for i in range(0, len(z), rows):
        pairs = log_normal(z[i : i + rows, None, :], mu_all[None], logvar_all[None])
        log_qz.append(torch.logsumexp(pairs.sum(2), dim=1) - log_weight)
        log_qz_units.append((torch.logsumexp(pairs, dim=1) - log_weight).sum(1))
    qz, qz_units = torch.cat(log_qz), torch.cat(log_qz_units)
    return log_qz_x - qz, qz - qz_units, qz_units - log_pz


class BetaTCVAE(VAE):
    """beta-TCVAE (Chen et al. 2018): alpha * MI + beta * TC + gamma * DW in place of the KL."""

    kind = "beta_tcvae"

    def __init__(self, net: MLPNet | ConvNet, latent: int, *, alpha: float, beta: float, gamma: float,
                 dataset_size: int | None):
        super().__init__(net, latent, beta=beta)
        self.alpha, self.gamma, self.dataset_size = alpha, gamma, dataset_size

    def regulariser(self, mu, logvar, z, kl):
        if not self.dataset_size:
            raise ValueError("beta_tcvae's loss needs the number of training images (its estimator of q(z) "
                             "weights each posterior by it); build the model with dataset_size=")
        mu, logvar, z = mu.float(), logvar.float(), z.float()
        mi, tc, dw = tc_decomposition(z, mu, logvar, self.dataset_size, distributed.gather_rows(mu),
                                     distributed.gather_rows(logvar))
        mi, tc, dw = mi.mean(), tc.mean(), dw.mean()
        return self.alpha * mi + self.beta * tc + self.gamma * dw, {"mi": mi, "tc": tc, "dimwise_kl": dw}


# ------------------------------------------------------------------------------------------------------ FactorVAE
class Discriminator(nn.Sequential):
    """Codes -> 2 logits (column 0: a code of q(z); column 1: a code permuted per unit): Kim & Mnih's MLP,
    ``layers`` hidden layers of ``hidden`` units with LeakyReLU(0.2)."""

    def __init__(self, latent: int, hidden: int, layers: int):
        widths = [latent] + [hidden] * layers
        body: list[nn.Module] = []
        for a, b in zip(widths, widths[1:]):
            body += [nn.Linear(a, b), nn.LeakyReLU(0.2)]
        super().__init__(*body, nn.Linear(widths[-1], 2))


def permute_units(z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each column of ``z`` shuffled across the rows on its own: samples of prod_d q(z_d)."""
    keys = torch.rand(z.shape, device=z.device, generator=generator)
    return torch.gather(z, 0, keys.argsort(dim=0))


class FactorVAE(VAE):
    """FactorVAE (Kim & Mnih 2018): the VAE loss plus gamma * the discriminator's estimate of TC."""

    kind = "factor_vae"

    def __init__(self, net: MLPNet | ConvNet, latent: int, *, beta: float, gamma: float, hidden: int, layers: int,
                 lr: float):
        super().__init__(net, latent, beta=beta)  # the VAE's weights drawn first: the same as a VAE's for a seed
        self.gamma, self.discriminator_lr = gamma, lr
        self.discriminator = Discriminator(latent, hidden, layers)
        self.step_codes: torch.Tensor | None = None  # the codes of the last training step, for the discriminator's

    def regulariser(self, mu, logvar, z, kl):
        logits = self.discriminator(z)
        tc = (logits[:, 0] - logits[:, 1]).float().mean()
        if self.training:
            self.step_codes = z.detach()
        return self.beta * kl + self.gamma * tc, {"tc": tc}

    def optimised_parameters(self) -> Iterator[nn.Parameter]:
        own = {id(p) for p in self.discriminator.parameters()}
        return (p for p in self.parameters() if id(p) not in own)

    def training_callbacks(self) -> list[Any]:
        return [DiscriminatorStep(self)]


class DiscriminatorStep(Callback):
    """The discriminator's step after each VAE step: cross-entropy between the step's codes (class 0) and the
    same codes permuted per unit (class 1), with its own Adam; its state goes into the checkpoint."""

    name = "factor_vae_discriminator"

    def __init__(self, model: FactorVAE):
        self.model = model
        self.optimizer = torch.optim.Adam(model.discriminator.parameters(), lr=model.discriminator_lr, betas=(0.5, 0.9))
        self.sums = torch.zeros(2, dtype=torch.float64)  # this epoch so far: summed loss, images

    def on_step_end(self, trainer: Any, x: torch.Tensor, parts: dict[str, torch.Tensor]) -> None:
        z, self.model.step_codes = self.model.step_codes, None
        if z is None:
            return
        z = z.float()
        both = torch.cat([z, permute_units(z, trainer.generator)])
        target = torch.cat([torch.zeros(len(z), dtype=torch.long), torch.ones(len(z), dtype=torch.long)]).to(z.device)
        with trainer.autocast():  # the run's precision, as the VAE step's
            logits = self.model.discriminator(both)
        loss = F.cross_entropy(logits.float(), target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        distributed.average_gradients(self.model.discriminator.parameters())
        self.optimizer.step()
        self.sums = self.sums.to(z.device)  # summed on the device: no host sync per step
        self.sums[0] += loss.detach().double() * len(z)
        self.sums[1] += len(z)

    def on_epoch_end(self, trainer: Any, row: dict[str, Any]) -> None:
        # on several processes: the loss on this process's share (rank 0's is the one recorded), so that a
        # resumed run, which every rank continues from rank 0's sums, records what an uninterrupted one would
        if self.sums[1] > 0:
            row["train_discriminator_loss"] = (self.sums[0] / self.sums[1]).item()
        self.sums.zero_()

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "sums": self.sums.cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.sums = state["sums"].clone().to(self.sums.device)


# ------------------------------------------------------------------------------------------------------ DIP-VAE
def dip_covariance(mu: torch.Tensor, logvar: torch.Tensor, dip_type: str) -> torch.Tensor:
    """Cov[mu] over the batch (``i``), or the covariance of z under q: Cov[mu] + E[diag(sigma^2)] (``ii``)."""
    centred = mu - mu.mean(0)
    cov = centred.T @ centred / mu.shape[0]
    if dip_type == "ii":
        cov = cov + torch.diag(logvar.exp().mean(0))
    return cov


class DIPVAE(VAE):
    """DIP-VAE-I/II (Kumar et al. 2018): the VAE loss plus the covariance's distance from the identity."""

    kind = "dip_vae"

    def __init__(self, net: MLPNet | ConvNet, latent: int, *, beta: float, dip_type: str, lambda_od: float,
                 lambda_d: float):
        if dip_type not in DIP_TYPES:
            raise ValueError(f"dip_type must be one of {DIP_TYPES}, got {dip_type!r}")
        super().__init__(net, latent, beta=beta)
        self.dip_type, self.lambda_od, self.lambda_d = dip_type, lambda_od, lambda_d

    def regulariser(self, mu, logvar, z, kl):
        cov = dip_covariance(distributed.gather_rows(mu.float()), distributed.gather_rows(logvar.float()), self.dip_type)
        diag = torch.diagonal(cov)
        off = (cov - torch.diag(diag)).pow(2).sum()
        on = (diag - 1).pow(2).sum()
        penalty = self.lambda_od * off + self.lambda_d * on
        return self.beta * kl + penalty, {"dip_off_diagonal": off, "dip_diagonal": on}


# ------------------------------------------------------------------------------------------------------ annealed
class AnnealedVAE(VAE):
    """The KL pushed towards a growing capacity (Burgess et al. 2018): BCE + gamma * |KL - C|."""

    kind = "annealed_vae"

    def __init__(self, net: MLPNet | ConvNet, latent: int, *, gamma: float, capacity_max: float,
                 capacity_ramp: float):
        super().__init__(net, latent, beta=1.0)
        self.gamma, self.capacity_max, self.capacity_ramp = gamma, capacity_max, capacity_ramp
        self.capacity = 0.0  # nats; set before each step by CapacitySchedule

    def capacity_at(self, done: int, total: int) -> float:
        """C after ``done`` of ``total`` steps: linear from 0 to capacity_max over the first capacity_ramp."""
        ramp = self.capacity_ramp * total
        return self.capacity_max if ramp <= 0 else self.capacity_max * min(1.0, done / ramp)

    def regulariser(self, mu, logvar, z, kl):
        capacity = kl.new_tensor(self.capacity)
        return self.gamma * (kl - capacity).abs(), {"capacity": capacity}

    def training_callbacks(self) -> list[Any]:
        return [CapacitySchedule(self)]


class CapacitySchedule(Callback):
    """Sets the capacity before each step from the steps done, so a resumed run has the same C at every step."""

    def __init__(self, model: AnnealedVAE):
        self.model = model

    def on_step_start(self, trainer: Any) -> None:
        self.model.capacity = self.model.capacity_at(trainer.global_step, trainer.total_steps)
