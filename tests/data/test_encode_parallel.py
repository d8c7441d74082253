"""The column-parallel encode path gives exactly the one-thread result."""

from __future__ import annotations

import numpy as np
import pytest

from recforge.data.encode import preprocess
from recforge.data.encode.preprocess import Preprocessor, _fill_blocks
from recforge.data.sources.synthetic import make_wide_log


def _encode(monkeypatch: pytest.MonkeyPatch, parallel_rows: int) -> tuple:
    monkeypatch.setattr(preprocess, "_PARALLEL_ROWS", parallel_rows)
    monkeypatch.setattr(preprocess, "_STACK_BLOCK", 1000)  # several blocks and a partial one
    table, schema = make_wide_log(rows=12_345, n_cat=6, n_num=4, max_vocab=5_000, seed=3)
    pre = Preprocessor(schema).fit(table.slice(0, 10_000))
    return pre.vocabs, pre.numeric, pre.transform(table.slice(10_000))


def test_parallel_encoding_equals_sequential(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preprocess.os, "cpu_count", lambda: 4)
    vocabs_1, numeric_1, enc_1 = _encode(monkeypatch, parallel_rows=10**9)  # one thread
    vocabs_n, numeric_n, enc_n = _encode(monkeypatch, parallel_rows=0)  # a thread per column
    assert vocabs_1.keys() == vocabs_n.keys()
    assert all(vocabs_1[k].equals(vocabs_n[k]) for k in vocabs_1)
    assert numeric_1 == numeric_n
    np.testing.assert_array_equal(enc_1.sparse, enc_n.sparse)
    np.testing.assert_array_equal(enc_1.dense, enc_n.dense)
    assert enc_n.sparse.flags.c_contiguous and enc_n.dense.dtype == np.float32


@pytest.mark.parametrize("rows", [0, 1, 999, 1000, 2501])
@pytest.mark.parametrize("parallel_rows", [0, 10**9])
def test_blocked_fill_equals_numpy_stack(
    monkeypatch: pytest.MonkeyPatch, rows: int, parallel_rows: int
) -> None:
    """Blocks (several, and a partial last one; on threads or not) fill every cell once."""
    monkeypatch.setattr(preprocess, "_STACK_BLOCK", 1000)
    monkeypatch.setattr(preprocess, "_PARALLEL_ROWS", parallel_rows)
    monkeypatch.setattr(preprocess.os, "cpu_count", lambda: 4)
    rng = np.random.default_rng(rows)
    columns = [rng.normal(size=rows) for _ in range(5)]
    sources = [lambda a, b, c=c: c[a:b] for c in columns]
    out = _fill_blocks(sources, np.float32, rows)
    np.testing.assert_array_equal(out, np.stack(columns, axis=1).astype(np.float32))
    assert out.shape == (rows, 5) and out.flags.c_contiguous
    assert _fill_blocks([], np.int32, rows).shape == (rows, 0)
