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
from recforge.models.base import ModelConfig, RecModel
from recforge.models.registry import ModelSpec


@dataclass(frozen=True)
class MFConfig(ModelConfig):
    """Args:
    global_bias: Initial value of ``mu`` (e.g. the mean training rating for regression).
    """

    global_bias: float = 0.0


class BiasedMF(RecModel):
    """``mu + b_u + b_i + <p_u, q_i>`` over the user and item id fields."""

    config_class = MFConfig

    def __init__(self, schema: Schema, cfg: MFConfig) -> None:
        super().__init__(schema, cfg)
        if schema.user_key is None or schema.item_key is None:
            raise ValueError("BiasedMF needs schema.user_key and schema.item_key")
        self.user_col = schema.sparse_index(schema.user_key)
        self.item_col = schema.sparse_index(schema.item_key)
        sizes = [schema.field(schema.user_key).vocab_size, schema.field(schema.item_key).vocab_size]
        dim = cfg.embedding_dim or schema.embedding_dim
        self.factors = FusedEmbedding(sizes, dim, sparse=cfg.sparse, init_std=0.1 / dim**0.5)
        self.biases = FusedEmbedding(sizes, 1, sparse=cfg.sparse, init_std=0.0)
        self.global_bias = nn.Parameter(torch.tensor(float(cfg.global_bias)))

    def forward(self, batch: Batch) -> torch.Tensor:
        ids = batch.sparse[:, [self.user_col, self.item_col]]  # (B, 2)
        p_q = self.factors(ids)  # (B, 2, D)
        dot = (p_q[:, 0] * p_q[:, 1]).sum(-1)
        return self.global_bias + self.biases(ids).sum(dim=(1, 2)) + dot  # (B,)


SPEC = ModelSpec(
    name="mf",
    model=BiasedMF,
    config=MFConfig,
    paper="Koren, Bell & Volinsky, Matrix Factorization Techniques for Recommender Systems, "
    "IEEE Computer 2009",
    family="baseline",
    pairwise=True,
)
