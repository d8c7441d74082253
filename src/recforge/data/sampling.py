"""Negative sampling that never returns a user's positives.

Used for the ranking task (pointwise BCE or BPR over sampled negatives; Rendle et al., "BPR:
Bayesian Personalized Ranking from Implicit Feedback", UAI 2009) and for the leave-one-out
evaluation of He et al., "Neural Collaborative Filtering", WWW 2017 (each test item ranked
among 99 items the user never interacted with).

Method: exact uniform sampling from the complement, with no rejection rounds. The (user, item)
positives are encoded as sorted int64 keys ``user * n_items + item``. For user ``u`` with sorted
positives ``p_0 < p_1 < ...`` in ``[1, n_items)``, ``gap_j = p_j - 1 - j`` counts the
non-positive items below ``p_j``; the ``r``-th non-positive item (0-based) is then
``r + 1 + #{j : gap_j <= r}``. The keys ``user * n_items + gap_j`` are globally sorted, so
that count is one ``np.searchsorted`` over the whole batch. A draw of ``r`` uniform in
``[0, m_u)`` (``m_u`` = the user's non-positive count) is therefore a uniform negative, in
O(log P) per sample whatever the user's activity; heavy users need no resampling and no
fallback path.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["NegativeSampler"]

_KEY_LIMIT = 2**62


class NegativeSampler:
    """Uniform negatives from the items each user has not interacted with.

    Item id 0 is the reserved OOV/padding id: it is never returned and ``item_ids == 0`` rows
    are ignored. Users never seen in ``user_ids`` have no positives.

    Args:
        user_ids: ``(P,)`` non-negative user ids of the positive interactions.
        item_ids: ``(P,)`` item ids in ``[0, n_items)``.
        n_items: Item vocabulary size, including the reserved id 0.
        seed: Seed of the sampler's generator; the same seed and calls give the same draws.
    """

    def __init__(
        self, user_ids: np.ndarray, item_ids: np.ndarray, n_items: int, seed: int = 0
    ) -> None:
        users = np.asarray(user_ids, dtype=np.int64).reshape(-1)
        items = np.asarray(item_ids, dtype=np.int64).reshape(-1)
        if users.shape != items.shape:
            raise ValueError(f"user_ids {users.shape} and item_ids {items.shape} differ")
        if n_items < 2:
            raise ValueError(f"n_items must be >= 2 (id 0 is reserved), got {n_items}")
        if users.size and users.min() < 0:
            raise ValueError("user ids must be non-negative")
        if items.size and (items.min() < 0 or items.max() >= n_items):
            raise ValueError(f"item ids must lie in [0, {n_items})")
        max_user = int(users.max()) if users.size else 0
        if (max_user + 2) * n_items >= _KEY_LIMIT:
            raise ValueError("user id * n_items overflows the int64 key space")
        self.n_items = int(n_items)
        self._rng = np.random.default_rng(seed)
        keep = items > 0
        keys = np.unique(users[keep] * self.n_items + items[keep])  # (P',) sorted
        key_user = keys // self.n_items
        pos = np.arange(keys.size, dtype=np.int64)
        new_user = np.ones(keys.size, dtype=bool)
        new_user[1:] = key_user[1:] != key_user[:-1]
        seg_start = np.maximum.accumulate(np.where(new_user, pos, 0))
        rank_in_user = pos - seg_start  # j
        gap = keys % self.n_items - 1 - rank_in_user  # non-positives below p_j
        self._keys = keys
        self._gap_keys = key_user * self.n_items + gap  # sorted: gap is nondecreasing per user
        log.debug("NegativeSampler: %d positives over %d items", keys.size, n_items)

    @property
    def num_positives(self) -> int:
        """Distinct (user, item) positives held (item 0 excluded)."""
        return int(self._keys.size)

    def _users(self, users: np.ndarray) -> np.ndarray:
        u = np.asarray(users, dtype=np.int64).reshape(-1)
        if u.size and u.min() < 0:
            raise ValueError("user ids must be non-negative")
        if u.size and (int(u.max()) + 2) * self.n_items >= _KEY_LIMIT:
            raise ValueError("user id * n_items overflows the int64 key space")
        return u

    def _segment(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Start of each user's positives in the key arrays and their count, ``(B,)`` each."""
        lo = np.searchsorted(self._keys, users * self.n_items)
        hi = np.searchsorted(self._keys, (users + 1) * self.n_items)
        return lo, hi - lo

    def num_negatives(self, users: np.ndarray) -> np.ndarray:
        """``(B,)`` count of items in ``[1, n_items)`` each user has not interacted with."""
        u = self._users(users)
        _, count = self._segment(u)
        return (self.n_items - 1) - count

    def is_positive(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Whether each (user, item) pair is a positive.

        Args:
            users: ``(B,)`` user ids (broadcast against ``items``).
            items: ``(B, ...)`` item ids.

        Returns:
            Bool array of ``items``'s shape.
        """
        u = self._users(users)
        it = np.asarray(items, dtype=np.int64)
        q = u.reshape((-1,) + (1,) * (it.ndim - 1)) * self.n_items + it
        if self._keys.size == 0:
            return np.zeros(q.shape, dtype=bool)
        idx = np.minimum(np.searchsorted(self._keys, q), self._keys.size - 1)
        return self._keys[idx] == q

    def _rank_to_item(self, users: np.ndarray, ranks: np.ndarray, start: np.ndarray) -> np.ndarray:
        """Map 0-based ranks among each user's non-positives to item ids.

        Args:
            users: ``(B,)`` user ids.
            ranks: ``(B, K)`` ranks in ``[0, m_u)``.
            start: ``(B,)`` start of each user's positives in the key arrays.

        Returns:
            ``(B, K)`` int64 item ids.
        """
        base = (users * self.n_items)[:, None]  # (B, 1)
        below = np.searchsorted(self._gap_keys, base + ranks, side="right") - start[:, None]
        return ranks + 1 + below

    def _prepare(self, users: np.ndarray, need: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        u = self._users(users)
        start, count = self._segment(u)
        m = (self.n_items - 1) - count  # (B,)
        short = m < need
        if np.any(short):
            bad = int(u[np.argmax(short)])
            raise ValueError(
                f"user {bad} has {int(m[np.argmax(short)])} non-positive items, "
                f"fewer than the {need} negatives requested"
            )
        return u, start, m

    def sample(
        self, users: np.ndarray, k: int = 1, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """Draw ``k`` negatives per row, independently and uniformly (with replacement).

        Args:
            users: ``(B,)`` user id per row.
            k: Negatives per row.
            rng: Generator to draw from; defaults to the sampler's own seeded one.

        Returns:
            ``(B, k)`` int64 item ids in ``[1, n_items)``, none a positive of its row's user.
        """
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        u, start, m = self._prepare(users, 1 if k else 0)
        gen = self._rng if rng is None else rng
        ranks = gen.integers(0, np.maximum(m, 1)[:, None], size=(u.size, k), dtype=np.int64)
        return self._rank_to_item(u, ranks, start)

    def sample_fixed_candidates(
        self, users: np.ndarray, n: int = 99, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """Draw ``n`` distinct negatives per user, e.g. the 99 NCF evaluation candidates.

        Build the sampler from *all* of a user's interactions (train and test) so the
        held-out item is never drawn as a negative. Each row is a uniform random ``n``-subset
        of the user's non-positive items (Floyd's algorithm, vectorised over users: ``n``
        steps of O(B n) each), sorted ascending.

        Args:
            users: ``(B,)`` user ids.
            n: Negatives per user.
            rng: Generator to draw from; defaults to the sampler's own seeded one.

        Returns:
            ``(B, n)`` int64 item ids, distinct within a row, none a positive of the user.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        u, start, m = self._prepare(users, n)
        gen = self._rng if rng is None else rng
        chosen = np.empty((u.size, n), dtype=np.int64)
        # Floyd: for j = m-n .. m-1, draw t in [0, j]; keep t unless already chosen, else j.
        for step in range(n):
            j = m - n + step  # (B,)
            t = gen.integers(0, j + 1, dtype=np.int64)
            dup = (chosen[:, :step] == t[:, None]).any(axis=1)
            chosen[:, step] = np.where(dup, j, t)
        chosen.sort(axis=1)
        return self._rank_to_item(u, chosen, start)
