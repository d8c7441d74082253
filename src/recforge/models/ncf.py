"""Neural collaborative filtering: GMF, MLP and NeuMF.

He, Liao, Zhang, Nie, Hu & Chua, "Neural Collaborative Filtering", WWW 2017. Three models over
the user and item ids, trained on implicit feedback with sampled negatives (pointwise log
loss, paper eq. 7):

* GMF (eq. 9): ``y = sigma(h^T (p_u * q_i))``, a generalised matrix factorisation.
* MLP (eq. 10): ``z_1 = [p_u; q_i]``, ``z_l = ReLU(W_l z_{l-1} + b_l)``, ``y = sigma(h^T z_L)``,
  a tower that halves its width at every layer and ends at ``factors`` ("predictive factors").
* NeuMF (eq. 11-12): GMF and MLP with *separate* embeddings, their last layers concatenated,
  ``y = sigma(h^T [p^G_u * q^G_i; z_L])``. With pretraining, the GMF and MLP parts are
  initialised from trained models and ``h <- [alpha h^GMF; (1 - alpha) h^MLP]`` (alpha = 0.5).

Forward returns logits (the sigmoid belongs to the loss). Embeddings are initialised from
N(0, 0.01), tower layers with Glorot-uniform, as in the paper's code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, cast

import torch
from torch import nn

from recforge.features import Batch, Schema
from recforge.layers import MLP, FusedEmbedding, Tower
from recforge.layers.mlp import glorot_
from recforge.models.base import ModelConfig, PretrainStage, RecModel
from recforge.models.registry import ModelSpec
from recforge.models.user_item import UserItemModel

_PAPER = "He, Liao, Zhang, Nie, Hu & Chua, Neural Collaborative Filtering, WWW 2017"


class GMFArch(nn.Module):
    """``p_u * q_i``: the element-wise product of user and item embeddings ``(B, factors)``."""

    def __init__(self, sizes: Sequence[int], factors: int, sparse: bool = False) -> None:
        super().__init__()
        self.embedding = FusedEmbedding(sizes, factors, sparse=sparse, init_std=0.01)
        self.output_dim = factors

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        pq = self.embedding(ids)  # (B, 2, f)
        return pq[:, 0] * pq[:, 1]  # (B, f)


class MLPArch(nn.Module):
    """``z_L`` of the tower over ``[p_u; q_i]``: widths ``f 2^L -> f 2^(L-1) -> ... -> f``."""

    def __init__(
        self,
        sizes: Sequence[int],
        factors: int,
        num_layers: int,
        dropout: float,
        sparse: bool = False,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError("the NCF MLP tower needs at least one layer")
        dim = factors * 2 ** (num_layers - 1)  # each side; the concatenation is f 2^L wide
        self.embedding = FusedEmbedding(sizes, dim, sparse=sparse, init_std=0.01)
        hidden = tuple(factors * 2 ** (num_layers - 1 - layer) for layer in range(num_layers))
        self.tower = MLP(2 * dim, Tower(hidden, "relu", dropout))
        glorot_(self.tower)
        self.output_dim = factors

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        z = self.embedding(ids).flatten(1)  # (B, 2 dim) = [p_u; q_i]
        return self.tower(z)  # (B, f)


def _prediction_layer(width: int) -> nn.Linear:
    layer = nn.Linear(width, 1)
    nn.init.kaiming_uniform_(layer.weight, a=1, nonlinearity="sigmoid")
    nn.init.zeros_(layer.bias)
    return layer


@dataclass(frozen=True)
class GMFConfig(ModelConfig):
    """Args:
    factors: Predictive factors, the width of each part's output: GMF's embedding size, the
        MLP's last tower layer (``embedding_dim`` is not used).
    """

    factors: int = 8


@dataclass(frozen=True)
class NCFMLPConfig(GMFConfig):
    """The predictive factors (:class:`GMFConfig`) and the MLP tower's options:

    Args:
        num_layers: Tower layers; each side embeds into ``factors * 2^(num_layers-1)``.
        dropout: Dropout after each tower layer.
    """

    num_layers: int = 3
    dropout: float = 0.0


@dataclass(frozen=True)
class NeuMFConfig(NCFMLPConfig):
    """The MLP part's options (:class:`NCFMLPConfig`; ``factors`` is also the GMF part's
    embedding size) and the fusion's:

    Args:
        alpha: Trade-off between the pretrained GMF and MLP output weights.
        pretrain: Train a GMF and an MLP first (same factors, layers and dropout) and
            initialise from them (paper section 3.4.1); ``False`` starts from a random
            initialisation.
        pretrain_optimizer: Optimizer of the two pretraining stages (the paper: Adam). The
            paper fine-tunes the pretrained NeuMF with vanilla SGD, which is the run's
            ``train.optimizer`` in the shipped config (``configs/models/neumf.yaml``).
        pretrain_lr: Learning rate of the two pretraining stages.
    """

    alpha: float = 0.5
    pretrain: bool = True
    pretrain_optimizer: str = "adam"
    pretrain_lr: float = 1e-3


class NeuralCF(UserItemModel):
    """The NCF framework: ``y = h^T phi(u, i)``, ``phi`` the concatenated outputs of the parts.

    GMF's part gives ``p_u * q_i`` (eq. 9), the MLP's ``z_L`` (eq. 10); NeuMF fuses both, each
    with its own embeddings (eq. 11-12). A subclass names its parts.

    Attributes:
        parts: ``gmf`` and/or ``mlp``, in the order of ``phi``.
    """

    parts: ClassVar[tuple[str, ...]] = ()
    gmf: GMFArch
    mlp: MLPArch

    def __init__(self, schema: Schema, cfg: GMFConfig) -> None:
        super().__init__(schema, cfg)
        if "gmf" in self.parts:
            self.gmf = GMFArch(self.sizes, cfg.factors, sparse=cfg.sparse_tables)
        if "mlp" in self.parts:
            tower = cast(NCFMLPConfig, cfg)
            self.mlp = MLPArch(
                self.sizes, cfg.factors, tower.num_layers, tower.dropout, cfg.sparse_tables
            )
        self.predict = _prediction_layer(len(self.parts) * cfg.factors)

    def forward(self, batch: Batch) -> torch.Tensor:
        ids = self.ids(batch)
        phi = torch.cat([self.get_submodule(p)(ids) for p in self.parts], dim=-1)  # (B, f parts)
        return self.predict(phi).squeeze(-1)  # (B,)


class GMF(NeuralCF):
    """Generalised matrix factorisation, eq. 9."""

    config_class = GMFConfig
    parts = ("gmf",)


class NCFMLP(NeuralCF):
    """The NCF multi-layer perceptron, eq. 10."""

    config_class = NCFMLPConfig
    parts = ("mlp",)


class NeuMF(NeuralCF):
    """Fusion of GMF and MLP with separate embeddings, eq. 11-12."""

    config_class = NeuMFConfig
    parts = ("gmf", "mlp")

    def pretraining(self) -> list[PretrainStage]:
        """GMF and MLP with this model's sizes, trained first (paper section 3.4.1)."""
        cfg = self.cfg
        if not cfg.pretrain:
            return []
        train = {"optimizer": cfg.pretrain_optimizer, "lr": cfg.pretrain_lr}
        common = {"factors": cfg.factors, "sparse": cfg.sparse}
        return [
            PretrainStage("gmf", "gmf", common, train),
            PretrainStage(
                "mlp", "ncf_mlp",
                {**common, "num_layers": cfg.num_layers, "dropout": cfg.dropout}, train,
            ),
        ]  # fmt: skip

    def init_from_pretrained(self, trained: dict[str, RecModel]) -> None:
        gmf, mlp = trained.get("gmf"), trained.get("mlp")
        if not isinstance(gmf, GMF) or not isinstance(mlp, NCFMLP):
            raise TypeError("NeuMF initialises from a trained GMF ('gmf') and MLP ('mlp')")
        self.init_from_parts(gmf, mlp)

    @torch.no_grad()
    def init_from_parts(self, gmf: GMF, mlp: NCFMLP, alpha: float | None = None) -> None:
        """Initialise from trained GMF and MLP models (paper section 3.4.1).

        Embeddings and tower weights are copied; the output layer becomes
        ``h = [alpha h^GMF; (1 - alpha) h^MLP]`` and ``b = alpha b^GMF + (1 - alpha) b^MLP``, so
        the initial logit is ``alpha * GMF logit + (1 - alpha) * MLP logit``.
        """
        a = self.cfg.alpha if alpha is None else alpha
        self.gmf.load_state_dict(gmf.gmf.state_dict())
        self.mlp.load_state_dict(mlp.mlp.state_dict())
        weight = torch.cat([a * gmf.predict.weight, (1 - a) * mlp.predict.weight], dim=1)
        self.predict.weight.copy_(weight)
        self.predict.bias.copy_(a * gmf.predict.bias + (1 - a) * mlp.predict.bias)


SPECS = (
    ModelSpec(name="gmf", model=GMF, paper=_PAPER, family="cf", pairwise=True),
    ModelSpec(name="ncf_mlp", model=NCFMLP, paper=_PAPER, family="cf", pairwise=True),
    ModelSpec(name="neumf", model=NeuMF, paper=_PAPER, family="cf", pairwise=True),
)
