"""Deep & Cross Network (DCN) and DCN-V2.

* DCN: Wang, Fu, Fu & Wang, "Deep & Cross Network for Ad Click Predictions", ADKDD 2017.
  The input ``x_0 = [x_embed,1, ..., x_embed,k, x_dense]`` stacks the field embeddings and the
  normalised numeric features. A cross network ``x_{l+1} = x_0 x_l^T w_l + b_l + x_l`` (degree
  ``l + 1`` polynomial interactions in ``O(d)`` per layer) runs in parallel with a deep network
  ``h_{l+1} = ReLU(W_l h_l + b_l)``; the combination layer is
  ``p = sigma(w_logit^T [x_L1, h_L2] + b_logit)``.
* DCN-V2: Wang, Shivanna, Cheng, Jain, Lin, Hong & Chi, "DCN V2: Improved Deep & Cross Network
  and Practical Lessons for Web-scale Learning to Rank Systems", WWW 2021. The cross layer
  becomes ``x_{l+1} = x_0 * (W_l x_l + b_l) + x_l`` (optionally ``W_l = U_l V_l^T`` of rank
  ``r``), and the deep network sits beside the cross network (``parallel``, as in DCN) or on
  top of it (``stacked``: ``logit = w^T MLP(x_L1)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from recforge.features import Batch, Schema
from recforge.layers import MLP, StackedInput
from recforge.layers.cross import CrossNetwork
from recforge.models.base import RecModel
from recforge.models.registry import ModelSpec
from recforge.models.tower import TowerConfig


@dataclass(frozen=True)
class DCNConfig(TowerConfig):
    """The deep network's options (:class:`~recforge.models.tower.TowerConfig`; ``hidden``
    empty for a cross-network-only model) and the cross network's:

    Args:
        cross_layers: Number of cross layers ``L1``.
    """

    cross_layers: int = 3


@dataclass(frozen=True)
class DCNV2Config(DCNConfig):
    """Args (beyond :class:`DCNConfig`):
    rank: ``0`` for full ``d x d`` cross matrices; ``r > 0`` for ``W = U V^T`` of rank ``r``.
    structure: ``parallel`` (cross and deep side by side) or ``stacked`` (deep on top of cross).
    """

    rank: int = 0
    structure: Literal["parallel", "stacked"] = "parallel"


class DCN(RecModel):
    """``logit = w^T [CrossNet(x_0), MLP(x_0)] + b`` (or ``w^T MLP(CrossNet(x_0)) + b`` stacked)."""

    config_class = DCNConfig

    def __init__(self, schema: Schema, cfg: DCNConfig) -> None:
        super().__init__(schema, cfg)
        self.embedding = StackedInput(schema, dim=cfg.embedding_dim, sparse=cfg.sparse_tables)
        d = self.embedding.stacked_dim
        version, rank = (2, cfg.rank) if isinstance(cfg, DCNV2Config) else (1, 0)
        self.stacked = isinstance(cfg, DCNV2Config) and cfg.structure == "stacked"
        self.cross = CrossNetwork(d, cfg.cross_layers, version=version, rank=rank)
        self.deep = MLP(d, cfg) if cfg.hidden else None
        deep_width = self.deep.output_dim if self.deep is not None else 0
        self.logit = nn.Linear(deep_width if self.stacked and self.deep else d + deep_width, 1)

    def forward(self, batch: Batch) -> torch.Tensor:
        x0 = self.embedding.stack(batch)  # (B, d)
        x_cross = self.cross(x0)  # (B, d)
        if self.deep is None:
            combined = x_cross
        elif self.stacked:
            combined = self.deep(x_cross)  # (B, h_L2)
        else:
            combined = torch.cat([x_cross, self.deep(x0)], dim=1)  # (B, d + h_L2)
        return self.logit(combined).squeeze(-1)  # (B,)


class DCNV2(DCN):
    """DCN with DCN-V2's matrix cross layers (see :class:`DCNV2Config`)."""

    config_class = DCNV2Config


SPECS = (
    ModelSpec(
        name="dcn",
        model=DCN,
        paper="Wang, Fu, Fu & Wang, Deep & Cross Network for Ad Click Predictions, ADKDD 2017",
        family="ctr",
    ),
    ModelSpec(
        name="dcn_v2",
        model=DCNV2,
        paper="Wang, Shivanna, Cheng, Jain, Lin, Hong & Chi, DCN V2: Improved Deep & Cross "
        "Network and Practical Lessons for Web-scale Learning to Rank Systems, WWW 2021",
        family="ctr",
    ),
)
