"""The contract every recforge model honours.

A model is an ``nn.Module`` built as ``Model(schema, cfg)`` from a fitted :class:`Schema` and its
frozen config dataclass. ``forward(batch)`` returns raw logits of shape ``(B,)`` (ratings for
regression models; never probabilities). The engine (:class:`recforge.train.Trainer`) owns the
loss, optimizer, device, seeding and I/O, and calls the model only through the hooks declared
here; nothing is probed with ``getattr``. Every hook has a default, so a plain CTR model
implements ``forward`` and nothing else.

Hooks, in the order the engine uses them:

* :meth:`RecModel.pretraining` / :meth:`RecModel.init_from_pretrained`: stages the engine trains
  first (FNN: an FM; NeuMF: GMF and MLP) and how their weights initialise this model.
* :meth:`RecModel.fit_statistics`: parts estimated by counting rather than gradients (item
  popularity, AutoRec's stored rating matrix), set once from the training split.
* :meth:`RecModel.training_data`: the rows the engine iterates over (the training split itself,
  or AutoRec's rows of the rating matrix).
* :meth:`RecModel.optimizer_groups`: parameters that want their own optimizer (Wide&Deep's wide
  part with FTRL).
* :meth:`RecModel.forward_train` (logits plus an optional extra loss, DIEN's auxiliary loss) or,
  when the model overrides it (:attr:`RecModel.own_objective`), :meth:`RecModel.objective`
  (the model's whole loss, AutoRec's masked reconstruction error).
* :meth:`RecModel.interactions`, :meth:`RecModel.attention_weights`, :meth:`RecModel.for_export`:
  what serving, ``recommend``, ``explain`` and the exporters read.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from torch import nn

from recforge.config import FieldValueError
from recforge.features import Batch, Schema

if TYPE_CHECKING:
    from recforge.features import EncodedData
    from recforge.interactions import InteractionMatrix


SPARSE_MIN_ROWS = 1 << 16
"""``sparse: auto`` leaves tables of fewer rows than this dense: their dense update costs little,
and the shipped reproduction configs (Frappe, the Criteo head, MovieLens) keep dense Adam."""
SPARSE_MIN_RATIO = 4
"""``sparse: auto`` makes a table sparse only when it has at least this many times as many rows as
one training batch looks up ids; nearer to one, most rows are touched anyway."""


@dataclass(frozen=True)
class ModelConfig:
    """Options shared by every model.

    Args:
        embedding_dim: Embedding dimension for all fields; ``None`` uses the schema's.
        sparse: Sparse embedding gradients, so optimizer work scales with the rows a batch
            touches (lazy Adam on those rows: untouched rows keep their moments, as TensorFlow's
            ``LazyAdam`` and PyTorch's ``SparseAdam``). ``auto`` (the default) lets the
            engine decide per table when training starts: sparse for a table of at least
            :data:`SPARSE_MIN_ROWS` rows, and at least
            :data:`SPARSE_MIN_RATIO` times the ids one batch looks up, where the dense update
            over the whole table dominates the step; dense otherwise, and whenever the run
            needs dense gradients (``embedding_l2_scope: table``, NCCL, TorchRec's fused
            tables). ``true``/``false`` force it.
    """

    embedding_dim: int | None = None
    sparse: bool | Literal["auto"] = "auto"

    @property
    def sparse_tables(self) -> bool:
        """Build embedding tables with sparse gradients now (``sparse: true``); ``auto`` builds
        them dense and lets the engine switch large tables when training starts."""
        return self.sparse is True

    def __post_init__(self) -> None:
        if self.sparse not in (True, False, "auto"):
            raise FieldValueError(
                "model.params", "sparse", f"must be true, false or auto, got {self.sparse!r}"
            )
        if self.embedding_dim is not None and self.embedding_dim < 1:
            raise FieldValueError(
                "model.params", "embedding_dim", f"must be at least 1, got {self.embedding_dim}"
            )


@dataclass(frozen=True)
class PretrainStage:
    """A model the engine trains before this one, whose weights initialise it.

    Args:
        key: Name under which :meth:`RecModel.init_from_pretrained` receives the trained model.
        model: Registry name of the stage's model.
        params: Its model params.
        train: Overrides of the run's training options for this stage (e.g. the optimizer).
        path: A saved bundle of the stage's model that the engine loads instead of training
            one (FNN's ``pretrained_fm``).
    """

    key: str
    model: str
    params: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    path: str | None = None


class RecModel(nn.Module, ABC):
    """Base class: stores the schema and config; subclasses wire shared layers.

    Attributes:
        own_objective: True when the class overrides :meth:`objective`, its whole training loss (the
            engine's task loss is then not used).
        behaviours: ``(sequence field, candidate field)`` pairs whose attention
            :meth:`attention_weights` reports, one weight per behaviour (DIN, DIEN).
        pair_names: Field pairs whose attention :meth:`attention_weights` reports (AFM).
    """

    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    behaviours: tuple[tuple[str, str], ...] = ()
    pair_names: list[tuple[str, str]] = []  # noqa: RUF012 (read-only default)

    def __init__(self, schema: Schema, cfg: ModelConfig) -> None:
        super().__init__()
        if not isinstance(cfg, self.config_class):
            raise TypeError(f"{type(self).__name__} expects {self.config_class.__name__}")
        self.schema = schema
        self.cfg = cfg

    # ---- prediction ------------------------------------------------------------------
    @abstractmethod
    def forward(self, batch: Batch) -> torch.Tensor:
        """Logits ``(B,)`` (predictions for regression)."""

    def for_export(self) -> nn.Module:
        """The module an exporter traces in place of this one (same ``forward(batch)`` in eval).

        Itself by default; a model whose prediction needs host-side work that a graph cannot
        hold (AutoRec reads its stored rating matrix) returns an equivalent, traceable module.
        """
        return self

    # ---- training --------------------------------------------------------------------
    def pretraining(self) -> list[PretrainStage]:
        """Models to train first whose weights initialise this one (none by default)."""
        return []

    def init_from_pretrained(self, trained: dict[str, RecModel]) -> None:
        """Initialise from the trained stage models, keyed by :attr:`PretrainStage.key`."""
        if trained:
            raise TypeError(f"{type(self).__name__} declares no pretraining stage")

    def fit_statistics(self, train: EncodedData) -> None:
        """Set parts estimated by counting on the training split; nothing by default."""

    def training_data(self, train: EncodedData) -> EncodedData:
        """The rows the engine iterates over in an epoch: the training split by default."""
        return train

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        """Named parameter groups with their own optimizer (``wide``: FTRL); none by default."""
        return {}

    def forward_train(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits and an optional extra loss term that the engine adds to the task loss."""
        return self(batch), None

    def objective(self, batch: Batch) -> torch.Tensor:
        """The whole training loss of a batch of :meth:`training_data`, for a model whose loss
        is not the engine's task loss on :meth:`forward_train` (override it: AutoRec).

        Raises:
            TypeError: Called on a model that does not override it (the engine never does).
        """
        raise TypeError(
            f"{type(self).__name__} has no objective of its own: the engine trains it with its "
            "task loss on forward_train"
        )

    @property
    def own_objective(self) -> bool:
        """True when the class overrides :meth:`objective` (derived, never set by hand)."""
        return type(self).objective is not RecModel.objective

    # ---- reading a trained model -----------------------------------------------------
    def interactions(self) -> InteractionMatrix | None:
        """The training user x item matrix the model holds (seen items), if any."""
        return None

    @property
    def explainable(self) -> bool:
        """True when :meth:`attention_weights` is implemented."""
        return type(self).attention_weights is not RecModel.attention_weights

    def attention_weights(self, batch: Batch) -> torch.Tensor:
        """Attention weight per behaviour ``(B, L)`` or per field pair ``(B, P)``."""
        raise ValueError(f"{type(self).__name__} exposes no attention weights to explain")
