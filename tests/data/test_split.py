"""Splits: partitions, ratios, determinism, leave-last-out against a brute-force loop."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from recforge.data.encode.split import leave_last_split, random_split, split_table, time_split


def _assert_partition(parts: tuple[np.ndarray, ...], n: int) -> None:
    for p in parts:
        assert p.dtype == np.int64
        assert np.all(np.diff(p) > 0)  # sorted, no duplicates
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(n))


def test_random_split_partition_ratios_and_seed() -> None:
    parts = random_split(1001, (0.8, 0.1, 0.1), seed=3)
    _assert_partition(parts, 1001)
    assert [len(p) for p in parts] == [801, 100, 100]
    again = random_split(1001, (0.8, 0.1, 0.1), seed=3)
    other = random_split(1001, (0.8, 0.1, 0.1), seed=4)
    for a, b in zip(parts, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(parts[1], other[1])
    # not just a contiguous block
    assert parts[2].min() < 200 and parts[2].max() > 800


def test_random_split_accepts_table_and_validates_ratios() -> None:
    table = pa.table({"x": np.arange(10)})
    train, test = random_split(table, (0.7, 0.3))
    assert len(train) == 7 and len(test) == 3
    with pytest.raises(ValueError, match="sum to 1"):
        random_split(10, (0.5, 0.2))
    with pytest.raises(ValueError, match="non-negative"):
        random_split(10, (1.2, -0.2))


def test_time_split_is_ordered_and_stable() -> None:
    rng = np.random.default_rng(0)
    times = rng.integers(0, 50, 1000)
    train, valid, test = time_split(times, (0.6, 0.2, 0.2))
    _assert_partition((train, valid, test), 1000)
    assert [len(train), len(valid), len(test)] == [600, 200, 200]
    assert times[train].max() <= times[valid].min()
    assert times[valid].max() <= times[test].min()
    # ties at a cut are split by row order
    boundary = times[valid].min()
    tied_train = train[times[train] == boundary]
    tied_valid = valid[times[valid] == boundary]
    if len(tied_train) and len(tied_valid):
        assert tied_train.max() < tied_valid.min()
    # expected exactly: stable argsort
    order = np.argsort(times, kind="stable")
    np.testing.assert_array_equal(test, np.sort(order[800:]))


def _leave_last_brute_force(users: np.ndarray, times: np.ndarray, n_last: int) -> set[int]:
    test: set[int] = set()
    for u in np.unique(users):
        rows = [i for i in range(len(users)) if users[i] == u]
        if len(rows) <= n_last:
            continue
        rows.sort(key=lambda i: (times[i], i))
        test.update(rows[-n_last:])
    return test


@pytest.mark.parametrize("n_last", [1, 2])
def test_leave_last_matches_brute_force(n_last: int) -> None:
    rng = np.random.default_rng(1)
    n = 2000
    users = rng.zipf(1.6, n) % 300  # uneven, many users with one interaction
    times = rng.integers(0, 20, n)  # many ties in time
    train, test = leave_last_split(users, times, n_last=n_last)
    _assert_partition((train, test), n)
    assert set(test.tolist()) == _leave_last_brute_force(users, times, n_last)
    counts = np.bincount(users)
    held = np.bincount(users[test], minlength=counts.size)
    np.testing.assert_array_equal(held, np.where(counts > n_last, n_last, 0))


def test_leave_last_hand_example() -> None:
    users = np.array(["a", "b", "a", "a", "c", "b"], dtype=object)
    times = np.array([5, 1, 9, 9, 3, 0])
    train, test = leave_last_split(users, times)
    # a: rows 2 and 3 tie at t=9, the later row (3) is the last; b: row 1 (t=1);
    # c has one interaction and stays in train
    np.testing.assert_array_equal(test, [1, 3])
    np.testing.assert_array_equal(train, [0, 2, 4, 5])
    # no times: row order is time
    _, test_rows = leave_last_split(users)
    np.testing.assert_array_equal(test_rows, [3, 5])


def test_split_table_kinds() -> None:
    rng = np.random.default_rng(2)
    n = 500
    table = pa.table(
        {
            "user": [f"u{i}" for i in rng.integers(0, 40, n)],
            "time": rng.integers(0, 1000, n),
            "label": rng.integers(0, 2, n),
        }
    )
    train, valid, test = split_table(table, "random", seed=1)
    assert (train.num_rows, valid.num_rows, test.num_rows) == (400, 50, 50)
    assert train.column_names == table.column_names

    train, valid, test = split_table(table, "time", ratios=(0.5, 0.25, 0.25))
    t = [x.column("time").to_numpy() for x in (train, valid, test)]
    assert t[0].max() <= t[1].min() and t[1].max() <= t[2].min()

    train, valid, test = split_table(table, "leave_last")
    assert train.num_rows + valid.num_rows + test.num_rows == n
    test_users = test.column("user").to_pylist()
    valid_users = valid.column("user").to_pylist()
    assert len(set(test_users)) == len(test_users)  # one test row per user
    assert len(set(valid_users)) == len(valid_users)

    # every held-out row is at least as late as the user's earlier parts
    def latest(part: pa.Table) -> dict[str, int]:
        out: dict[str, int] = {}
        pairs = zip(part.column("user").to_pylist(), part.column("time").to_pylist(), strict=True)
        for u, tm in pairs:
            out[u] = max(out.get(u, -1), tm)
        return out

    last_train, last_valid = latest(train), latest(valid)
    for u, tm in latest(valid).items():
        assert tm >= last_train[u]
    for u, tm in latest(test).items():
        assert tm >= max(last_train[u], last_valid.get(u, -1))

    _, valid0, _ = split_table(table, "leave_last", n_valid_last=0)
    assert valid0.num_rows == 0


def test_split_table_errors() -> None:
    table = pa.table({"user": [1, 2, None], "time": [1, 2, 3]})
    with pytest.raises(ValueError, match="unknown split kind"):
        split_table(table, "stratified")
    with pytest.raises(ValueError, match="missing values"):
        split_table(table, "leave_last")
    with pytest.raises(ValueError, match="not in table"):
        split_table(table, "time", time_column="ts")
    with pytest.raises(ValueError, match="three ratios"):
        split_table(table, "random", ratios=(0.5, 0.5))
