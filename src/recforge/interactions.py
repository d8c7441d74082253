"""A compressed-sparse-row user-item matrix and per-batch densification.

Collaborative-filtering models read the user-item matrix row by row: AutoRec reconstructs whole
rating vectors, ranking evaluation masks each user's training items, and negative sampling
rejects a user's positives. :class:`InteractionMatrix` keeps the matrix as CSR arrays
(``indptr``, ``indices``, ``values``) and densifies only the rows of one batch, so memory is
``O(nnz + batch * columns)`` rather than ``O(rows * columns)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch


@dataclass(frozen=True)
class InteractionMatrix:
    """A sparse ``(n_rows, n_cols)`` matrix in CSR form with sorted column indices per row.

    Attributes:
        indptr: ``(n_rows + 1,)`` int64 row pointers.
        indices: ``(nnz,)`` int64 column indices, sorted within each row.
        values: ``(nnz,)`` float32 values (ratings, or 1 for implicit feedback).
        shape: ``(n_rows, n_cols)``.
    """

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    shape: tuple[int, int]

    @classmethod
    def from_coo(
        cls,
        rows: np.ndarray,
        cols: np.ndarray,
        values: np.ndarray | None = None,
        shape: tuple[int, int] | None = None,
    ) -> InteractionMatrix:
        """Build from coordinate arrays; duplicate ``(row, col)`` pairs keep the last value.

        Args:
            rows: Row ids (e.g. users), non-negative integers.
            cols: Column ids (e.g. items).
            values: Entry values; ``None`` gives an implicit (all-ones) matrix.
            shape: Matrix shape; defaults to ``(max row + 1, max col + 1)``.
        """
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        vals = (
            np.ones(len(rows), dtype=np.float32)
            if values is None
            else np.asarray(values, dtype=np.float32)
        )
        if not len(rows) == len(cols) == len(vals):
            raise ValueError("rows, cols and values must have the same length")
        if shape is None:
            shape = (int(rows.max(initial=-1)) + 1, int(cols.max(initial=-1)) + 1)
        n_rows, n_cols = int(shape[0]), int(shape[1])
        if len(rows) and (rows.min() < 0 or cols.min() < 0):
            raise ValueError("row and column ids must be non-negative")
        if len(rows) and (rows.max() >= n_rows or cols.max() >= n_cols):
            raise ValueError(f"ids exceed the matrix shape {shape}")
        key = rows * n_cols + cols
        # stable sort, then keep the last occurrence of each key
        order = np.argsort(key, kind="stable")
        key = key[order]
        last = np.ones(len(key), dtype=bool)
        last[:-1] = key[1:] != key[:-1]
        order = order[last]
        rows, cols, vals = rows[order], cols[order], vals[order]
        indptr = np.zeros(n_rows + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
        return cls(indptr=indptr, indices=cols, values=vals, shape=(n_rows, n_cols))

    @property
    def nnz(self) -> int:
        return int(len(self.indices))

    @property
    def row_counts(self) -> np.ndarray:
        """``(n_rows,)`` number of stored entries per row."""
        return np.diff(self.indptr)

    @property
    def col_counts(self) -> np.ndarray:
        """``(n_cols,)`` number of stored entries per column."""
        return np.bincount(self.indices, minlength=self.shape[1])

    def row_ids(self) -> np.ndarray:
        """``(nnz,)`` the row of every stored entry (COO rows)."""
        return np.repeat(np.arange(self.shape[0], dtype=np.int64), self.row_counts)

    def transpose(self) -> InteractionMatrix:
        """The ``(n_cols, n_rows)`` transpose (item-major view of a user-major matrix)."""
        return InteractionMatrix.from_coo(
            self.indices, self.row_ids(), self.values, shape=(self.shape[1], self.shape[0])
        )

    def rows_coo(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Entries of the given rows as ``(position in rows, column, value)`` arrays."""
        rows = np.asarray(rows, dtype=np.int64)
        starts, ends = self.indptr[rows], self.indptr[rows + 1]
        counts = ends - starts
        total = int(counts.sum())
        pos = np.repeat(np.arange(len(rows), dtype=np.int64), counts)
        # entry k of the batch sits at starts[pos[k]] + (k - first entry of its row)
        first = np.repeat(np.cumsum(counts) - counts, counts)
        src = np.repeat(starts, counts) + (np.arange(total, dtype=np.int64) - first)
        return pos, self.indices[src], self.values[src]

    def dense_rows(self, rows: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Densify a batch of rows.

        Returns:
            ``(values, mask)``, both ``(len(rows), n_cols)`` float32; ``mask`` is 1 where an
            entry is stored (observed) and 0 elsewhere.
        """
        rows_np = rows.cpu().numpy() if isinstance(rows, torch.Tensor) else np.asarray(rows)
        pos, cols, vals = self.rows_coo(rows_np)
        dense = torch.zeros(len(rows_np), self.shape[1])
        mask = torch.zeros(len(rows_np), self.shape[1])
        index = (torch.from_numpy(pos), torch.from_numpy(cols))
        dense.index_put_(index, torch.from_numpy(vals))
        mask.index_put_(index, torch.ones(len(pos)))
        return dense, mask

    def contains(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Vectorised membership test: is ``(rows[k], cols[k])`` a stored entry?"""
        keys = self.sorted_keys
        query = np.asarray(rows, dtype=np.int64) * self.shape[1] + np.asarray(cols, dtype=np.int64)
        where = np.searchsorted(keys, query)
        found = where < len(keys)
        found[found] = keys[where[found]] == query[found]
        return found

    @cached_property
    def sorted_keys(self) -> np.ndarray:
        """``row * n_cols + col`` of every entry, ascending (CSR order is already sorted)."""
        return self.row_ids() * self.shape[1] + self.indices
