"""AutoRec: masked loss, I/U shapes, low-rank reconstruction, fallback, planted structure."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from recforge.cf.evaluate import full_ranking, rating_metrics
from recforge.cf.scoring import score_pairs
from recforge.config import TrainConfig
from recforge.features import CategoricalField, EncodedData, Schema
from recforge.interactions import InteractionMatrix
from recforge.models.autorec import AutoRec, AutoRecConfig, masked_loss
from recforge.models.base import ModelConfig
from recforge.models.popularity import ItemPopularity
from recforge.train import Trainer


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread (and do not contend on a shared machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _schema(n_users: int, n_items: int) -> Schema:
    return Schema(
        fields=(
            CategoricalField("user", group="user", vocab_size=n_users + 1),
            CategoricalField("item", group="item", vocab_size=n_items + 1),
        ),
        task="regression",
        user_key="user",
        item_key="item",
    )


def _ratings(users: np.ndarray, items: np.ndarray, ratings: np.ndarray) -> EncodedData:
    """Encoded rows (user, item) -> rating, as the data pipeline produces them."""
    return EncodedData(
        sparse=np.column_stack([users, items]).astype(np.int32),
        dense=np.zeros((len(users), 0), dtype=np.float32),
        label=np.asarray(ratings, dtype=np.float32),
    )


def _fit(model: AutoRec, users, items, ratings, epochs: int) -> Trainer:  # noqa: ANN001
    """Train through the engine, as ``recforge train`` does (no validation: last epoch)."""
    cfg = TrainConfig(epochs=epochs, batch_size=16, lr=1e-2, patience=0, progress=False)
    trainer = Trainer(model, cfg)
    trainer.fit(_ratings(users, items, ratings))
    return trainer


def _low_rank_ratings(n_users: int, n_items: int, seed: int = 0) -> np.ndarray:
    """A rank-2 matrix of ratings in [1, 5] (local ids start at 1: row/col 0 unused)."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(n_users, 2))
    v = rng.normal(size=(n_items, 2))
    return np.clip(3.0 + 0.9 * u @ v.T, 1.0, 5.0).astype(np.float32)


def test_masked_loss_ignores_unobserved_entries() -> None:
    torch.manual_seed(0)
    target = torch.tensor([[4.0, 0.0, 2.0], [0.0, 5.0, 0.0]])
    mask = (target > 0).float()
    pred = torch.randn(2, 3, requires_grad=True)
    loss = masked_loss(pred, target, mask)
    loss.backward()
    assert torch.all(pred.grad[mask == 0] == 0)
    assert torch.all(pred.grad[mask == 1] != 0)
    expected = ((pred.detach() - target) ** 2 * mask).sum()
    torch.testing.assert_close(loss.detach(), expected)
    # changing an unobserved prediction changes neither loss nor gradient
    other = pred.detach().clone()
    other[0, 1] += 10.0
    torch.testing.assert_close(masked_loss(other, target, mask), loss.detach())


def test_decoder_rows_of_unobserved_columns_get_no_gradient() -> None:
    model = AutoRec(_schema(6, 4), AutoRecConfig(hidden=3, l2_lambda=0.0))
    r = torch.zeros(2, 7)
    r[0, 2], r[1, 5] = 4.0, 3.0
    mask = (r > 0).float()
    masked_loss(model.reconstruct(r), r, mask).backward()
    grad = model.decoder.weight.grad  # (n_cols, k)
    assert grad[[2, 5]].abs().sum() > 0
    assert torch.all(grad[[0, 1, 3, 4, 6]] == 0)


def test_i_and_u_autorec_shapes() -> None:
    schema = _schema(9, 5)  # vocab 10 users, 6 items
    for item_based, n_cols in ((True, 10), (False, 6)):
        model = AutoRec(schema, AutoRecConfig(hidden=4, item_based=item_based))
        assert model.reconstruct(torch.zeros(3, n_cols)).shape == (3, n_cols)
        assert model.encoder.weight.shape == (4, n_cols)
        users = np.array([1, 2, 3, 9])
        items = np.array([1, 1, 5, 2])
        model.set_ratings(users, items, np.array([4, 3, 5, 1], dtype=np.float32))
        assert model.matrix.shape == ((6, 10) if item_based else (10, 6))
        out = score_pairs(model, users, items)
        assert out.shape == (4,) and np.all((out >= 1) & (out <= 5))


def _fit_low_rank(item_based: bool) -> tuple[float, float]:
    n_users, n_items = 40, 30
    full = _low_rank_ratings(n_users, n_items)
    rng = np.random.default_rng(1)
    uu, ii = np.meshgrid(np.arange(n_users), np.arange(n_items), indexing="ij")
    uu, ii = uu.ravel(), ii.ravel()
    observed = rng.random(uu.size) < 0.7
    train = (uu[observed] + 1, ii[observed] + 1, full[uu[observed], ii[observed]])
    test = (uu[~observed] + 1, ii[~observed] + 1, full[uu[~observed], ii[~observed]])
    torch.manual_seed(0)
    model = AutoRec(
        _schema(n_users, n_items), AutoRecConfig(hidden=8, item_based=item_based, l2_lambda=0.1)
    )
    _fit(model, *train, epochs=300)
    baseline = float(np.sqrt(np.mean((test[2] - train[2].mean()) ** 2)))
    return rating_metrics(model, *test)["rmse"], baseline


