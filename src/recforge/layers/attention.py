"""Attention layers.

:class:`AFMAttentionPooling` is the attention-based pooling of AFM (Xiao et al., "Attentional
Factorization Machines: Learning the Weight of Feature Interactions via Attention Networks",
IJCAI 2017). DIN's activation unit and Dice live in :mod:`recforge.layers.din`.
"""

from __future__ import annotations

import torch
from torch import nn


class AFMAttentionPooling(nn.Module):
    """Attention-weighted sum of pair-wise interaction vectors (AFM, Eqs. (3)-(4)).

    ``a'_ij = h^T ReLU(W (v_i ⊙ v_j) + b)``, ``a_ij = softmax_{(i, j)}(a'_ij)`` over the pairs of
    one example, and the pooled vector ``sum_{i<j} a_ij (v_i ⊙ v_j)``.

    Args:
        dim: Embedding dimension ``k`` of the interaction vectors.
        attention_dim: Attention factor ``t`` (rows of ``W``).

    Shape:
        products ``(B, P, D)`` -> pooled ``(B, D)`` and weights ``(B, P)``.
    """

    def __init__(self, dim: int, attention_dim: int) -> None:
        super().__init__()
        self.project = nn.Linear(dim, attention_dim)  # W, b
        self.h = nn.Linear(attention_dim, 1, bias=False)  # h
        nn.init.xavier_normal_(self.project.weight)
        nn.init.zeros_(self.project.bias)
        nn.init.xavier_normal_(self.h.weight)

    def weights(self, products: torch.Tensor) -> torch.Tensor:
        """Attention weights ``a_ij`` ``(B, P)``; each row sums to one."""
        scores = self.h(torch.relu(self.project(products))).squeeze(-1)  # (B, P)
        return torch.softmax(scores, dim=1)

    def forward(self, products: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.weights(products)  # (B, P)
        pooled = (a.unsqueeze(-1) * products).sum(dim=1)  # (B, D)
        return pooled, a
