"""BatchLoader: seeded permutations, full coverage, memory-mapped and in-memory paths agree."""

from __future__ import annotations

import numpy as np
import torch

from recforge.data.loader import BatchLoader
from recforge.data.store import EncodedData, load_encoded, save_encoded


def _data(n: int = 103) -> EncodedData:
    rng = np.random.default_rng(0)
    return EncodedData(
        sparse=np.arange(n, dtype=np.int32)[:, None].repeat(2, 1),
        dense=rng.normal(size=(n, 3)).astype(np.float32),
        label=(np.arange(n) % 2).astype(np.float32),
        sequences={"s": rng.integers(0, 5, (n, 4)).astype(np.int32)},
        lengths={"s": rng.integers(0, 5, n).astype(np.int32)},
    )


def _assert_rows_intact(batch, data: EncodedData) -> None:
    """Every array of ``batch`` holds exactly the rows its ids name (sparse[:, 0] = row id)."""
    rows = batch.sparse[:, 0].numpy()
    np.testing.assert_array_equal(batch.sparse.numpy(), data.sparse[rows])
    np.testing.assert_array_equal(batch.dense.numpy(), data.dense[rows])
    np.testing.assert_array_equal(batch.label.numpy(), data.label[rows])
    for name in data.sequences:
        np.testing.assert_array_equal(batch.sequences[name].numpy(), data.sequences[name][rows])
        np.testing.assert_array_equal(batch.lengths[name].numpy(), data.lengths[name][rows])


def test_every_row_once_per_epoch_and_seeded():
    loader = BatchLoader(_data(), batch_size=10, shuffle=True, seed=1)
    for batch in loader:
        _assert_rows_intact(batch, _data())
    rows = torch.cat([b.sparse[:, 0] for b in loader])
    assert sorted(rows.tolist()) == list(range(103))
    again = torch.cat([b.sparse[:, 0] for b in BatchLoader(_data(), 10, shuffle=True, seed=1)])
    assert torch.equal(rows, again)
    loader.set_epoch(1)
    other = torch.cat([b.sparse[:, 0] for b in loader])
    assert not torch.equal(rows, other)
    assert len(loader) == 11


def test_drop_last_and_dtypes():
    batches = list(BatchLoader(_data(), batch_size=10, drop_last=True))
    assert len(batches) == 10 and all(len(b) == 10 for b in batches)
    b = batches[0]
    assert b.sparse.dtype == torch.long and b.dense.dtype == torch.float32
    assert b.sequences["s"].dtype == torch.long and b.lengths["s"].shape == (10,)


def test_memory_mapped_store_round_trip(tmp_path):
    data = _data()
    save_encoded(data, tmp_path / "enc")
    mapped = load_encoded(tmp_path / "enc")
    assert isinstance(mapped.sparse, np.memmap)
    a = list(BatchLoader(data, 16, shuffle=True, seed=3))
    b = list(BatchLoader(mapped, 16, shuffle=True, seed=3))
    for x, y in zip(a, b, strict=True):
        # the mmap path sorts indices within a batch; compare as sets of rows
        assert sorted(x.sparse[:, 0].tolist()) == sorted(y.sparse[:, 0].tolist())
        _assert_rows_intact(y, data)
    assert not list(tmp_path.glob(".enc*"))  # no temporary folder left behind


def test_block_permutation_is_a_local_permutation():
    from recforge.data.loader import block_permutation

    for n, window in [(1, 4), (10, 1), (103, 16), (1000, 64), (997, 5000)]:
        order = block_permutation(n, window, np.random.default_rng(n))
        assert np.array_equal(np.sort(order), np.arange(n)), (n, window)
    n, window = 10_007, 400
    order = block_permutation(n, window, np.random.default_rng(3))
    block = window // 4
    for start in range(0, n, window):  # each window draws on at most five blocks of rows
        assert len(np.unique(order[start : start + window] // block)) <= 5
    # rows inside a window are shuffled, and blocks come in random order
    assert not np.array_equal(order[:window], np.sort(order[:window]))
    firsts = np.sort(order.reshape(-1)[: n - n % window].reshape(-1, window), axis=1)[:, 0]
    assert not np.all(np.diff(firsts) > 0)


def test_loader_block_shuffle_covers_rows_per_epoch_and_shards(tmp_path):
    data = _data(1003)
    loader = BatchLoader(data, batch_size=32, shuffle=True, seed=5, shuffle_window=128)
    rows = torch.cat([b.sparse[:, 0] for b in loader])
    assert sorted(rows.tolist()) == list(range(1003))
    for batch in loader:
        _assert_rows_intact(batch, data)
    loader.set_epoch(1)
    assert not torch.equal(rows, torch.cat([b.sparse[:, 0] for b in loader]))
    # two ranks' shares of memory-mapped data put together are the one-process batches
    save_encoded(data, tmp_path / "d")
    mapped = load_encoded(tmp_path / "d")
    one = [
        sorted(b.sparse[:, 0].tolist())
        for b in BatchLoader(mapped, 32, shuffle=True, seed=5, shuffle_window=128)
    ]
    ranks = [
        BatchLoader(mapped, 32, shuffle=True, seed=5, rank=r, world_size=2, shuffle_window=128)
        for r in (0, 1)
    ]
    both = [
        sorted(a.sparse[:, 0].tolist() + b.sparse[:, 0].tolist())
        for a, b in zip(*ranks, strict=True)
    ]
    assert both == one
