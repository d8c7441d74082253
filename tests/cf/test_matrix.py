"""InteractionMatrix: CSR construction, per-batch densification, membership, transpose."""

from __future__ import annotations

import numpy as np

from recforge.interactions import InteractionMatrix


def _random(seed: int = 0):
    rng = np.random.default_rng(seed)
    rows, cols = rng.integers(0, 7, 40), rng.integers(0, 9, 40)
    vals = rng.integers(1, 6, 40).astype(np.float32)
    return rows, cols, vals


def test_dense_rows_match_brute_force_with_last_duplicate_winning() -> None:
    rows, cols, vals = _random()
    m = InteractionMatrix.from_coo(rows, cols, vals, shape=(7, 9))
    expected = np.zeros((7, 9), dtype=np.float32)
    observed = np.zeros((7, 9), dtype=np.float32)
    for r, c, v in zip(rows, cols, vals, strict=True):  # brute force, last write wins
        expected[r, c], observed[r, c] = v, 1.0
    batch = np.array([3, 0, 6, 3])
    dense, mask = m.dense_rows(batch)
    np.testing.assert_array_equal(dense.numpy(), expected[batch])
    np.testing.assert_array_equal(mask.numpy(), observed[batch])
    assert m.nnz == int(observed.sum())
    np.testing.assert_array_equal(m.row_counts, observed.sum(1))
    np.testing.assert_array_equal(m.col_counts, observed.sum(0))


def test_contains_and_transpose() -> None:
    rows, cols, vals = _random(1)
    m = InteractionMatrix.from_coo(rows, cols, vals, shape=(7, 9))
    qr, qc = np.meshgrid(np.arange(7), np.arange(9), indexing="ij")
    truth = np.zeros((7, 9), dtype=bool)
    truth[rows, cols] = True
    np.testing.assert_array_equal(m.contains(qr.ravel(), qc.ravel()), truth.ravel())
    t = m.transpose()
    assert t.shape == (9, 7)
    dense_t, _ = t.dense_rows(np.arange(9))
    dense, _ = m.dense_rows(np.arange(7))
    np.testing.assert_array_equal(dense_t.numpy(), dense.numpy().T)
