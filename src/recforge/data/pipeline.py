"""From a :class:`DataConfig` to encoded train/valid/test arrays, cached on disk.

The cache key is computed *before* any raw data is read: the dataset name or file paths with
their sizes and modification times, the options, the split settings and the package version.
A second run with the same key memory-maps the saved arrays and the fitted preprocessor and
skips reading and preprocessing entirely. Cache folders are written to a temporary name and
renamed, so a failed run leaves nothing behind.

Data larger than memory (``dataset: files`` with CSV/TSV/Parquet inputs) is preprocessed in
chunks when :func:`use_streaming` says so: a one-pass fit on the training rows, then a pass that
encodes each chunk and appends it to ``.npy`` files in the cache folder, which training reads
memory-mapped. The arrays equal the in-memory path's (see :meth:`Preprocessor.fit_stream` for
the float-rounding caveats). Splits derived from the training file are computed on small
per-row columns (8 bytes a row for the row index, plus 8 for the time and user columns a
``time`` or ``leave_last`` split needs) through the same :func:`split_missing`, so streaming
supports every split kind and gives the same rows as the in-memory path.

An input may be a folder of CSV/TSV/Parquet files (read as their concatenation in path order).
In a job of several ranks (:func:`reads_per_rank`), each rank reads only its own files or
Parquet row groups (:mod:`recforge.data.read.parts`), fits on its rows, and the ranks add up
their vocabulary counts and numeric summaries, so every rank gets the preprocessor of the
whole data; each encodes its rows, and the encoded rows are exchanged so that every rank holds
the arrays one process would have encoded (:func:`encode_per_rank`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from recforge.config import DataConfig
from recforge.data.encode.preprocess import Preprocessor
from recforge.data.encode.split import random_split_labels, split_table
from recforge.data.read import parts, stream
from recforge.data.read.readers import compression_of, read_table
from recforge.data.sources import catalogue as datasets
from recforge.data.store import EncodedWriter, load_encoded, save_encoded
from recforge.features import EncodedData, Schema
from recforge.io import atomic_folder, cache_dir

log = logging.getLogger(__name__)
_SPLITS = ("train", "valid", "test")
# Options that choose how the arrays are computed, not what they are: left out of the cache key.
_HOW_KEYS = ("cache_dir", "streaming", "memory_budget_mb", "chunk_rows")
# Peak memory of the in-memory path per byte of (uncompressed) input: 902 MiB above the import
# baseline for a 94.5 MiB click-log CSV, 9.5x (benchmarks/results/bench_streaming.json), so
# inputs above budget / 10 stream. The streaming path's peak stayed flat (273 MiB above the
# import baseline with 50k-row chunks) from a 94.5 to a 543 MiB CSV.
IN_MEMORY_FACTOR = 10.0
# Assumed expansion of compressed inputs when estimating their size.
COMPRESSED_FACTOR = 5.0


@dataclass
class EncodedRun:
    """The fitted preprocessor and the encoded splits of one data configuration."""

    preprocessor: Preprocessor
    train: EncodedData
    valid: EncodedData
    test: EncodedData
    cache_path: Path | None = None
    from_cache: bool = False
    shares: list[dict[str, Any]] | None = None

    @property
    def schema(self) -> Schema:
        return self.preprocessor.schema


def _fingerprint_path(path: str | None) -> list[list[object]]:
    if path is None:
        return []
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or folder")
    files = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file())
    return [[str(q.resolve()), q.stat().st_size, q.stat().st_mtime_ns] for q in files]


def cache_key(cfg: DataConfig, seed: int) -> str:
    """Digest of everything that determines the encoded arrays."""
    from recforge import __version__

    parts = {
        "version": __version__,
        "cfg": {k: v for k, v in asdict(cfg).items() if k not in _HOW_KEYS},
        "seed": seed,
        "files": [_fingerprint_path(p) for p in (cfg.path, cfg.train, cfg.valid, cfg.test)],
        "schema": Path(cfg.schema).read_text() if cfg.schema else None,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def load_raw(cfg: DataConfig) -> datasets.PreparedDataset:
    """Raw tables and schema from the catalogue or from files."""
    if cfg.dataset == "files":
        if not cfg.train or not cfg.schema:
            raise ValueError("dataset 'files' needs data.train and data.schema (a schema JSON)")
        schema = Schema.from_json(Path(cfg.schema).read_text())

        def read(path: str | None) -> pa.Table | None:
            if path is None:
                return None
            files = stream.input_files(path)
            tables = [read_table(f, schema=schema) for f in files]
            return (
                tables[0]
                if len(tables) == 1
                else pa.concat_tables(tables, promote_options="default")
            )

        return datasets.PreparedDataset(
            name=Path(cfg.train).stem,
            schema=schema,
            train=read(cfg.train),
            valid=read(cfg.valid),
            test=read(cfg.test),
        )
    return datasets.load(cfg.dataset, path=cfg.path, **cfg.options)


def split_missing(
    raw: datasets.PreparedDataset, cfg: DataConfig, seed: int
) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Use the dataset's own splits; derive the missing ones from the training table."""
    train, valid, test = raw.train, raw.valid, raw.test
    if valid is not None and test is not None:
        return train, valid, test
    schema = raw.schema
    user_col = schema.field(schema.user_key).source if schema.user_key else "user"
    time_col = schema.time_column or "time"
    if test is None and valid is None:
        ratios = (1 - cfg.valid_ratio - cfg.test_ratio, cfg.valid_ratio, cfg.test_ratio)
        return split_table(
            train, cfg.split, ratios=ratios, seed=seed, time_column=time_col, user_column=user_col
        )
    # one of the two is given: split the other off the training table
    share = cfg.valid_ratio if valid is None else cfg.test_ratio
    part_a, part_b, part_c = split_table(
        train,
        cfg.split,
        ratios=(1 - share, share, 0.0) if cfg.split != "leave_last" else (0.8, 0.1, 0.1),
        seed=seed,
        time_column=time_col,
        user_column=user_col,
        n_last=1,
        n_valid_last=0,
    )
    if cfg.split == "leave_last":
        rest, held = pa.concat_tables([part_a, part_b]), part_c
    else:
        rest, held = part_a, pa.concat_tables([part_b, part_c])
    return (rest, held, test) if valid is None else (rest, valid, held)


