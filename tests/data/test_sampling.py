"""Negative sampling: never a positive (brute force), uniform, distinct candidates, seeded."""

from __future__ import annotations

import numpy as np
import pytest

from recforge.data.encode.sampling import NegativeSampler


def _interactions(seed: int = 0, n_users: int = 60, n_items: int = 500):
    """Zipf-heavy log: some users interact with almost every item."""
    rng = np.random.default_rng(seed)
    users = rng.zipf(1.3, 3000) % n_users
    items = rng.integers(1, n_items, 3000)
    # user 5 has every item but 3 and 17; user 6 every item but 1
    users = np.concatenate([users, np.full(n_items - 3, 5), np.full(n_items - 2, 6)])
    items = np.concatenate(
        [
            items,
            [i for i in range(1, n_items) if i not in (3, 17)],
            np.arange(2, n_items),
        ]
    )
    return users, items, n_items


def _positive_sets(users: np.ndarray, items: np.ndarray) -> dict[int, set[int]]:
    pos: dict[int, set[int]] = {}
    for u, i in zip(users.tolist(), items.tolist(), strict=True):
        pos.setdefault(u, set()).add(i)
    return pos


def test_sample_never_returns_positives() -> None:
    users, items, n_items = _interactions()
    sampler = NegativeSampler(users, items, n_items, seed=1)
    pos = _positive_sets(users, items)
    query = np.concatenate([np.arange(70), np.full(50, 5), np.full(50, 6)])  # incl. unseen users
    neg = sampler.sample(query, k=20)
    assert neg.shape == (query.size, 20) and neg.dtype == np.int64
    assert neg.min() >= 1 and neg.max() < n_items
    for u, row in zip(query.tolist(), neg.tolist(), strict=True):
        assert not set(row) & pos.get(u, set()), u
    assert set(neg[query == 5].ravel().tolist()) == {3, 17}
    assert set(neg[query == 6].ravel().tolist()) == {1}
    np.testing.assert_array_equal(sampler.num_negatives([5, 6, 999]), [2, 1, n_items - 1])


def test_is_positive_matches_brute_force() -> None:
    users, items, n_items = _interactions(seed=2)
    sampler = NegativeSampler(users, items, n_items)
    pos = _positive_sets(users, items)
    grid_users = np.arange(62)
    grid_items = np.broadcast_to(np.arange(n_items), (62, n_items))
    got = sampler.is_positive(grid_users, grid_items)
    expected = np.array([[i in pos.get(u, set()) for i in range(n_items)] for u in range(62)])
    np.testing.assert_array_equal(got, expected)


def test_sample_is_uniform_over_non_positives() -> None:
    # user 0 has items {2, 5, 6, 9}; the other 5 items of [1, 10) must be equally likely
    sampler = NegativeSampler([0, 0, 0, 0, 1], [2, 5, 6, 9, 0], n_items=10, seed=3)
    draws = sampler.sample(np.zeros(60_000, dtype=int), k=1).ravel()
    counts = np.bincount(draws, minlength=10)
    assert counts[[0, 2, 5, 6, 9]].sum() == 0
    freq = counts[[1, 3, 4, 7, 8]] / draws.size
    np.testing.assert_allclose(freq, 0.2, atol=0.01)  # 5 sigma is about 0.008
    chi2 = np.sum((counts[[1, 3, 4, 7, 8]] - draws.size / 5) ** 2 / (draws.size / 5))
    assert chi2 < 25.0  # 4 dof: p < 1e-4
    # item 0 in the positives is ignored; user 1 can draw any of 1..9
    assert sampler.num_negatives([1])[0] == 9


def test_sample_is_deterministic_under_seed() -> None:
    users, items, n_items = _interactions()
    a = NegativeSampler(users, items, n_items, seed=7)
    b = NegativeSampler(users, items, n_items, seed=7)
    c = NegativeSampler(users, items, n_items, seed=8)
    q = np.arange(50)
    np.testing.assert_array_equal(a.sample(q, 4), b.sample(q, 4))
    np.testing.assert_array_equal(a.sample(q, 4), b.sample(q, 4))  # second call too
    assert not np.array_equal(a.sample(q, 4), c.sample(q, 4))
    rng1, rng2 = np.random.default_rng(0), np.random.default_rng(0)
    q = np.arange(7, 57)  # users 5 and 6 have fewer than 10 negatives
    np.testing.assert_array_equal(
        a.sample_fixed_candidates(q, 10, rng=rng1), c.sample_fixed_candidates(q, 10, rng=rng2)
    )


def test_fixed_candidates_distinct_and_never_positive() -> None:
    users, items, n_items = _interactions(seed=4)
    sampler = NegativeSampler(users, items, n_items, seed=0)
    pos = _positive_sets(users, items)
    q = np.array([u for u in range(60) if u not in (5, 6)])
    n = min(len(set(range(1, n_items)) - pos.get(u, set())) for u in q.tolist())
    cand = sampler.sample_fixed_candidates(q, n=n)
    assert cand.shape == (q.size, n)
    for u, row in zip(q.tolist(), cand.tolist(), strict=True):
        assert len(set(row)) == n
        assert not set(row) & pos.get(u, set())
        assert min(row) >= 1 and max(row) < n_items
    # asking for every non-positive returns exactly the complement
    full = sampler.sample_fixed_candidates([5, 5], n=2)
    np.testing.assert_array_equal(full, [[3, 17], [3, 17]])
    with pytest.raises(ValueError, match="fewer than"):
        sampler.sample_fixed_candidates([6], n=2)
    with pytest.raises(ValueError, match="fewer than"):
        NegativeSampler([0], [1], n_items=2).sample([0], k=3)


def test_fixed_candidates_are_uniform_subsets() -> None:
    # user 0 has 6 non-positives; each should appear in 3/6 of the 3-subsets
    sampler = NegativeSampler([0, 0, 0], [1, 4, 8], n_items=10, seed=5)
    cand = sampler.sample_fixed_candidates(np.zeros(20_000, dtype=int), n=3)
    counts = np.bincount(cand.ravel(), minlength=10)
    assert counts[[0, 1, 4, 8]].sum() == 0
    np.testing.assert_allclose(counts[[2, 3, 5, 6, 7, 9]] / 20_000, 0.5, atol=0.02)
    # each of the C(6,3) = 20 subsets is about equally likely
    codes = (cand[:, 0] * 100 + cand[:, 1]) * 100 + cand[:, 2]
    _, subset_counts = np.unique(codes, return_counts=True)
    assert subset_counts.size == 20
    np.testing.assert_allclose(subset_counts / 20_000, 1 / 20, atol=0.01)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="differ"):
        NegativeSampler([0, 1], [1], n_items=5)
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        NegativeSampler([0], [5], n_items=5)
    with pytest.raises(ValueError, match="non-negative"):
        NegativeSampler([-1], [1], n_items=5)
    sampler = NegativeSampler([], [], n_items=5)
    assert sampler.num_positives == 0
    assert sampler.sample([0, 3], 2).shape == (2, 2)
    assert not sampler.is_positive([0], [1]).any()


def test_a_user_positive_on_every_item_gets_uniform_items():
    """No negative exists for them: sample() draws over the catalogue instead of failing."""
    users = np.array([0, 0, 0, 1])
    items = np.array([1, 2, 3, 1])
    sampler = NegativeSampler(users, items, n_items=4, seed=0)
    out = sampler.sample(np.array([0] * 300 + [1] * 300), 1, all_positive="uniform")[:, 0]
    assert set(out[:300].tolist()) == {1, 2, 3}
    assert set(out[300:].tolist()) <= {2, 3}
