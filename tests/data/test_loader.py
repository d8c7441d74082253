"""BatchLoader: seeded permutations, full coverage, memory-mapped and in-memory paths agree."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recforge.data.loader import BatchLoader
from recforge.data.store import load_encoded, save_encoded
from recforge.features import EncodedData


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


def _assert_same_batches(a, b) -> None:
    """Two batch sequences are identical: same count, every array equal, same dtype and order."""
    a, b = list(a), list(b)
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        pairs = [(x.sparse, y.sparse), (x.dense, y.dense), (x.label, y.label)]
        assert x.sequences.keys() == y.sequences.keys() and x.lengths.keys() == y.lengths.keys()
        pairs += [(x.sequences[k], y.sequences[k]) for k in x.sequences]
        pairs += [(x.lengths[k], y.lengths[k]) for k in x.lengths]
        for u, v in pairs:
            assert u.dtype == v.dtype and torch.equal(u, v)


def test_memory_mapped_store_round_trip(tmp_path):
    data = _data()
    save_encoded(data, tmp_path / "enc")
    mapped = load_encoded(tmp_path / "enc")
    assert isinstance(mapped.sparse, np.memmap)
    for batch in BatchLoader(mapped, 16, shuffle=True, seed=3):
        _assert_rows_intact(batch, data)
    _assert_same_batches(
        BatchLoader(data, 16, shuffle=True, seed=3), BatchLoader(mapped, 16, shuffle=True, seed=3)
    )
    assert not list(tmp_path.glob(".enc*"))  # no temporary folder left behind


@pytest.mark.parametrize("shuffle, window", [(False, 0), (True, 0), (True, 64)])
@pytest.mark.parametrize("world_size", [1, 2, 3])
@pytest.mark.parametrize("drop_last", [False, True])
def test_in_memory_and_memory_mapped_batches_are_identical(
    tmp_path, shuffle, window, world_size, drop_last
):
    # the same seed gives the same batches, rows in the same order, whether the data is held
    # in memory or read from the memory-mapped cache: runs train bit-identically either way
    data = _data(1003)
    save_encoded(data, tmp_path / "enc")
    mapped = load_encoded(tmp_path / "enc")
    assert isinstance(mapped.sparse, np.memmap) and isinstance(mapped.sequences["s"], np.memmap)
    common = dict(batch_size=32, shuffle=shuffle, seed=7, drop_last=drop_last)
    common.update(shuffle_window=window, world_size=world_size)
    for epoch in (0, 1):
        singles = []
        for rank in range(world_size):
            memory = BatchLoader(data, rank=rank, **common)
            disk = BatchLoader(mapped, rank=rank, **common)
            memory.set_epoch(epoch)
            disk.set_epoch(epoch)
            _assert_same_batches(memory, disk)
            singles.append(list(disk))
        # the ranks' shares, put together in rank order, are the one-process batches
        one = BatchLoader(mapped, **{**common, "world_size": 1})
        one.set_epoch(epoch)
        for step, batch in enumerate(one):
            if step >= len(singles[0]):  # a final global batch smaller than the ranks
                break
            joined = torch.cat([shares[step].sparse for shares in singles])
            assert torch.equal(joined, batch.sparse)


def test_cached_and_fresh_encoded_runs_give_identical_batches(tmp_path):
    # end to end: the first encode_run holds its arrays in memory (and writes the cache), the
    # second reads the memory-mapped cache; the training batches must not differ
    from recforge.config import DataConfig
    from recforge.data.pipeline import encode_run

    cfg = DataConfig(
        dataset="synthetic", options={"rows": 3000, "seed": 1}, cache_dir=str(tmp_path)
    )
    fresh = encode_run(cfg, seed=4)
    cached = encode_run(cfg, seed=4)
    assert not fresh.from_cache and cached.from_cache
    assert not isinstance(fresh.train.sparse, np.memmap)
    assert isinstance(cached.train.sparse, np.memmap)
    for window in (0, 256):
        a = BatchLoader(fresh.train, 128, shuffle=True, seed=4, shuffle_window=window)
        b = BatchLoader(cached.train, 128, shuffle=True, seed=4, shuffle_window=window)
        _assert_same_batches(a, b)


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
