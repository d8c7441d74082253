"""Fit feature encoders on the training split; transform every split identically.

Vocabularies (with a min-count threshold and OOV id 0), hashing, numeric fill/transform/bucket
boundaries and sequence truncation are all computed column-wise with pyarrow and numpy: there is
no per-row Python. The fitted state is saved beside the schema so serving encodes raw records
exactly as training did.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recforge.data.read.readers import (
    check_columns,
    check_numeric,
    located_error,
    validate_labels,
)
from recforge.data.read.stream import NumericSummary, ValueCounts
from recforge.features import CategoricalField, EncodedData, NumericField, Schema, SequenceField
from recforge.io import atomic_write, atomic_write_text

log = logging.getLogger(__name__)

_STATE_FILE = "preprocessor.json"
# Below this many rows a table's columns are encoded one after the other (threads cost more).
_PARALLEL_ROWS = 50_000
_STACK_BLOCK = 16_384
_VOCAB_FILE = "vocabularies.arrow"


def _map_columns(fn: Callable[[Any], Any], items: Sequence[Any], rows: int) -> list[Any]:
    """``[fn(x) for x in items]``, on a thread per core when the table is large.

    The per-column work is pyarrow compute and numpy, which release the GIL, so the columns of
    one table are hashed, counted and looked up in parallel. Results keep the items' order.
    """
    workers = min(len(items), os.cpu_count() or 1)
    if workers < 2 or rows < _PARALLEL_ROWS:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="recforge-encode") as pool:
        return list(pool.map(fn, items))


def _fill_blocks(
    sources: list[Callable[[int, int], np.ndarray]], dtype: type, rows: int
) -> np.ndarray:
    """A C-contiguous ``(rows, len(sources))`` matrix, column ``j`` of rows ``[a, b)`` being
    ``sources[j](a, b)``, written block by block of rows.

    No whole column is ever materialised: each block's values are computed and written while
    they are in cache (one ``np.stack`` of whole columns writes each with a stride of the whole
    row and misses the cache on every element), and the only full-size array is the output. The
    blocks are spread over a thread per core (the sources are numpy and pyarrow kernels, which
    release the GIL).
    """
    out = np.empty((rows, len(sources)), dtype=dtype)
    if not sources or not rows:
        return out

    def fill(start: int) -> None:
        stop = min(start + _STACK_BLOCK, rows)
        for j, source in enumerate(sources):
            out[start:stop, j] = source(start, stop)

    _map_columns(fill, range(0, rows, _STACK_BLOCK), rows)
    return out


def _unified(col: pa.ChunkedArray | pa.Array) -> tuple[pa.ChunkedArray, pa.Array]:
    """A categorical column as a dictionary-typed chunked array whose chunks share one string
    dictionary, and that dictionary.

    A dictionary-typed column (how :func:`~recforge.data.read.readers.read_table` reads the
    categorical columns of a CSV) is used as it is, its chunks' dictionaries unified if they
    differ; the strings are never materialised per row, so fitting counts codes and
    transforming looks up the (small) dictionary once and gathers. Any other column is
    normalised by :func:`_as_strings` and dictionary-encoded. Either way a value gets one id.
    """
    if isinstance(col, pa.Array):
        col = pa.chunked_array([col])
    if not (pa.types.is_dictionary(col.type) and pa.types.is_string(col.type.value_type)):
        col = pc.dictionary_encode(_as_strings(col))
    if col.num_chunks > 1 and not all(
        c.dictionary.equals(col.chunk(0).dictionary) for c in col.chunks[1:]
    ):
        col = pa.table({"c": col}).unify_dictionaries().column("c")
    dictionary = col.chunk(0).dictionary if col.num_chunks else pa.array([], pa.string())
    return col, dictionary


def _row_codes(col: pa.ChunkedArray, start: int = 0, stop: int | None = None) -> np.ndarray:
    """The dictionary codes of rows ``[start, stop)`` of a :func:`_unified` column; null -> -1."""
    part = col.slice(start, None if stop is None else stop - start)
    if part.num_chunks == 0:
        return np.zeros(0, np.int32)
    indices = pa.chunked_array([c.indices for c in part.chunks], pa.int32()).combine_chunks()
    return indices.fill_null(-1).to_numpy(zero_copy_only=False)


def _count_codes(dictionary: pa.Array, codes: np.ndarray) -> tuple[pa.Array, pa.Array]:
    """``(values, counts)`` of the values that occur (a dictionary may hold unused entries)."""
    counts = np.bincount(codes[codes >= 0], minlength=len(dictionary))
    used = counts > 0
    return dictionary.filter(pa.array(used)), pa.array(counts[used].astype(np.int64))


def _gather_ids(per_value: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Each row's id from its value's id (``per_value``); null rows -> 0 (OOV)."""
    if not len(per_value):
        return np.zeros(len(codes), np.int32)
    return np.where(codes >= 0, per_value[np.maximum(codes, 0)], 0).astype(np.int32)


