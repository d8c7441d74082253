"""Train / validation / test splits, vectorised over index arrays.

Three protocols:

* :func:`random_split` - a seeded permutation cut by ratios (Criteo, Avazu, Frappe style).
* :func:`time_split` - rows sorted by time (stable, so equal times keep row order) and cut by
  ratios: the earliest rows train, the latest test.
* :func:`leave_last_split` - per user, the ``n_last`` latest interactions are held out
  (He et al., "Neural Collaborative Filtering", WWW 2017; the DIN/DIEN Amazon protocol).

Every function returns int64 row-index arrays sorted ascending, so ``table.take(idx)`` keeps
the source row order. :func:`split_table` applies a protocol to a ``pyarrow.Table`` and returns
``(train, valid, test)`` tables.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

log = logging.getLogger(__name__)

__all__ = ["leave_last_split", "random_split", "split_table", "time_split"]

SPLIT_KINDS = ("random", "time", "leave_last")


def cut_points(n: int, ratios: Sequence[float]) -> np.ndarray:
    """Boundaries that cut ``n`` rows into parts proportional to ``ratios``.

    Args:
        n: Number of rows.
        ratios: Non-negative fractions summing to 1 (within 1e-6).

    Returns:
        ``(len(ratios) + 1,)`` int64 cumulative boundaries, first 0 and last ``n``; each part
        gets ``round(n * cumulative ratio)`` rows in total so rounding never loses a row.
    """
    r = np.asarray(ratios, dtype=np.float64)
    if r.ndim != 1 or r.size == 0 or np.any(r < 0):
        raise ValueError(f"ratios must be a non-empty list of non-negative numbers, got {ratios}")
    if abs(r.sum() - 1.0) > 1e-6:
        raise ValueError(f"ratios must sum to 1, got {list(ratios)} (sum {r.sum():g})")
    cuts = np.rint(np.cumsum(r) * n).astype(np.int64)
    cuts[-1] = n
    return np.concatenate([[0], cuts])


def _num_rows(n_or_table: int | pa.Table) -> int:
    if isinstance(n_or_table, pa.Table):
        return n_or_table.num_rows
    n = int(n_or_table)
    if n < 0:
        raise ValueError(f"number of rows must be >= 0, got {n}")
    return n


def random_split(
    n_or_table: int | pa.Table, ratios: Sequence[float], seed: int = 0
) -> tuple[np.ndarray, ...]:
    """Split rows at random into parts of the given ratios.

    Args:
        n_or_table: Number of rows, or a table to take it from.
        ratios: Fractions per part, e.g. ``(0.8, 0.1, 0.1)``; must sum to 1.
        seed: Seed of the permutation; the same seed gives the same split.

    Returns:
        One int64 index array per ratio, each sorted ascending; together a partition of
        ``range(n)``.
    """
    labels = random_split_labels(_num_rows(n_or_table), ratios, seed)
    return tuple(np.flatnonzero(labels == k) for k in range(len(ratios)))


def random_split_labels(n: int, ratios: Sequence[float], seed: int = 0) -> np.ndarray:
    """:func:`random_split` as one part number per row (``int8``), in 5 bytes a row.

    The seeded permutation (numpy shuffles an ``int32`` range exactly as it shuffles the
    default ``int64`` one) is cut into parts of the given ratios; the streaming pipeline labels
    the rows of a file larger than memory with it.
    """
    if len(ratios) > 127:
        raise ValueError("at most 127 parts")
    cuts = cut_points(n, ratios)
    dtype = np.int32 if n < 2**31 else np.int64
    perm = np.random.default_rng(seed).permutation(np.arange(n, dtype=dtype))
    labels = np.zeros(n, dtype=np.int8)
    for k, (a, b) in enumerate(zip(cuts[:-1], cuts[1:], strict=True)):
        if k:
            labels[perm[a:b]] = k
    return labels


def time_split(times: np.ndarray, ratios: Sequence[float]) -> tuple[np.ndarray, ...]:
    """Split rows by time: the earliest ``ratios[0]`` of rows first, the latest last.

    The sort is stable, so rows with equal times are ordered by row index; a cut that falls
    inside a run of equal times splits that run by row order.

    Args:
        times: ``(N,)`` sortable timestamps (numbers or ``datetime64``); no NaN.
        ratios: Fractions per part, must sum to 1.

    Returns:
        One int64 index array per ratio, each sorted ascending by row index.
    """
    t = np.asarray(times).reshape(-1)
    if t.dtype.kind == "f" and np.isnan(t).any():
        raise ValueError("times contain NaN")
    cuts = cut_points(t.size, ratios)
    order = np.argsort(t, kind="stable")
    return tuple(np.sort(order[a:b]) for a, b in zip(cuts[:-1], cuts[1:], strict=True))


def leave_last_split(
    users: np.ndarray, times: np.ndarray | None = None, n_last: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Hold out each user's ``n_last`` latest interactions.

    Rows are ordered per user by time, ties in time broken by row order (the later row counts
    as later). A user with ``n_last`` or fewer interactions keeps all of them in train, so
    every test user also has training history (with ``n_last=1``: users with a single
    interaction stay in train).

    Args:
        users: ``(N,)`` user key per row (any sortable dtype).
        times: ``(N,)`` timestamps, or ``None`` to use row order as time.
        n_last: Interactions per user to hold out (>= 1).

    Returns:
        ``(train_idx, test_idx)`` int64 arrays, each sorted ascending; together a partition of
        ``range(N)``. ``test_idx`` holds exactly ``n_last`` rows of every user with more than
        ``n_last`` rows.
    """
    if n_last < 1:
        raise ValueError(f"n_last must be >= 1, got {n_last}")
    u = np.asarray(users).reshape(-1)
    n = u.size
    if times is None:
        t = np.arange(n)
    else:
        t = np.asarray(times).reshape(-1)
        if t.shape != u.shape:
            raise ValueError(f"users {u.shape} and times {t.shape} differ in length")
        if t.dtype.kind == "f" and np.isnan(t).any():
            raise ValueError("times contain NaN")
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy()
    rows = np.arange(n, dtype=np.int64)
    order = np.lexsort((rows, t, u))  # by user, then time, then row
    u_sorted = u[order]
    new_user = np.empty(n, dtype=bool)
    new_user[0] = True
    np.not_equal(u_sorted[1:], u_sorted[:-1], out=new_user[1:])
    starts = np.flatnonzero(new_user)
    sizes = np.diff(np.append(starts, n))  # (n_users,)
    group_end = np.repeat(starts + sizes, sizes)  # exclusive end of each row's user run
    from_end = group_end - 1 - rows  # 0 for the user's latest row (positions in sorted order)
    in_test = (from_end < n_last) & (np.repeat(sizes, sizes) > n_last)
    test_idx = np.sort(order[in_test])
    train_idx = np.sort(order[~in_test])
    return train_idx, test_idx


