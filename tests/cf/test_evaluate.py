"""Evaluation protocols: hand-computed HR/NDCG, sampled and full ranking, leave-one-out."""

from __future__ import annotations

import math

import numpy as np
import torch

from recforge import metrics
from recforge.cf.evaluate import full_ranking, rating_metrics, sampled_ranking
from recforge.data.encode.split import leave_last_split
from recforge.features import Batch, CategoricalField, Schema
from recforge.interactions import InteractionMatrix
from recforge.metrics import metrics_from_ranks
from recforge.models.base import ModelConfig, RecModel


class TableModel(RecModel):
    """Scores looked up from a fixed (users x items) table."""

    def __init__(self, schema: Schema, table: torch.Tensor) -> None:
        super().__init__(schema, ModelConfig())
        self.register_buffer("table", table)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.table[batch.sparse[:, 0], batch.sparse[:, 1]]


def _schema(n_users: int, n_items: int) -> Schema:
    return Schema(
        fields=(
            CategoricalField("user", group="user", vocab_size=n_users),
            CategoricalField("item", group="item", vocab_size=n_items),
        ),
        user_key="user",
        item_key="item",
    )


def test_hr_ndcg_hand_values() -> None:
    out = metrics_from_ranks(np.array([0, 3, 12, 9]), ks=(10, 1))
    assert math.isclose(out["hr@10"], 3 / 4)
    assert math.isclose(out["ndcg@10"], (1 + 1 / math.log2(5) + 1 / math.log2(11)) / 4)
    assert math.isclose(out["hr@1"], 1 / 4) and math.isclose(out["ndcg@1"], 1 / 4)


def test_sampled_ranking_matches_hand_ranks_and_metrics_module() -> None:
    # user 1: target 5 scores 0.9, beats all -> rank 0; user 2: two negatives above -> rank 2;
    # user 3: tie with one negative -> pessimistic rank 1
    table = torch.zeros(4, 10)
    table[1, 5], table[1, [1, 2, 3]] = 0.9, torch.tensor([0.1, 0.2, 0.3])
    table[2, 6], table[2, [1, 2, 3]] = 0.5, torch.tensor([0.7, 0.8, 0.1])
    table[3, 7], table[3, [1, 2, 3]] = 0.4, torch.tensor([0.4, 0.2, 0.1])
    model = TableModel(_schema(4, 10), table)
    negatives = np.array([[1, 2, 3]] * 3)
    out = sampled_ranking(model, np.array([1, 2, 3]), np.array([5, 6, 7]), negatives, ks=(1, 2))
    assert math.isclose(out["hr@1"], 1 / 3) and math.isclose(out["hr@2"], 2 / 3)
    assert math.isclose(out["ndcg@2"], (1 + 1 / math.log2(3)) / 3)
    scores = table[[1, 2, 3]][:, [[5, 1, 2, 3], [6, 1, 2, 3], [7, 1, 2, 3]]].diagonal().T.numpy()
    relevance = np.zeros_like(scores)
    relevance[:, 0] = 1
    assert math.isclose(out["ndcg@2"], metrics.ndcg_at_k(scores, relevance, k=2))


def test_full_ranking_excludes_training_items_but_not_the_target() -> None:
    table = torch.tensor([[0.0] * 6, [0.0, 0.9, 0.8, 0.7, 0.1, 0.5]])
    model = TableModel(_schema(2, 6), table)
    seen = InteractionMatrix.from_coo(np.array([1, 1]), np.array([1, 2]), shape=(2, 6))
    # unseen candidates of user 1: items 3 (0.7), 4 (0.1), 5 (0.5); target 5 ranks 1
    out = full_ranking(model, np.array([1]), np.array([5]), seen, ks=(1, 2))
    assert out["hr@1"] == 0.0 and out["hr@2"] == 1.0
    unmasked = full_ranking(model, np.array([1]), np.array([5]), InteractionMatrix.from_coo(
        np.zeros(0), np.zeros(0), shape=(2, 6)), ks=(4,))  # fmt: skip
    assert math.isclose(unmasked["ndcg@4"], 1 / math.log2(3 + 2))


def test_leave_one_out_keeps_exactly_one_test_item_per_user() -> None:
    rng = np.random.default_rng(0)
    users = rng.integers(1, 40, 500)
    times = rng.integers(0, 10_000, 500)
    train, test = leave_last_split(users, times)
    counts = np.bincount(users[test], minlength=40)
    n_rows = np.bincount(users, minlength=40)
    np.testing.assert_array_equal(counts, (n_rows > 1).astype(int))
    latest = {u: times[users == u].max() for u in np.unique(users[test])}
    assert all(times[i] == latest[users[i]] for i in test)
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == 500


def test_rating_metrics() -> None:
    model = TableModel(_schema(2, 3), torch.tensor([[0.0, 0.0, 0.0], [0.0, 4.0, 2.0]]))
    out = rating_metrics(model, np.array([1, 1]), np.array([1, 2]), np.array([5.0, 2.0]))
    assert math.isclose(out["rmse"], math.sqrt(0.5)) and math.isclose(out["mae"], 0.5)
