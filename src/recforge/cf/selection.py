"""Best-epoch selection for the small CF training loops (AutoRec, implicit NCF).

:class:`BestEpoch` holds what :func:`recforge.cf.autorec_train.train_autorec` and
:func:`recforge.cf.implicit.train_implicit` share: keeping a copy of the weights of the best
validated epoch, counting epochs without improvement for early stopping (patience), the
training-time cap, and restoring the best weights at the end. The generic
:class:`recforge.train.Trainer` keeps the same state inline (checkpointed with the run); these
loops have no checkpoints, so they share this small object instead.
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn

log = logging.getLogger(__name__)


class BestEpoch:
    """Tracks the best validated epoch and decides when an epoch loop stops.

    Args:
        name: Name of the loop in log messages (``"autorec"``).
        higher_is_better: Whether a larger validation value is an improvement.
        patience: Epochs without improvement before stopping; 0 disables.
        max_seconds: Stop after the epoch during which this much training time has passed
            (0: no limit).
    """

    def __init__(
        self, name: str, higher_is_better: bool, patience: int = 0, max_seconds: float = 0.0
    ) -> None:
        self.name = name
        self.higher_is_better = higher_is_better
        self.patience = patience
        self.max_seconds = max_seconds
        self.best_value = -float("inf") if higher_is_better else float("inf")
        self.best_epoch = -1
        self.best_state: dict[str, torch.Tensor] | None = None
        self.stale = 0

    def observe(self, model: nn.Module, epoch: int, value: float, epochs: int = 1) -> bool:
        """Record a validation ``value``; copies the weights when it is strictly better.

        Args:
            model: The model being trained (its state is copied on improvement).
            epoch: The epoch just validated.
            value: Its validation metric.
            epochs: Epochs since the previous validation (counted as stale when not better).

        Returns:
            Whether ``value`` improved on the best so far.
        """
        best = self.best_value
        improved = value > best if self.higher_is_better else value < best
        if improved:
            self.best_value, self.best_epoch, self.stale = value, epoch, 0
            self.best_state = copy.deepcopy(model.state_dict())
        else:
            self.stale += epochs
        return improved

    def should_stop(self, epoch: int, train_seconds: float) -> bool:
        """Whether patience has run out or the training-time cap is reached after ``epoch``."""
        if self.patience and self.stale >= self.patience:
            return True
        if self.max_seconds and train_seconds >= self.max_seconds:
            log.info("%s: time limit reached after epoch %d", self.name, epoch)
            return True
        return False

    def restore(self, model: nn.Module) -> None:
        """Load the best epoch's weights into ``model`` (no-op when nothing was validated)."""
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
