"""Implicit-feedback epochs: negatives never positives, fresh every epoch, right counts."""

from __future__ import annotations

import numpy as np
import torch

from recforge.cf.implicit import ImplicitEpochs, trainer_negative_fn
from recforge.cf.matrix import InteractionMatrix
from recforge.features import Batch


def _positives(seed: int = 0):
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(1, 31), 12)
    items = np.concatenate([rng.choice(np.arange(1, 25), 12, replace=False) for _ in range(30)])
    return users, items  # heavy users: half of the 24 items are positives


def test_epoch_negatives_are_never_positives_and_are_resampled() -> None:
    users, items = _positives()
    data = ImplicitEpochs(users, items, n_items=25, negatives=4, seed=0)
    truth = InteractionMatrix.from_coo(users, items, shape=(31, 25))
    epochs = [data.epoch() for _ in range(2)]
    for u, i, y in epochs:
        assert len(u) == len(data) == len(users) * 5
        assert y.sum() == len(users)
        assert np.all(truth.contains(u[y == 1], i[y == 1]))
        assert not np.any(truth.contains(u[y == 0], i[y == 0]))
        assert np.all((i >= 1) & (i < 25))
        # every positive appears once; each user has 4 negatives per positive
        np.testing.assert_array_equal(np.bincount(u[y == 0]), 4 * np.bincount(users))
    neg0 = np.sort(epochs[0][0][epochs[0][2] == 0] * 100 + epochs[0][1][epochs[0][2] == 0])
    neg1 = np.sort(epochs[1][0][epochs[1][2] == 0] * 100 + epochs[1][1][epochs[1][2] == 0])
    assert not np.array_equal(neg0, neg1)  # fresh negatives every epoch


def test_trainer_negative_fn_never_returns_positives() -> None:
    users, items = _positives(1)
    data = ImplicitEpochs(users, items, n_items=25, negatives=4, seed=0)
    fn = trainer_negative_fn(data.sampler, user_col=0)
    batch_users = torch.arange(1, 31).repeat(3)
    batch = Batch(
        sparse=torch.stack([batch_users, torch.ones_like(batch_users)], 1),
        dense=torch.zeros(90, 0),
    )
    neg = fn(batch, 6, torch.Generator().manual_seed(0))
    assert neg.shape == (90, 6)
    truth = InteractionMatrix.from_coo(users, items, shape=(31, 25))
    rep_users = batch_users[:, None].expand(-1, 6).reshape(-1).numpy()
    assert not np.any(truth.contains(rep_users, neg.reshape(-1).numpy()))