def encode_run(
    cfg: DataConfig,
    seed: int = 0,
    use_cache: bool = True,
    exchange: parts.Exchange | None = None,
) -> EncodedRun:
    """Load, split, fit on train, transform all splits; reuse the on-disk cache when valid.

    Args:
        cfg: The data options.
        seed: The split's seed.
        use_cache: Read/write the encoded-data cache.
        exchange: The ranks of a job whose inputs :func:`reads_per_rank` (every rank calls
            this): each reads its own parts (:func:`encode_per_rank`); rank 0 writes the cache.
    """
    root = Path(cfg.cache_dir) if cfg.cache_dir else cache_dir() / "encoded"
    folder = root / cache_key(cfg, seed)
    cached = use_cache and (folder / "complete").exists()
    if exchange is not None and exchange.size > 1:
        # every rank must take the same branch: the cache only when all of them have it
        cached = bool(parts.all_gather_ints(exchange, [int(cached)]).min())
        if not cached:
            run = encode_per_rank(cfg, seed, exchange)
            if use_cache and exchange.rank == 0:
                _write_cache(run, folder)
            run.cache_path = folder if use_cache else None
            return run
    if cached:
        try:
            pre = Preprocessor.load(folder / "preprocessor")
            splits = [load_encoded(folder / name) for name in _SPLITS]
            log.info("reusing encoded data from %s", folder)
            return EncodedRun(pre, *splits, cache_path=folder, from_cache=True)
        except (OSError, RuntimeError, ValueError) as exc:
            log.warning("ignoring unreadable cache %s (%s)", folder, exc)
    if use_streaming(cfg):
        with stream.bounded_arrow_memory():
            run = encode_streaming(cfg, seed, folder)
        if not use_cache:
            log.info("streamed arrays stay in %s (streaming always writes to disk)", folder)
        return run
    raw = load_raw(cfg)
    train_t, valid_t, test_t = split_missing(raw, cfg, seed)
    pre = Preprocessor(raw.schema).fit(train_t)
    encoded = [pre.transform(t) for t in (train_t, valid_t, test_t)]
    candidates = raw.extras.get("test_negatives")
    if candidates is not None and raw.test is not None and raw.schema.item_key is not None:
        encoded[2].extras["candidates"] = encode_candidates(pre, raw.schema.item_key, candidates)
    run = EncodedRun(pre, *encoded)
    del raw, train_t, valid_t, test_t, candidates
    stream.release_memory()  # the raw tables' pages, kept by the allocators, go back to the OS
    if use_cache:
        _write_cache(run, folder)
        run.cache_path = folder
    return run


