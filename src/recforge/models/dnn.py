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
from recforge.models.base import ModelConfig, RecModel
from recforge.models.registry import ModelSpec


@dataclass(frozen=True)
class DNNConfig(ModelConfig):
    """Args:
    hidden: Widths of the hidden layers.
    activation: Hidden activation.
    dropout: Dropout after each hidden layer.
    batch_norm: Batch normalisation in each hidden layer.
    """

    hidden: tuple[int, ...] = (400, 400, 400)
    activation: str = "relu"
    dropout: float = 0.0
    batch_norm: bool = False


class DNN(RecModel):
    """``logit = MLP(concat of all field embeddings)``."""

    config_class = DNNConfig

    def __init__(self, schema: Schema, cfg: DNNConfig) -> None:
        super().__init__(schema, cfg)
        self.embedding = FeatureEmbedding(schema, dim=cfg.embedding_dim, sparse=cfg.sparse)
        self.mlp = MLP(
            self.embedding.output_dim,
            cfg.hidden,
            output_dim=1,
            activation=cfg.activation,
            dropout=cfg.dropout,
            batch_norm=cfg.batch_norm,
        )

    def forward(self, batch: Batch) -> torch.Tensor:
        x = self.embedding.flat(batch)  # (B, sum of field dims)
        return self.mlp(x).squeeze(-1)  # (B,)


SPEC = ModelSpec(
    name="dnn",
    model=DNN,
    config=DNNConfig,
    paper="Covington, Adams & Sargin, Deep Neural Networks for YouTube Recommendations, "
    "RecSys 2016",
    family="ctr",
)
