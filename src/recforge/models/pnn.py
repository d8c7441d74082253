"""Product-based Neural Networks: IPNN, OPNN and PNN*.

Qu, Cai, Ren, Zhang, Yu, Wen & Wang, "Product-based Neural Networks for User Response
Prediction", ICDM 2016. The ``N`` field embeddings ``f_i`` feed a *product layer* with a linear
signal ``z = (f_1, ..., f_N)`` and a quadratic signal ``p = {g(f_i, f_j)}``:

    l_z^n = W_z^n . z,   l_p^n = W_p^n . p,   l_1 = ReLU(l_z + l_p + b_1)
    l_2 = ReLU(W_2 l_1 + b_2),  ...,  y_hat = sigma(W_3 l_2 + b_3)

IPNN takes ``g`` = inner product (pairs ``i < j``: ``p`` is symmetric and its diagonal
``||f_i||^2`` is no interaction), OPNN the outer product ``f_i f_j^T`` (by default with the
paper's sum-pooling superposition ``p = f_S f_S^T``, ``f_S = sum_i f_i``), PNN* both (``p`` is the
concatenation of the two). Because ``l_z + l_p`` is linear in ``(z, p)``, the product layer is the
first layer of an MLP over ``[z, p]``; with ``inner_rank > 0`` IPNN instead uses the paper's
rank-K decomposition ``W_p^n = sum_k theta^n_k theta^n_k^T`` (never forming ``p``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from recforge.features import Batch, Schema
from recforge.layers import MLP, FeatureEmbedding
from recforge.layers.product import InnerProduct, LowRankInnerProduct, OuterProduct
from recforge.models.base import RecModel
from recforge.models.registry import ModelSpec
from recforge.models.tower import TowerConfig


@dataclass(frozen=True)
class PNNConfig(TowerConfig):
    """The tower's options (:class:`~recforge.models.tower.TowerConfig`; ``hidden`` are the
    widths ``D1, D2, ...``, ``D1`` the product layer's) and the product layer's:

    Args:
        product: ``inner`` (IPNN), ``outer`` (OPNN) or ``both`` (PNN*).
        inner_rank: ``0`` uses all pairwise inner products; ``K > 0`` the rank-K
            decomposition.
        outer_mode: ``sum_pooling`` (``p = f_S f_S^T``) or ``pairwise`` (every ``f_i f_j^T``).
    """

    product: Literal["inner", "outer", "both"] = "inner"
    inner_rank: int = 0
    outer_mode: Literal["sum_pooling", "pairwise"] = "sum_pooling"


@dataclass(frozen=True)
class IPNNConfig(PNNConfig):
    """PNN with inner products (see :class:`PNNConfig`)."""


@dataclass(frozen=True)
class OPNNConfig(PNNConfig):
    """PNN with outer products (see :class:`PNNConfig`)."""

    product: Literal["inner", "outer", "both"] = "outer"


@dataclass(frozen=True)
class PNNStarConfig(PNNConfig):
    """PNN* with inner and outer products (see :class:`PNNConfig`)."""

    product: Literal["inner", "outer", "both"] = "both"


class PNN(RecModel):
    """Embedding -> product layer ``ReLU(l_z + l_p + b_1)`` -> MLP -> logit."""

    config_class = PNNConfig

    def __init__(self, schema: Schema, cfg: PNNConfig) -> None:
        super().__init__(schema, cfg)
        if not cfg.hidden:
            raise ValueError("PNN needs at least one hidden layer (the product layer)")
        self.embedding = FeatureEmbedding(schema, dim=cfg.embedding_dim, sparse=cfg.sparse_tables)
        n, dim = self.embedding.num_fields, self.embedding.output_dims[0]
        use_inner = cfg.product in ("inner", "both")
        use_outer = cfg.product in ("outer", "both")
        low_rank = use_inner and cfg.inner_rank > 0
        width = self.embedding.output_dim  # |z| = N*M
        self.inner = InnerProduct(n) if use_inner and not low_rank else None
        if self.inner is not None:
            width += self.inner.num_pairs
        self.outer = OuterProduct(n, cfg.outer_mode) if use_outer else None
        if self.outer is not None:
            width += self.outer.output_dim(dim)
        self.low_rank: LowRankInnerProduct | None = None
        if low_rank:
            # l_1 = ReLU(W_z z [+ W_p p_outer] + b_1 + l_p^inner), l_p^inner from theta
            self.low_rank = LowRankInnerProduct(n, cfg.hidden[0], cfg.inner_rank)
            self.product_linear = nn.Linear(width, cfg.hidden[0])
            self.product_tail = nn.Sequential(*cfg.block(cfg.hidden[0]))  # BN, act, dropout
            above = dataclasses.replace(cfg, hidden=cfg.hidden[1:])
            self.mlp = MLP(cfg.hidden[0], above, output_dim=1)
        else:
            # the product layer is the first layer of an MLP over [z, p]
            self.mlp = MLP(width, cfg, output_dim=1)

    def forward(self, batch: Batch) -> torch.Tensor:
        f = self.embedding(batch)  # (B, N, M)
        signals = [f.flatten(1)]  # z: (B, N*M)
        if self.inner is not None:
            signals.append(self.inner(f))  # (B, N(N-1)/2)
        if self.outer is not None:
            signals.append(self.outer(f))  # (B, M*M) sum pooling, (B, P*M*M) pairwise
        x = torch.cat(signals, dim=1)
        if self.low_rank is not None:
            x = self.product_tail(self.product_linear(x) + self.low_rank(f))  # l_1: (B, D1)
        return self.mlp(x).squeeze(-1)  # (B,)


_PAPER = (
    "Qu, Cai, Ren, Zhang, Yu, Wen & Wang, Product-based Neural Networks for User Response "
    "Prediction, ICDM 2016"
)
SPECS = (
    ModelSpec(name="ipnn", model=PNN, config=IPNNConfig, paper=_PAPER, family="ctr"),
    ModelSpec(name="opnn", model=PNN, config=OPNNConfig, paper=_PAPER, family="ctr"),
    ModelSpec(name="pnn_star", model=PNN, config=PNNStarConfig, paper=_PAPER, family="ctr"),
)
