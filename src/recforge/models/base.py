"""The contract every recforge model honours.

A model is an ``nn.Module`` built as ``Model(schema, cfg)`` from a fitted :class:`Schema` and its
frozen config dataclass. ``forward(batch)`` returns raw logits of shape ``(B,)`` (never
probabilities); the trainer owns the loss, optimizer, device, seeding and I/O. Models with extra
training objectives (DIEN's auxiliary loss) override :meth:`RecModel.forward_train`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from recforge.features import Batch, Schema


@dataclass(frozen=True)
class ModelConfig:
    """Options shared by every model.

    Args:
        embedding_dim: Embedding dimension for all fields; ``None`` uses the schema's.
        sparse: Sparse embedding gradients (optimizer work scales with touched rows).
    """

    embedding_dim: int | None = None
    sparse: bool = False


class RecModel(nn.Module, ABC):
    """Base class: stores the schema and config; subclasses wire shared layers."""

    config_class: ClassVar[type[ModelConfig]] = ModelConfig

    def __init__(self, schema: Schema, cfg: ModelConfig) -> None:
        super().__init__()
        if not isinstance(cfg, self.config_class):
            raise TypeError(f"{type(self).__name__} expects {self.config_class.__name__}")
        self.schema = schema
        self.cfg = cfg

    @abstractmethod
    def forward(self, batch: Batch) -> torch.Tensor:
        """Logits ``(B,)``."""

    def forward_train(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits and an optional extra loss term that the trainer adds to the task loss."""
        return self(batch), None

    def for_export(self) -> nn.Module:
        """The module an exporter traces in place of this one (same ``forward(batch)`` in eval).

        Itself by default; a model whose prediction needs host-side work that a graph cannot
        hold (AutoRec reads its stored rating matrix) returns an equivalent, traceable module.
        """
        return self

    # ---- multi-stage training (FNN): the run orchestrates, the model only declares ------
    def load_pretrained(self) -> None:
        """Load weights that the config names (e.g. FNN's saved FM); nothing by default."""

    def pretraining(self) -> tuple[str, dict[str, Any]] | None:
        """``(model name, params)`` of a model to train first whose weights initialise this one."""
        return None

    def init_from_pretrained(self, other: RecModel) -> None:
        """Copy weights from the stage-one model named by :meth:`pretraining`."""
        raise TypeError(f"{type(self).__name__} declares no pretraining stage")
