"""Factorization machine (second order).

Rendle, "Factorization Machines", ICDM 2010. The logit is
``w0 + sum_i w_i x_i + sum_{i<j} <v_i, v_j> x_i x_j``, with the pairwise term computed in O(kn)
as ``1/2 sum_f [(sum_i v_if x_i)^2 - sum_i v_if^2 x_i^2]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recforge.features import Batch, Schema
from recforge.layers import FeatureEmbedding, FMInteraction, LinearPart
from recforge.models.base import ModelConfig, RecModel
from recforge.models.registry import ModelSpec


@dataclass(frozen=True)
class FMConfig(ModelConfig):
    """FM has no options beyond the shared ones (embedding_dim is the factor size k)."""


class FM(RecModel):
    """Second-order factorization machine over all fields."""

    config_class = FMConfig

    def __init__(self, schema: Schema, cfg: FMConfig) -> None:
        super().__init__(schema, cfg)
        self.embedding = FeatureEmbedding(schema, dim=cfg.embedding_dim, sparse=cfg.sparse)
        self.linear = LinearPart(schema, sparse=cfg.sparse)
        self.interaction = FMInteraction()

    def forward(self, batch: Batch) -> torch.Tensor:
        v = self.embedding(batch)  # (B, F, D)
        return self.linear(batch) + self.interaction(v)  # (B,)


SPEC = ModelSpec(
    name="fm",
    model=FM,
    config=FMConfig,
    paper="Rendle, Factorization Machines, ICDM 2010",
    family="baseline",
)
