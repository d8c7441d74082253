"""Factorization machine (second order).

Rendle, "Factorization Machines", ICDM 2010. The logit is
``w0 + sum_i w_i x_i + sum_{i<j} <v_i, v_j> x_i x_j``, with the pairwise term computed in O(kn)
as ``1/2 sum_f [(sum_i v_if x_i)^2 - sum_i v_if^2 x_i^2]``.

The FM's parameters, the field factors ``v_i`` and the first-order term ``w0 + sum_i w_i x_i``,
are also the input of the models that build on it (:class:`FactorizationModel`): DeepFM feeds
the same ``v_i`` to a deep network, NFM and AFM replace the pairwise term, FNN initialises its
network's input from a trained FM's.
"""

from __future__ import annotations

from typing import Any

import torch

from recforge.features import Batch, Schema
from recforge.layers import FeatureEmbedding, FMInteraction, LinearPart
from recforge.models.base import ModelConfig, PretrainStage, RecModel
from recforge.models.registry import ModelSpec

FMConfig = ModelConfig  # the FM has no options of its own (embedding_dim is the factor size k)


class FactorizationModel(RecModel):
    """A model over an FM's parameters: field factors and a first-order term.

    Attributes:
        embedding: The factors ``v_i``, scaled by ``x_i`` (:class:`FeatureEmbedding`).
        linear: ``w0 + sum_i w_i x_i`` (:class:`LinearPart`).
    """

    def __init__(self, schema: Schema, cfg: ModelConfig) -> None:
        super().__init__(schema, cfg)
        self.embedding = FeatureEmbedding(schema, dim=cfg.embedding_dim, sparse=cfg.sparse_tables)
        self.linear = LinearPart(schema, sparse=cfg.sparse_tables)

    @torch.no_grad()
    def copy_factors_from(self, fm: FactorizationModel) -> None:
        """Copy a trained FM's factors ``v_i``, first-order weights and bias (FNN's ``z``,
        AFM's FM initialisation); the embedding sizes must match."""
        if fm.embedding.output_dims != self.embedding.output_dims:
            raise ValueError(
                f"FM embedding dims {fm.embedding.output_dims} differ from "
                f"{type(self).__name__}'s {self.embedding.output_dims}"
            )
        self.embedding.load_state_dict(fm.embedding.state_dict())
        self.linear.load_state_dict(fm.linear.state_dict())


class FM(FactorizationModel):
    """Second-order factorization machine over all fields.

    Its config is :class:`ModelConfig` (``FMConfig``): ``embedding_dim`` is the factor size k.
    """

    def __init__(self, schema: Schema, cfg: FMConfig) -> None:
        super().__init__(schema, cfg)
        self.interaction = FMInteraction()

    def fm_logit(self, batch: Batch, v: torch.Tensor | None = None) -> torch.Tensor:
        """``<w, x> + sum_{i<j} <v_i, v_j>`` ``(B,)``; ``v`` are the batch's factors if known."""
        v = self.embedding(batch) if v is None else v  # (B, F, D)
        return self.linear(batch) + self.interaction(v)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.fm_logit(batch)  # (B,)


SPEC = ModelSpec(
    name="fm",
    model=FM,
    paper="Rendle, Factorization Machines, ICDM 2010",
    family="baseline",
)


def fm_pretraining(model: FactorizationModel) -> list[PretrainStage]:
    """The FM stage of a model initialised from a trained FM (FNN's stage one; AFM, as its
    paper and BARS do): an FM of the model's embedding size, trained in the same run when the
    config's ``pretrain_fm`` is set, or loaded from the bundle ``pretrained_fm`` names."""
    cfg: Any = model.cfg  # FNNConfig or AFMConfig: both declare the two options
    if not (cfg.pretrained_fm or cfg.pretrain_fm):
        return []
    params = {"embedding_dim": model.embedding.dims[0], "sparse": cfg.sparse}
    return [PretrainStage("fm", "fm", params, path=cfg.pretrained_fm)]
