"""Item popularity: the non-personalised baseline of top-K recommendation.

Every user receives the same ranking, by the number of training interactions of each item
(e.g. the "ItemPop" baseline of He et al., Neural Collaborative Filtering, WWW 2017). The logit
``a + exp(s) * log(1 + n_i)`` is a monotone function of the count ``n_i``, so the ranking is
exactly by popularity; the two scalars only calibrate probabilities (or ratings) when the model
is trained with a pointwise loss.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from recforge.features import Batch, EncodedData, Schema
from recforge.models.base import ModelConfig, RecModel
from recforge.models.registry import ModelSpec


class ItemPopularity(RecModel):
    """``a + exp(s) log(1 + n_i)`` with ``n_i`` the training interactions of item ``i``.

    No options beyond :class:`ModelConfig`'s (the counts come from data, ``set_counts``).
    """

    def __init__(self, schema: Schema, cfg: ModelConfig) -> None:
        super().__init__(schema, cfg)
        if schema.item_key is None:
            raise ValueError("ItemPopularity needs schema.item_key")
        self.item_col = schema.sparse_index(schema.item_key)
        n_items = schema.field(schema.item_key).vocab_size
        self.register_buffer("counts", torch.zeros(n_items))
        self.bias = nn.Parameter(torch.zeros(()))
        self.log_scale = nn.Parameter(torch.zeros(()))

    def set_counts(self, items: np.ndarray) -> None:
        """Count the training interactions of each item (local ids; OOV id 0 is ignored)."""
        counts = np.bincount(np.asarray(items, dtype=np.int64), minlength=len(self.counts))
        counts[0] = 0
        self.counts = torch.as_tensor(counts, dtype=torch.float32, device=self.counts.device)

    def fit_statistics(self, data: EncodedData) -> None:
        """Trainer hook: count the positive training rows of each item, then calibrate.

        With binary labels of both classes, ``a`` and ``s`` start at the maximum-likelihood
        logistic fit of the label on ``log(1 + n_i)`` (Newton's method on two parameters), so
        the baseline's probabilities are calibrated before any gradient step; the slope is kept
        positive, so the ranking stays the popularity ranking.
        """
        labels = np.asarray(data.label, dtype=np.float64)
        items = np.asarray(data.sparse[:, self.item_col])
        self.set_counts(items[labels > 0])
        if labels.size and np.all((labels == 0) | (labels == 1)) and 0 < labels.mean() < 1:
            x = np.log1p(self.counts.cpu().numpy().astype(np.float64)[items])
            bias, slope = _logistic_fit(x, labels)
            with torch.no_grad():
                self.bias.fill_(bias)
                self.log_scale.fill_(float(np.log(max(slope, 1e-3))))

    def forward(self, batch: Batch) -> torch.Tensor:
        n = self.counts[batch.sparse[:, self.item_col]]  # (B,)
        return self.bias + self.log_scale.exp() * torch.log1p(n)  # (B,)


def _logistic_fit(x: np.ndarray, y: np.ndarray, steps: int = 25) -> tuple[float, float]:
    """``(a, b)`` maximising the likelihood of ``y ~ Bernoulli(sigmoid(a + b x))`` (Newton)."""
    theta = np.array([np.log(y.mean() / (1 - y.mean())), 0.0])
    design = np.stack([np.ones_like(x), x], axis=1)  # (N, 2)
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(design @ theta)))
        grad = design.T @ (y - p)
        hess = (design * (p * (1 - p))[:, None]).T @ design + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        theta = theta + step
        if np.abs(step).max() < 1e-10:
            break
    return float(theta[0]), float(theta[1])


SPEC = ModelSpec(
    name="popularity",
    model=ItemPopularity,
    paper="Item popularity (ItemPop) baseline, as in He et al., Neural Collaborative "
    "Filtering, WWW 2017",
    family="baseline",
    pairwise=True,
)