def encode_candidates(pre: Preprocessor, item_field: str, raw_ids: np.ndarray) -> np.ndarray:
    """A dataset's fixed evaluation candidates (raw item ids, one row per test row), encoded.

    The NCF protocol ranks each test item among 99 given negatives; the engine reads them from
    ``test.extras["candidates"]`` (items unknown to the training vocabulary become OOV id 0).
    """
    raw_ids = np.asarray(raw_ids)
    values = pa.array(raw_ids.reshape(-1).astype(str))
    return pre.encode_ids(item_field, values).astype(np.int32).reshape(raw_ids.shape)


def _write_cache(run: EncodedRun, folder: Path) -> None:
    with atomic_folder(folder) as tmp:
        run.preprocessor.save(tmp / "preprocessor")
        for name, data in zip(_SPLITS, (run.train, run.valid, run.test), strict=True):
            save_encoded(data, tmp / name)
        (tmp / "complete").write_text("ok")


# ---- streaming -------------------------------------------------------------------------
def _input_files(cfg: DataConfig) -> list[Path]:
    return [Path(p) for p in (cfg.train, cfg.valid, cfg.test) if p is not None]


def _input_bytes(path: Path) -> float:
    """Estimated uncompressed bytes of an input (a file or a folder's files)."""
    return sum(
        f.stat().st_size * (COMPRESSED_FACTOR if compression_of(f) else 1.0)
        for f in stream.input_files(path)
    )


def use_streaming(cfg: DataConfig) -> bool:
    """Whether :func:`encode_run` preprocesses in chunks.

    ``always`` streams (an error when the inputs cannot be streamed), ``never`` does not;
    ``auto`` streams ``dataset: files`` inputs in a streamable format whose estimated in-memory
    footprint, ``IN_MEMORY_FACTOR`` times their size (compressed files counted
    ``COMPRESSED_FACTOR`` times), exceeds ``memory_budget_mb``.
    """
    if cfg.streaming == "never":
        return False
    files = _input_files(cfg) if cfg.dataset == "files" else []
    unstreamable = [p for p in files if stream.stream_format(p) is None]
    if cfg.dataset != "files" or unstreamable or not files:
        if cfg.streaming == "always":
            what = unstreamable[0] if unstreamable else f"dataset {cfg.dataset!r}"
            raise ValueError(
                f"streaming: always needs dataset: files with CSV, TSV or Parquet inputs "
                f"(cannot stream {what}); set data.streaming: auto or never"
            )
        return False
    if cfg.streaming == "always":
        return True
    size = sum(_input_bytes(p) for p in files)
    budget = cfg.memory_budget_mb * 2**20
    if IN_MEMORY_FACTOR * size > budget:
        log.info(
            "inputs %.0f MiB > budget %.0f MiB / %.0f: preprocessing in chunks",
            size / 2**20,
            cfg.memory_budget_mb,
            IN_MEMORY_FACTOR,
        )
        return True
    return False


