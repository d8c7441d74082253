"""NFM: neural factorization machine.

He & Chua, "Neural Factorization Machines for Sparse Predictive Analytics", SIGIR 2017. The
second-order part of FM is replaced by a network over the bi-interaction pooled vector:
``y = w0 + sum_i w_i x_i + f(x)`` (Eq. 3), with ``f_BI = 1/2[(sum v_i x_i)^2 - sum (v_i x_i)^2]``
(Eq. 4), hidden layers ``z_l = sigma(W_l z_{l-1} + b_l)`` (Eq. 5) and ``f = h^T z_L`` (Eq. 6).
As in the paper, batch normalisation and dropout are applied to the bi-interaction vector (and,
optionally, to the hidden layers).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from recforge.features import Batch, Schema
from recforge.layers import MLP
from recforge.layers.interaction import BiInteraction
from recforge.layers.mlp import BatchNorm
from recforge.models.fm import FactorizationModel
from recforge.models.registry import ModelSpec
from recforge.models.tower import TowerConfig


@dataclass(frozen=True)
class NFMConfig(TowerConfig):
    """The tower's options (:class:`~recforge.models.tower.TowerConfig`), with NFM's defaults:

    Args:
        hidden: Hidden layer widths above the bi-interaction layer (the paper's best NFM has
            one layer as wide as the embedding; ``()`` gives NFM-0, i.e. FM with a learned
            projection).
        dropout: Dropout after each hidden layer.
        batch_norm: Batch norm on the bi-interaction vector and in each hidden layer.
        bi_dropout: Dropout on the bi-interaction vector (the paper's keep-prob 0.5).
    """

    hidden: tuple[int, ...] = (64,)
    dropout: float = 0.2
    batch_norm: bool = True
    bi_dropout: float = 0.5


class NFM(FactorizationModel):
    """``logit = LinearPart(x) + h^T MLP(Dropout(BN(f_BI(V_x))))``."""

    config_class = NFMConfig

    def __init__(self, schema: Schema, cfg: NFMConfig) -> None:
        super().__init__(schema, cfg)
        self.bi = BiInteraction()
        dim = self.embedding.output_dims[0]
        self.bi_norm = BatchNorm(dim) if cfg.batch_norm else nn.Identity()
        self.bi_dropout = nn.Dropout(cfg.bi_dropout)
        self.mlp = MLP(dim, cfg, output_dim=1)  # output: the projection h of Eq. (6)

    def forward(self, batch: Batch) -> torch.Tensor:
        v = self.embedding(batch)  # (B, F, D)
        z = self.bi_dropout(self.bi_norm(self.bi(v)))  # (B, D)
        return self.linear(batch) + self.mlp(z).squeeze(-1)  # (B,)


SPEC = ModelSpec(
    name="nfm",
    model=NFM,
    paper="He & Chua, Neural Factorization Machines for Sparse Predictive Analytics, SIGIR 2017",
    family="ctr",
)
