"""Replay memory for DRN's major updates (Zheng et al., WWW 2018, Section 4.4).

A fixed-capacity ring buffer of named arrays: each :meth:`ReplayMemory.add` appends a batch of
transitions (overwriting the oldest once full) and :meth:`ReplayMemory.sample` draws uniformly
with replacement among the stored ones. DRN stores session-level transitions: the state, the
action features of the pushed list, its rewards, the next state and the next candidates.
"""

from __future__ import annotations

import numpy as np


class ReplayMemory:
    """Uniform-sampling ring buffer.

    Args:
        capacity: Maximum number of stored transitions.
        seed: Seed of the sampling generator.
    """

    def __init__(self, capacity: int, seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.rng = np.random.default_rng(seed)
        self._data: dict[str, np.ndarray] = {}
        self._next = 0
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, **arrays: np.ndarray) -> None:
        """Append ``N`` transitions given as arrays sharing their first dimension ``N``."""
        n = {len(v) for v in arrays.values()}
        if len(n) != 1:
            raise ValueError("all arrays must have the same first dimension")
        (count,) = n
        if not self._data:
            self._data = {
                k: np.zeros((self.capacity, *np.shape(v)[1:]), dtype=np.asarray(v).dtype)
                for k, v in arrays.items()
            }
        elif set(arrays) != set(self._data):
            raise ValueError(f"expected keys {sorted(self._data)}, got {sorted(arrays)}")
        if count > self.capacity:  # only the newest `capacity` survive anyway
            arrays = {k: v[-self.capacity :] for k, v in arrays.items()}
            count = self.capacity
        slots = (self._next + np.arange(count)) % self.capacity
        for k, v in arrays.items():
            self._data[k][slots] = v
        self._next = int((self._next + count) % self.capacity)
        self._size = min(self._size + count, self.capacity)

    def sample(self, n: int) -> dict[str, np.ndarray]:
        """``n`` transitions drawn uniformly with replacement."""
        if self._size == 0:
            raise ValueError("cannot sample from an empty replay memory")
        idx = self.rng.integers(0, self._size, n)
        return {k: v[idx] for k, v in self._data.items()}
