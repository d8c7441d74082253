"""FTRL-Proximal against hand-computed updates, sparse/dense agreement, and L1 sparsity."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from recforge.train.ftrl import FTRL


@pytest.fixture(autouse=True, scope="module")
def _single_thread() -> Iterator[None]:
    """Tiny models: one intra-op thread avoids oversubscription on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


ALPHA, BETA, L1, L2 = 0.1, 1.0, 0.1, 0.01


def _scalar_ftrl(w: float, g: float, z: float, n: float) -> tuple[float, float, float]:
    """Algorithm 1 of McMahan et al. (2013) for one coordinate, in plain floats."""
    if g == 0.0 and n == 0.0:
        return w, z, n
    sigma = (math.sqrt(n + g * g) - math.sqrt(n)) / ALPHA
    z = z + g - sigma * w
    n = n + g * g
    if abs(z) <= L1:
        return 0.0, z, n
    w = -(z - math.copysign(L1, z)) / ((BETA + math.sqrt(n)) / ALPHA + L2)
    return w, z, n


def test_first_step_matches_hand_computation() -> None:
    w = nn.Parameter(torch.tensor([0.0, 0.5, 0.3, 0.0], dtype=torch.float64))
    opt = FTRL([w], lr=ALPHA, beta=BETA, l1=L1, l2=L2)
    w.grad = torch.tensor([0.5, -2.0, 0.0, 0.05], dtype=torch.float64)
    opt.step()
    # coord 0: n=0.25, sigma=0.5/0.1=5, z=0.5,   w=-(0.5-0.1)/((1+0.5)/0.1+0.01) = -0.4/15.01
    # coord 1: n=4,    sigma=2/0.1=20,  z=-2-20*0.5=-12, w=-(-12+0.1)/((1+2)/0.1+0.01) = 11.9/30.01
    # coord 2: no gradient yet -> unchanged
    # coord 3: z=0.05 <= l1 -> exactly 0 (L1 sparsity)
    expected = torch.tensor([-0.4 / 15.01, 11.9 / 30.01, 0.3, 0.0], dtype=torch.float64)
    torch.testing.assert_close(w.detach(), expected)
    state = opt.state[w]
    torch.testing.assert_close(
        state["z"], torch.tensor([0.5, -12.0, 0.0, 0.05], dtype=torch.float64)
    )
    torch.testing.assert_close(
        state["n"], torch.tensor([0.25, 4.0, 0.0, 0.0025], dtype=torch.float64)
    )


def test_several_steps_match_scalar_algorithm() -> None:
    g = torch.Generator().manual_seed(0)
    w0 = torch.randn(6, generator=g, dtype=torch.float64)
    grads = [torch.randn(6, generator=g, dtype=torch.float64) for _ in range(5)]
    w = nn.Parameter(w0.clone())
    opt = FTRL([w], lr=ALPHA, beta=BETA, l1=L1, l2=L2)
    ref = [(float(v), 0.0, 0.0) for v in w0]
    for grad in grads:
        w.grad = grad.clone()
        opt.step()
        ref = [
            _scalar_ftrl(wi, float(gi), zi, ni) for (wi, zi, ni), gi in zip(ref, grad, strict=True)
        ]
    torch.testing.assert_close(w.detach(), torch.tensor([r[0] for r in ref], dtype=torch.float64))


def test_sparse_gradients_match_dense() -> None:
    torch.manual_seed(0)
    dense_emb = nn.Embedding(12, 3)
    sparse_emb = nn.Embedding(12, 3, sparse=True)
    sparse_emb.weight.data.copy_(dense_emb.weight.data)
    opt_d = FTRL(dense_emb.parameters(), lr=ALPHA, beta=BETA, l1=L1, l2=L2)
    opt_s = FTRL(sparse_emb.parameters(), lr=ALPHA, beta=BETA, l1=L1, l2=L2)
    for step in range(4):
        ids = torch.tensor([[1, 2, 2], [5, 1, 7]]) + step  # repeated ids: gradients must add up
        target = torch.randn(2, 3, 3)
        for emb, opt in ((dense_emb, opt_d), (sparse_emb, opt_s)):
            opt.zero_grad()
            ((emb(ids) - target) ** 2).sum().backward()
            opt.step()
    assert sparse_emb.weight.grad is not None and sparse_emb.weight.grad.is_sparse
    torch.testing.assert_close(sparse_emb.weight.data, dense_emb.weight.data)
    # row 0 never appears in a batch: kept at its initial value
    assert not torch.equal(dense_emb.weight.data[0], torch.zeros(3))


def test_logistic_regression_learns_and_l1_zeroes_noise() -> None:
    g = torch.Generator().manual_seed(3)
    X = torch.randn(2000, 8, generator=g)
    true_w = torch.tensor([2.0, -2.0, 1.5, 0.0, 0.0, 0.0, 0.0, 0.0])
    y = (torch.rand(2000, generator=g) < torch.sigmoid(X @ true_w)).float()
    model = nn.Linear(8, 1)
    nn.init.zeros_(model.weight)
    opt = FTRL(model.parameters(), lr=0.5, beta=1.0, l1=20.0, l2=1.0)
    loss_fn = nn.BCEWithLogitsLoss(reduction="sum")
    for start in range(0, 2000, 50):
        xb, yb = X[start : start + 50], y[start : start + 50]
        opt.zero_grad()
        loss_fn(model(xb).squeeze(1), yb).backward()
        opt.step()
    w = model.weight.detach()[0]
    assert w[0] > 0.5 and w[1] < -0.5 and w[2] > 0.3
    assert int((w[3:] == 0).sum()) >= 3  # L1 drives most irrelevant weights to exact zero


def test_rejects_bad_hyperparameters() -> None:
    with pytest.raises(ValueError):
        FTRL([nn.Parameter(torch.zeros(1))], lr=0.0)
    with pytest.raises(ValueError):
        FTRL([nn.Parameter(torch.zeros(1))], l1=-1.0)
