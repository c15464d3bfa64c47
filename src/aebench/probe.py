"""Read-outs of frozen features: linear probe, k-NN, and PCA.

``linear_probe``: multinomial logistic regression on features standardised with
train-set statistics, fitted full-batch with L-BFGS (strong-Wolfe line search)
until every gradient entry is below ``tol``: trained to convergence, not for a
token number of steps.  The objective is the mean cross-entropy plus
``l2 / 2 * ||W||^2`` (the bias is not penalised).

The objective and its gradient are written out by hand rather than taken from
autograd, so that both large products use the kernels that are fast whatever the
feature width: ``x @ W.T`` forward with the (classes, features) weight (``F.linear``'s
layout), and ``G @ x`` (classes x examples times examples x features) backward, where
autograd's backward of ``x @ W`` would compute the slower ``x.T @ G``; the log-softmax
runs along the contiguous example axis of (classes, examples) logits.  L-BFGS keeps up
to ``HISTORY`` curvature pairs: on raw pixels a long history is what the
ill-conditioned logistic curvature needs, at 2 x 4 bytes x features x classes a pair.
What each choice measured (``benchmarks/probe_speed.py``): docs/speed.md, "Read-outs".
The fit runs in float32 and continues in float64 only where float32 could not
reach ``tol`` (the line search can stall on a flat float32 loss); the loss is
always summed in float64.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch

from .errors import RunFailed

CHUNK_BYTES = 64 * 2**20  # bound on the temporaries of chunked reads (k-NN distances, PCA)
# k-NN distances on a CPU: a block that stays in the last-level cache while topk reads it back (measured by
# benchmarks/knn_speed.py: docs/speed.md, "Read-outs"); a GPU keeps CHUNK_BYTES (fewer, larger kernels).
KNN_CPU_CHUNK_BYTES = 8 * 2**20
HISTORY = 500  # L-BFGS curvature pairs kept (see the module docstring)


class ProbeError(RunFailed):
    """The features handed to a read-out cannot be used (non-finite values)."""


@dataclass
class ProbeResult:
    accuracy: float  # test accuracy in [0, 1]
    train_accuracy: float
    iterations: int
    converged: bool
    grad_norm: float  # the largest gradient entry at the end (the convergence test's number)
    weight: torch.Tensor = field(repr=False)  # (features, classes), in standardised-feature space, float32
    bias: torch.Tensor = field(repr=False)
    # The same solution in the dtype the fit ended in (float32, or float64 where it continued there):
    # what the reported accuracies were computed with, and what a saved probe must keep to reproduce them.
    exact_weight: torch.Tensor | None = field(default=None, repr=False)
    exact_bias: torch.Tensor | None = field(default=None, repr=False)
    # The standardisation z = (x - mean) * scale (float32, train statistics) that linear_probe applied.
    mean: torch.Tensor | None = field(default=None, repr=False)
    scale: torch.Tensor | None = field(default=None, repr=False)
    test_pred: torch.Tensor | None = field(default=None, repr=False)  # the test predictions (int64)


def check_finite(x: torch.Tensor, what: str) -> None:
    """Refuse NaN or infinite features in one line (a diverged model's codes, say)."""
    bad = int((~torch.isfinite(x)).sum().item())
    if bad:
        raise ProbeError(
            f"the {what} hold {bad} non-finite value(s) (NaN or inf), so no probe can be fitted; "
            "the model diverged: train again with a smaller train.lr"
        )


def rows_per_chunk(width: int, itemsize: int = 8, budget: int = CHUNK_BYTES) -> int:
    return max(1, budget // max(1, width * itemsize))


def moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Column mean and standard deviation (n - 1), summed in float64, in bounded memory."""
    n, d = x.shape
    step = rows_per_chunk(d)
    total = torch.zeros(d, dtype=torch.float64, device=x.device)
    for i in range(0, n, step):
        total += x[i : i + step].sum(0, dtype=torch.float64)
    mean = total / n
    squares = torch.zeros(d, dtype=torch.float64, device=x.device)
    for i in range(0, n, step):
        squares += (x[i : i + step].double() - mean).pow(2).sum(0)
    return mean, (squares / max(n - 1, 1)).sqrt()


def standardisation(train: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The train set's (mean, scale), float32, for z = (x - mean) * scale: zero mean, unit variance."""
    mean, std = moments(train)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))  # constant (e.g. dead) units stay 0
    return mean.float(), (1.0 / std).float()


