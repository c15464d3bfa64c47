"""The read-outs: a converged linear probe, k-NN, PCA."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from scipy.special import logsumexp

from aebench import data, probe


@pytest.fixture(scope="module")
def pca_features(data_root):
    ds = data.load("mnist", data_root, torch.device("cpu"))
    mean, comps = probe.pca_fit(ds.train_x, 20)
    return (probe.pca_project(ds.train_x, mean, comps), ds.train_y,
            probe.pca_project(ds.test_x, mean, comps), ds.test_y)


def scipy_logistic_regression(x, y, l2, classes=10):
    """An independent solver: scipy's L-BFGS-B on the same objective, in float64 numpy."""
    n, d = x.shape
    onehot = np.eye(classes)[y]

    def f(theta):
        w, b = theta[: d * classes].reshape(d, classes), theta[d * classes :]
        logits = x @ w + b
        logp = logits - logsumexp(logits, axis=1, keepdims=True)
        loss = -(onehot * logp).sum() / n + 0.5 * l2 * (w**2).sum()
        g = (np.exp(logp) - onehot) / n
        return loss, np.concatenate([(x.T @ g + l2 * w).ravel(), g.sum(0)])

    res = minimize(f, np.zeros(d * classes + classes), jac=True, method="L-BFGS-B",
                   options={"maxiter": 5000, "gtol": 1e-9, "ftol": 1e-14})
    return res.x[: d * classes].reshape(d, classes), res.x[d * classes :]


def test_probe_reaches_an_independent_solvers_accuracy(pca_features):
    train_x, train_y, test_x, test_y = pca_features
    ours = probe.linear_probe(train_x, train_y, test_x, test_y, l2=1e-4)
    assert ours.converged and ours.iterations > 1
    tr, te = probe.standardise(train_x, test_x)
    w, b = scipy_logistic_regression(tr.double().numpy(), train_y.numpy(), l2=1e-4)
    scipy_acc = ((te.double().numpy() @ w + b).argmax(1) == test_y.numpy()).mean()
    assert ours.grad_norm <= 1e-5
    assert abs(ours.accuracy - scipy_acc) <= 0.005, (ours.accuracy, scipy_acc)
    assert 0.85 < ours.accuracy < 0.92  # PCA-20 on MNIST: a linear probe lands near 0.88


def test_probe_is_not_stopped_early():
    # Separable only with a large weight: a token number of steps would not get there.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 5, generator=g)
    y = (x[:, 0] + 0.05 * x[:, 1] > 0).long()
    result = probe.linear_probe(x[:1500], y[:1500], x[1500:], y[1500:], num_classes=2, l2=1e-4, tol=1e-6, max_iter=5000)
    assert result.converged and result.grad_norm <= 1e-6
    assert result.iterations > 20  # far more than a token handful of steps
    assert result.train_accuracy > 0.99 and result.accuracy > 0.97


def test_knn_matches_brute_force():
    g = torch.Generator().manual_seed(1)
    train = torch.randn(300, 4, generator=g)
    train_y = torch.randint(0, 3, (300,), generator=g)
    test = torch.randn(50, 4, generator=g)
    test_y = torch.randint(0, 3, (50,), generator=g)
    got, chunked_pred = probe.knn_accuracy(train, train_y, test, test_y, k=5, num_classes=3, chunk=7, return_predictions=True)
    # chunking (7 rows, the last chunk 1 row, in reused buffers) changes nothing
    whole, whole_pred = probe.knn_accuracy(train, train_y, test, test_y, k=5, num_classes=3, return_predictions=True)
    assert whole == got and torch.equal(chunked_pred, whole_pred)
    tr, te = probe.standardise(train, test)
    d = ((te[:, None, :] - tr[None]) ** 2).sum(-1)
    nearest = d.argsort(1)[:, :5]
    pred = []
    for row in nearest:
        votes = np.bincount(train_y[row].numpy(), minlength=3)
        best = np.flatnonzero(votes == votes.max())
        pred.append(next(train_y[i].item() for i in row if train_y[i].item() in best))  # tie: nearest wins
    assert got == pytest.approx((np.array(pred) == test_y.numpy()).mean())


def test_pca_matches_numpy_svd():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(500, 12, generator=g) @ torch.randn(12, 12, generator=g)
    mean, comps = probe.pca_fit(x, 3)
    _, _, vt = np.linalg.svd((x - x.mean(0)).double().numpy(), full_matrices=False)
    for i in range(3):
        assert abs(abs(float(comps[:, i] @ torch.from_numpy(vt[i]))) - 1) < 1e-6


