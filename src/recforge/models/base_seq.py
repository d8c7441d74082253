"""The Embedding&MLP base model of the behaviour-sequence papers.

Zhou et al., "Deep Interest Network for Click-Through Rate Prediction", KDD 2018 (Sec. 4.2,
the "BaseModel" both DIN and DIEN compare against). Every feature is embedded; the behaviour
sequence is pooled into one fixed-length vector by a plain sum (or mean) over the real
behaviours, whatever the candidate; the concatenation goes through an MLP. DIN replaces this
candidate-blind pooling by attention.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from recforge.features import Batch, Schema
from recforge.layers.din import FeedForward, length_mask
from recforge.layers.embedding import FeatureEmbedding
from recforge.layers.sequence import (
    behaviour_dim,
    embed_behaviours,
    kept_columns,
    resolve_behaviours,
)
from recforge.models.base import ModelConfig, RecModel
from recforge.models.registry import ModelSpec


@dataclass(frozen=True)
class BaseSeqConfig(ModelConfig):
    """Options of the base model.

    Args:
        behaviours: ``[[sequence_field, candidate_field], ...]``; ``None`` pairs every sequence
            field with its ``share_embedding_with`` target.
        pooling: ``sum`` (the papers) or ``mean`` over the real behaviours.
        hidden: MLP widths (the papers use 200-80).
        activation: ``prelu`` (the papers' base model), ``dice``, ``relu`` ...
        dropout: Dropout after each hidden layer.
        skip_fields: Sparse/dense fields left out of the MLP input (e.g. ``user_id``).
    """

    behaviours: tuple[tuple[str, str], ...] | None = None
    pooling: Literal["sum", "mean"] = "sum"
    hidden: tuple[int, ...] = (200, 80)
    activation: str = "prelu"
    dropout: float = 0.0
    skip_fields: tuple[str, ...] = ()


class BaseSeq(RecModel):
    """Embedding&MLP with sum/mean pooling of the behaviour history."""

    config_class = BaseSeqConfig

    def __init__(self, schema: Schema, cfg: BaseSeqConfig) -> None:
        super().__init__(schema, cfg)
        if cfg.pooling not in ("sum", "mean"):
            raise ValueError(f"pooling must be 'sum' or 'mean', got {cfg.pooling!r}")
        self.embedding = FeatureEmbedding(
            schema, dim=cfg.embedding_dim, sparse=cfg.sparse, pool_sequences=False
        )
        self.behaviours = resolve_behaviours(schema, cfg.behaviours)
        columns = kept_columns(self.embedding, cfg.skip_fields)
        self.register_buffer("columns", columns, persistent=False)
        width = len(columns) if columns is not None else self.embedding.output_dim
        width += behaviour_dim(self.embedding, self.behaviours)
        self.mlp = FeedForward(width, cfg.hidden, 1, cfg.activation, cfg.dropout)

    def other_features(self, batch: Batch) -> torch.Tensor:
        """User profile, candidate and context embeddings, concatenated: ``(B, W)``."""
        flat = self.embedding.flat(batch)
        return flat if self.columns is None else flat.index_select(1, self.columns)

    def forward(self, batch: Batch) -> torch.Tensor:
        keys, _, lengths = embed_behaviours(self.embedding, self.behaviours, batch)  # (B, L, Dk)
        mask = length_mask(lengths, keys.shape[1]).to(keys.dtype)
        pooled = (keys * mask.unsqueeze(-1)).sum(dim=1)  # (B, Dk): sum_i e_i
        if self.cfg.pooling == "mean":
            pooled = pooled / lengths.clamp(min=1).to(keys.dtype).unsqueeze(-1)
        x = torch.cat([self.other_features(batch), pooled], dim=1)
        return self.mlp(x).squeeze(-1)


SPEC = ModelSpec(
    name="base_seq",
    model=BaseSeq,
    config=BaseSeqConfig,
    paper="Zhou et al., Deep Interest Network for Click-Through Rate Prediction, KDD 2018 "
    "(the Embedding&MLP base model)",
    family="sequence",
)
