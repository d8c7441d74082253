"""Negative sampling that never returns a user's positives.

Used for the ranking task (pointwise BCE or BPR over sampled negatives; Rendle et al., "BPR:
Bayesian Personalized Ranking from Implicit Feedback", UAI 2009) and for the leave-one-out
evaluation of He et al., "Neural Collaborative Filtering", WWW 2017 (each test item ranked
among 99 items the user never interacted with).

Method: exact uniform sampling from the complement, with no rejection rounds. The (user, item)
positives are sorted by the int64 key ``user * n_items + item`` (a CSR layout: each user's
items are one sorted segment). For user ``u`` with positives ``p_0 < p_1 < ...`` in
``[1, n_items)``, ``gap_j = p_j - 1 - j`` counts the non-positive items below ``p_j``; the
``r``-th non-positive item (0-based) is then ``r + 1 + #{j : gap_j <= r}``, and that count is
a binary search inside the user's segment, run in lock-step for the whole batch. A draw of
``r`` uniform in ``[0, m_u)`` (``m_u`` = the user's non-positive count) is therefore a uniform
negative, in O(log P_u) per sample whatever the user's activity: heavy users need no
resampling and there is no fallback path.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["NegativeSampler"]

_KEY_LIMIT = 2**62


def _count_le(
    arr: np.ndarray, start: np.ndarray, count: np.ndarray, values: np.ndarray
) -> np.ndarray:
    """Per query, how many of ``arr[start : start + count]`` (sorted) are ``<= value``.

    A binary search run in lock-step over all queries, bounded to each query's own segment:
    ``bit_length(max count)`` vectorised steps, touching only the queried users' rows (a
    global ``np.searchsorted`` over all positives misses the cache at almost every step).

    Args:
        arr: ``(P,)`` values, sorted within each segment.
        start: Segment starts, broadcastable to ``values``.
        count: Segment lengths, broadcastable to ``values``.
        values: Query values.

    Returns:
        int64 array of ``values``'s shape.
    """
    start, count, values = np.broadcast_arrays(start, count, values)
    lo = np.zeros(values.shape, dtype=np.int64)
    hi = count.astype(np.int64, copy=True)
    steps = int(hi.max()).bit_length() if hi.size else 0
    last = max(arr.size - 1, 0)
    for _ in range(steps):
        mid = (lo + hi) >> 1
        active = lo < hi
        go = (arr[np.minimum(start + mid, last)] <= values) & active
        lo = np.where(go, mid + 1, lo)
        hi = np.where(active & ~go, mid, hi)
    return lo


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
        keys = np.sort(users[keep] * self.n_items + items[keep])
        if keys.size:  # dedupe (np.unique is much slower than sort + mask here)
            fresh = np.ones(keys.size, dtype=bool)
            np.not_equal(keys[1:], keys[:-1], out=fresh[1:])
            keys = keys[fresh]
        key_user = keys // self.n_items
        per_user = np.bincount(key_user, minlength=max_user + 1)  # (U,)
        # user_start[u] .. user_start[u + 1]: user u's positives; the padding entries give
        # users above max_user an empty segment
        user_start = np.zeros(max_user + 3, dtype=np.int64)
        np.cumsum(per_user, out=user_start[1 : max_user + 2])
        user_start[-1] = keys.size
        rank_in_user = np.arange(keys.size, dtype=np.int64) - user_start[key_user]  # j
        self._items = keys % self.n_items  # (P,) sorted within each user
        self._gaps = self._items - 1 - rank_in_user  # non-positives below p_j, nondecreasing
        self._user_start = user_start
        self._max_user = max_user
        log.debug("NegativeSampler: %d positives over %d items", keys.size, n_items)

    @property
    def num_positives(self) -> int:
        """Distinct (user, item) positives held (item 0 excluded)."""
        return int(self._items.size)

    def _users(self, users: np.ndarray) -> np.ndarray:
        u = np.asarray(users, dtype=np.int64).reshape(-1)
        if u.size and u.min() < 0:
            raise ValueError("user ids must be non-negative")
        return u

    def _segment(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Start of each user's positives and their count, ``(B,)`` each."""
        u = np.minimum(users, self._max_user + 1)
        start = self._user_start[u]
        return start, self._user_start[u + 1] - start

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
        start, count = self._segment(u)
        shape = (-1,) + (1,) * max(it.ndim - 1, 0)
        start, count = start.reshape(shape), count.reshape(shape)
        if self._items.size == 0:
            return np.zeros(np.broadcast_shapes(start.shape, it.shape), dtype=bool)
        below = _count_le(self._items, start, count, it)
        found = self._items[np.minimum(start + below - 1, self._items.size - 1)] == it
        return (below > 0) & found

    def _rank_to_item(self, start: np.ndarray, count: np.ndarray, ranks: np.ndarray) -> np.ndarray:
        """Map 0-based ranks among each user's non-positives to item ids.

        Args:
            start: ``(B,)`` start of each user's positives.
            count: ``(B,)`` number of each user's positives.
            ranks: ``(B, K)`` ranks in ``[0, m_u)``.

        Returns:
            ``(B, K)`` int64 item ids.
        """
        # item = r + 1 + #{j : gap_j <= r}
        return ranks + 1 + _count_le(self._gaps, start[:, None], count[:, None], ranks)

    def _prepare(
        self, users: np.ndarray, need: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
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
        return u, start, count, m

    def sample(
        self,
        users: np.ndarray,
        k: int = 1,
        rng: np.random.Generator | None = None,
        all_positive: str = "raise",
    ) -> np.ndarray:
        """Draw ``k`` negatives per row, independently and uniformly (with replacement).

        Args:
            users: ``(B,)`` user id per row.
            k: Negatives per row.
            rng: Generator to draw from; defaults to the sampler's own seeded one.
            all_positive: For a user whose positives are every item (no negative exists):
                ``raise`` a ValueError, or ``uniform``: draw that row's items over the whole
                catalogue (training keeps going; such a user is rare and carries no contrast).

        Returns:
            ``(B, k)`` int64 item ids in ``[1, n_items)``, none a positive of its row's user
            (but for ``all_positive="uniform"`` rows).
        """
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        if all_positive not in ("raise", "uniform"):
            raise ValueError(f"all_positive must be 'raise' or 'uniform', got {all_positive!r}")
        need = 1 if k and all_positive == "raise" else 0
        u, start, count, m = self._prepare(users, need)
        full = m == 0
        if full.any():  # every item is a positive: draw as for a user without positives
            count = np.where(full, 0, count)
            m = np.where(full, self.n_items - 1, m)
        gen = self._rng if rng is None else rng
        ranks = gen.integers(0, np.maximum(m, 1)[:, None], size=(u.size, k), dtype=np.int64)
        return self._rank_to_item(start, count, ranks)

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
        u, start, count, m = self._prepare(users, n)
        gen = self._rng if rng is None else rng
        chosen = np.empty((u.size, n), dtype=np.int64)
        # Floyd: for j = m-n .. m-1, draw t in [0, j]; keep t unless already chosen, else j.
        for step in range(n):
            j = m - n + step  # (B,)
            t = gen.integers(0, j + 1, dtype=np.int64)
            dup = (chosen[:, :step] == t[:, None]).any(axis=1)
            chosen[:, step] = np.where(dup, j, t)
        chosen.sort(axis=1)
        return self._rank_to_item(start, count, chosen)
