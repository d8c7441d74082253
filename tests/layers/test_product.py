"""PNN product layers against brute-force loops over field pairs."""

from __future__ import annotations

import pytest
import torch

from recforge.layers.interaction import PairwiseProducts, pair_indices
from recforge.layers.product import InnerProduct, LowRankInnerProduct, OuterProduct


@pytest.fixture
def fields() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(3, 5, 4, generator=g, dtype=torch.float64)  # (B, N, M)


def test_every_pair_layer_uses_one_pair_order() -> None:
    """PNN's products and AFM's share the row-major ``i < j`` order of ``pair_indices``."""
    rows, cols = pair_indices(5)
    expected = list(zip(rows.tolist(), cols.tolist(), strict=True))
    layers = [InnerProduct(5), OuterProduct(5, "pairwise"), PairwiseProducts(5)]
    for layer in layers:
        assert layer.pairs() == expected and layer.num_pairs == 10
    torch.testing.assert_close(InnerProduct(5).flat_index, rows * 5 + cols)


def test_inner_product_equals_pairwise_loop(fields: torch.Tensor) -> None:
    B, N, _ = fields.shape
    out = InnerProduct(N)(fields)
    expected = torch.zeros(B, N * (N - 1) // 2, dtype=fields.dtype)
    for b in range(B):
        k = 0
        for i in range(N):
            for j in range(i + 1, N):
                expected[b, k] = sum(fields[b, i, m] * fields[b, j, m] for m in range(4))
                k += 1
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("rank", [1, 3])
def test_low_rank_inner_product_equals_weighted_double_sum(fields: torch.Tensor, rank: int) -> None:
    B, N, _ = fields.shape
    layer = LowRankInnerProduct(N, units=2, rank=rank).double()
    out = layer(fields)
    theta = layer.theta.detach()  # (D1, N, K)
    expected = torch.zeros(B, 2, dtype=fields.dtype)
    for b in range(B):
        for n in range(2):
            # l_p^n = W_p^n . p with W_p^n[i, j] = <theta_i^n, theta_j^n>, p[i, j] = <f_i, f_j>
            for i in range(N):
                for j in range(N):
                    w_ij = float(theta[n, i] @ theta[n, j])
                    expected[b, n] += w_ij * float(fields[b, i] @ fields[b, j])
    torch.testing.assert_close(out, expected.detach())


def test_outer_sum_pooling_equals_sum_over_all_pairs(fields: torch.Tensor) -> None:
    B, N, M = fields.shape
    layer = OuterProduct(N, mode="sum_pooling")
    out = layer(fields)
    assert out.shape == (B, layer.output_dim(M))
    for b in range(B):
        # p = sum_i sum_j f_i f_j^T  (the superposition; equals f_S f_S^T)
        p = torch.zeros(M, M, dtype=fields.dtype)
        for i in range(N):
            for j in range(N):
                p += torch.outer(fields[b, i], fields[b, j])
        torch.testing.assert_close(out[b].view(M, M), p)


def test_outer_pairwise_equals_each_pair(fields: torch.Tensor) -> None:
    B, N, M = fields.shape
    layer = OuterProduct(N, mode="pairwise")
    out = layer(fields)
    assert out.shape == (B, layer.output_dim(M))
    blocks = out.view(B, N * (N - 1) // 2, M, M)
    for b in range(B):
        k = 0
        for i in range(N):
            for j in range(i + 1, N):
                for r in range(M):
                    for c in range(M):
                        assert blocks[b, k, r, c] == pytest.approx(
                            float(fields[b, i, r] * fields[b, j, c])
                        )
                k += 1


def test_outer_rejects_unknown_mode() -> None:
    with pytest.raises(ValueError):
        OuterProduct(3, mode="kernel")  # type: ignore[arg-type]
