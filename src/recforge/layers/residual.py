"""Residual unit of Deep Crossing.

Shan, Hoens, Jiao, Wang, Yu & Mao, "Deep Crossing: Web-Scale Modeling without Manually Crafted
Combinatorial Features", KDD 2016. Each unit maps ``X^I`` to
``X^O = ReLU(X^I + W_1 ReLU(W_0 X^I + b_0) + b_1)``: two linear layers whose output is added
back to the input before the final ReLU, so the unit keeps the input width.
"""

from __future__ import annotations

import torch
from torch import nn

from recforge.layers.mlp import BatchNorm


class ResidualUnit(nn.Module):
    """``ReLU(x + W2 ReLU(W1 x + b1) + b2)``.

    Args:
        dim: Input (and output) width.
        hidden: Width of the inner layer.
        dropout: Dropout applied to the inner activation (0 disables it).
        batch_norm: Batch-normalise ``x + W2 h + b2`` before the final ReLU (not in the paper;
            the FuxiCTR/BARS residual block's option for deeper stacks).

    Shape:
        ``(B, dim)`` -> ``(B, dim)``.
    """

    def __init__(
        self, dim: int, hidden: int, dropout: float = 0.0, batch_norm: bool = False
    ) -> None:
        super().__init__()
        self.inner = nn.Linear(dim, hidden)  # W1, b1
        self.outer = nn.Linear(hidden, dim)  # W2, b2
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.norm = BatchNorm(dim) if batch_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dropout(torch.relu(self.inner(x)))
        return torch.relu(self.norm(x + self.outer(h)))
