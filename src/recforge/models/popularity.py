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

from recforge.data.store import EncodedData
from recforge.features import Batch, Schema
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
        """Trainer hook: count the positive training rows of each item."""
        positive = np.asarray(data.label) > 0
        self.set_counts(np.asarray(data.sparse[:, self.item_col])[positive])

    def forward(self, batch: Batch) -> torch.Tensor:
        n = self.counts[batch.sparse[:, self.item_col]]  # (B,)
        return self.bias + self.log_scale.exp() * torch.log1p(n)  # (B,)


SPEC = ModelSpec(
    name="popularity",
    model=ItemPopularity,
    paper="Item popularity (ItemPop) baseline, as in He et al., Neural Collaborative "
    "Filtering, WWW 2017",
    family="baseline",
    pairwise=True,
)
