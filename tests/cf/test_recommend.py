"""recommend(): excludes seen items, never the OOV id, k items sorted by score."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recforge.cf.recommend import recommend
from recforge.features import Batch, CategoricalField, Schema
from recforge.interactions import InteractionMatrix
from recforge.models.base import ModelConfig, RecModel


class TableModel(RecModel):
    def __init__(self, schema: Schema, table: torch.Tensor) -> None:
        super().__init__(schema, ModelConfig())
        self.register_buffer("table", table)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.table[batch.sparse[:, 1], batch.sparse[:, 0]]


def _model(n_users: int = 5, n_items: int = 12) -> TableModel:
    schema = Schema(
        fields=(
            CategoricalField("item", group="item", vocab_size=n_items),
            CategoricalField("user", group="user", vocab_size=n_users),
        ),
        user_key="user",
        item_key="item",
    )
    table = torch.randn(n_users, n_items, generator=torch.Generator().manual_seed(0))
    table[:, 0] = 100.0  # the OOV item must never be recommended, however high its score
    return TableModel(schema, table)


def test_excludes_seen_and_returns_k_sorted() -> None:
    model = _model()
    seen_u, seen_i = np.array([1, 1, 2, 3]), np.array([3, 7, 1, 11])
    seen = InteractionMatrix.from_coo(seen_u, seen_i, shape=(5, 12))
    users = np.array([1, 2, 3, 4])
    items, scores = recommend(model, users, k=4, seen=seen)
    assert items.shape == scores.shape == (4, 4)
    assert np.all(np.diff(scores, axis=1) <= 0)
    for row, u in enumerate(users):  # brute force per user
        table = model.table[u].numpy().copy()
        table[0] = -np.inf
        table[seen_i[seen_u == u]] = -np.inf
        np.testing.assert_array_equal(items[row], np.argsort(-table, kind="stable")[:4])
        assert not set(items[row]) & set(seen_i[seen_u == u]) and 0 not in items[row]
    with_seen, _ = recommend(model, np.array([1]), k=11, exclude_seen=False)
    assert {3, 7} <= set(with_seen[0])


def test_pads_when_fewer_candidates_and_requires_seen() -> None:
    model = _model(n_users=2, n_items=4)
    seen = InteractionMatrix.from_coo(np.array([1, 1]), np.array([1, 2]), shape=(2, 4))
    items, scores = recommend(model, np.array([1]), k=3, seen=seen)
    np.testing.assert_array_equal(items[0, 1:], [-1, -1])
    assert items[0, 0] == 3 and np.isneginf(scores[0, 1])
    with pytest.raises(ValueError, match="seen"):
        recommend(model, np.array([1]), k=2)