def apply_standardisation(x: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return (x.float() - mean) * scale


def standardise(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale features to zero mean, unit variance with the train set's statistics (float32)."""
    mean, scale = standardisation(train)
    return apply_standardisation(train, mean, scale), apply_standardisation(test, mean, scale)


def predict(z: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Class indices of standardised features ``z`` under (weight, bias), in the weight's dtype (as the fit scores)."""
    return torch.addmm(bias.unsqueeze(0), z.to(weight.dtype), weight).argmax(1)


def objective(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
              l2: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean cross-entropy of ``x @ weight + bias`` against ``y`` plus ``l2/2 |W|^2``, and its gradient.

    Returns (loss as a float64 scalar, d loss / d weight, d loss / d bias).
    """
    n = x.shape[0]
    logits = torch.nn.functional.linear(x, weight.T.contiguous(), bias).T.contiguous()  # (C, N)
    logp = torch.log_softmax(logits, 0)
    rows = y.unsqueeze(0)
    loss = -logp.gather(0, rows).sum(dtype=torch.float64) / n + 0.5 * l2 * weight.pow(2).sum(dtype=torch.float64)
    resid = logp.exp_()  # softmax probabilities, then minus the one-hot targets, over n
    resid.scatter_add_(0, rows, torch.full_like(rows, -1, dtype=resid.dtype))
    resid.div_(n)
    grad_weight = (resid @ x).T.contiguous().add_(weight, alpha=l2)
    return loss, grad_weight, resid.sum(1)


def _lbfgs(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, l2: float, tol: float,
           max_iter: int) -> tuple[int, float]:
    """Minimise the objective in place from (weight, bias); return (iterations, largest gradient entry)."""
    opt = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, tolerance_grad=tol, tolerance_change=0.0,
                            history_size=HISTORY, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        with torch.no_grad():
            loss, weight.grad, bias.grad = objective(x, y, weight, bias, l2)
        return loss.to(weight.dtype)

    opt.step(closure)
    closure()  # the gradient of the final point
    grad_norm = max(weight.grad.abs().max().item(), bias.grad.abs().max().item())
    return int(opt.state[weight].get("n_iter", 0)), grad_norm


def linear_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int = 10,
    l2: float = 1e-4,
    tol: float = 1e-5,
    max_iter: int = 1000,
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> ProbeResult:
    """Fit a multinomial logistic regression on standardised features; report test accuracy.

    ``init``: (weight, bias) to start from, e.g. the previous epoch's solution (a warm
    start: the same optimum, reached in fewer iterations).  float32 L-BFGS to ``tol``;
    where it stops short, float64 L-BFGS from there.
    """
    check_finite(train_x, "train features")
    check_finite(test_x, "test features")
    mean, scale = standardisation(train_x)
    train, test = apply_standardisation(train_x, mean, scale), apply_standardisation(test_x, mean, scale)
    result = fit_standardised(train, train_y, test, test_y, num_classes, l2, tol, max_iter, init)
    result.mean, result.scale = mean, scale
    return result


def fit_standardised(train: torch.Tensor, train_y: torch.Tensor, test: torch.Tensor, test_y: torch.Tensor,
                     num_classes: int, l2: float, tol: float, max_iter: int,
                     init: tuple[torch.Tensor, torch.Tensor] | None = None) -> ProbeResult:
    """:func:`linear_probe` on features already standardised (float32)."""
    d, device = train.shape[1], train.device
    if init is not None and tuple(init[0].shape) == (d, num_classes):
        weight, bias = (t.detach().to(device, torch.float32).clone() for t in init)
    else:
        weight = torch.zeros(d, num_classes, device=device)
        bias = torch.zeros(num_classes, device=device)
    weight.requires_grad_()
    bias.requires_grad_()
    iterations, grad_norm = _lbfgs(train, train_y, weight, bias, l2, tol, max_iter)
    if grad_norm > tol and iterations < max_iter:
        weight = weight.detach().double().requires_grad_()
        bias = bias.detach().double().requires_grad_()
        more, grad_norm = _lbfgs(train.double(), train_y, weight, bias, l2, tol, max_iter - iterations)
        iterations += more
    weight, bias = weight.detach(), bias.detach()
    with torch.no_grad():
        test_pred = predict(test, weight, bias)
        train_pred = predict(train, weight, bias)
    return ProbeResult(
        accuracy=(test_pred == test_y).sum().item() / len(test_y),
        train_accuracy=(train_pred == train_y).sum().item() / len(train_y),
        iterations=iterations,
        converged=grad_norm <= tol,
        grad_norm=grad_norm,
        weight=weight.float(),
        bias=bias.float(),
        exact_weight=weight,
        exact_bias=bias,
        test_pred=test_pred,
    )


def balanced_draw(labels: torch.Tensor, n: int, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of ``n`` labelled examples, ``n // classes`` of each class (the remainder to random classes)."""
    labels = labels.cpu()
    per_class = torch.full((num_classes,), n // num_classes)
    per_class[torch.randperm(num_classes, generator=generator)[: n % num_classes]] += 1
    picks = []
    for c in range(num_classes):
        members = torch.nonzero(labels == c).flatten()
        picks.append(members[torch.randperm(len(members), generator=generator)[: int(per_class[c])]])
    return torch.cat(picks).sort().values


def label_budget_probes(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                        budgets: list[int], draws: int, seed: int, num_classes: int, penalty: float, tol: float,
                        max_iter: int) -> dict[str, dict]:
    """The linear probe fitted on few labels: for each budget n, ``draws`` class-balanced draws of n train examples.

    Standardisation uses every train example (unsupervised, as the autoencoder itself);
    only the classifier sees just the draw.  Objective: the cross-entropy summed over the
    n examples + ``penalty``/2 |W|^2 (the mean form with l2 = penalty / n: a prior on W
    that does not change with n).  Draws come from a generator seeded with (seed, n), so
    every feature set of a run (codes, PCA, pixels) is fitted on the same examples; each
    draw starts from the previous draw's solution.  Returns ``{n: {"mean", "std",
    "accuracies"}}``; a budget larger than the train set (or smaller than the classes)
    is skipped with ``{"skipped": why}``.
    """
    check_finite(train_x, "train features")
    check_finite(test_x, "test features")
    train, test = standardise(train_x, test_x)
    out: dict[str, dict] = {}
    for n in budgets:
        if not num_classes <= n <= len(train):
            out[str(n)] = {"skipped": f"{n} labels: the train set has {len(train)} examples and {num_classes} classes"}
            continue
        generator = torch.Generator().manual_seed(seed * 1_000_003 + n)
        accuracies, init = [], None
        for _ in range(draws):
            idx = balanced_draw(train_y, n, num_classes, generator).to(train.device)
            result = fit_standardised(train[idx], train_y[idx], test, test_y, num_classes, penalty / n, tol, max_iter, init)
            accuracies.append(result.accuracy)
            init = (result.weight, result.bias)
        acc = torch.tensor(accuracies, dtype=torch.float64)
        out[str(n)] = {"mean": acc.mean().item(), "std": acc.std().item() if draws > 1 else 0.0, "accuracies": accuracies}
    return out


def knn_accuracy(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    k: int = 5,
    num_classes: int = 10,
    chunk: int | None = None,
    return_predictions: bool = False,
) -> float | tuple[float, torch.Tensor]:
    """k-nearest-neighbour test accuracy (Euclidean on standardised features, majority vote).

    Ties in the vote go to the tied class with the nearest neighbour: the neighbour
    of rank r adds 2**-(r+1) on top of its vote; these bonuses sum to less than one
    vote, and rank r outweighs all later ranks together.  Test queries go in chunks
    whose distance matrix stays under 8 MiB on a CPU, 64 MiB on a GPU (``chunk`` rows if given).
    ``return_predictions``: return (accuracy, the predicted classes of the test set, int64).
    """
    check_finite(train_x, "train features")
    check_finite(test_x, "test features")
    train_x, test_x = standardise(train_x, test_x)
    k = min(k, len(train_x))
    budget = KNN_CPU_CHUNK_BYTES if train_x.device.type == "cpu" else CHUNK_BYTES
    chunk = chunk or rows_per_chunk(len(train_x), itemsize=4, budget=budget)
    train_sq = train_x.pow(2).sum(1).unsqueeze(0)
    rank_bonus = torch.pow(2.0, -(torch.arange(k, device=train_x.device, dtype=torch.float64) + 1))
    correct = 0
    predictions = []
    # One distance block and one top-k result, reused by every chunk: a fresh 8-MiB block per chunk
    # fragmented glibc's heap after a training run (its peak RSS rose by up to 900 MiB during k-NN).
    rows = min(chunk, len(test_x))
    dist_block = train_x.new_empty(rows, len(train_x))
    top_values, top_indices = train_x.new_empty(rows, k), torch.empty(rows, k, dtype=torch.long, device=train_x.device)
    for start in range(0, len(test_x), chunk):
        q = test_x[start : start + chunk]
        # squared distance up to a per-query constant: |t|^2 - 2 q.t
        dist = torch.addmm(train_sq, q, train_x.T, alpha=-2.0, out=dist_block[: len(q)])
        idx = torch.topk(dist, k, dim=1, largest=False, out=(top_values[: len(q)], top_indices[: len(q)])).indices
        votes = torch.zeros(len(q), num_classes, device=q.device, dtype=torch.float64)
        votes.scatter_add_(1, train_y[idx], (1.0 + rank_bonus).expand(len(q), k).contiguous())
        pred = votes.argmax(1)
        correct += (pred == test_y[start : start + chunk]).sum().item()
        if return_predictions:
            predictions.append(pred)
    if return_predictions:
        return correct / len(test_x), torch.cat(predictions) if predictions else test_y.new_zeros(0)
    return correct / len(test_x)


def pca_fit(train_x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``dim`` principal directions of the rows of ``train_x``: (mean, components (D, dim)), float64.

    The covariance is accumulated over row chunks, so memory stays at one chunk in float64.
    """
    n, d = train_x.shape
    step = rows_per_chunk(d)
    return pca_fit_batches(lambda: (train_x[i : i + step] for i in range(0, n, step)), n, d, dim, train_x.device)


def pca_fit_batches(batches: Callable[[], Iterable[torch.Tensor]], n: int, d: int, dim: int,
                    device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`pca_fit` of ``n`` rows of width ``d`` that ``batches()`` hands over in order (called twice: the
    mean, then the covariance), so the rows never need to be in memory together."""
    total = torch.zeros(d, dtype=torch.float64, device=device)
    for b in batches():
        total += b.sum(0, dtype=torch.float64)
    mean = total / n
    cov = torch.zeros(d, d, dtype=torch.float64, device=device)
    for b in batches():
        centred = b.double() - mean
        cov.addmm_(centred.T, centred)
    cov /= max(n - 1, 1)
    _, vecs = torch.linalg.eigh(cov)  # ascending eigenvalues
    return mean.unsqueeze(0), vecs[:, -dim:].flip(1)


def pca_project(x: torch.Tensor, mean: torch.Tensor, components: torch.Tensor) -> torch.Tensor:
    """Coordinates of the rows of ``x`` on the components, in float64 arithmetic over row chunks."""
    step = rows_per_chunk(x.shape[1])
    parts = [((x[i : i + step].double() - mean) @ components).to(x.dtype) for i in range(0, len(x), step)]
    return torch.cat(parts) if parts else x.new_zeros(0, components.shape[1])


def dead_units(codes: torch.Tensor) -> int:
    """Code units that are constant over the whole set (e.g. a ReLU that never fires)."""
    return int((codes.std(0) <= 1e-8).sum().item()) if len(codes) > 1 else 0
