"""Read-outs of frozen codes: linear probe, k-NN, and the PCA baseline.

``linear_probe``: multinomial logistic regression on codes standardised with
train-set statistics, fitted full-batch with L-BFGS (strong-Wolfe line search)
until the gradient norm falls below ``tol``: trained to convergence, not for a
token number of steps.  The objective is the mean cross-entropy plus
``l2 / 2 * ||W||^2`` (the bias is not penalised).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class ProbeResult:
    accuracy: float  # test accuracy in [0, 1]
    train_accuracy: float
    iterations: int
    converged: bool
    grad_norm: float


def standardise(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale features to zero mean, unit variance with the train set's statistics."""
    mean = train.mean(0, keepdim=True)
    std = train.std(0, keepdim=True)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))  # constant (e.g. dead) units stay 0
    return (train - mean) / std, (test - mean) / std


def linear_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int = 10,
    l2: float = 1e-4,
    tol: float = 1e-5,
    max_iter: int = 1000,
) -> ProbeResult:
    """Fit a multinomial logistic regression on standardised features; report test accuracy.

    Statistics are taken in float64; the fit runs in float32, which reaches the same
    optimum to ``tol`` at a quarter of the float64 cost.
    """
    train_x, test_x = (t.float() for t in standardise(train_x.double(), test_x.double()))
    d = train_x.shape[1]
    weight = torch.zeros(d, num_classes, dtype=torch.float32, device=train_x.device, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float32, device=train_x.device, requires_grad=True)
    opt = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=tol,
        tolerance_change=0.0,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def objective() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(train_x @ weight + bias, train_y) + 0.5 * l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(objective)
    objective()
    grad_norm = max(weight.grad.abs().max().item(), bias.grad.abs().max().item())
    state = opt.state[opt._params[0]]
    iterations = int(state.get("n_iter", 0))
    with torch.no_grad():
        test_pred = (test_x @ weight + bias).argmax(1)
        train_pred = (train_x @ weight + bias).argmax(1)
    return ProbeResult(
        accuracy=(test_pred == test_y).sum().item() / len(test_y),
        train_accuracy=(train_pred == train_y).sum().item() / len(train_y),
        iterations=iterations,
        converged=grad_norm <= tol,
        grad_norm=grad_norm,
    )


def knn_accuracy(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    k: int = 5,
    num_classes: int = 10,
    chunk: int = 2048,
) -> float:
    """k-nearest-neighbour test accuracy (Euclidean on standardised codes, majority vote).

    Ties in the vote go to the class of the nearer neighbours (votes are weighted
    by a tiny rank term).
    """
    train_x, test_x = standardise(train_x.float(), test_x.float())
    k = min(k, len(train_x))
    train_sq = train_x.pow(2).sum(1)
    rank_bonus = torch.linspace(1e-3, 0, k, device=train_x.device)
    correct = 0
    for start in range(0, len(test_x), chunk):
        q = test_x[start : start + chunk]
        # squared distance up to a per-query constant: |t|^2 - 2 q.t
        dist = train_sq.unsqueeze(0) - 2.0 * q @ train_x.T
        idx = dist.topk(k, dim=1, largest=False).indices
        votes = torch.zeros(len(q), num_classes, device=q.device)
        votes.scatter_add_(1, train_y[idx], (1.0 + rank_bonus).expand(len(q), k).contiguous())
        correct += (votes.argmax(1) == test_y[start : start + chunk]).sum().item()
    return correct / len(test_x)


def pca_fit(train_x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``dim`` principal directions of the rows of ``train_x``: (mean, components (D, dim))."""
    x = train_x.double()
    mean = x.mean(0, keepdim=True)
    centred = x - mean
    cov = centred.T @ centred / max(len(x) - 1, 1)
    _, vecs = torch.linalg.eigh(cov)  # ascending eigenvalues
    components = vecs[:, -dim:].flip(1)
    return mean, components


def pca_project(x: torch.Tensor, mean: torch.Tensor, components: torch.Tensor) -> torch.Tensor:
    return ((x.double() - mean) @ components).to(x.dtype)


def dead_units(codes: torch.Tensor) -> int:
    """Code units that are constant over the whole set (e.g. a ReLU that never fires)."""
    return int((codes.std(0) <= 1e-8).sum().item()) if len(codes) > 1 else 0


def chance_accuracy(num_classes: int) -> float:
    return 1.0 / num_classes if num_classes > 0 else math.nan