def _column_numpy(table: pa.Table, name: str, what: str) -> np.ndarray:
    if name not in table.column_names:
        raise ValueError(f"{what} column {name!r} not in table columns {table.column_names}")
    col = table.column(name)
    if col.null_count:
        raise ValueError(f"{what} column {name!r} has {col.null_count} missing values")
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        # integer codes sort and compare faster than Python strings
        col = pc.dictionary_encode(col.combine_chunks()).indices
    return col.to_numpy()


def split_table(
    table: pa.Table,
    kind: str,
    *,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    time_column: str = "time",
    user_column: str = "user",
    n_last: int = 1,
    n_valid_last: int = 1,
) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Split a table into ``(train, valid, test)``.

    Args:
        table: Raw rows.
        kind: ``"random"`` (by ``ratios`` and ``seed``), ``"time"`` (by ``ratios`` over
            ``time_column``) or ``"leave_last"`` (per ``user_column``: the latest ``n_last``
            rows to test, then the next latest ``n_valid_last`` to valid; ``time_column`` is
            used when present, else row order).
        ratios: ``(train, valid, test)`` fractions for random/time; must sum to 1.
        seed: Seed for ``random``.
        time_column: Timestamp column for ``time`` and ``leave_last``.
        user_column: User column for ``leave_last``.
        n_last: Test rows per user for ``leave_last``.
        n_valid_last: Validation rows per user for ``leave_last`` (0: empty validation).

    Returns:
        Three tables with the source's columns; each keeps the source row order.
    """
    if kind == "random":
        parts = random_split(table.num_rows, _three(ratios), seed)
    elif kind == "time":
        parts = time_split(_column_numpy(table, time_column, "time"), _three(ratios))
    elif kind == "leave_last":
        users = _column_numpy(table, user_column, "user")
        times = (
            _column_numpy(table, time_column, "time") if time_column in table.column_names else None
        )
        rest, test = leave_last_split(users, times, n_last)
        if n_valid_last > 0:
            sub_times = None if times is None else times[rest]
            train_pos, valid_pos = leave_last_split(users[rest], sub_times, n_valid_last)
            train, valid = rest[train_pos], rest[valid_pos]
        else:
            train, valid = rest, np.zeros(0, dtype=np.int64)
        parts = (train, valid, test)
    else:
        raise ValueError(f"unknown split kind {kind!r}; choose from {SPLIT_KINDS}")
    log.info("%s split: train %d, valid %d, test %d rows", kind, *(len(p) for p in parts))
    return tuple(table.take(pa.array(p, type=pa.int64())) for p in parts)  # type: ignore[return-value]


def _three(ratios: Sequence[float]) -> Sequence[float]:
    if len(ratios) != 3:
        raise ValueError(f"split_table needs three ratios (train, valid, test), got {ratios}")
    return ratios
