"""Product layers of the Product-based Neural Network (PNN).

Qu, Cai, Ren, Zhang, Yu, Wen & Wang, "Product-based Neural Networks for User Response
Prediction", ICDM 2016. Given ``N`` field embeddings ``f_i`` of dimension ``M``, the product layer
forms a *product part* ``p`` from pairs of fields:

* IPNN: ``p_ij = g(f_i, f_j) = <f_i, f_j>`` (:class:`InnerProduct`). The first hidden layer
  ``l_p^n = W_p^n . p`` can also use the paper's rank-``K`` decomposition
  ``W_p^n = sum_k theta^n_k theta^n_k^T``, which gives
  ``l_p^n = sum_{i,j} <theta_i^n, theta_j^n> <f_i, f_j> = ||sum_i theta_i^n (x) f_i||_F^2``
  in ``O(N M K D1)`` without forming ``p`` (:class:`LowRankInnerProduct`).
* OPNN: ``p_ij = f_i f_j^T`` (an ``M x M`` matrix). With the paper's sum-pooling superposition
  ``p = sum_i sum_j f_i f_j^T = f_S f_S^T`` where ``f_S = sum_i f_i`` the cost drops from
  ``O(N^2 M^2)`` to ``O(M (N + M))``; the full pairwise form keeps every pair
  (:class:`OuterProduct`).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from recforge.layers.interaction import FieldPairs


class InnerProduct(FieldPairs):
    """Pairwise inner products ``p_ij = <f_i, f_j>`` for ``i < j``.

    Args:
        num_fields: Number of fields ``N``.

    Shape:
        ``(B, N, M)`` -> ``(B, N (N - 1) / 2)``, pairs in the order of :class:`FieldPairs`.
    """

    def __init__(self, num_fields: int) -> None:
        super().__init__(num_fields)
        self.register_buffer("flat_index", self.rows * num_fields + self.cols, persistent=False)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        # all inner products with one batched matmul, then the strict upper triangle:
        # (B, N, M) @ (B, M, N) -> (B, N, N) -> (B, N*N)[:, i*N + j] for i < j
        gram = torch.bmm(f, f.transpose(1, 2))
        return gram.flatten(1)[:, self.flat_index]


class LowRankInnerProduct(nn.Module):
    """IPNN's product part through the rank-``K`` decomposition of ``W_p^n`` (paper, III-B).

    ``l_p^n = sum_{i,j} <theta_i^n, theta_j^n> <f_i, f_j> = ||sum_i theta_i^n (x) f_i||_F^2``
    for every unit ``n`` of the first hidden layer; ``theta_i^n`` is in ``R^K``. With ``K = 1`` this
    is the paper's ``l_p^n = ||sum_i theta_i^n f_i||^2``. The double sum runs over all ``i, j``
    (diagonal included), as in the paper's matrix form ``W_p^n . p``.

    Args:
        num_fields: Number of fields ``N``.
        units: Width ``D1`` of the first hidden layer.
        rank: ``K``.

    Shape:
        ``(B, N, M)`` -> ``(B, units)``.
    """

    def __init__(self, num_fields: int, units: int, rank: int = 1) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"rank must be >= 1, got {rank}")
        self.theta = nn.Parameter(torch.empty(units, num_fields, rank))
        nn.init.xavier_uniform_(self.theta.view(units, -1))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        # delta^n = sum_i theta_i^n (x) f_i: (B, N, M) x (D1, N, K) -> (B, D1, K, M)
        delta = torch.einsum("bnm,dnk->bdkm", f, self.theta)
        return delta.pow(2).sum(dim=(2, 3))  # (B, D1)


class OuterProduct(FieldPairs):
    """Outer-product part of OPNN.

    Args:
        num_fields: Number of fields ``N``.
        mode: ``sum_pooling``: ``p = f_S f_S^T`` with ``f_S = sum_i f_i`` (the paper's
            superposition, equal to ``sum_{i,j} f_i f_j^T``); ``pairwise``: every ``f_i f_j^T``
            for ``i < j``, concatenated in the order of :class:`FieldPairs`.

    Shape:
        ``(B, N, M)`` -> ``(B, M * M)`` (sum pooling) or ``(B, N (N - 1) / 2 * M * M)``.
    """

    def __init__(
        self, num_fields: int, mode: Literal["sum_pooling", "pairwise"] = "sum_pooling"
    ) -> None:
        if mode not in ("sum_pooling", "pairwise"):
            raise ValueError(f"mode must be 'sum_pooling' or 'pairwise', got {mode!r}")
        super().__init__(num_fields)
        self.mode = mode

    def output_dim(self, dim: int) -> int:
        """Width of the flattened output for embedding dimension ``dim``."""
        return dim * dim * (1 if self.mode == "sum_pooling" else self.num_pairs)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        if self.mode == "sum_pooling":
            f_sum = f.sum(dim=1)  # (B, M)
            return (f_sum.unsqueeze(2) * f_sum.unsqueeze(1)).flatten(1)  # (B, M*M)
        left, right = f[:, self.rows], f[:, self.cols]  # (B, P, M)
        return (left.unsqueeze(3) * right.unsqueeze(2)).flatten(1)  # (B, P*M*M)
