"""What the behaviour-sequence models share: Base, DIN and DIEN differ only in how they summarise
the behaviours.

Zhou et al., "Deep Interest Network for Click-Through Rate Prediction", KDD 2018 (Sec. 4), and
Zhou et al., "Deep Interest Evolution Network for Click-Through Rate Prediction", AAAI 2019.
Every feature is embedded, sequences unpooled. A behaviour is a ``(sequence field, candidate
field)`` pair whose history reads the candidate's embedding rows, so behaviours and the
candidate live in one space. The MLP reads the other features (the user profile, candidate and
context embeddings, less ``skip_fields``) concatenated with the model's summary of the
behaviours: a sum (Base), an attention-weighted sum (DIN), or the final state of an interest
evolution GRU (DIEN).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from recforge.features import Batch, Schema
from recforge.layers.embedding import FeatureEmbedding
from recforge.layers.mlp import MLP, Tower, glorot_
from recforge.layers.sequence import (
    behaviour_dim,
    embed_behaviours,
    kept_columns,
    resolve_behaviours,
)
from recforge.models.base import RecModel
from recforge.models.tower import TowerConfig


@dataclass(frozen=True)
class BehaviourConfig(TowerConfig):
    """The MLP's options (:class:`~recforge.models.tower.TowerConfig`) and the behaviours':

    Args:
        hidden: MLP widths (the papers: 200-80).
        activation: MLP activation (``dice``, the papers' best; ``prelu``, ``relu`` ...).
        behaviours: ``[[sequence_field, candidate_field], ...]``; ``None`` pairs every sequence
            field with its ``share_embedding_with`` target.
        skip_fields: Sparse/dense fields left out of the MLP input (e.g. ``user_id``).
        batch_norm: Off (the papers' MLP, and the setting the Amazon Beauty study chose the
            other defaults with); the CTR towers' default is on.
        linear_init: How every fully connected layer (the MLP's, the activation unit's) is
            initialised: ``glorot`` (the default: Glorot & Bengio's uniform with variance
            ``2/(fan_in + fan_out)`` and zero biases, TensorFlow's default for
            ``tf.layers.dense``, which the DIN and DIEN authors' released code uses, and
            FuxiCTR's) or ``torch`` (PyTorch's default, uniform with variance
            ``1/(3 fan_in)``). Chosen on validation: Amazon Beauty, 5 seeds, Base 0.8128 ->
            0.8186 and DIN 0.8240 -> 0.8271 validation AUC; on the peer harness's behaviour
            log DIN's one-epoch test AUC 0.695 -> 0.711 (``benchmarks/results/seq_beauty_s8.md``,
            ``din_glorot_harness_s8.md``). DIEN redeclares ``torch`` (see its config).
    """

    hidden: tuple[int, ...] = (200, 80)
    activation: str = "dice"
    batch_norm: bool = False
    behaviours: tuple[tuple[str, str], ...] | None = None
    skip_fields: tuple[str, ...] = ()
    linear_init: Literal["torch", "glorot"] = "glorot"


@dataclass(frozen=True)
class AttentionConfig(BehaviourConfig):
    """:class:`BehaviourConfig` plus the local activation unit of DIN and DIEN.

    Args:
        attention_hidden: Hidden widths of the unit (the papers: 36).
        attention_activation: Its activation (``dice``, ``prelu``, ``sigmoid`` ...).
    """

    attention_hidden: tuple[int, ...] = (36,)
    attention_activation: str = "dice"

    @property
    def attention_tower(self) -> Tower:
        """The tower of the activation unit."""
        return Tower(self.attention_hidden, self.attention_activation)


class BehaviourModel(RecModel):
    """Embeddings, behaviour pairs and the MLP over ``[other features, behaviour summary]``.

    A subclass builds its summary layers after ``super().__init__`` and then its MLP with
    :meth:`build_mlp` (in that order, so that a seed gives the same initial weights as ever).

    Args:
        schema: A fitted schema.
        cfg: The model's config.
        exclude: Sequence fields that are not behaviours (DIEN's negative sequences).
    """

    config_class = BehaviourConfig
    mlp: MLP

    def __init__(self, schema: Schema, cfg: BehaviourConfig, exclude: Sequence[str] = ()) -> None:
        super().__init__(schema, cfg)
        self.embedding = FeatureEmbedding(
            schema, dim=cfg.embedding_dim, sparse=cfg.sparse_tables, pool_sequences=False
        )
        self.behaviours = resolve_behaviours(schema, cfg.behaviours, exclude=exclude)
        self.behaviour_dim = behaviour_dim(self.embedding, self.behaviours)  # Dk
        columns = kept_columns(self.embedding, cfg.skip_fields)
        self.register_buffer("columns", columns, persistent=False)

    def build_mlp(self, summary_dim: int) -> MLP:
        """The MLP over the other features and a behaviour summary ``summary_dim`` wide."""
        width = len(self.columns) if self.columns is not None else self.embedding.output_dim
        mlp = MLP(width + summary_dim, self.cfg, output_dim=1)  # type: ignore[arg-type]
        if self.cfg.linear_init == "glorot":  # type: ignore[attr-defined]
            glorot_(self, mlp)  # every Linear built so far (the summary layers) and the MLP's
        return mlp

    def other_features(self, batch: Batch) -> torch.Tensor:
        """User profile, candidate and context embeddings, concatenated: ``(B, W)``."""
        flat = self.embedding.flat(batch)
        return flat if self.columns is None else flat.index_select(1, self.columns)

    def embed_behaviours(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Behaviours ``(B, L, Dk)``, candidate ``(B, Dk)`` and lengths ``(B,)`` of a batch."""
        return embed_behaviours(self.embedding, self.behaviours, batch)

    def score(self, batch: Batch, *summary: torch.Tensor) -> torch.Tensor:
        """Logits ``(B,)``: the MLP over the other features and the behaviour summary."""
        x = torch.cat([self.other_features(batch), *summary], dim=1)
        return self.mlp(x).squeeze(-1)
