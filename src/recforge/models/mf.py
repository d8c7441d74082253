"""Biased matrix factorisation.

Koren, Bell & Volinsky, "Matrix Factorization Techniques for Recommender Systems", IEEE
Computer 2009. ``r_hat(u, i) = mu + b_u + b_i + <p_u, q_i>``; the schema's ``user_key`` and
``item_key`` name the two id fields.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from recforge.features import Batch, Schema
from recforge.layers import FusedEmbedding
from recforge.models.base import ModelConfig
from recforge.models.registry import ModelSpec
from recforge.models.user_item import UserItemModel


@dataclass(frozen=True)
class MFConfig(ModelConfig):
    """Args:
    global_bias: Initial value of ``mu`` (e.g. the mean training rating for regression).
    """

    global_bias: float = 0.0


class BiasedMF(UserItemModel):
    """``mu + b_u + b_i + <p_u, q_i>`` over the user and item id fields."""

    config_class = MFConfig

    def __init__(self, schema: Schema, cfg: MFConfig) -> None:
        super().__init__(schema, cfg)
        dim = cfg.embedding_dim or schema.embedding_dim
        self.factors = FusedEmbedding(
            self.sizes, dim, sparse=cfg.sparse_tables, init_std=0.1 / dim**0.5
        )
        self.biases = FusedEmbedding(self.sizes, 1, sparse=cfg.sparse_tables, init_std=0.0)
        self.global_bias = nn.Parameter(torch.tensor(float(cfg.global_bias)))

    def forward(self, batch: Batch) -> torch.Tensor:
        ids = self.ids(batch)  # (B, 2)
        p_q = self.factors(ids)  # (B, 2, D)
        dot = (p_q[:, 0] * p_q[:, 1]).sum(-1)
        return self.global_bias + self.biases(ids).sum(dim=(1, 2)) + dot  # (B,)


SPEC = ModelSpec(
    name="mf",
    model=BiasedMF,
    paper="Koren, Bell & Volinsky, Matrix Factorization Techniques for Recommender Systems, "
    "IEEE Computer 2009",
    family="baseline",
    pairwise=True,
)
