"""Interaction layers against brute-force pairwise loops."""

from __future__ import annotations

import torch

from recforge.layers.interaction import (
    BiInteraction,
    FMInteraction,
    PairwiseProducts,
    pair_indices,
)


def _v(B: int = 5, F: int = 6, D: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(B, F, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_fm_interaction_equals_pairwise_dot_sum() -> None:
    v = _v()
    F = v.shape[1]
    expected = sum((v[:, i] * v[:, j]).sum(-1) for i in range(F) for j in range(i + 1, F))
    torch.testing.assert_close(FMInteraction()(v), expected)


def test_bi_interaction_equals_pairwise_elementwise_sum() -> None:
    v = _v(F=7, D=3)
    F = v.shape[1]
    expected = torch.zeros(v.shape[0], v.shape[2], dtype=v.dtype)
    for i in range(F):
        for j in range(i + 1, F):
            expected += v[:, i] * v[:, j]
    out = BiInteraction()(v)
    assert out.shape == (5, 3)
    torch.testing.assert_close(out, expected)
    # summing the factors gives back the FM term
    torch.testing.assert_close(out.sum(-1), FMInteraction()(v))


def test_bi_interaction_single_field_is_zero() -> None:
    torch.testing.assert_close(BiInteraction()(_v(F=1)), torch.zeros(5, 4, dtype=torch.float64))


def test_pair_indices_row_major() -> None:
    rows, cols = pair_indices(4)
    assert list(zip(rows.tolist(), cols.tolist(), strict=True)) == [
        (0, 1),
        (0, 2),
        (0, 3),
        (1, 2),
        (1, 3),
        (2, 3),
    ]


def test_pairwise_products_match_loop() -> None:
    v = _v(F=5)
    layer = PairwiseProducts(5)
    out = layer(v)
    assert out.shape == (5, 10, 4) and layer.num_pairs == 10
    for p, (i, j) in enumerate(layer.pairs()):
        assert i < j
        torch.testing.assert_close(out[:, p], v[:, i] * v[:, j])
    torch.testing.assert_close(out.sum(1), BiInteraction()(v))


def test_pairwise_products_need_two_fields() -> None:
    try:
        PairwiseProducts(1)
    except ValueError:
        return
    raise AssertionError("PairwiseProducts(1) should raise")


def test_fm_training_gradient_is_the_closed_form_and_matches_autograd():
    """The training path's hand-written backward (ds/dv_i = s - v_i) equals autograd of the
    textbook expression, in float64 (gradcheck) and for a float32 batch."""
    g = torch.Generator().manual_seed(3)
    v = torch.randn(5, 4, 3, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(FMInteraction(), (v,))
    v32 = torch.randn(64, 7, 8, generator=g, requires_grad=True)
    w = torch.randn(64, generator=g)
    (FMInteraction()(v32) * w).sum().backward()
    ref = v32.detach().clone().requires_grad_()
    textbook = 0.5 * (ref.sum(1).pow(2) - ref.pow(2).sum(1)).sum(1)
    (textbook * w).sum().backward()
    torch.testing.assert_close(v32.grad, ref.grad)
    closed = (v32.detach().sum(1, keepdim=True) - v32.detach()) * w[:, None, None]
    torch.testing.assert_close(v32.grad, closed)
    with torch.no_grad():  # inference takes the plain expression
        torch.testing.assert_close(FMInteraction()(v32), textbook.detach())