def _as_strings(col: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray:
    """Categorical values as strings (ints and strings of the same value map to one id)."""
    if isinstance(col, pa.Array):
        col = pa.chunked_array([col])
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    if pa.types.is_floating(col.type):
        # 3.0 and "3" denote the same category; keep integral floats as integers
        values = col.to_numpy(zero_copy_only=False)
        finite = np.isfinite(values)
        if np.all(np.mod(values[finite], 1) == 0):
            as_int = pa.array(np.where(finite, values, 0).astype(np.int64), mask=~finite)
            return pa.chunked_array([as_int.cast(pa.string())])
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        col = col.cast(pa.string())
    return col


def _sequence_lists(col: pa.ChunkedArray, separator: str) -> pa.ListArray:
    """A sequence column as one list<string> array (splitting delimited strings)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_null(arr.type):  # a CSV column left empty on every row: no behaviours
        arr = arr.cast(pa.string())
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        arr = pc.if_else(pc.equal(arr, ""), pa.scalar(None, arr.type), arr)
        arr = pc.split_pattern(arr, separator)
    if not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)):
        raise ValueError(f"sequence column must hold lists or delimited strings, got {arr.type}")
    arr = arr.fill_null(pa.scalar([], arr.type))
    if isinstance(arr, pa.LargeListArray):
        arr = arr.cast(pa.list_(arr.type.value_type))
    values = _as_strings(arr.flatten())
    return pa.ListArray.from_arrays(_offsets(arr), values.combine_chunks())


def _check_aligned(table: pa.Table, schema: Schema, full: dict[str, np.ndarray]) -> None:
    """Sequences declared ``aligned_with`` each other have one length per row (before the
    ``max_len`` cut), else a DataError names the first such row and both fields."""
    for seq in schema.sequence_fields:
        if seq.aligned_with is None:
            continue
        other = schema.field(seq.aligned_with)
        bad = np.flatnonzero(full[seq.name] != full[other.name])
        if bad.size:
            row = int(bad[0])
            raise located_error(
                table, seq.source, row,
                f"{full[seq.name][row]} entries but {other.source!r} has "
                f"{full[other.name][row]} (the sequences are aligned: one entry per behaviour)",
            )  # fmt: skip


def _offsets(arr: pa.ListArray) -> pa.Array:
    lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
    offsets = np.zeros(len(arr) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.array(offsets)


def _hash_ids(values: pa.ChunkedArray, buckets: int) -> np.ndarray:
    """``1 + hash(value) % buckets`` computed on the distinct values only; nulls -> 0."""
    encoded = pc.dictionary_encode(values).combine_chunks()
    uniques = encoded.dictionary.to_numpy(zero_copy_only=False).astype(object)
    import pandas as pd  # only hashed fields need it: 40 MB resident not spent otherwise

    hashed = (pd.util.hash_array(uniques, categorize=False) % np.uint64(buckets)).astype(np.int64)
    nulls = encoded.indices.is_null().to_numpy(zero_copy_only=False)
    indices = encoded.indices.fill_null(0).to_numpy(zero_copy_only=False)
    out = (
        hashed[np.where(nulls, 0, indices)] + 1
        if len(uniques)
        else np.zeros(len(indices), np.int64)
    )
    out[nulls] = 0
    return out.astype(np.int32)


def _lookup(values: pa.ChunkedArray | pa.Array, vocab: pa.Array) -> np.ndarray:
    """Vocabulary position + 1 for known values; 0 for unknown or null."""
    idx = pc.index_in(values, value_set=vocab)
    if isinstance(idx, pa.ChunkedArray):
        idx = idx.combine_chunks()
    return (idx.fill_null(-1).to_numpy(zero_copy_only=False) + 1).astype(np.int32)


class Preprocessor:
    """Fits encoders on the training table and applies them to any table.

    Args:
        schema: The declarative schema (fitted or not).

    Attributes:
        schema: The fitted schema after :meth:`fit` (vocab sizes set).
    """

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.vocabs: dict[str, pa.Array] = {}
        self.numeric: dict[str, dict[str, Any]] = {}
        self.fitted = False
        self._kept: dict[str, Any] | None = None  # field -> vocabulary index (keep_lookups)

    @contextlib.contextmanager
    def keep_lookups(self) -> Iterator[Preprocessor]:
        """Within the block, every categorical field's vocabulary index is built once and reused
        by each :meth:`transform` (a ``pandas.Index`` hash table per field).

        ``pyarrow.compute.index_in`` rebuilds its hash table of the whole vocabulary on every
        call, which is nothing for one table but dominates a streamed encode of hundreds of
        chunks: on a 10M-row, 2.4 GB CSV (vocabularies up to 694k values) the encode took 231 s
        for 8M + 2M rows, against 9.5 s for the 1M-row file. The streaming pipeline encodes
        inside this block. The index costs memory in proportion to the vocabulary.
        """
        self._kept = {}
        try:
            yield self
        finally:
            self._kept = None

    def _vocab_ids(self, name: str, values: pa.Array) -> np.ndarray:
        """Vocabulary position + 1 of each of ``values`` (0: unknown or null)."""
        vocab = self.vocabs[name]
        kept = self._kept
        plain = pa.types.is_string(vocab.type) or pa.types.is_integer(vocab.type)
        if kept is None or values.type != vocab.type or not plain:
            return _lookup(values, vocab)
        index = kept.get(name)
        if index is None:
            import pandas as pd  # lazily: only a streamed encode pays its import

            index = kept[name] = pd.Index(vocab.to_numpy(zero_copy_only=False))
        ids = index.get_indexer(values.to_numpy(zero_copy_only=False)) + 1
        if values.null_count:
            ids[np.asarray(values.is_null())] = 0
        return ids.astype(np.int32)

    # ---- fit ---------------------------------------------------------------------------
    def fit(self, table: pa.Table) -> Preprocessor:
        """Fit vocabularies and numeric statistics on ``table`` (the training split only).

        The in-memory case of the one encode path: :meth:`fit_stream` over a single chunk, with
        exact bucket edges whatever the number of distinct values.
        """
        return self.fit_stream([table], exact_quantile_limit=max(table.num_rows, 1))

    def fit_stream(
        self,
        chunks: Iterable[pa.Table],
        exact_quantile_limit: int = 1_000_000,
        seed: int = 0,
        combine: Callable[[dict[str, ValueCounts], dict[str, NumericSummary]], None] | None = None,
    ) -> Preprocessor:
        """Fit on training rows given chunk by chunk, in one pass with bounded memory.

        The fitted state equals :meth:`fit` on the concatenated chunks: the same vocabularies
        in the same order (counts merged across chunks, ``min_count`` applied after the pass),
        numeric min/max exactly, mean/std up to float rounding, and bucket edges exactly while a
        bucketed column has at most ``exact_quantile_limit`` distinct values (approximate, from
        a uniform sample, beyond). Memory grows with the distinct values, not with the rows.

        Args:
            chunks: Tables with the schema's source columns (e.g. from
                :func:`recforge.data.read.stream.iter_chunks`), the training split only.
            exact_quantile_limit: Distinct values of a bucketed column kept for exact edges.
            seed: Seed of the fallback quantile sample.
            combine: Called with the counters (field -> :class:`ValueCounts`) and summaries
                (field -> :class:`NumericSummary`) after the last chunk, before the state is
                derived from them: the ranks of a job add each other's counts here
                (:mod:`recforge.data.read.parts`), so each fits on its own rows and all get
                the fit of the whole data.
        """
        schema = self.schema
        counters: dict[str, ValueCounts] = {}
        for f in schema.fields:
            own_vocab = isinstance(f, SequenceField) and not f.share_embedding_with
            if (isinstance(f, CategoricalField) and not f.hash_buckets) or own_vocab:
                counters[f.name] = ValueCounts()
        summaries = {
            f.name: NumericSummary(
                f.transform == "log", f.is_bucketed, exact_quantile_limit, seed=seed
            )
            for f in schema.fields
            if isinstance(f, NumericField)
        }
        rows = 0
        for i, table in enumerate(chunks):
            if i == 0:
                check_columns(table, schema, require_label=False)
            table = check_numeric(table, schema)
            rows += table.num_rows
            for seq in schema.sequence_fields:
                target = seq.share_embedding_with or seq.name
                if target in counters:
                    lists = _sequence_lists(table.column(seq.source), seq.separator)
                    counters[target].add(lists.flatten())

            def count(f: CategoricalField | NumericField, table: pa.Table = table) -> None:
                # one field per call: each counter/summary is touched by one thread only
                if isinstance(f, CategoricalField):
                    col, dictionary = _unified(table.column(f.source))
                    counters[f.name].add_counts(*_count_codes(dictionary, _row_codes(col)))
                else:
                    summaries[f.name].add(_numeric_values(table.column(f.source), f))

            fields = [
                f
                for f in schema.fields
                if (isinstance(f, CategoricalField) and f.name in counters)
                or isinstance(f, NumericField)
            ]
            _map_columns(count, fields, table.num_rows)
        if combine is not None:
            combine(counters, summaries)
        for f in schema.fields:
            if f.name in counters:
                values, counts = counters[f.name].result()
                vocab = vocab_from_counts(values, counts, f.min_count)  # type: ignore[union-attr]
                self.vocabs[f.name] = vocab
                schema = schema.replace_field(dataclasses.replace(f, vocab_size=len(vocab) + 1))
            elif isinstance(f, CategoricalField) and f.hash_buckets:
                schema = schema.replace_field(dataclasses.replace(f, vocab_size=f.hash_buckets + 1))
            elif isinstance(f, NumericField):
                summary = summaries[f.name]
                state: dict[str, Any] = dict(summary.state())
                if f.is_bucketed:
                    qs = summary.quantile(np.linspace(0, 1, f.buckets + 1)[1:-1])
                    state["edges"] = [float(e) for e in np.unique(qs)]
                self.numeric[f.name] = state
        self.schema = schema
        self.fitted = True
        log.info(
            "fitted preprocessor on %d rows: %s",
            rows,
            ", ".join(f"{f.name}={f.vocab_size}" for f in schema.sparse_fields),
        )
        return self

    # ---- transform ---------------------------------------------------------------------
    def transform(self, table: pa.Table, with_label: bool = True) -> EncodedData:
        """Encode ``table``; unknown categories map to the OOV id 0.

        Args:
            table: Raw rows with the schema's source columns.
            with_label: Require and encode the label column (False for serving).
        """
        if not self.fitted:
            raise RuntimeError("Preprocessor.transform called before fit")
        check_columns(table, self.schema, require_label=with_label)
        table = check_numeric(table, self.schema)
        if with_label:
            validate_labels(table, self.schema)
        n = table.num_rows
        schema = self.schema

        def sparse_source(f: CategoricalField | NumericField) -> Callable[[int, int], np.ndarray]:
            if isinstance(f, CategoricalField):
                col, dictionary = _unified(table.column(f.source))
                if f.hash_buckets:
                    per_value = _hash_ids(pa.chunked_array([dictionary]), f.hash_buckets)
                else:
                    per_value = self._vocab_ids(f.name, dictionary)
                return lambda a, b: _gather_ids(per_value, _row_codes(col, a, b))
            edges = np.asarray(self.numeric[f.name]["edges"], dtype=np.float64)
            col = table.column(f.source)
            return lambda a, b: (
                np.searchsorted(edges, _numeric_values(col.slice(a, b - a), f), side="right") + 1
            )

        def dense_source(f: NumericField) -> Callable[[int, int], np.ndarray]:
            col, state = table.column(f.source), self.numeric[f.name]
            return lambda a, b: _apply_numeric(_numeric_values(col.slice(a, b - a), f), f, state)

        # per column, the work done once (dictionary lookups) runs in parallel; then the rows
        sparse_sources = _map_columns(sparse_source, schema.sparse_fields, n)
        sparse = _fill_blocks(sparse_sources, np.int32, n)
        dense = _fill_blocks([dense_source(f) for f in schema.dense_fields], np.float32, n)
        sequences, lengths, full = {}, {}, {}
        for seq in schema.sequence_fields:
            lists = _sequence_lists(table.column(seq.source), seq.separator)
            full[seq.name] = pc.list_value_length(lists).to_numpy(zero_copy_only=False)
            vocab = self.vocabs[seq.share_embedding_with or seq.name]
            ids, lens = _pad_recent(lists, vocab, seq.max_len)
            sequences[seq.name], lengths[seq.name] = ids, lens
        _check_aligned(table, schema, full)
        label = np.zeros(n, dtype=np.float32)
        if with_label:
            label = table.column(schema.label).to_numpy(zero_copy_only=False).astype(np.float32)
        extras: dict[str, np.ndarray] = {}
        if schema.user_key is not None:
            user_col = _as_strings(table.column(schema.field(schema.user_key).source))
            # per-table user index for GAUC (unknown users keep their own group); null -> -1
            indices = pc.dictionary_encode(user_col).combine_chunks().indices.fill_null(-1)
            extras["group"] = indices.to_numpy(zero_copy_only=False).astype(np.int64)
        if schema.time_column is not None and schema.time_column in table.column_names:
            extras["time"] = np.asarray(
                table.column(schema.time_column).to_numpy(zero_copy_only=False)
            )
        return EncodedData(
            sparse=np.ascontiguousarray(sparse),
            dense=np.ascontiguousarray(dense),
            label=label,
            sequences=sequences,
            lengths=lengths,
            extras=extras,
        )

    def fit_transform(self, table: pa.Table) -> EncodedData:
        return self.fit(table).transform(table)

    # ---- persistence -------------------------------------------------------------------
    def encode_ids(self, field: str, values: pa.Array | pa.ChunkedArray | list[Any]) -> np.ndarray:
        """Raw values of one categorical field -> local ids exactly as :meth:`transform` does.

        Args:
            field: A categorical field (vocabulary or hashed) or a sequence with its own vocabulary.
            values: Raw values (strings or numbers; ``3`` and ``3.0`` and ``"3"`` are one id).

        Returns:
            ``int64`` ids: vocabulary position + 1, hashed bucket + 1, or 0 for unknown and null.
        """
        f = self.schema.field(field)
        arr = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(values)
        strings = _as_strings(arr)
        if isinstance(f, CategoricalField) and f.hash_buckets:
            return _hash_ids(strings, f.hash_buckets).astype(np.int64)
        if field not in self.vocabs:
            raise ValueError(f"field {field!r} has no fitted vocabulary")
        return _lookup(strings, self.vocabs[field]).astype(np.int64)

    def state_dict(self) -> dict[str, Any]:
        return {"schema": self.schema.to_dict(), "numeric": self.numeric, "fitted": self.fitted}

    def fingerprint(self) -> str:
        """A stable digest of the fitted state (used in cache keys)."""
        import hashlib

        h = hashlib.sha256(json.dumps(self.state_dict(), sort_keys=True).encode())
        for name in sorted(self.vocabs):
            h.update(name.encode())
            # concat_arrays re-bases a sliced array, so equal vocabularies hash equally
            for buf in pa.concat_arrays([self.vocabs[name]]).buffers():
                if buf is not None:
                    h.update(buf)
        return h.hexdigest()[:16]

    def save(self, folder: Path) -> None:
        """Write ``preprocessor.json`` and the vocabularies (Arrow IPC) into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        names = sorted(self.vocabs)
        field_col = pa.array(
            np.repeat(np.arange(len(names), dtype=np.int32), [len(self.vocabs[k]) for k in names])
        )
        values = (
            pa.concat_arrays([self.vocabs[k].cast(pa.string()) for k in names])
            if names
            else pa.array([], pa.string())
        )
        table = pa.table({"field": field_col, "value": values})
        table = table.replace_schema_metadata({"fields": json.dumps(names)})

        def write(tmp: Path) -> None:
            with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
                w.write_table(table)

        atomic_write(folder / _VOCAB_FILE, write)
        atomic_write_text(folder / _STATE_FILE, json.dumps(self.state_dict(), indent=1))

    @classmethod
    def load(cls, folder: Path) -> Preprocessor:
        folder = Path(folder)
        try:
            state = json.loads((folder / _STATE_FILE).read_text())
            with pa.memory_map(str(folder / _VOCAB_FILE)) as source:
                table = pa.ipc.open_file(source).read_all()
        except (OSError, ValueError, pa.ArrowInvalid) as exc:
            raise RuntimeError(f"{folder}: cannot read the saved preprocessor ({exc})") from exc
        pre = cls(Schema.from_dict(state["schema"]))
        pre.numeric = state["numeric"]
        pre.fitted = state["fitted"]
        names = json.loads(table.schema.metadata[b"fields"])
        field_ids = table.column("field").to_numpy()
        values = table.column("value").combine_chunks()
        bounds = np.searchsorted(field_ids, np.arange(len(names) + 1))
        for i, name in enumerate(names):
            pre.vocabs[name] = values.slice(bounds[i], bounds[i + 1] - bounds[i])
        return pre


