"""Logistic regression: the first-order baseline every CTR paper compares against.

McCullagh & Nelder, *Generalized Linear Models*, Chapman & Hall, 1989. The logit is
``w0 + sum_i w_i x_i`` over one-hot sparse features and numeric features.
"""

from __future__ import annotations

import torch

from recforge.features import Batch, Schema
from recforge.layers import LinearPart
from recforge.models.base import ModelConfig, RecModel
from recforge.models.registry import ModelSpec


class LogisticRegression(RecModel):
    """``logit = w0 + sum_i w_i x_i``; no options beyond :class:`ModelConfig`'s."""

    def __init__(self, schema: Schema, cfg: ModelConfig) -> None:
        super().__init__(schema, cfg)
        self.linear = LinearPart(schema, sparse=cfg.sparse_tables)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.linear(batch)  # (B,)


SPEC = ModelSpec(
    name="lr",
    model=LogisticRegression,
    paper="McCullagh & Nelder, Generalized Linear Models, 1989",
    family="baseline",
)
