"""FNN: a factorization-machine supported neural network.

Zhang, Du & Wang, "Deep Learning over Multi-field Categorical Data: A Case Study on User
Response Prediction", ECIR 2016. Training has two stages. First an FM is trained; then the
dense input of a feed-forward network, ``z = (w0, z_1, ..., z_n)`` with
``z_i = (w_i, v_i^1, ..., v_i^K)`` for field ``i`` (Eq. 3), is initialised from the FM's bias,
first-order weights ``w_i`` and latent vectors ``v_i``, and the whole network is fine-tuned:
``l_1 = tanh(W_1 z + b_1)``, ``l_2 = tanh(W_2 l_1 + b_2)``, ``y = sigmoid(W_3 l_2 + b_3)``.

Use :meth:`FNN.from_fm` / :meth:`FNN.init_from_fm` with a trained :class:`recforge.models.fm.FM`,
:func:`load_pretrained` for ``FNNConfig.pretrained_fm`` (a saved FM), or
:func:`train_fnn_two_stage` to run both stages with the :class:`recforge.train.Trainer`.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from recforge.features import Batch, Schema
from recforge.layers import MLP, FeatureEmbedding, LinearPart
from recforge.models.base import ModelConfig, RecModel
from recforge.models.fm import FM, FMConfig
from recforge.models.registry import ModelSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FNNConfig(ModelConfig):
    """Args:
    hidden: Hidden layer widths (the paper's network has tanh layers above ``z``).
    activation: Hidden activation (the paper uses tanh).
    dropout: Dropout after each hidden layer.
    batch_norm: Batch normalisation in each hidden layer.
    pretrained_fm: Path of a saved FM (a bundle directory or a ``state_dict`` file) whose
        weights initialise ``z``; ``None`` leaves a random initialisation (or use
        :func:`train_fnn_two_stage`). Loading happens in :func:`load_pretrained`, never in the
        constructor.
    pretrain_fm: With no ``pretrained_fm``, train an FM first in the same run (stage one) and
        initialise from it, as the paper does; ``False`` keeps the random initialisation.
    """

    hidden: tuple[int, ...] = (400, 400, 400)
    activation: str = "tanh"
    dropout: float = 0.0
    batch_norm: bool = False
    pretrained_fm: str | None = None
    pretrain_fm: bool = True


class FNN(RecModel):
    """``logit = MLP(z)``, ``z = [w0, w_1..w_n, v_1..v_n]`` initialisable from a trained FM."""

    config_class = FNNConfig

    def __init__(self, schema: Schema, cfg: FNNConfig) -> None:
        super().__init__(schema, cfg)
        self.embedding = FeatureEmbedding(schema, dim=cfg.embedding_dim, sparse=cfg.sparse)
        self.linear = LinearPart(schema, sparse=cfg.sparse)  # w0 and w_i, as in the FM
        n_first = len(schema.sparse_fields) + len(schema.dense_fields) + 1
        self.mlp = MLP(
            self.embedding.output_dim + n_first,
            cfg.hidden,
            output_dim=1,
            activation=cfg.activation,
            dropout=cfg.dropout,
            batch_norm=cfg.batch_norm,
        )

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

    def load_pretrained(self) -> None:
        """Initialise from ``cfg.pretrained_fm`` when it names a saved FM."""
        if self.cfg.pretrained_fm:  # type: ignore[attr-defined]
            load_pretrained(self)

    def pretraining(self) -> tuple[str, dict] | None:
        """Stage one of the paper: an FM with this model's embedding dimension."""
        cfg = self.cfg
        if cfg.pretrained_fm or not cfg.pretrain_fm:  # type: ignore[attr-defined]
            return None
        return "fm", {"embedding_dim": self.embedding.dims[0], "sparse": cfg.sparse}

    def init_from_pretrained(self, other: RecModel) -> None:
        if not isinstance(other, FM):
            raise TypeError(f"FNN initialises from an FM, not {type(other).__name__}")
        self.init_from_fm(other)

    @torch.no_grad()
    def init_from_fm(self, fm: FM) -> FNN:
        """Copy an FM's latent vectors, first-order weights and bias into ``z`` (stage two)."""
        if fm.embedding.output_dims != self.embedding.output_dims:
            raise ValueError(
                f"FM embedding dims {fm.embedding.output_dims} differ from FNN's "
                f"{self.embedding.output_dims}"
            )
        self.embedding.load_state_dict(fm.embedding.state_dict())
        self.linear.load_state_dict(fm.linear.state_dict())
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


def _fm_state(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An FM ``state_dict`` and its config params from a bundle directory or a weights file."""
    if path.is_dir():
        try:  # the serving bundle (schema + preprocessor + config + weights)
            from recforge.serve.bundle import load_bundle  # type: ignore[attr-defined]
        except ImportError as exc:
            raise RuntimeError(f"{path}: reading bundles needs recforge.serve.bundle") from exc
        bundle = load_bundle(path)
        model = bundle.model
        if not isinstance(model, FM):
            raise ValueError(f"{path}: holds a {type(model).__name__}, not an FM")
        return model.state_dict(), dataclasses.asdict(model.cfg)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # a checkpoint {"model": state_dict, ...}
    return state, {}


def load_pretrained(model: FNN, path: str | Path | None = None) -> FNN:
    """Initialise ``model`` from the FM saved at ``path`` (default ``cfg.pretrained_fm``).

    Args:
        model: The FNN to initialise in place.
        path: A bundle directory or a file holding an FM ``state_dict`` (or a checkpoint with a
            ``"model"`` entry) for the same fitted schema.

    Returns:
        The model, for chaining.
    """
    path = path or model.cfg.pretrained_fm  # type: ignore[attr-defined]
    if path is None:
        return model
    state, params = _fm_state(Path(path))
    dim = params.get("embedding_dim") or model.embedding.dims[0]
    fm = FM(model.schema, FMConfig(embedding_dim=dim))
    fm.load_state_dict(state)
    log.info("FNN initialised from the FM at %s", path)
    return model.init_from_fm(fm)


def train_fnn_two_stage(
    schema: Schema,
    train: Any,
    valid: Any,
    cfg: FNNConfig,
    train_cfg: Any,
    fm_cfg: FMConfig | None = None,
) -> tuple[FNN, FM, Any, Any]:
    """Stage one: train an FM; stage two: initialise an FNN from it and train the FNN.

    Args:
        schema: Fitted schema.
        train: Training ``EncodedData``.
        valid: Validation ``EncodedData`` (early stopping).
        cfg: FNN options (``pretrained_fm`` is ignored: the FM is trained here).
        train_cfg: A :class:`recforge.config.TrainConfig` used for both stages.
        fm_cfg: FM options; defaults to the FNN's embedding dimension.

    Returns:
        ``(fnn, fm, fm_history, fnn_history)``.
    """
    from recforge.train import Trainer

    dim = cfg.embedding_dim or schema.embedding_dim
    fm = FM(schema, fm_cfg or FMConfig(embedding_dim=dim, sparse=cfg.sparse))
    fm_history = Trainer(fm, train_cfg, task=schema.task).fit(train, valid)
    fnn = FNN.from_fm(fm, dataclasses.replace(cfg, pretrained_fm=None))
    fnn_history = Trainer(fnn, train_cfg, task=schema.task).fit(train, valid)
    return fnn, fm, fm_history, fnn_history


SPEC = ModelSpec(
    name="fnn",
    model=FNN,
    config=FNNConfig,
    paper="Zhang, Du & Wang, Deep Learning over Multi-field Categorical Data: A Case Study on "
    "User Response Prediction, ECIR 2016",
    family="ctr",
)
