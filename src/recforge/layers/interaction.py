"""Feature-interaction layers: factorization machine and friends."""

from __future__ import annotations

import torch
from torch import nn


class FMInteraction(nn.Module):
    """Second-order FM term ``sum_{i<j} <v_i, v_j>`` in O(kn) (Rendle, ICDM 2010).

    Uses ``1/2 * sum_k [(sum_i v_ik)^2 - sum_i v_ik^2]``.

    Shape:
        ``(B, F, D)`` -> ``(B,)``.
    """

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        square_of_sum = v.sum(dim=1).pow(2)  # (B, D)
        sum_of_square = v.pow(2).sum(dim=1)  # (B, D)
        return 0.5 * (square_of_sum - sum_of_square).sum(dim=1)
