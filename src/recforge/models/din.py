"""Deep Interest Network (DIN).

Zhou, Zhu, Song, Fan, Zhu, Ma, Yan, Jin, Li and Gai, "Deep Interest Network for Click-Through
Rate Prediction", KDD 2018.

A user's interests are diverse, and only the part relevant to the candidate matters for one
prediction. Instead of pooling the behaviour history into one candidate-blind vector (the base
model), DIN weighs every behaviour by a local activation unit that looks at the behaviour and
the candidate together, ``v_U(A) = sum_i a(e_i, v_A) e_i`` (Eq. 3), without a softmax so the
sum keeps the strength of the interest. Behaviours and the candidate share the item and
category embedding tables. The MLP uses Dice (or PReLU). Mini-batch aware regularisation
(Sec. 4.3.1) is the trainer's ``embedding_l2`` on the rows a batch touches.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recforge.features import Batch, Schema
from recforge.layers.din import AttentionPooling, FeedForward
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
class DINConfig(ModelConfig):
    """Options of DIN.

    Args:
        behaviours: ``[[sequence_field, candidate_field], ...]``; ``None`` pairs every sequence
            field with its ``share_embedding_with`` target.
        hidden: MLP widths (the paper: 200-80).
        activation: ``dice`` (the paper's best), ``prelu``, ``relu`` ...
        attention_hidden: Hidden widths of the local activation unit (the paper: 36).
        attention_activation: Activation inside the unit (``dice``, ``prelu``, ``sigmoid``).
        softmax: Normalise attention weights over the history (off in the paper).
        dropout: Dropout after each hidden layer of the MLP.
        skip_fields: Sparse/dense fields left out of the MLP input (e.g. ``user_id``).
    """

    behaviours: tuple[tuple[str, str], ...] | None = None
    hidden: tuple[int, ...] = (200, 80)
    activation: str = "dice"
    attention_hidden: tuple[int, ...] = (36,)
    attention_activation: str = "dice"
    softmax: bool = False
    dropout: float = 0.0
    skip_fields: tuple[str, ...] = ()


class DIN(RecModel):
    """Attention-pooled behaviours plus the other features, through an MLP."""

    config_class = DINConfig

    def __init__(self, schema: Schema, cfg: DINConfig) -> None:
        super().__init__(schema, cfg)
        self.embedding = FeatureEmbedding(
            schema, dim=cfg.embedding_dim, sparse=cfg.sparse, pool_sequences=False
        )
        self.behaviours = resolve_behaviours(schema, cfg.behaviours)
        dk = behaviour_dim(self.embedding, self.behaviours)
        self.attention = AttentionPooling(
            dk, cfg.attention_hidden, cfg.attention_activation, cfg.softmax
        )
        columns = kept_columns(self.embedding, cfg.skip_fields)
        self.register_buffer("columns", columns, persistent=False)
        width = (len(columns) if columns is not None else self.embedding.output_dim) + dk
        self.mlp = FeedForward(width, cfg.hidden, 1, cfg.activation, cfg.dropout)

    def other_features(self, batch: Batch) -> torch.Tensor:
        """User profile, candidate and context embeddings, concatenated: ``(B, W)``."""
        flat = self.embedding.flat(batch)
        return flat if self.columns is None else flat.index_select(1, self.columns)

    def attention_weights(self, batch: Batch) -> torch.Tensor:
        """The activation weight ``a(e_i, v_A)`` of each behaviour: ``(B, L)``, 0 on padding."""
        keys, query, lengths = embed_behaviours(self.embedding, self.behaviours, batch)
        return self.attention.unit(keys, query, lengths)

    def forward(self, batch: Batch) -> torch.Tensor:
        keys, query, lengths = embed_behaviours(self.embedding, self.behaviours, batch)
        user_interest, _ = self.attention(keys, query, lengths)  # (B, Dk), Eq. 3
        x = torch.cat([self.other_features(batch), user_interest], dim=1)
        return self.mlp(x).squeeze(-1)  # (B,)


SPEC = ModelSpec(
    name="din",
    model=DIN,
    config=DINConfig,
    paper="Zhou et al., Deep Interest Network for Click-Through Rate Prediction, KDD 2018",
    family="sequence",
)