# ---- helpers ---------------------------------------------------------------------------
def vocab_from_counts(values: pa.Array, freq: pa.Array, min_count: int) -> pa.Array:
    """Values with count >= min_count, most frequent first (ties by value), as a string array.

    Args:
        values: Distinct values.
        freq: Their counts.
        min_count: Rarer values are left out (they encode as OOV).
    """
    keep = pc.and_(pc.greater_equal(freq, min_count), pc.is_valid(values))
    table = pa.table({"v": values.filter(keep), "c": freq.filter(keep)})
    table = table.sort_by([("c", "descending"), ("v", "ascending")])
    return table.column("v").combine_chunks()


def _numeric_values(col: pa.ChunkedArray, f: NumericField) -> np.ndarray:
    """float64 values with nulls/NaN filled by ``f.fill_value``."""
    if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)):
        try:
            col = pc.cast(col, pa.float64())
        except pa.ArrowInvalid as exc:
            raise ValueError(f"column {f.source!r} is not numeric: {exc}") from exc
    x = col.to_numpy(zero_copy_only=False).astype(np.float64)
    x[~np.isfinite(x)] = f.fill_value
    return x


def _apply_numeric(x: np.ndarray, f: NumericField, state: dict[str, Any]) -> np.ndarray:
    if f.transform == "log":
        return np.log1p(np.clip(x, 0, None))
    if f.transform == "standard":
        return (x - state["mean"]) / (state["std"] or 1.0)
    if f.transform == "minmax":
        span = (state["max"] - state["min"]) or 1.0
        return np.clip((x - state["min"]) / span, 0.0, 1.0)
    return x


def _pad_recent(
    lists: pa.ListArray, vocab: pa.Array, max_len: int
) -> tuple[np.ndarray, np.ndarray]:
    """Keep each list's last ``max_len`` tokens, left-aligned and 0-padded; vectorised."""
    offsets = lists.offsets.to_numpy()
    flat_ids = _lookup(lists.values, vocab)
    ends = offsets[1:]
    starts = np.maximum(offsets[:-1], ends - max_len)
    lengths = (ends - starts).astype(np.int32)
    pos = starts[:, None] + np.arange(max_len)[None, :]
    valid = pos < ends[:, None]
    if len(flat_ids):
        ids = np.where(valid, flat_ids[np.minimum(pos, len(flat_ids) - 1)], 0).astype(np.int32)
    else:
        ids = np.zeros((len(lengths), max_len), dtype=np.int32)
    return ids, lengths
