"""Inputs cut into parts (files, Parquet row groups) and shared out among the ranks of a job.

With ``recforge train --nproc N`` (or several machines) and a folder of CSV/Parquet files, or a
Parquet file of several row groups, each rank reads only its own parts, so reading and
preprocessing take 1/N of the time instead of being repeated (:func:`recforge.data.pipeline.
encode_per_rank`). The pieces here know nothing of torch: the collectives come in through the
:class:`Exchange` protocol (:class:`recforge.distributed.ddp.RankExchange` over
``torch.distributed``; a thread-based one in the tests).

* :func:`list_parts`: the files of an input, in path order; when there are fewer files than
  ranks, Parquet files are cut into their row groups.
* :func:`assign_parts`: each rank gets a *contiguous* run of parts, balanced by bytes, so the
  ranks' rows concatenated in rank order are the input's rows in file order, the order one
  process reads (the encoded arrays are therefore identical).
* :func:`combine_fit`: the ``combine`` hook of :meth:`~recforge.data.encode.preprocess.
  Preprocessor.fit_stream` that adds every rank's vocabulary counts and numeric summaries to
  each rank's, in rank order, so all ranks derive the same state: the fit of the whole data.
* :func:`all_gather_table` / :func:`all_gather_arrays`: Arrow IPC and ``.npy`` bytes through
  :meth:`Exchange.all_gather_bytes` (no pickle).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recforge.data.read.readers import read_table
from recforge.data.read.stream import (
    NumericSummary,
    ValueCounts,
    input_files,
    iter_chunks,
    stream_format,
)
from recforge.features import Schema

log = logging.getLogger(__name__)


class Exchange(Protocol):
    """The collectives the ranks of a job read their data with.

    Attributes:
        rank: This process's rank.
        size: Number of ranks.
    """

    rank: int
    size: int

    def all_gather_bytes(self, data: bytes) -> list[bytes]:
        """Every rank's ``data``, in rank order (a collective: all ranks call it)."""
        ...


@dataclass(frozen=True)
class Part:
    """A file, or some row groups of a Parquet file, that one rank reads.

    Attributes:
        path: The file.
        row_groups: The (contiguous) row groups of a Parquet file; ``None`` for the whole file.
        nbytes: Its size on disk (the row groups' compressed size), to balance the ranks.
    """

    path: Path
    row_groups: tuple[int, ...] | None
    nbytes: int

    def describe(self) -> str:
        """``file`` or ``file[row groups a-b]``."""
        if self.row_groups is None:
            return self.path.name
        lo, hi = self.row_groups[0], self.row_groups[-1]
        return f"{self.path.name}[row groups {lo}-{hi}]" if hi > lo else f"{self.path.name}[{lo}]"

    def chunks(self, schema: Schema, chunk_rows: int) -> Iterator[pa.Table]:
        """The part's rows as checked, typed chunks (:func:`~recforge.data.read.stream.
        iter_chunks`)."""
        return iter_chunks(self.path, schema, chunk_rows, row_groups=self.row_groups)

    def read(self, schema: Schema, chunk_rows: int) -> pa.Table:
        """The part's rows, checked and typed: a whole file as one process reads it
        (:func:`~recforge.data.read.readers.read_table`), row groups through :meth:`chunks`."""
        if self.row_groups is None:
            return read_table(self.path, schema=schema)
        return pa.concat_tables(list(self.chunks(schema, chunk_rows)))


def list_parts(path: str | Path, ranks: int) -> list[Part]:
    """The parts of an input (a file or a folder), in the order one process reads them.

    One part per file while there are at least ``ranks`` files; otherwise each Parquet file
    is cut into its row groups (CSV files stay whole: a text file cannot be split without
    reading it).
    """
    files = input_files(path)
    whole = [Part(f, None, f.stat().st_size) for f in files]
    if len(files) >= ranks:
        return whole
    parts: list[Part] = []
    for part in whole:
        if stream_format(part.path) != "parquet":
            parts.append(part)
            continue
        meta = pq.ParquetFile(part.path).metadata
        if meta.num_row_groups < 2:
            parts.append(part)
            continue
        for g in range(meta.num_row_groups):
            parts.append(Part(part.path, (g,), max(meta.row_group(g).total_byte_size, 1)))
    return parts