def split_labels(
    path: Path, schema: Schema, cfg: DataConfig, seed: int, rows: int | None = None
) -> np.ndarray:
    """Per row of the training file: 0 train, 1 valid, 2 test, as :func:`split_missing` splits.

    Runs :func:`split_missing` on a table of row indices (with the time and user columns the
    split kind needs, users as consistent integer codes), so the rows equal the in-memory ones.
    ``rows``, the file's row count when known, saves counting it (random splits).
    """
    user_col = schema.field(schema.user_key).source if schema.user_key else "user"
    time_col = schema.time_column or "time"
    if cfg.split == "random" and cfg.valid is None and cfg.test is None:
        ratios = (1 - cfg.valid_ratio - cfg.test_ratio, cfg.valid_ratio, cfg.test_ratio)
        return random_split_labels(stream.count_rows(path) if rows is None else rows, ratios, seed)
    if cfg.split == "random":
        n, cols = stream.count_rows(path) if rows is None else rows, {}
    else:
        wanted = [time_col] + ([user_col] if cfg.split == "leave_last" else [])
        users = stream.FirstSeenIndex()
        times, codes, n = [], [], 0
        for chunk in stream.iter_chunks(
            path, columns=wanted, chunk_rows=cfg.chunk_rows, types={user_col: pa.string()}
        ):
            n += chunk.num_rows
            if time_col in chunk.column_names:
                times.append(chunk.column(time_col))
            if user_col in chunk.column_names:
                codes.append(users.codes(chunk.column(user_col)))
        cols = {}
        if times:
            cols[time_col] = pa.chunked_array([c for t in times for c in t.chunks])
        if codes:
            cols[user_col] = pa.array(np.concatenate(codes))
    index = pa.table({"__row": pa.array(np.arange(n, dtype=np.int64)), **cols})
    given = pa.table({"__row": pa.array([], pa.int64())})
    raw = datasets.PreparedDataset(
        name=path.stem,
        schema=schema,
        train=index,
        valid=given if cfg.valid else None,
        test=given if cfg.test else None,
    )
    labels = np.zeros(n, dtype=np.int8)
    for code, part in enumerate(split_missing(raw, cfg, seed)):
        rows = part.column("__row").to_numpy()
        if code and part is not given:
            labels[rows] = code
    return labels


def _with_groups(
    data: EncodedData, chunk: pa.Table, schema: Schema, groups: stream.FirstSeenIndex
) -> EncodedData:
    """Replace the per-chunk GAUC group index by one consistent over the whole split."""
    if schema.user_key is not None:
        column = chunk.column(schema.field(schema.user_key).source)
        if pa.types.is_dictionary(column.type):  # read_table's categorical columns
            column = column.cast(column.type.value_type)
        data.extras["group"] = groups.codes(column)
    return data


def encode_streaming(cfg: DataConfig, seed: int, folder: Path) -> EncodedRun:
    """The streaming path of :func:`encode_run`: fit in one pass, encode chunk by chunk.

    Writes ``preprocessor/``, ``train/``, ``valid/``, ``test/`` and ``complete`` into a
    temporary sibling of ``folder`` and renames it into place; a failure deletes it.
    """
    if not cfg.train or not cfg.schema:
        raise ValueError("dataset 'files' needs data.train and data.schema (a schema JSON)")
    schema = Schema.from_json(Path(cfg.schema).read_text())
    train_path = Path(cfg.train)
    derive = cfg.valid is None or cfg.test is None
    labels = split_labels(train_path, schema, cfg, seed) if derive else None

    def chunks(path: Path) -> Any:
        """(chunk, split code per row or None) over a file."""
        start = 0
        for chunk in stream.iter_chunks(path, schema, cfg.chunk_rows):
            codes = None
            if labels is not None and path == train_path:
                codes = labels[start : start + chunk.num_rows]
            start += chunk.num_rows
            yield chunk, codes

    def train_rows() -> Any:
        for chunk, codes in chunks(train_path):
            yield chunk if codes is None else chunk.filter(pa.array(codes == 0))

    # the writers abort (close their files) on error before the temporary folder is deleted
    with atomic_folder(folder) as tmp, contextlib.ExitStack() as stack:
        pre = Preprocessor(schema).fit_stream(train_rows(), seed=seed)
        pre.save(tmp / "preprocessor")
        writers = [stack.enter_context(EncodedWriter(tmp / name)) for name in _SPLITS]
        groups = [stream.FirstSeenIndex() for _ in _SPLITS]
        sources = [(train_path, None)] + [
            (Path(p), code) for code, p in ((1, cfg.valid), (2, cfg.test)) if p is not None
        ]
        started = False
        stack.enter_context(pre.keep_lookups())  # one vocabulary index per field, all chunks
        for path, code in sources:
            for chunk, codes in chunks(path):
                if not started:
                    empty = pre.transform(chunk.slice(0, 0))
                    for w in writers:
                        w.append(empty)  # fixes names, dtypes and widths of every split
                    started = True
                if codes is None:
                    targets = [(code or 0, chunk)]
                else:
                    targets = [(c, chunk.filter(pa.array(codes == c))) for c in range(3)]
                for c, part in targets:
                    if part.num_rows:
                        encoded = _with_groups(pre.transform(part), part, schema, groups[c])
                        writers[c].append(encoded)
        for w in writers:
            w.close()
        (tmp / "complete").write_text("ok")
    parts = [load_encoded(folder / name) for name in _SPLITS]
    log.info("streamed %s rows into %s", "/".join(str(len(p)) for p in parts), folder)
    return EncodedRun(pre, *parts, cache_path=folder)


