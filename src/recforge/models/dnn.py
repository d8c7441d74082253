"""DNN: the embedding + MLP baseline of the deep CTR lineage.

Covington, Adams & Sargin, "Deep Neural Networks for YouTube Recommendations", RecSys 2016 (the
"YoutubeDNN"/"DNN" row of the BARS benchmark; also the "BaseModel (Embedding&MLP)" of DIN). Every
field is embedded, the field vectors are concatenated, and a multi-layer perceptron maps them to
one logit: ``y = MLP([e_1; ...; e_F])``. It is the reference that every feature-crossing model
must beat.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recforge.features import Batch, Schema
from recforge.layers import MLP, FeatureEmbedding
from recforge.models.base import RecModel
from recforge.models.registry import ModelSpec
from recforge.models.tower import TowerConfig


@dataclass(frozen=True)
class DNNConfig(TowerConfig):
    """DNN's options are its tower's (:class:`~recforge.models.tower.TowerConfig`)."""


class DNN(RecModel):
    """``logit = MLP(concat of all field embeddings)``."""

    config_class = DNNConfig

    def __init__(self, schema: Schema, cfg: DNNConfig) -> None:
        super().__init__(schema, cfg)
        self.embedding = FeatureEmbedding(schema, dim=cfg.embedding_dim, sparse=cfg.sparse_tables)
        self.mlp = MLP(self.embedding.output_dim, cfg, output_dim=1)

    def forward(self, batch: Batch) -> torch.Tensor:
        x = self.embedding.flat(batch)  # (B, sum of field dims)
        return self.mlp(x).squeeze(-1)  # (B,)


SPEC = ModelSpec(
    name="dnn",
    model=DNN,
    paper="Covington, Adams & Sargin, Deep Neural Networks for YouTube Recommendations, "
    "RecSys 2016",
    family="ctr",
)
