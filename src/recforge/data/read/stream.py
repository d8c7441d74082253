"""Chunked readers for CSV/TSV and Parquet files that do not fit in memory.

:func:`iter_chunks` yields a file as a sequence of ``pyarrow.Table`` chunks of at most
``chunk_rows`` rows, typed and checked exactly as
:func:`recforge.data.read.readers.read_table` types
and checks the whole file: categorical and sequence columns as strings, numeric columns and the
label as float64, and the same :class:`~recforge.data.read.readers.DataError` (file, physical line
or row, column, value) for a bad value, a malformed row or a missing column. Each chunk carries
its offset in its schema metadata, so the checks that run on a chunk report the line of the
file, not of the chunk. Compressed copies (``.gz``, ``.bz2``, ``.zst``) are decompressed on
the fly; ``.xz`` is decompressed into memory by :func:`~recforge.data.read.readers.open_stream`
(Arrow has no xz codec), so it is not bounded.

Memory: one chunk plus one parser block at a time. CSV type inference for columns the schema
does not declare (the time column) happens on the first block, as in the in-memory reader.

Only single-character-delimited text and Parquet stream; libfm files and multi-character
separators (MovieLens ``::``) are read whole by ``read_table``.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import re
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from recforge.data.read.readers import (
    _META_FORMAT,
    _META_HEADER,
    _META_SOURCE,
    DataError,
    _column_types,
    _header_names,
    check_columns,
    check_header_names,
    check_numeric,
    check_text_encoding,
    empty_file_error,
    format_of,
    locate_parse_error,
    open_stream,
    validate_labels,
)
from recforge.features import Schema

log = logging.getLogger(__name__)

STREAM_FORMATS = ("csv", "tsv", "parquet")
DEFAULT_CHUNK_ROWS = 50_000
_BLOCK_SIZE = 1 << 20


_ARROW_DEFAULT_DECAY_MS = 1000  # jemalloc's dirty-page decay in Arrow's build


@contextlib.contextmanager
def bounded_arrow_memory() -> Iterator[None]:
    """Return freed Arrow memory to the OS promptly while streaming, where the pool allows it.

    Arrow's allocator keeps freed pages for reuse, so a chunk loop's resident memory settles
    above what one chunk needs. Measured on a 1M-row click log with 50k-row chunks, anonymous
    memory above the imports was 205 MiB with Arrow's default pool (mimalloc) and 92 MiB, for
    about 1.5x the time, with its jemalloc pool and a dirty-page decay of 0. The pool can only be
    chosen before pyarrow is imported (``ARROW_DEFAULT_MEMORY_POOL=jemalloc``); when it is
    jemalloc, this block sets the decay to 0 for its duration. Either way, unused memory is
    released at the end.
    """
    pool = pa.default_memory_pool()
    jemalloc = pool.backend_name == "jemalloc"
    if jemalloc:
        pa.jemalloc_set_decay_ms(0)
    try:
        yield
    finally:
        if jemalloc:
            pa.jemalloc_set_decay_ms(_ARROW_DEFAULT_DECAY_MS)
        release_memory()


def release_memory() -> None:
    """Hand freed memory back to the OS: Arrow's pool, then the C heap (glibc ``malloc_trim``).

    Both allocators keep freed pages for reuse, so after a raw table is dropped the process
    stays as large as at its peak. Measured after encoding a 1M-row, 40-column CSV
    (``benchmarks/results/memory_i16.md``): resident memory 1170 MB before, 496 MB after.
    """
    pa.default_memory_pool().release_unused()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing more to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def stream_format(path: str | Path, fmt: str | None = None) -> str | None:
    """The format a file streams as (``csv``, ``tsv`` or ``parquet``), or ``None``.

    A folder streams as the one format all its data files (:func:`input_files`) share.
    """
    if fmt is None and Path(path).is_dir():
        kinds = {stream_format(f) for f in input_files(path)}
        return kinds.pop() if len(kinds) == 1 else None
    found = (fmt or format_of(path) or "").lower()
    return found if found in STREAM_FORMATS else None


def input_files(path: str | Path) -> list[Path]:
    """The data files of an input: the file itself, or a folder's files in path order.

    A folder (a Parquet dataset, a folder of CSV parts) is read as the concatenation of its
    files, in its subfolders too, sorted by relative path; hidden and ``_``-prefixed names
    (``_SUCCESS``, ``_metadata``, ``.crc`` files) are skipped.

    Raises:
        DataError: A folder without data files.
    """
    path = Path(path)
    if not path.is_dir():
        return [path]
    files = sorted(
        q
        for q in path.rglob("*")
        if q.is_file()
        and not any(part.startswith((".", "_")) for part in q.relative_to(path).parts)
    )
    if not files:
        raise DataError(path, "the folder holds no data files")
    return files


def wanted_columns(schema: Schema) -> list[str]:
    """Source columns, label and time column of ``schema``: what preprocessing reads."""
    cols = schema.source_columns(with_label=True)
    if schema.time_column:
        cols.append(schema.time_column)
    return list(dict.fromkeys(cols))


def iter_chunks(
    path: str | Path,
    schema: Schema | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    *,
    columns: Sequence[str] | None = None,
    fmt: str | None = None,
    types: dict[str, pa.DataType] | None = None,
    block_size: int = _BLOCK_SIZE,
    row_groups: Sequence[int] | None = None,
) -> Iterator[pa.Table]:
    """Yield ``path`` as tables of at most ``chunk_rows`` rows, in file order.

    Args:
        path: A CSV/TSV (optionally compressed) or Parquet file, or a folder of them
            (:func:`input_files`, one file after the other).
        schema: When given, columns are typed and every chunk is checked as
            ``read_table(path, schema=schema)`` checks the whole file; by default only the
            schema's columns (and the time column when the file has it) are read.
        chunk_rows: Rows per chunk (the last one may be shorter).
        columns: Columns to read instead of the schema's (all when both are ``None``).
        fmt: ``csv``, ``tsv`` or ``parquet``; by default from the extension.
        types: CSV column types (default: from the schema).
        block_size: Bytes the CSV parser reads at a time.
        row_groups: Only these row groups of a Parquet file (errors give rows of the file).

    Yields:
        Tables whose metadata locates their rows in the file (see the module docstring).

    Raises:
        DataError: Empty file, malformed row, missing column, bad number or label.
    """
    path = Path(path)
    if path.is_dir():
        for file in input_files(path):
            yield from iter_chunks(
                file, schema, chunk_rows, columns=columns, fmt=fmt, types=types,
                block_size=block_size,
            )  # fmt: skip
        return
    kind = stream_format(path, fmt)
    if kind is None:
        raise DataError(path, f"cannot stream this format (streaming reads {STREAM_FORMATS})")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    if row_groups is not None and kind != "parquet":
        raise ValueError(f"{path}: row_groups needs a Parquet file")
    if columns is None and schema is not None:
        columns = wanted_columns(schema)
    types = _column_types(schema) if types is None else types
    yield from _chunks(path, kind, schema, columns, types, chunk_rows, block_size, row_groups)


def count_rows(path: str | Path, fmt: str | None = None, column: str | None = None) -> int:
    """Data rows of ``path`` (a file or a folder): Parquet from its metadata, text by a
    streaming parse."""
    if Path(path).is_dir():
        return sum(count_rows(f, fmt, column) for f in input_files(path))
    kind = stream_format(path, fmt)
    if kind == "parquet":
        return int(pq.ParquetFile(path).metadata.num_rows)
    if column is None:
        sep = "\t" if kind == "tsv" else ","
        column = _header_names(Path(path), sep, True, "utf8")[0]
    types = {column: pa.string()}
    chunks = _chunks(Path(path), kind or "csv", None, [column], types, 1 << 16, _BLOCK_SIZE)
    return sum(t.num_rows for t in chunks)


class FirstSeenIndex:
    """Consistent integer codes for values seen chunk by chunk, in order of first appearance.

    Equals ``pc.dictionary_encode(whole_column).indices`` (nulls -> -1) computed on the
    concatenation of all chunks. Memory: the distinct values seen so far.
    """

    def __init__(self) -> None:
        self._known = pa.array([], pa.string())

    def __len__(self) -> int:
        return len(self._known)

    @property
    def values(self) -> pa.Array:
        """The distinct values seen so far, in order of first appearance (value ``i`` has
        code ``i``)."""
        return self._known

    def codes(self, values: pa.ChunkedArray | pa.Array) -> np.ndarray:
        """int64 codes of ``values`` (strings); new values get the next codes."""
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        encoded = pc.dictionary_encode(values)
        uniques = encoded.dictionary.cast(pa.string())
        pos = pc.index_in(uniques, value_set=self._known).fill_null(-1)
        mapping = pos.to_numpy(zero_copy_only=False).astype(np.int64)
        new = mapping < 0
        if new.any():
            mapping[new] = len(self._known) + np.arange(int(new.sum()))
            fresh = uniques.filter(pa.array(new))
            self._known = pa.concat_arrays([self._known, fresh])
        indices = encoded.indices
        nulls = indices.is_null().to_numpy(zero_copy_only=False)
        out = (
            mapping[indices.fill_null(0).to_numpy(zero_copy_only=False)]
            if len(mapping)
            else (np.zeros(len(indices), np.int64))
        )
        out[nulls] = -1
        return out


# ---- bounded accumulators for a one-pass fit -------------------------------------------------
class ValueCounts:
    """Distinct values and their counts, merged from per-chunk ``value_counts``.

    Per-chunk counts are kept as small tables and combined with a ``group_by`` sum whenever the
    pending rows outgrow the merged table, so memory stays proportional to the number of
    distinct values (inherent to an exact vocabulary), not to the number of rows.

    Args:
        merge_rows: Pending (value, count) rows that trigger a merge at the least.
    """

    def __init__(self, merge_rows: int = 1 << 20) -> None:
        self.merge_rows = merge_rows
        self._merged: pa.Table | None = None
        self._pending: list[pa.Table] = []
        self._pending_rows = 0

    def add(self, values: pa.ChunkedArray | pa.Array) -> None:
        """Count ``values`` (strings; nulls are not counted)."""
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks() if values.num_chunks else pa.array([], pa.string())
        counts = pc.value_counts(pc.drop_null(values.cast(pa.string())))
        self.add_counts(counts.field("values"), counts.field("counts"))

    def add_counts(self, values: pa.Array, counts: pa.Array) -> None:
        """Add distinct ``values`` (strings, no nulls) already counted ``counts`` times."""
        self._pending.append(pa.table({"v": values.cast(pa.string()), "c": counts}))
        self._pending_rows += len(values)
        merged = self._merged.num_rows if self._merged is not None else 0
        if self._pending_rows > max(self.merge_rows, merged):
            self._merge()

    def _merge(self) -> None:
        parts = ([self._merged] if self._merged is not None else []) + self._pending
        if len(parts) == 1:  # one chunk's value_counts are distinct already (the in-memory fit)
            self._merged = parts[0]
        elif parts:
            table = pa.concat_tables(parts).group_by("v").aggregate([("c", "sum")])
            self._merged = pa.table({"v": table.column("v"), "c": table.column("c_sum")})
        self._pending, self._pending_rows = [], 0

    def to_table(self) -> pa.Table:
        """The counts so far as a table ``(v: string, c: int64)``, distinct values."""
        values, counts = self.result()
        return pa.table({"v": values.cast(pa.string()), "c": counts.cast(pa.int64())})

    def merge(self, table: pa.Table) -> None:
        """Add the counts another accumulator's :meth:`to_table` returned (another process's)."""
        if table.num_rows:
            self._pending.append(pa.table({"v": table.column("v"), "c": table.column("c")}))
            self._pending_rows += table.num_rows

    def result(self) -> tuple[pa.Array, pa.Array]:
        """``(values, counts)`` over everything added (order unspecified)."""
        self._merge()
        if self._merged is None:
            return pa.array([], pa.string()), pa.array([], pa.int64())
        return self._merged.column("v").combine_chunks(), self._merged.column("c").combine_chunks()


class NumericSummary:
    """Running mean/std/min/max of transformed values and quantiles of raw values.

    Moments are combined per chunk (Chan et al.'s parallel variance), so they equal the
    in-memory ``x.mean()``/``x.std()`` up to float rounding (~1e-15 relative), min and max
    exactly. Quantiles are exact while the column has at most ``exact_limit`` distinct values
    (their counts are kept and merged, and numpy's linear interpolation is reproduced on the
    order statistics); beyond that the summary falls back to a uniform sample of
    ``sample_size`` values (bottom-k of seeded random keys) and the quantiles are approximate.

    Args:
        log_transform: Moments over ``log1p(max(x, 0))`` (the ``log`` transform).
        quantiles: Whether quantiles will be asked for (bucketed fields).
        exact_limit: Most distinct values kept for exact quantiles.
        sample_size: Size of the fallback sample.
        seed: Seed of the sample keys.
    """

    def __init__(
        self,
        log_transform: bool = False,
        quantiles: bool = False,
        exact_limit: int = 1_000_000,
        sample_size: int = 1 << 17,
        seed: int = 0,
    ) -> None:
        self.log_transform, self.exact_limit, self.sample_size = (
            log_transform,
            exact_limit,
            sample_size,
        )
        self.n, self.mean, self.m2 = 0, 0.0, 0.0
        self.min, self.max = np.inf, -np.inf
        self.quantiles = quantiles
        self.exact = quantiles
        self._uniq: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending = 0
        self._distinct = 0
        self._rng = np.random.default_rng(seed)
        self._sample = np.zeros(0)
        self._keys = np.zeros(0)

    def add(self, raw: np.ndarray) -> None:
        """Add filled raw values (float64, finite)."""
        if not len(raw):
            return
        x = np.log1p(np.clip(raw, 0, None)) if self.log_transform else raw
        n_b, mean_b = len(x), float(x.mean())
        m2_b = float(np.square(x - mean_b).sum())
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * self.n * n_b / n
        self.n = n
        self.min, self.max = min(self.min, float(x.min())), max(self.max, float(x.max()))
        if self.quantiles:
            self._add_sample(raw)
        if self.exact:
            self._uniq.append(np.unique(raw, return_counts=True))
            self._pending += len(self._uniq[-1][0])
            if self._pending > max(min(1 << 18, self.exact_limit), self._distinct):
                self._merge()

    def _add_sample(self, raw: np.ndarray) -> None:
        keys = np.concatenate([self._keys, self._rng.random(len(raw))])
        values = np.concatenate([self._sample, raw])
        if len(keys) > self.sample_size:
            keep = np.argpartition(keys, self.sample_size - 1)[: self.sample_size]
            keys, values = keys[keep], values[keep]
        self._keys, self._sample = keys, values

    def _merge(self) -> None:
        if len(self._uniq) > 1:
            values = np.concatenate([u for u, _ in self._uniq])
            counts = np.concatenate([c for _, c in self._uniq])
            uniq, inverse = np.unique(values, return_inverse=True)
            total = np.bincount(inverse, weights=counts, minlength=len(uniq)).astype(np.int64)
            self._uniq = [(uniq, total)]
        self._distinct = len(self._uniq[0][0]) if self._uniq else 0
        self._pending = 0
        if self._distinct > self.exact_limit:
            log.warning(
                "%d distinct values exceed exact_limit=%d: quantiles from a %d-value sample",
                self._distinct,
                self.exact_limit,
                self.sample_size,
            )
            self.exact, self._uniq = False, []

    def to_table(self) -> pa.Table:
        """The summary as a one-row table, for :meth:`merge` in another process."""
        if self.exact:
            self._merge()
        uniq = self._uniq[0] if self.exact and self._uniq else (np.zeros(0), np.zeros(0, np.int64))
        row = {
            "n": [self.n], "mean": [self.mean], "m2": [self.m2], "min": [self.min],
            "max": [self.max], "exact": [self.exact],
            "values": [uniq[0].astype(np.float64)], "counts": [uniq[1].astype(np.int64)],
            "sample": [self._sample.astype(np.float64)], "keys": [self._keys.astype(np.float64)],
        }  # fmt: skip
        return pa.table(row)

    def merge(self, table: pa.Table) -> None:
        """Add another summary's :meth:`to_table`: as if its values had been added here.

        Moments combine as in :meth:`add` (Chan et al.), min/max exactly, exact quantile counts
        by value; a side that fell back to sampling makes the merged quantiles sampled too
        (the two samples are merged by their keys).
        """
        other = table.to_pylist()[0]
        n_b = int(other["n"])
        if not n_b:
            return
        mean_b, m2_b = float(other["mean"]), float(other["m2"])
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * self.n * n_b / n
        self.n = n
        self.min, self.max = min(self.min, other["min"]), max(self.max, other["max"])
        if not self.quantiles:
            return
        keys = np.concatenate([self._keys, np.asarray(other["keys"], np.float64)])
        sample = np.concatenate([self._sample, np.asarray(other["sample"], np.float64)])
        if len(keys) > self.sample_size:
            keep = np.argpartition(keys, self.sample_size - 1)[: self.sample_size]
            keys, sample = keys[keep], sample[keep]
        self._keys, self._sample = keys, sample
        if self.exact and not other["exact"]:
            self.exact, self._uniq = False, []
        elif self.exact:
            values = np.asarray(other["values"], np.float64)
            self._uniq.append((values, np.asarray(other["counts"], np.int64)))
            self._merge()

    def state(self) -> dict[str, float]:
        """``mean``, ``std``, ``min``, ``max`` as in-memory ``Preprocessor.fit`` stores them."""
        if not self.n:
            return {"mean": 0.0, "std": 1.0, "min": 0.0, "max": 1.0}
        std = float(np.sqrt(max(self.m2, 0.0) / self.n))
        return {"mean": self.mean, "std": std, "min": self.min, "max": self.max}

    def quantile(self, qs: np.ndarray) -> np.ndarray:
        """``np.quantile(all_raw_values, qs)`` (exact, or from the sample after a fallback)."""
        if not self.n:
            return np.zeros(0)
        if self.exact:
            self._merge()
        if not self.exact:
            return np.quantile(self._sample, qs)
        values, counts = self._uniq[0]
        cum = np.cumsum(counts)
        virtual = (self.n - 1) * np.asarray(qs, dtype=np.float64)
        prev = np.floor(virtual)
        gamma = virtual - prev
        low = prev.astype(np.int64)
        high = np.minimum(low + 1, self.n - 1)
        a = values[np.searchsorted(cum, low, side="right")]
        b = values[np.searchsorted(cum, high, side="right")]
        # numpy's _lerp: a + (b - a) t, computed from the upper end when t >= 0.5
        diff = b - a
        return np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)


# ---- internals -------------------------------------------------------------------------------
def _chunks(
    path: Path,
    kind: str,
    schema: Schema | None,
    columns: Sequence[str] | None,
    types: dict[str, pa.DataType],
    chunk_rows: int,
    block_size: int,
    row_groups: Sequence[int] | None = None,
) -> Iterator[pa.Table]:
    offset = 0  # rows of the file before the chunk
    if kind == "parquet":
        batches = _parquet_batches(path, columns, schema, chunk_rows, row_groups)
        header_lines = -1
        if row_groups:
            meta = pq.ParquetFile(path).metadata
            offset = sum(meta.row_group(g).num_rows for g in range(min(row_groups)))
    else:
        sep = "\t" if kind == "tsv" else ","
        batches = _csv_batches(path, sep, columns, schema, types, chunk_rows, block_size)
        header_lines = 1
    read = 0
    for table in _rechunk(batches, chunk_rows):
        meta = {
            _META_SOURCE: str(path).encode(),
            # records before this chunk's first row, so row_location() finds physical lines
            _META_HEADER: str(header_lines + offset if header_lines >= 0 else -1).encode(),
            _META_FORMAT: kind.encode(),
        }
        table = table.replace_schema_metadata(meta)
        if kind != "parquet":
            check_text_encoding(table, path, "utf8")
        if schema is not None:
            table = _check_chunk(table, schema, path, offset, first=read == 0, rows=kind)
        yield table
        offset += table.num_rows
        read += table.num_rows
    if read == 0 and row_groups is None:
        raise DataError(path, "no data rows", line=2 if header_lines == 1 else None)


def _rechunk(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """Regroup record batches into tables of exactly ``rows`` rows (the last one shorter)."""
    pending: list[pa.RecordBatch] = []
    have = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        have += batch.num_rows
        while have >= rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, rows)
            rest = table.slice(rows)
            pending, have = rest.to_batches(), rest.num_rows
    if have:
        yield pa.Table.from_batches(pending)


def _check_chunk(
    table: pa.Table, schema: Schema, path: Path, offset: int, *, first: bool, rows: str
) -> pa.Table:
    """The checks of ``read_table(schema=...)`` on one chunk; Parquet rows shifted by offset."""
    try:
        if first:
            check_columns(table, schema, path, require_label=schema.label in table.column_names)
        table = check_numeric(table, schema, path)
        validate_labels(table, schema, path)
    except DataError as exc:
        if rows == "parquet" and exc.row is not None:
            raise _shifted(exc, offset) from None
        raise
    return table


def _shifted(exc: DataError, offset: int) -> DataError:
    """``exc`` with its row number moved down by ``offset`` rows."""
    where = dict(line=exc.line, row=exc.row, column=exc.column, column_number=exc.column_number)
    prefix = str(DataError(exc.path, "", **where))[:-1]  # "<path>, row r, column ...: "
    message = str(exc)[len(prefix) :].lstrip()
    where["row"] = exc.row + offset  # type: ignore[operator]
    return DataError(exc.path, message, **where)


def _parquet_batches(
    path: Path,
    columns: Sequence[str] | None,
    schema: Schema | None,
    chunk_rows: int,
    row_groups: Sequence[int] | None = None,
) -> Iterator[pa.RecordBatch]:
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(path, f"not a readable Parquet file ({exc})") from None
    names = pf.schema_arrow.names
    if columns is not None:
        optional = {schema.time_column, schema.label} if schema is not None else set()
        missing = [c for c in columns if c not in names and c not in optional]
        if missing:
            raise DataError(
                path, f"required column is missing (found: {', '.join(names)})", column=missing[0]
            )
        columns = [c for c in columns if c in names]
    yield from pf.iter_batches(batch_size=chunk_rows, columns=columns, row_groups=row_groups)


def _csv_batches(
    path: Path,
    sep: str,
    columns: Sequence[str] | None,
    schema: Schema | None,
    types: dict[str, pa.DataType],
    chunk_rows: int,
    block_size: int,
    use_threads: bool = True,
    handler: Any = None,
) -> Iterator[pa.RecordBatch]:
    header = _header_names(path, sep, True, "utf8") if path.stat().st_size else []
    check_header_names(header, path, header_line=1)
    include = [c for c in columns if c in header] if columns is not None else []
    read = pacsv.ReadOptions(use_threads=use_threads, block_size=block_size)
    parse = pacsv.ParseOptions(delimiter=sep, invalid_row_handler=handler)
    convert = pacsv.ConvertOptions(
        column_types={k: v for k, v in types.items() if k in header}, include_columns=include
    )
    try:
        with open_stream(path) as fh:
            reader = pacsv.open_csv(
                fh, read_options=read, parse_options=parse, convert_options=convert
            )
            yield from reader
    except pa.ArrowInvalid as exc:
        text = str(exc)
        if "Empty CSV file" in text:
            raise empty_file_error(path) from None
        if handler is not None:
            raise
        if "CSV parse error" in text:
            locate_parse_error(
                path,
                lambda h: deque(
                    _csv_batches(path, sep, None, None, {}, 1, block_size, False, h), 0
                ),
                lambda: header,
            )
        match = re.search(r"In CSV column #(\d+): CSV conversion error", text)
        if match:
            bad = header[int(match.group(1))]
            # error path only: stream again with the column relaxed (a number column as text,
            # a text column as bytes); the chunk checks (check_numeric, check_text_encoding)
            # name the first bad value with its physical line
            relaxed = {**types, bad: pa.binary() if types.get(bad) == pa.string() else pa.string()}
            kind = "tsv" if sep == "\t" else "csv"
            deque(_chunks(path, kind, schema, columns, relaxed, chunk_rows, block_size), 0)
        raise DataError(path, text) from None