# ---- per-rank reading ----------------------------------------------------------------------
def reads_per_rank(cfg: DataConfig, ranks: int) -> bool:
    """Whether the ``ranks`` processes of a job read their own parts of the inputs.

    They do for ``dataset: files`` with CSV/TSV/Parquet inputs whose training input has at
    least two parts (files of a folder, or row groups of a Parquet file), when the split can
    be computed from row counts alone (``split: random``, or given ``valid`` and ``test``).
    Otherwise rank 0 reads everything (and the others map its cache); the reason is logged.
    """
    if ranks < 2 or cfg.dataset != "files" or not cfg.train or not cfg.schema:
        return False
    inputs = _input_files(cfg)
    if any(not p.exists() or stream.stream_format(p) is None for p in inputs):
        return False
    if (cfg.valid is None or cfg.test is None) and cfg.split != "random":
        log.info(
            "data.split=%s needs all rows at once: rank 0 reads the inputs (per-rank reading "
            "needs split: random, or given valid and test)",
            cfg.split,
        )
        return False
    found = parts.list_parts(cfg.train, ranks)
    if len(found) < 2:
        log.info(
            "data.train %s is one part for %d ranks: rank 0 reads it (a folder of files or a "
            "Parquet file with row groups is read per rank)",
            cfg.train,
            ranks,
        )
        return False
    if len(found) < ranks:
        log.info(
            "data.train has %d parts for %d ranks: ranks %d-%d read no training rows",
            len(found), ranks, len(found), ranks - 1,
        )  # fmt: skip
    return True


def _concat(pieces: list[dict[str, np.ndarray]]) -> EncodedData:
    """Named arrays of several pieces (the same names), concatenated in order."""
    return EncodedData.from_arrays({k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]})


