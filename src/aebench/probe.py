"""Read-outs of frozen codes: linear probe, k-NN, and the PCA baseline.

``linear_probe``: multinomial logistic regression on codes standardised with
train-set statistics, fitted full-batch with L-BFGS (strong-Wolfe line search)
until the gradient norm falls below ``tol``: trained to convergence, not for a
token number of steps.  The objective is the mean cross-entropy plus
``l2 / 2 * ||W||^2`` (the bias is not penalised).
"""

from __future__ import annotations

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


def probe_loss(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, l2: float) -> torch.Tensor:
    """Mean cross-entropy of the logits ``x @ weight + bias`` against ``y``, plus ``l2/2 |W|^2``."""
    if x.device.type == "cpu":
        # The same loss with the logits laid out classes first, (1, C, N): torch's CPU
        # log-softmax along a last dimension of 10 classes is ~3x slower than along dim 1
        # of (1, C, N), where the kernel vectorises over the N contiguous examples.
        logits = (weight.T @ x.T + bias.unsqueeze(1)).unsqueeze(0)
        ce = F.cross_entropy(logits, y.unsqueeze(0))
    else:
        # (N, C) elsewhere: on CUDA the 3-D layout goes to nll_loss2d, whose reduction uses
        # atomics (the loss could change in the last bits from run to run).
        ce = F.cross_entropy(x @ weight + bias, y)
    return ce + 0.5 * l2 * weight.pow(2).sum()


def _lbfgs(train_x, train_y, weight, bias, l2, tol, max_iter) -> int:
    """Minimise mean cross-entropy + l2/2 |W|^2 in place; return the iterations taken."""
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
        loss = probe_loss(train_x, train_y, weight, bias, l2)
        loss.backward()
        return loss

    opt.step(objective)
    objective()  # leave the gradient of the final point in .grad
    return int(opt.state[weight].get("n_iter", 0))


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

    Two phases: float32 L-BFGS to ``max(tol, 1e-4)`` (cheap), then float64 L-BFGS from
    there to ``tol`` (a few iterations).  float32 alone cannot always resolve gradients
    below 1e-5 on 60 000 examples; float64 alone costs several times more.
    """
    train64, test64 = standardise(train_x.double(), test_x.double())
    d, device = train64.shape[1], train64.device
    weight = torch.zeros(d, num_classes, dtype=torch.float32, device=device, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float32, device=device, requires_grad=True)
    iterations = _lbfgs(train64.float(), train_y, weight, bias, l2, max(tol, 1e-4), max_iter)
    weight = weight.detach().double().requires_grad_()
    bias = bias.detach().double().requires_grad_()
    iterations += _lbfgs(train64, train_y, weight, bias, l2, tol, max(1, max_iter - iterations))
    grad_norm = max(weight.grad.abs().max().item(), bias.grad.abs().max().item())
    with torch.no_grad():
        test_pred = (test64 @ weight + bias).argmax(1)
        train_pred = (train64 @ weight + bias).argmax(1)
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

    Ties in the vote go to the tied class with the nearest neighbour: the neighbour
    of rank r adds 2**-(r+1) on top of its vote; these bonuses sum to less than one
    vote, and rank r outweighs all later ranks together.
    """
    train_x, test_x = standardise(train_x.float(), test_x.float())
    k = min(k, len(train_x))
    train_sq = train_x.pow(2).sum(1)
    rank_bonus = torch.pow(2.0, -(torch.arange(k, device=train_x.device, dtype=torch.float64) + 1))
    correct = 0
    for start in range(0, len(test_x), chunk):
        q = test_x[start : start + chunk]
        # squared distance up to a per-query constant: |t|^2 - 2 q.t
        dist = train_sq.unsqueeze(0) - 2.0 * q @ train_x.T
        idx = dist.topk(k, dim=1, largest=False).indices
        votes = torch.zeros(len(q), num_classes, device=q.device, dtype=torch.float64)
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