def test_dead_units_counts_constant_columns():
    codes = torch.randn(100, 6)
    codes[:, [1, 4]] = 0.0
    assert probe.dead_units(codes) == 2


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_objective_and_gradient_equal_the_textbook_ones(dtype):
    """The hand-written objective (a speed measure) has autograd's value and gradient."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3000, 20, generator=gen, dtype=dtype)
    y = torch.randint(0, 10, (3000,), generator=gen)
    w = torch.randn(20, 10, generator=gen, dtype=dtype, requires_grad=True)
    b = torch.randn(10, generator=gen, dtype=dtype, requires_grad=True)
    loss, grad_w, grad_b = probe.objective(x, y, w.detach(), b.detach(), l2=1e-2)
    textbook = torch.nn.functional.cross_entropy(x @ w + b, y) + 0.5e-2 * w.pow(2).sum()
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert loss.dtype == torch.float64
    assert abs(loss.item() - textbook.item()) <= tol * abs(textbook.item())
    for ours, theirs in zip((grad_w, grad_b), torch.autograd.grad(textbook, [w, b])):
        torch.testing.assert_close(ours, theirs, rtol=tol, atol=tol)


def test_warm_start_reaches_the_same_optimum_in_fewer_iterations(pca_features):
    train_x, train_y, test_x, test_y = pca_features
    cold = probe.linear_probe(train_x, train_y, test_x, test_y)
    nudged = train_x + 0.01 * torch.randn(train_x.shape, generator=torch.Generator().manual_seed(0))
    reference = probe.linear_probe(nudged, train_y, test_x, test_y)
    warm = probe.linear_probe(nudged, train_y, test_x, test_y, init=(cold.weight, cold.bias))
    assert warm.converged and reference.converged
    assert warm.iterations < reference.iterations / 2, (warm.iterations, reference.iterations)
    assert abs(warm.accuracy - reference.accuracy) <= 0.001
    torch.testing.assert_close(warm.weight, reference.weight, atol=2e-2, rtol=0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_read_outs_refuse_non_finite_features(bad):
    x = torch.randn(100, 4)
    x[7, 2] = bad
    y = torch.randint(0, 3, (100,))
    for fit in (lambda: probe.linear_probe(x, y, x[:10], y[:10], num_classes=3),
                lambda: probe.knn_accuracy(x, y, x[:10], y[:10], num_classes=3)):
        with pytest.raises(probe.ProbeError, match="1 non-finite value.*smaller train.lr"):
            fit()


def test_knn_distances_stay_in_bounded_memory():
    """The chunk of queries is sized so that one distance matrix stays under its budget (a cache-sized one
    on a CPU), and is never empty."""
    rows = probe.rows_per_chunk(60_000, itemsize=4)
    assert rows * 60_000 * 4 <= probe.CHUNK_BYTES and rows >= 100
    cpu_rows = probe.rows_per_chunk(60_000, itemsize=4, budget=probe.KNN_CPU_CHUNK_BYTES)
    assert cpu_rows * 60_000 * 4 <= probe.KNN_CPU_CHUNK_BYTES and cpu_rows >= 30
    assert probe.rows_per_chunk(10**9, itemsize=4, budget=probe.KNN_CPU_CHUNK_BYTES) == 1


def test_balanced_draws_are_balanced_and_seeded():
    labels = torch.arange(10).repeat(50)[torch.randperm(500, generator=torch.Generator().manual_seed(0))]
    idx = probe.balanced_draw(labels, 103, 10, torch.Generator().manual_seed(4))
    counts = torch.bincount(labels[idx], minlength=10)
    assert len(idx) == 103 and len(set(idx.tolist())) == 103
    assert counts.min() == 10 and counts.max() == 11 and int((counts == 11).sum()) == 3
    again = probe.balanced_draw(labels, 103, 10, torch.Generator().manual_seed(4))
    assert torch.equal(idx, again)


def test_budget_probes_fit_the_draw_and_skip_budgets_that_do_not_fit(pca_features):
    train_x, train_y, test_x, test_y = pca_features
    out = probe.label_budget_probes(train_x, train_y, test_x, test_y, [50, 500, 10**6], draws=3, seed=1,
                                    num_classes=10, penalty=10.0, tol=1e-5, max_iter=1000)
    assert "1000000 labels" in out["1000000"]["skipped"]
    assert 0.4 < out["50"]["mean"] < out["500"]["mean"] < 0.9  # PCA-20: ~0.88 with every label
    assert len(set(out["50"]["accuracies"])) > 1  # different draws, different probes
    same = probe.label_budget_probes(train_x, train_y, test_x, test_y, [50], draws=3, seed=1, num_classes=10,
                                     penalty=10.0, tol=1e-5, max_iter=1000)
    assert same["50"] == out["50"]  # seeded: the same draws again
