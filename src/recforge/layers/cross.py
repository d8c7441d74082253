"""Cross networks of the Deep & Cross Network (DCN) and DCN-V2.

* DCN: Wang, Fu, Fu & Wang, "Deep & Cross Network for Ad Click Predictions", ADKDD 2017.
  Layer ``l``: ``x_{l+1} = x_0 x_l^T w_l + b_l + x_l`` with ``w_l, b_l in R^d``. Since
  ``(x_0 x_l^T) w_l = x_0 (x_l^T w_l)``, the ``d x d`` outer product is never formed: one dot
  product per row and a scaling of ``x_0``, ``O(d)`` per layer (:class:`CrossLayer`).
* DCN-V2: Wang, Shivanna, Cheng, Jain, Lin, Hong & Chi, "DCN V2: Improved Deep & Cross Network
  and Practical Lessons for Web-scale Learning to Rank Systems", WWW 2021. Layer ``l``:
  ``x_{l+1} = x_0 * (W_l x_l + b_l) + x_l`` (``*`` element-wise, ``W_l in R^{d x d}``), or the
  low-rank ``x_{l+1} = x_0 * (U_l (V_l^T x_l) + b_l) + x_l`` with ``U_l, V_l in R^{d x r}``
  (:class:`CrossLayerV2`).
"""

from __future__ import annotations

import torch
from torch import nn


class CrossLayer(nn.Module):
    """DCN cross layer ``x_{l+1} = x_0 (x_l^T w) + b + x_l``.

    Args:
        dim: Width ``d`` of ``x_0``.

    Shape:
        ``x0, xl (B, d)`` -> ``(B, d)``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        nn.init.normal_(self.weight, std=dim**-0.5)

    def forward(self, x0: torch.Tensor, xl: torch.Tensor) -> torch.Tensor:
        scale = xl @ self.weight  # (B,) = x_l^T w
        return x0 * scale.unsqueeze(1) + self.bias + xl


class CrossLayerV2(nn.Module):
    """DCN-V2 cross layer ``x_{l+1} = x_0 * (W x_l + b) + x_l``, optionally low-rank.

    Args:
        dim: Width ``d``.
        rank: ``0`` for the full ``d x d`` matrix; ``r > 0`` factorises ``W = U V^T``.

    Shape:
        ``x0, xl (B, d)`` -> ``(B, d)``.
    """

    def __init__(self, dim: int, rank: int = 0) -> None:
        super().__init__()
        if rank < 0:
            raise ValueError(f"rank must be >= 0, got {rank}")
        self.rank = rank
        if rank == 0:
            self.project: nn.Module = nn.Linear(dim, dim)  # W x + b
        else:
            # V^T then U (+ b): (B, d) -> (B, r) -> (B, d)
            self.project = nn.Sequential(nn.Linear(dim, rank, bias=False), nn.Linear(rank, dim))

    def forward(self, x0: torch.Tensor, xl: torch.Tensor) -> torch.Tensor:
        return x0 * self.project(xl) + xl


class CrossNetwork(nn.Module):
    """``num_layers`` stacked cross layers; ``x_{l+1} = layer_l(x_0, x_l)``.

    Args:
        dim: Width ``d``.
        num_layers: Number of layers ``L``.
        version: ``1`` for :class:`CrossLayer` (DCN), ``2`` for :class:`CrossLayerV2`.
        rank: Low rank of the V2 layers (``0`` = full matrix).

    Shape:
        ``(B, d)`` -> ``(B, d)``.
    """

    def __init__(self, dim: int, num_layers: int, version: int = 1, rank: int = 0) -> None:
        super().__init__()
        if version not in (1, 2):
            raise ValueError(f"version must be 1 or 2, got {version}")
        self.layers = nn.ModuleList(
            CrossLayer(dim) if version == 1 else CrossLayerV2(dim, rank) for _ in range(num_layers)
        )

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for layer in self.layers:
            x = layer(x0, x)
        return x