def assign_parts(parts: Sequence[Part], rank: int, size: int) -> list[Part]:
    """Rank ``rank``'s contiguous run of ``parts`` (balanced by bytes; may be empty).

    With no more parts than ranks, rank ``r`` reads part ``r``. Otherwise a part belongs to the
    rank in whose 1/``size`` of the total bytes its middle falls, so the runs partition
    ``parts`` in order. Adjacent row groups of one file are merged into one part (one reader).
    """
    if len(parts) <= size:  # one part each; the last ranks read nothing
        return list(parts[rank : rank + 1])
    sizes = np.asarray([max(p.nbytes, 1) for p in parts], dtype=np.float64)
    middles = np.cumsum(sizes) - sizes / 2
    total = float(sizes.sum())
    lo, hi = (
        int(np.searchsorted(middles, total * r / size, side="right")) for r in (rank, rank + 1)
    )
    mine = list(parts[lo:hi] if rank < size - 1 else parts[lo:])
    merged: list[Part] = []
    for part in mine:
        last = merged[-1] if merged else None
        if last is not None and last.path == part.path and last.row_groups and part.row_groups:
            groups = last.row_groups + part.row_groups
            merged[-1] = Part(part.path, groups, last.nbytes + part.nbytes)
        else:
            merged.append(part)
    return merged


# ---- bytes through the exchange --------------------------------------------------------------
def table_bytes(table: pa.Table) -> bytes:
    """``table`` as Arrow IPC stream bytes."""
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def bytes_table(data: bytes) -> pa.Table:
    """The table :func:`table_bytes` wrote."""
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


def all_gather_table(exchange: Exchange, table: pa.Table) -> list[pa.Table]:
    """Every rank's ``table``, in rank order."""
    return [bytes_table(b) for b in exchange.all_gather_bytes(table_bytes(table))]


def arrays_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """Named arrays as ``.npz`` bytes (uncompressed ``.npy`` members, no pickle)."""
    sink = io.BytesIO()
    np.savez(sink, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
    return sink.getvalue()


def bytes_arrays(data: bytes) -> dict[str, np.ndarray]:
    """The arrays :func:`arrays_bytes` wrote."""
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def all_gather_arrays(exchange: Exchange, arrays: dict[str, np.ndarray]) -> list[dict]:
    """Every rank's named arrays, in rank order."""
    return [bytes_arrays(b) for b in exchange.all_gather_bytes(arrays_bytes(arrays))]


def all_gather_ints(exchange: Exchange, values: Sequence[int]) -> np.ndarray:
    """``(size, len(values))`` int64: every rank's ``values``."""
    gathered = all_gather_arrays(exchange, {"v": np.asarray(values, dtype=np.int64)})
    return np.stack([g["v"] for g in gathered])


# ---- the fit of the whole data from each rank's rows ---------------------------------------
def combine_fit(
    exchange: Exchange,
) -> Callable[[dict[str, ValueCounts], dict[str, NumericSummary]], None]:
    """``Preprocessor.fit_stream``'s ``combine`` hook that adds every other rank's counts.

    Each rank's accumulators are gathered field by field (in sorted order, the same on every
    rank) and merged in rank order, so every rank ends with the same vocabulary counts and
    numeric summaries, those of all ranks' rows together: the vocabularies (ordered by count,
    then value) equal the one-process fit exactly, min/max and exact bucket edges too, mean/std
    up to float rounding (the moments are combined rank by rank).

    Args:
        exchange: The ranks' collectives.
    """

    def combine(counters: dict[str, ValueCounts], summaries: dict[str, NumericSummary]) -> None:
        for name in sorted(counters):
            merged = ValueCounts()
            for table in all_gather_table(exchange, counters[name].to_table()):
                merged.merge(table)
            counters[name] = merged
        for name in sorted(summaries):
            own = summaries[name]
            total = NumericSummary(
                own.log_transform, own.quantiles, own.exact_limit, own.sample_size
            )
            for table in all_gather_table(exchange, own.to_table()):
                total.merge(table)
            summaries[name] = total

    return combine