def test_reconstructs_a_known_low_rank_matrix() -> None:
    for item_based in (True, False):
        rmse, baseline = _fit_low_rank(item_based)
        assert rmse < 0.5 * baseline, (item_based, rmse, baseline)


def test_fallback_for_unseen_users_and_items_and_clipping() -> None:
    model = AutoRec(_schema(5, 5), AutoRecConfig(hidden=3, fallback_rating=3.0))
    model.set_ratings(np.array([1, 2, 2]), np.array([1, 1, 2]), np.array([5, 4, 2], np.float32))
    with torch.no_grad():
        model.decoder.bias.fill_(100.0)  # would predict far above the range
    out = score_pairs(model, np.array([1, 4, 1, 0, 2]), np.array([2, 1, 5, 1, 1]))
    # (1,2): seen user and item -> clipped to 5; user 4 unseen, item 5 unseen, OOV user -> 3
    np.testing.assert_allclose(out, [5.0, 3.0, 3.0, 3.0, 5.0])
    mean_model = AutoRec(_schema(5, 5), AutoRecConfig(hidden=3))
    mean_model.set_ratings(np.array([1, 2]), np.array([1, 1]), np.array([5, 2], np.float32))
    np.testing.assert_allclose(score_pairs(mean_model, np.array([3]), np.array([1])), [3.5])


def test_state_dict_round_trip_restores_the_rating_matrix() -> None:
    schema = _schema(6, 6)
    model = AutoRec(schema, AutoRecConfig(hidden=4))
    model.set_ratings(np.array([1, 2, 3, 4]), np.array([1, 2, 2, 6]), np.ones(4, np.float32) * 4)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh = AutoRec(schema, AutoRecConfig(hidden=4))
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    users, items = np.array([1, 2, 3, 5]), np.array([2, 2, 6, 1])
    np.testing.assert_allclose(score_pairs(fresh, users, items), score_pairs(model, users, items))
    assert fresh.interactions().nnz == 4


def test_recovers_planted_preferences_far_better_than_popularity() -> None:
    """Users love (5) their cluster's items and dislike (1) the others; rank held-out loves."""
    rng = np.random.default_rng(0)
    n_clusters, per = 6, 8
    n_users, n_items = n_clusters * 8, n_clusters * per
    user_c = np.arange(n_users) % n_clusters
    item_c = np.arange(n_items) // per
    uu, ii = np.meshgrid(np.arange(n_users), np.arange(n_items), indexing="ij")
    uu, ii = uu.ravel(), ii.ravel()
    loves = user_c[uu] == item_c[ii]
    observed = rng.random(uu.size) < np.where(loves, 0.6, 0.3)
    ratings = np.where(loves, 5.0, 1.0).astype(np.float32)
    # one held-out loved item per user
    held = np.array(
        [rng.choice(np.flatnonzero(loves & (uu == u) & observed)) for u in range(n_users)]
    )
    train = observed.copy()
    train[held] = False
    users, items = uu[train] + 1, ii[train] + 1
    schema = _schema(n_users, n_items)
    torch.manual_seed(0)
    model = AutoRec(schema, AutoRecConfig(hidden=12, l2_lambda=0.1))
    _fit(model, users, items, ratings[train], epochs=150)
    pop = ItemPopularity(schema, ModelConfig())
    pop.set_counts(items)
    seen = InteractionMatrix.from_coo(users, items, shape=(n_users + 1, n_items + 1))
    test_u, test_i = uu[held] + 1, ii[held] + 1
    ours = full_ranking(model, test_u, test_i, seen, ks=(5,))
    base = full_ranking(pop, test_u, test_i, seen, ks=(5,))
    assert ours["hr@5"] > 0.8 and ours["hr@5"] > base["hr@5"] + 0.4, (ours, base)


def test_epoch_objective_sums_to_eq3() -> None:
    """The engine's batches of rows add up to eq. 3: masked error + lambda/2 (|W|^2 + |V|^2)."""
    full = _low_rank_ratings(12, 9)
    rng = np.random.default_rng(3)
    uu, ii = np.nonzero(rng.random(full.shape) < 0.4)
    for item_based in (True, False):
        torch.manual_seed(0)
        model = AutoRec(_schema(12, 9), AutoRecConfig(hidden=5, item_based=item_based))
        data = _ratings(uu + 1, ii + 1, full[uu, ii])
        model.fit_statistics(data)
        rows = model.training_data(data)
        assert model.own_objective and len(rows) == len(np.unique(ii if item_based else uu))
        batches = [torch.from_numpy(rows.sparse[s : s + 4]).long() for s in range(0, len(rows), 4)]
        from recforge.features import Batch

        total = sum(model.objective(Batch(sparse=b, dense=torch.zeros(len(b), 0))) for b in batches)
        # brute force: every observed entry of the dense matrix, once
        dense = torch.zeros(model.n_rows, model.n_cols)
        r_idx, c_idx = (ii + 1, uu + 1) if item_based else (uu + 1, ii + 1)
        dense[r_idx, c_idx] = torch.from_numpy(full[uu, ii])
        mask = (dense > 0).float()
        with torch.no_grad():
            err = ((model.reconstruct(dense) - dense) * mask).square().sum()
            w, v = model.decoder.weight, model.encoder.weight
            expected = err + 0.5 * model.cfg.l2_lambda * (w.square().sum() + v.square().sum())
        torch.testing.assert_close(total.detach(), expected, rtol=1e-5, atol=1e-3)
