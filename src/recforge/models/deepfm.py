"""DeepFM: a factorization machine and a deep network over one shared embedding layer.

Guo, Tang, Ye, Li & He, "DeepFM: A Factorization-Machine based Neural Network for CTR
Prediction", IJCAI 2017. The FM component models first-order and pairwise interactions, the deep
component (an MLP over the concatenated field embeddings) higher-order ones; both read the SAME
embedding vectors (no pre-training, unlike FNN), and their outputs are summed into one logit:
``y = sigmoid(y_FM + y_DNN)`` with
``y_FM = <w, x> + sum_{i<j} <V_i, V_j> x_i x_j`` (Eq. 2) and ``y_DNN = MLP(a^(0))``,
``a^(0) = [e_1, ..., e_m]`` (Eqs. 3-5).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recforge.features import Batch, Schema
from recforge.layers import MLP
from recforge.models.dnn import DNNConfig
from recforge.models.fm import FM
from recforge.models.registry import ModelSpec


@dataclass(frozen=True)
class DeepFMConfig(DNNConfig):
    """The deep component's tower options are DNN's (the paper uses 400-400-400 with ReLU and
    dropout 0.5 on Criteo); the FM component has none of its own."""


class DeepFM(FM):
    """``logit = y_FM + y_DNN``: the FM (its :meth:`fm_logit`) and a deep network over its
    embedding."""

    config_class = DeepFMConfig

    def __init__(self, schema: Schema, cfg: DeepFMConfig) -> None:
        super().__init__(schema, cfg)
        self.dnn = MLP(self.embedding.output_dim, cfg, output_dim=1)

    def forward(self, batch: Batch) -> torch.Tensor:
        v = self.embedding(batch)  # (B, F, D), shared by both components
        y_dnn = self.dnn(v.flatten(1)).squeeze(-1)  # (B,)
        return self.fm_logit(batch, v) + y_dnn  # (B,)


SPEC = ModelSpec(
    name="deepfm",
    model=DeepFM,
    paper="Guo, Tang, Ye, Li & He, DeepFM: A Factorization-Machine based Neural Network for "
    "CTR Prediction, IJCAI 2017",
    family="ctr",
)
