"""AFM: attentional factorization machine.

Xiao, Ye, He, Zhang, Wu & Chua, "Attentional Factorization Machines: Learning the Weight of
Feature Interactions via Attention Networks", IJCAI 2017. FM weighs every pairwise interaction
equally; AFM learns a weight per interaction with a small attention network:
``y = w0 + sum_i w_i x_i + p^T sum_{i<j} a_ij (v_i ⊙ v_j) x_i x_j`` (Eq. 5) with
``a_ij = softmax(h^T ReLU(W (v_i ⊙ v_j) x_i x_j + b))`` (Eq. 4). Dropout regularises the
pair-wise interaction layer as in the paper; like the authors' code it is applied to the
pooled vector, so it does not distort the attention weights. The weights ``a_ij`` are exposed
per prediction through :meth:`AFM.attention_weights` and :attr:`AFM.pair_names`.

The paper (and the authors' code, ``--pretrain 1``; BARS too) initialises AFM from a trained
FM: with ``pretrain_fm`` the engine trains an FM of the same embedding size first (a
:class:`~recforge.models.base.PretrainStage`), or loads the FM bundle ``pretrained_fm`` names,
and :meth:`AFM.init_from_pretrained` copies its factors ``v_i`` and first-order term.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from recforge.features import Batch, Schema
from recforge.layers.attention import AFMAttentionPooling
from recforge.layers.interaction import PairwiseProducts
from recforge.models.base import ModelConfig, PretrainStage, RecModel
from recforge.models.fm import FM, FactorizationModel, fm_pretraining
from recforge.models.registry import ModelSpec


@dataclass(frozen=True)
class AFMConfig(ModelConfig):
    """Args:
    attention_dim: Attention factor ``t`` (hidden size of the attention network).
    dropout: Dropout on the attention-pooled interaction vector.
    pretrain_fm: Train an FM first in the same run and initialise the factors and the
        first-order term from it (the paper's setting); off by default.
    pretrained_fm: Path of a saved FM bundle to initialise from instead (the engine loads it;
        this implies pretraining, ``pretrain_fm`` need not be set).
    """

    attention_dim: int = 16
    dropout: float = 0.0
    pretrain_fm: bool = False
    pretrained_fm: str | None = None


class AFM(FactorizationModel):
    """``logit = LinearPart(x) + p^T sum_{i<j} a_ij (v_i ⊙ v_j)``."""

    config_class = AFMConfig

    def __init__(self, schema: Schema, cfg: AFMConfig) -> None:
        super().__init__(schema, cfg)
        self.pairs = PairwiseProducts(self.embedding.num_fields)
        dim = self.embedding.output_dims[0]
        self.dropout = nn.Dropout(cfg.dropout)
        self.attention = AFMAttentionPooling(dim, cfg.attention_dim)
        self.p = nn.Linear(dim, 1, bias=False)
        nn.init.ones_(self.p.weight)  # p = 1 starts as FM with uniform attention

    @property
    def pair_names(self) -> list[tuple[str, str]]:
        """The ``(field_i, field_j)`` names of each column of :meth:`attention_weights`."""
        names = self.embedding.field_names
        return [(names[i], names[j]) for i, j in self.pairs.pairs()]

    def attention_weights(self, batch: Batch) -> torch.Tensor:
        """Attention weight ``a_ij`` of each pair ``(B, P)``, pairs as in :attr:`pair_names`."""
        return self.attention.weights(self.pairs(self.embedding(batch)))

    def pretraining(self) -> list[PretrainStage]:
        """An FM with this model's embedding size, when ``pretrain_fm`` or ``pretrained_fm``."""
        return fm_pretraining(self)

    @torch.no_grad()
    def init_from_pretrained(self, trained: dict[str, RecModel]) -> None:
        """Copy the FM's factors ``v_i``, first-order weights and bias, and set ``p`` to the
        number of pairs: with uniform attention (``a_ij = 1/P``) the AFM then predicts exactly
        what the trained FM does, so training starts from the FM's fit and re-weights pairs."""
        fm = trained.get("fm")
        if not isinstance(fm, FM):
            raise TypeError(f"AFM initialises from an FM, not {type(fm).__name__}")
        self.copy_factors_from(fm)
        self.p.weight.fill_(float(self.pairs.num_pairs))

    def forward(self, batch: Batch) -> torch.Tensor:
        v = self.embedding(batch)  # (B, F, D)
        products = self.pairs(v)  # (B, P, D)
        pooled, _ = self.attention(products)  # (B, D)
        return self.linear(batch) + self.p(self.dropout(pooled)).squeeze(-1)  # (B,)


SPEC = ModelSpec(
    name="afm",
    model=AFM,
    paper="Xiao, Ye, He, Zhang, Wu & Chua, Attentional Factorization Machines: Learning the "
    "Weight of Feature Interactions via Attention Networks, IJCAI 2017",
    family="ctr",
)