def encode_per_rank(cfg: DataConfig, seed: int, exchange: parts.Exchange) -> EncodedRun:
    """Each rank reads, fits on and encodes only its parts; every rank gets the whole run.

    1. Every input is cut into parts (:func:`parts.list_parts`) and rank ``r`` reads its
       contiguous run of them (:func:`parts.assign_parts`), once, into memory.
    2. A derived random split labels the rows by their global row number (the ranks' row
       counts are exchanged), as :func:`split_labels` labels the whole file.
    3. Each rank fits on its training rows; ``fit_stream``'s ``combine`` hook adds up all
       ranks' counts and summaries (:func:`parts.combine_fit`): every rank gets the
       preprocessor of all training rows (vocabularies and bucket edges exactly as one process
       fits them, mean/std up to float rounding).
    4. Each rank encodes its rows; the encoded arrays (a fraction of the raw size) are
       exchanged and concatenated in rank order, which is file order, and the per-rank GAUC
       group codes are renumbered over all ranks' users: the arrays equal one process's.

    Returns:
        The run, on every rank, with ``shares``: what each rank read (parts, rows, seconds).
    """
    if not cfg.train or not cfg.schema:
        raise ValueError("dataset 'files' needs data.train and data.schema (a schema JSON)")
    schema = Schema.from_json(Path(cfg.schema).read_text())
    rank, size = exchange.rank, exchange.size
    inputs = [(Path(cfg.train), -1)] + [
        (Path(p), code) for code, p in ((1, cfg.valid), (2, cfg.test)) if p is not None
    ]
    start, cpu = time.perf_counter(), time.process_time()
    mine = {
        code: parts.assign_parts(parts.list_parts(path, size), rank, size) for path, code in inputs
    }
    local: dict[int, list[pa.Table]] = {}
    for code, share in mine.items():  # each input's share as one table, as one process reads it
        tables = [part.read(schema, cfg.chunk_rows) for part in share]
        local[code] = [pa.concat_tables(tables, promote_options="default")] if tables else []
    read_s, read_cpu = time.perf_counter() - start, time.process_time() - cpu
    rows_read = {
        _SPLIT_INPUT[code]: sum(c.num_rows for c in chunks) for code, chunks in local.items()
    }
    n_train_input = sum(c.num_rows for c in local[-1])
    counts = parts.all_gather_ints(exchange, [n_train_input])[:, 0]
    if not counts.sum():
        raise ValueError(f"{cfg.train}: no data rows")
    offset = int(counts[:rank].sum())
    labels = None
    if cfg.valid is None or cfg.test is None:
        every = split_labels(Path(cfg.train), schema, cfg, seed, rows=int(counts.sum()))
        train_rows = int((every == 0).sum())
        labels = every[offset : offset + n_train_input]
        del every
    else:
        train_rows = int(counts.sum())

    def split(code: int, chunks: list[pa.Table]) -> Any:
        """(split code, rows) of this rank's chunks of one input."""
        if code >= 0 or labels is None:
            for chunk in chunks:
                yield max(code, 0), chunk
            return
        at = 0
        for chunk in chunks:
            codes = labels[at : at + chunk.num_rows]
            at += chunk.num_rows
            for c in range(3):
                yield c, chunk.filter(pa.array(codes == c))

    pre = Preprocessor(schema).fit_stream(
        (t for c, t in split(-1, local[-1]) if c == 0 and t.num_rows),
        exact_quantile_limit=max(train_rows, 1),
        seed=seed,
        combine=parts.combine_fit(exchange),
    )
    fit_s, fit_cpu = time.perf_counter() - start - read_s, time.process_time() - cpu - read_cpu
    groups = [stream.FirstSeenIndex() for _ in _SPLITS]
    pieces: list[list[EncodedData]] = [[] for _ in _SPLITS]
    first = next((c for chunks in local.values() for c in chunks), None)
    if first is not None:  # fixes names, dtypes and widths even where a split has no rows here
        for piece in pieces:
            piece.append(pre.transform(first.slice(0, 0)))
    with pre.keep_lookups():
        for code, chunks in local.items():
            for c, table in split(code, chunks):
                if table.num_rows:
                    encoded = pre.transform(table)
                    pieces[c].append(_with_groups(encoded, table, schema, groups[c]))
    del local
    encode_s = time.perf_counter() - start - read_s - fit_s
    encode_cpu = time.process_time() - cpu - read_cpu - fit_cpu
    out = []
    for c, piece in enumerate(pieces):
        arrays = _concat([p.arrays() for p in piece]).arrays() if piece else {}
        gathered = parts.all_gather_arrays(exchange, arrays)
        known = parts.all_gather_table(exchange, pa.table({"v": groups[c].values}))
        users = stream.FirstSeenIndex()
        for r, (got, seen) in enumerate(zip(gathered, known, strict=True)):
            mapping = users.codes(seen.column("v"))
            if "extra.group" in got and len(mapping):
                local_codes = got["extra.group"]
                got["extra.group"] = np.where(
                    local_codes >= 0, mapping[np.maximum(local_codes, 0)], -1
                )
            if not got:
                gathered[r] = {}
        out.append(_concat([g for g in gathered if g]))
    info = {
        "rank": rank,
        "parts": {
            _SPLIT_INPUT[code]: [p.describe() for p in share] for code, share in mine.items()
        },
        "rows": rows_read,
        "read_s": round(read_s, 3),
        "fit_s": round(fit_s, 3),
        "encode_s": round(encode_s, 3),
        # CPU seconds of the process (all its threads): the work, whatever else the machine runs
        "cpu_s": {
            "read": round(read_cpu, 3),
            "fit": round(fit_cpu, 3),
            "encode": round(encode_cpu, 3),
        },
    }
    shares = [json.loads(b) for b in exchange.all_gather_bytes(json.dumps(info).encode())]
    log.info(
        "rank %d/%d read %s (%d rows of the training input) in %.2f s; all ranks: %s rows",
        rank, size, ", ".join(info["parts"]["train"]) or "nothing", n_train_input, read_s,
        "/".join(str(len(p)) for p in out),
    )  # fmt: skip
    return EncodedRun(pre, *out, shares=shares)


_SPLIT_INPUT = {-1: "train", 1: "valid", 2: "test"}
