"""FNN: a factorization-machine supported neural network.

Zhang, Du & Wang, "Deep Learning over Multi-field Categorical Data: A Case Study on User
Response Prediction", ECIR 2016. Training has two stages. First an FM is trained; then the
dense input of a feed-forward network, ``z = (w0, z_1, ..., z_n)`` with
``z_i = (w_i, v_i^1, ..., v_i^K)`` for field ``i`` (Eq. 3), is initialised from the FM's bias,
first-order weights ``w_i`` and latent vectors ``v_i``, and the whole network is fine-tuned:
``l_1 = tanh(W_1 z + b_1)``, ``l_2 = tanh(W_2 l_1 + b_2)``, ``y = sigmoid(W_3 l_2 + b_3)``.

The engine runs both stages: :meth:`FNN.pretraining` declares the FM (or, with
``FNNConfig.pretrained_fm``, the saved FM bundle the engine loads instead of training one) and
:meth:`FNN.init_from_pretrained` copies its weights; :meth:`FNN.from_fm` does the same by hand.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import torch

from recforge.features import Batch, Schema
from recforge.layers import MLP
from recforge.models.base import PretrainStage, RecModel
from recforge.models.fm import FM, FactorizationModel, fm_pretraining
from recforge.models.registry import ModelSpec
from recforge.models.tower import TowerConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FNNConfig(TowerConfig):
    """The tower's options (:class:`~recforge.models.tower.TowerConfig`; the paper's network
    has tanh layers above ``z``) and the pretraining:

    Args:
        activation: Hidden activation (the paper uses tanh).
        pretrained_fm: Path of a saved FM bundle whose weights initialise ``z`` (the engine
            loads it; never the constructor); ``None`` trains the FM in the same run
            (``pretrain_fm``).
        pretrain_fm: With no ``pretrained_fm``, train an FM first in the same run (stage one)
            and initialise from it, as the paper does; ``False`` keeps the random
            initialisation.
        batch_norm: Off, as in the paper: ``z`` carries the FM's global bias ``w0``, a constant
            over the batch that batch norm would subtract away (the CTR towers' default is on).
    """

    activation: str = "tanh"
    batch_norm: bool = False
    pretrained_fm: str | None = None
    pretrain_fm: bool = True


class FNN(FactorizationModel):
    """``logit = MLP(z)``, ``z = [w0, w_1..w_n, v_1..v_n]`` initialisable from a trained FM."""

    config_class = FNNConfig

    def __init__(self, schema: Schema, cfg: FNNConfig) -> None:
        super().__init__(schema, cfg)  # the FM's v_i and w0, w_i: z is made of them
        n_first = len(schema.sparse_fields) + len(schema.dense_fields) + 1
        self.mlp = MLP(self.embedding.output_dim + n_first, cfg, output_dim=1)

    def dense_input(self, batch: Batch) -> torch.Tensor:
        """The input ``z = (w0, w_i x_i ..., v_i x_i ...)`` of Eq. (3).

        Shape:
            ``(B, 1 + n_fields + sum of field dims)``.
        """
        B = batch.sparse.shape[0]  # not len(batch): keeps an exported batch size dynamic
        parts = [self.linear.bias.expand(B, 1)]  # w0
        if self.linear.weights is not None:
            parts.append(self.linear.weights(batch.sparse).squeeze(-1))  # (B, Fs)
        if self.linear.dense is not None:
            parts.append(batch.dense * self.linear.dense.weight)  # (B, Fd)
        parts.append(self.embedding.flat(batch))  # (B, sum dims)
        return torch.cat(parts, dim=1)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.mlp(self.dense_input(batch)).squeeze(-1)  # (B,)

    def pretraining(self) -> list[PretrainStage]:
        """Stage one of the paper: an FM with this model's embedding dimension."""
        return fm_pretraining(self)

    def init_from_pretrained(self, trained: dict[str, RecModel]) -> None:
        fm = trained.get("fm")
        if not isinstance(fm, FM):
            raise TypeError(f"FNN initialises from an FM, not {type(fm).__name__}")
        self.init_from_fm(fm)

    @torch.no_grad()
    def init_from_fm(self, fm: FM) -> FNN:
        """Copy an FM's latent vectors, first-order weights and bias into ``z`` (stage two)."""
        self.copy_factors_from(fm)
        return self

    @classmethod
    def from_fm(cls, fm: FM, cfg: FNNConfig | None = None) -> FNN:
        """A new FNN over the FM's schema, initialised from it.

        The FNN's embedding dimension is forced to the FM's.
        """
        cfg = cfg or FNNConfig()
        dim = fm.cfg.embedding_dim or fm.schema.embedding_dim
        cfg = dataclasses.replace(cfg, embedding_dim=dim)
        return cls(fm.schema, cfg).init_from_fm(fm)


SPEC = ModelSpec(
    name="fnn",
    model=FNN,
    paper="Zhang, Du & Wang, Deep Learning over Multi-field Categorical Data: A Case Study on "
    "User Response Prediction, ECIR 2016",
    family="ctr",
)
