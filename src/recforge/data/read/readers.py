"""Readers for CSV/TSV, Parquet and libfm/libsvm files, with errors that name file, line, column.

Everything is vectorised through ``pyarrow.csv`` (multithreaded parsing) and
``pyarrow.compute``; no per-line Python runs on the success path. Compressed copies
(``.gz``, ``.bz2``, ``.zst``, ``.xz``) are read transparently.

Line numbers in errors are 1-based physical lines of the file, the header counting as line 1.
Blank lines are skipped by the parser and only re-counted (by a numpy scan of the file) when an
error has to be located, so the common path pays nothing for them.

The checks the preprocessor calls on any table (from a file or built in memory) are
:func:`check_columns`, :func:`check_numeric` and :func:`validate_labels`. A table returned by
:func:`read_table` remembers its source in its schema metadata, so those checks report
physical lines; for other tables they report 1-based rows.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import lzma
import re
import tarfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from recforge.features import CategoricalField, NumericField, Schema, SequenceField

log = logging.getLogger(__name__)

_COMPRESSION = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd", ".xz": "xz"}
_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".libfm": "libfm",
    ".libsvm": "libfm",
    ".svm": "libfm",
}
# What a number looks like to the CSV parser; anything else in a numeric column is an error.
_NUMBER = r"^[-+]?((\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|inf|infinity|nan)$"
# Spellings the CSV parser reads as missing in a numeric column (pyarrow's defaults).
_MISSING = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND"]
_MISSING += ["1.#QNAN", "N/A", "NA", "NULL", "NaN", "n/a", "nan", "null"]


_META_SOURCE = b"recforge.source"
_META_HEADER = b"recforge.header_lines"
_META_FORMAT = b"recforge.format"


class DataError(ValueError):
    """A problem in an input file, located by file, line (or row) and column.

    Example message: ``train.csv, line 7, column 'price' (3): 'abc' is not a number``.

    Attributes:
        path: The file (or ``<table>`` for an in-memory table).
        line: 1-based physical line (header = line 1), when known.
        row: 1-based data row, for sources without lines (Parquet, in-memory tables).
        column: Column name, when known.
        column_number: 1-based column position, when known.
    """

    def __init__(
        self,
        path: str | Path,
        message: str,
        *,
        line: int | None = None,
        row: int | None = None,
        column: str | None = None,
        column_number: int | None = None,
    ) -> None:
        self.path, self.line, self.row = str(path), line, row
        self.column, self.column_number = column, column_number
        parts = [self.path]
        if line is not None:
            parts.append(f"line {line}")
        elif row is not None:
            parts.append(f"row {row}")
        if column is not None or column_number is not None:
            where = "column"
            if column is not None:
                where += f" {column!r}"
            if column_number is not None:
                where += f" ({column_number})"
            parts.append(where)
        super().__init__(", ".join(parts) + ": " + message)


# ---- files -----------------------------------------------------------------------------------
def compression_of(path: str | Path) -> str | None:
    """Compression codec implied by the file name (``gzip``, ``xz``...), or ``None``."""
    return _COMPRESSION.get(Path(path).suffix.lower())


def format_of(path: str | Path) -> str | None:
    """Format implied by the extension, looking through a compression suffix."""
    p = Path(path)
    if compression_of(p):
        p = p.with_suffix("")
    return _FORMATS.get(p.suffix.lower())


def open_stream(path: str | Path, memory_pool: pa.MemoryPool | None = None) -> BinaryIO:
    """A binary stream of the decompressed bytes of ``path``.

    Args:
        path: The file.
        memory_pool: Arrow pool of an uncompressed file's read buffers (default: Arrow's).
    """
    codec = compression_of(path)
    if codec == "xz":
        # Arrow has no xz codec. Decompress into memory so that Arrow's reader threads never
        # call back into Python (a Python file object there can abort at interpreter exit).
        with lzma.open(path, "rb") as fh:
            return pa.BufferReader(fh.read())  # type: ignore[return-value]
    if codec is None:
        return pa.OSFile(str(path), "rb", memory_pool=memory_pool)  # type: ignore[return-value]
    return pa.input_stream(str(path), compression=codec)  # type: ignore[return-value]


def find_file(
    root: str | Path, names: Sequence[str], extract_to: Path | None = None
) -> Path | None:
    """Find the first of ``names`` in ``root`` (a file, an archive or a folder), compressed or not.

    In a folder: ``name`` and ``name.{gz,xz,bz2,zst}`` in it and its subfolders, then a member
    named ``name`` inside any ``.tar(.gz)``/``.tgz`` or ``.zip`` archive there. An archive given
    as ``root`` is searched alone; a plain file matches by its name. A member found in an
    archive is extracted into ``extract_to`` (default: a folder next to the archive). The search
    never leaves ``root``.

    Returns:
        The path, or ``None`` when nothing matches.

    Raises:
        FileNotFoundError: ``root`` does not exist.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such file or folder")
    is_zip = root.is_file() and root.suffix.lower() == ".zip"
    if root.is_file() and not is_zip and not _is_tar(root):
        return root if _strip_compression(root.name) in names else None
    if root.is_dir():
        for name in names:
            for suffix in ("", *_COMPRESSION):
                hits = sorted(root.rglob(name + suffix), key=lambda p: len(p.parts))
                if hits:
                    return hits[0]
        tars = sorted(p for p in root.glob("*") if _is_tar(p))
        archives = sorted(root.glob("*.zip"))
    else:
        tars, archives = ([root], []) if _is_tar(root) else ([], [root])
    for archive in tars:
        with tarfile.open(archive) as tf:
            for member in tf:
                if member.isfile() and member.name.split("/")[-1] in names:
                    target_dir = extract_to or archive.parent / "extracted"
                    target = target_dir / member.name
                    if not target.exists():
                        if not hasattr(tarfile, "data_filter"):
                            raise RuntimeError(
                                f"{archive}: this Python cannot extract tar members safely "
                                "(needs 3.10.12+ or 3.11.4+); extract it and pass the folder"
                            )
                        log.info("extracting %s from %s", member.name, archive)
                        tf.extract(member, target_dir, filter="data")
                    return target
    for archive in archives:
        with zipfile.ZipFile(archive) as zf:
            for name in names:
                member = next((m for m in zf.namelist() if m.split("/")[-1] == name), None)
                if member is not None:
                    target_dir = extract_to or archive.parent / archive.stem
                    target = target_dir / member
                    if not target.exists():
                        log.info("extracting %s from %s", member, archive)
                        zf.extract(member, target_dir)
                    return target
    return None


def _is_tar(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith((".tar", ".tar.gz", ".tgz"))


def _strip_compression(name: str) -> str:
    p = Path(name)
    return p.stem if p.suffix.lower() in _COMPRESSION else name


def physical_line(path: str | Path, record: int) -> int:
    """1-based physical line of the ``record``-th (1-based) non-empty line of ``path``.

    Used only to locate errors: the CSV parser skips blank lines, so its record counts differ
    from line numbers when a file has blank lines. Scans the file in blocks with numpy.
    """
    line_no, nonempty, rest = 0, 0, b""
    with open_stream(path) as fh:
        while True:
            block = fh.read(1 << 24)
            if not block:
                break
            data = rest + block
            arr = np.frombuffer(data, dtype=np.uint8)
            newlines = np.flatnonzero(arr == 10)
            if newlines.size == 0:
                rest = data
                continue
            starts = np.concatenate(([0], newlines[:-1] + 1))
            lengths = newlines - starts
            ends_cr = (lengths > 0) & (arr[np.maximum(newlines - 1, 0)] == 13)
            filled = (lengths - ends_cr) > 0
            counts = nonempty + np.cumsum(filled)
            hit = np.flatnonzero(filled & (counts == record))
            if hit.size:
                return line_no + int(hit[0]) + 1
            nonempty, line_no = int(counts[-1]), line_no + newlines.size
            rest = data[int(newlines[-1]) + 1 :]
    return line_no + 1


# ---- reading ---------------------------------------------------------------------------------
def read_table(
    path: str | Path,
    columns: Sequence[str] | None = None,
    fmt: str | None = None,
    delimiter: str | None = None,
    schema: Schema | None = None,
    *,
    header: bool = True,
    column_names: Sequence[str] | None = None,
    encoding: str = "utf8",
    quoting: bool = True,
) -> pa.Table:
    """Read a CSV, TSV, Parquet or libfm/libsvm file into a :class:`pyarrow.Table`.

    Args:
        path: The file; ``.gz``/``.bz2``/``.zst``/``.xz`` copies are decompressed on the fly.
        columns: Columns to keep (all by default). A missing one is a :class:`DataError`.
        fmt: ``csv``, ``tsv``, ``parquet`` or ``libfm`` (alias ``libsvm``); by default from the
            extension. Other extensions need ``fmt`` or ``delimiter``.
        delimiter: Field separator for delimited text; one character is parsed by the
            multithreaded CSV reader, a longer one (MovieLens-1M's ``::``) by splitting lines.
        schema: When given, categorical columns of a CSV/TSV are read dictionary-encoded
            (``dictionary<int32, string>``: a third of the memory of strings on wide logs, and
            the preprocessor encodes them without hashing every row), sequence columns as
            strings, numeric columns and the label as float64, and the file is checked with
            :func:`check_columns`, :func:`check_numeric` and :func:`validate_labels`.
        header: Whether a delimited file starts with a header line.
        column_names: Names for the columns of a file without header (with ``header=True``
            they replace the header's names).
        encoding: Text encoding (MovieLens ``movies.dat`` is ``latin-1``).
        quoting: Whether ``"`` quotes fields (off for files with bare quotes in titles).

    Returns:
        The table. libfm files give ``label`` (float64), ``f0..f{n-1}`` (feature index as a
        string, null past a short line's end) and ``v0..`` (float64) only when a value
        differs from 1.

    Raises:
        DataError: Empty file, malformed row, missing column, bad number or label.
    """
    path = Path(path)
    fmt = (fmt or format_of(path) or ("csv" if delimiter else "")).lower()
    if fmt == "libsvm":
        fmt = "libfm"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if fmt == "parquet":
        table, header_lines = _read_parquet(path, columns), -1
    elif fmt == "libfm":
        table, header_lines = _read_libfm(path, encoding), 0
    elif fmt in ("csv", "tsv"):
        sep = delimiter or ("\t" if fmt == "tsv" else ",")
        header_lines = 1 if header else 0
        names = list(column_names) if column_names else None
        types = _column_types(schema, dictionary=True)
        if header:
            _header_names(path, sep, header, encoding)  # a header that does not decode: located
        if len(sep) == 1:
            table = _read_csv(path, sep, header, names, columns, types, encoding, quoting=quoting)
        else:
            table = _read_split_lines(path, sep, header, names, types, encoding)
    else:
        raise DataError(path, "unknown format; pass fmt= (csv, tsv, parquet or libfm)")
    table = table.replace_schema_metadata(
        {
            _META_SOURCE: str(path).encode(),
            _META_HEADER: str(header_lines).encode(),
            _META_FORMAT: fmt.encode(),
        }
    )
    if table.num_rows == 0:
        raise DataError(path, "no data rows", line=header_lines + 1 if header_lines >= 0 else None)
    if fmt in ("csv", "tsv"):
        _check_text_table(table, path, header_lines, encoding)
    if columns is not None and fmt != "parquet":
        check_present(table, columns, path)
        table = table.select(list(columns))
    if schema is not None:
        table = check_table(table, schema, path, require_label=schema.label in table.column_names)
    return table


def _check_text_table(table: pa.Table, path: Path, header_lines: int, encoding: str) -> None:
    """A header naming a column twice, or bytes that are not ``encoding`` text, are errors
    naming the place (Arrow would keep both columns, or read the column as raw bytes)."""
    check_header_names(table.column_names, path, header_line=1 if header_lines else None)
    check_text_encoding(table, path, encoding)


def check_header_names(names: Sequence[str], path: str | Path, header_line: int | None) -> None:
    """Raise :class:`DataError` when a header names a column twice (file, line, both columns)."""
    seen: dict[str, int] = {}
    for number, col in enumerate(names, 1):
        if col in seen:
            raise DataError(
                path, f"column {col!r} appears twice in the header (columns {seen[col]} and "
                f"{number})", line=header_line, column=col, column_number=number,
            )  # fmt: skip
        seen[col] = number


def check_text_encoding(table: pa.Table, path: str | Path, encoding: str) -> None:
    """Raise :class:`DataError` at the first value of a text table that is not ``encoding``.

    Arrow reads a column holding bytes that do not decode as raw binary; the scan over its
    values runs only then (an error path), and names file, physical line and column.
    """
    for number, field in enumerate(table.schema, 1):
        if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
            for row, value in enumerate(table.column(number - 1).to_pylist()):
                try:
                    if value is not None:
                        value.decode(encoding)
                except UnicodeDecodeError as exc:
                    raise _row_error(
                        table, str(path), field.name, row,
                        f"bytes {value[exc.start : exc.end]!r} are not {encoding} text "
                        "(pass the file's encoding)",
                    ) from None  # fmt: skip


def check_table(
    table: pa.Table, schema: Schema, path: str | Path | None = None, require_label: bool = True
) -> pa.Table:
    """:func:`check_columns`, then :func:`check_numeric`, then :func:`validate_labels`.

    Returns:
        The table with numeric columns (and the label) as float64.
    """
    check_columns(table, schema, path, require_label=require_label)
    table = check_numeric(table, schema, path)
    validate_labels(table, schema, path)
    return table


def _column_types(schema: Schema | None, dictionary: bool = False) -> dict[str, pa.DataType]:
    """Arrow types to read a schema's columns as; ``dictionary`` reads categorical columns
    dictionary-encoded (int32 codes per row, each distinct string stored once per block)."""
    if schema is None:
        return {}
    types: dict[str, pa.DataType] = {}
    for f in schema.fields:
        if isinstance(f, CategoricalField) and dictionary:
            types[f.source] = _DICTIONARY
        elif isinstance(f, CategoricalField | SequenceField):
            types[f.source] = pa.string()
        elif isinstance(f, NumericField):
            types[f.source] = pa.float64()
    types[schema.label] = pa.float64()
    return types


_DICTIONARY = pa.dictionary(pa.int32(), pa.string())
# Block of the CSV reader: blocks are parsed in parallel, and each holds its own dictionaries
# until they are unified; 4 MiB measured best between 1 and 16 (time and peak memory).
_READ_BLOCK = 4 << 20


def _reading_pool() -> pa.MemoryPool:
    """The Arrow memory pool CSV tables are read into: jemalloc where Arrow has it.

    Reading interleaves short-lived buffers (the file's text, per-block dictionaries) with the
    table's; Arrow's default mimalloc keeps the pages they share after the read, where jemalloc
    with a decay of 0 returns them at once: on a 1M-row, 40-column log the read peaks ~60 MB
    lower and leaves ~110 MB less resident (``benchmarks/results/memory_i16.md``).
    """
    try:
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:  # a build without jemalloc (Windows wheels)
        return pa.default_memory_pool()
    pa.jemalloc_set_decay_ms(0)  # freed pages go back at once (Arrow's build decays over 1 s)
    return pool


def _read_csv(
    path: Path,
    sep: str,
    header: bool,
    names: list[str] | None,
    columns: Sequence[str] | None,
    types: dict[str, pa.DataType],
    encoding: str,
    use_threads: bool = True,
    invalid_row_handler: Any = None,
    quoting: bool = True,
) -> pa.Table:
    read = pacsv.ReadOptions(
        use_threads=use_threads,
        encoding=encoding,
        column_names=names,
        skip_rows=1 if (header and names) else 0,
        autogenerate_column_names=not header and not names,
    )
    parse = pacsv.ParseOptions(
        delimiter=sep, quote_char='"' if quoting else False, invalid_row_handler=invalid_row_handler
    )
    convert = pacsv.ConvertOptions(column_types=types)
    try:
        pool = _reading_pool()
        read.block_size = _READ_BLOCK
        with open_stream(path, memory_pool=pool) as fh:
            table = pacsv.read_csv(
                fh,
                read_options=read,
                parse_options=parse,
                convert_options=convert,
                memory_pool=pool,
            )
        # one dictionary per column instead of one per block: smaller, and encoded without
        # unifying again at each fit/transform; a column at a time, so that only one column
        # exists twice
        for i, name in enumerate(table.column_names):
            if pa.types.is_dictionary(table.schema.field(i).type):
                unified = pa.table({name: table.column(i)}).unify_dictionaries(memory_pool=pool)
                table = table.set_column(i, name, unified.column(0))
        # the file's text and the per-block dictionaries are garbage now: give their pages
        # back rather than keep the process at its reading peak
        pool.release_unused()
        return table
    except pa.ArrowInvalid as exc:
        text = str(exc)
        if "Empty CSV file" in text:
            raise empty_file_error(path) from None
        if "CSV parse error" in text and invalid_row_handler is None:
            locate_parse_error(
                path,
                lambda h: _read_csv(
                    path, sep, header, names, None, {}, encoding, False, h, quoting
                ),
                lambda: names or _header_names(path, sep, header, encoding),
            )
        match = re.search(r"In CSV column #(\d+): CSV conversion error", text)
        if match and types:
            # Re-read the offending column as text so the bad value can be located.
            relaxed = dict(types)
            header_names = names or _header_names(path, sep, header, encoding)
            bad = header_names[int(match.group(1))]
            # a number column is re-read as text, a text column as bytes, and the check of
            # that column names the first bad value's line
            text_column = relaxed.get(bad) in (pa.string(), _DICTIONARY)
            relaxed[bad] = pa.binary() if text_column else pa.string()
            table = _read_csv(path, sep, header, names, columns, relaxed, encoding, quoting=quoting)
            table = table.replace_schema_metadata(
                {_META_SOURCE: str(path).encode(), _META_HEADER: b"1" if header else b"0"}
            )
            if text_column:
                check_text_encoding(table, path, encoding)
            else:
                _numeric_column(table, bad, str(path))
        raise DataError(path, text) from None


def empty_file_error(path: Path) -> DataError:
    """Arrow's "Empty CSV file" for a file that is empty, or holds a header line only."""
    with open_stream(path) as fh:
        blank = not fh.read(1 << 16).strip()
    if blank:
        return DataError(path, "file is empty", line=1)
    return DataError(path, "no data rows (only a header line)", line=2)


def _header_names(path: Path, sep: str, header: bool, encoding: str) -> list[str]:
    """The column names of a delimited file's first line (``f0..`` without a header)."""
    with open_stream(path) as fh:
        raw = fh.read(1 << 16).split(b"\n", 1)[0]
    try:
        first = raw.decode(encoding).rstrip("\r")
    except UnicodeDecodeError as exc:
        raise DataError(
            path, f"bytes {raw[exc.start : exc.end]!r} are not {encoding} text (pass the "
            "file's encoding)", line=1, column_number=raw[: exc.start].count(sep.encode()) + 1,
        ) from None  # fmt: skip
    fields = next(csv.reader([first], delimiter=sep))  # header names may be quoted
    return fields if header else [f"f{i}" for i in range(len(fields))]


def locate_parse_error(
    path: Path,
    read: Callable[[Callable[[Any], str]], object],
    header_names: Callable[[], list[str]],
) -> None:
    """The one parse-error locator of the whole-file and the chunked CSV readers.

    Re-reads serially (error path only) with ``read(handler)``, a reader that hands every row
    Arrow cannot parse to ``handler``; raises a :class:`DataError` naming the first such row's
    physical line and column (``header_names()`` gives the column names), or returns when the
    re-read finds no bad row.
    """
    seen: list[Any] = []

    def handler(row: Any) -> str:
        seen.append(row)
        return "error"

    with contextlib.suppress(pa.ArrowInvalid, DataError):
        read(handler)
    if not seen:
        return
    row = seen[0]
    # ``number`` counts non-empty records from the top of the file, header included.
    line = physical_line(path, row.number) if row.number is not None else None
    names = header_names()
    col = min(row.expected_columns, row.actual_columns) + 1
    raise DataError(
        path,
        f"expected {row.expected_columns} fields, found {row.actual_columns}: {row.text[:80]!r}",
        line=line,
        column=names[col - 1] if col - 1 < len(names) else None,
        column_number=col,
    )


def _read_lines(path: Path, encoding: str) -> pa.Array:
    """Every non-empty line as one string (quoting off, a control byte as delimiter)."""
    read = pacsv.ReadOptions(column_names=["line"], encoding=encoding)
    parse = pacsv.ParseOptions(delimiter="\x1f", quote_char=False)
    convert = pacsv.ConvertOptions(column_types={"line": pa.string()}, strings_can_be_null=False)
    try:
        with open_stream(path) as fh:
            table = pacsv.read_csv(
                fh, read_options=read, parse_options=parse, convert_options=convert
            )
    except pa.ArrowInvalid as exc:
        if "Empty CSV file" in str(exc):
            raise DataError(path, "file is empty", line=1) from None
        raise DataError(path, str(exc)) from None
    return table["line"].combine_chunks()


def _split_tokens(lines: pa.Array, sep: str | None) -> pa.ListArray:
    if sep is None:
        return pc.utf8_split_whitespace(pc.utf8_trim_whitespace(lines))
    return pc.split_pattern(lines, sep)


def _read_split_lines(
    path: Path,
    sep: str,
    header: bool,
    names: list[str] | None,
    types: dict[str, pa.DataType],
    encoding: str,
) -> pa.Table:
    """Delimited text with a multi-character separator (``::``), split vectorised."""
    lines = _read_lines(path, encoding)
    tokens = _split_tokens(lines, sep)
    lengths = pc.list_value_length(tokens).to_numpy(zero_copy_only=False)
    start = 0
    header_names: list[str] = []
    if header:
        header_names = tokens[0].as_py()
        start = 1
    names = names or header_names or [f"f{i}" for i in range(int(lengths[0]))]
    bad = np.flatnonzero(lengths[start:] != len(names))
    if bad.size:
        record = int(bad[0]) + start
        found = int(lengths[record])
        col = min(found, len(names)) + 1
        raise DataError(
            path,
            f"expected {len(names)} fields, found {found}: {lines[record].as_py()[:80]!r}",
            line=physical_line(path, record + 1),
            column=names[col - 1] if col <= len(names) else None,
            column_number=col,
        )
    flat = tokens.slice(start).flatten()
    k = len(names)
    n = len(tokens) - start
    arrays = []
    for j, name in enumerate(names):
        col = pc.take(flat, pa.array(np.arange(n) * k + j))
        # Declared text stays text; declared numbers are checked (and located) by check_numeric.
        arrays.append(col if name in types else _infer(col))
    return pa.table(arrays, names=names)


def _infer(col: pa.Array) -> pa.Array:
    """Integer if every value parses as one, else float, else the strings."""
    for typ in (pa.int64(), pa.float64()):
        try:
            return pc.cast(col, typ)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    return col


def _read_parquet(path: Path, columns: Sequence[str] | None) -> pa.Table:
    try:
        file_schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(path, f"not a readable Parquet file ({exc})") from None
    if columns is not None:
        missing = [c for c in columns if c not in file_schema.names]
        if missing:
            raise DataError(
                path,
                f"required column is missing (found: {', '.join(file_schema.names)})",
                column=missing[0],
            )
    return pq.read_table(path, columns=list(columns) if columns is not None else None)


def _read_libfm(path: Path, encoding: str) -> pa.Table:
    """``label idx:val idx:val ...`` lines -> label, f0.. (indices as strings), v0.. (values)."""
    lines = _read_lines(path, encoding)
    if len(lines) == 0:
        raise DataError(path, "no data rows (only blank lines)", line=1)
    tokens = _split_tokens(lines, None)
    offsets = tokens.offsets.to_numpy()
    lengths = np.diff(offsets) - 1  # features per line
    flat = tokens.values
    n = len(tokens)
    label_tok = pc.take(flat, pa.array(offsets[:-1]))
    feat_pos = np.delete(np.arange(len(flat)), offsets[:-1])
    feats = pc.take(flat, pa.array(feat_pos, type=pa.int64()))
    parent = np.repeat(np.arange(n), lengths)
    first = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    within = np.arange(len(feats)) - np.repeat(first, lengths)

    def fail(record: int, message: str, col: int, name: str) -> DataError:
        return DataError(
            path, message, line=physical_line(path, record + 1), column=name, column_number=col
        )

    colon = pc.find_substring(feats, ":").to_numpy(zero_copy_only=False)
    bad = np.flatnonzero(colon <= 0)
    if bad.size:
        i = int(bad[0])
        tok = feats[i].as_py()
        what = "has no ':'" if colon[i] < 0 else "has an empty index"
        raise fail(
            int(parent[i]),
            f"token {tok!r} {what} (expected idx:value)",
            int(within[i]) + 2,
            f"f{int(within[i])}",
        )
    parts = pc.split_pattern(feats, ":", max_splits=1)
    index = pc.list_element(parts, 0)
    value_text = pc.list_element(parts, 1)
    label = _to_float(
        label_tok, lambda r: fail(r, f"label {label_tok[r].as_py()!r} is not a number", 1, "label")
    )
    values = _to_float(
        value_text,
        lambda i: fail(
            int(parent[i]),
            f"value in {feats[i].as_py()!r} is not a number",
            int(within[i]) + 2,
            f"v{int(within[i])}",
        ),
    )
    width = int(lengths.max()) if n else 0
    cols: dict[str, pa.Array] = {"label": label}
    grid = np.full((n, width), -1, dtype=np.int64)
    grid[parent, within] = np.arange(len(feats))
    for p in range(width):
        take = pa.array(grid[:, p], mask=grid[:, p] < 0)
        cols[f"f{p}"] = pc.take(index, take)
    if len(values) and not pc.all(pc.equal(values, 1.0)).as_py():
        for p in range(width):
            take = pa.array(grid[:, p], mask=grid[:, p] < 0)
            cols[f"v{p}"] = pc.take(values, take)
    return pa.table(cols)


def _to_float(text: pa.Array, error: Any) -> pa.Array:
    ok = pc.match_substring_regex(text, _NUMBER, ignore_case=True)
    bad = np.flatnonzero(~ok.to_numpy(zero_copy_only=False))
    if bad.size:
        raise error(int(bad[0]))
    return pc.cast(text, pa.float64())


# ---- checks ----------------------------------------------------------------------------------
def _source(table: pa.Table, path: str | Path | None) -> tuple[str, int, bool]:
    """(path, header line count, whether rows map to physical lines) for error messages."""
    meta = table.schema.metadata or {}
    src = meta.get(_META_SOURCE, b"").decode() or None
    header = int(meta.get(_META_HEADER, b"-1").decode())
    name = str(path) if path is not None else (src or "<table>")
    return name, header, src is not None and header >= 0 and Path(src).exists()


def row_location(table: pa.Table, path: str | Path | None, row: int) -> dict[str, int]:
    """Where data row ``row`` (0-based) of ``table`` came from, as keywords for DataError.

    Returns ``{"line": n}`` (physical line) for a table read from a text file by
    :func:`read_table`, else ``{"row": row + 1}``.
    """
    meta = table.schema.metadata or {}
    name, header, lines = _source(table, path)
    if lines:
        return {"line": physical_line(meta[_META_SOURCE].decode(), row + header + 1)}
    return {"row": row + 1}


def check_present(table: pa.Table, columns: Sequence[str], path: str | Path | None = None) -> None:
    """Raise :class:`DataError` naming the first of ``columns`` absent from ``table``."""
    name, header, _ = _source(table, path)
    for col in columns:
        if col not in table.column_names:
            raise DataError(
                name,
                f"required column is missing (found: {', '.join(table.column_names)})",
                line=1 if header == 1 else None,
                column=col,
            )


def check_columns(
    table: pa.Table, schema: Schema, path: str | Path | None = None, require_label: bool = True
) -> None:
    """Every source column of ``schema`` (and the label, unless not required) is present.

    Raises:
        DataError: Naming the file, the header line (for text files) and the missing column.
    """
    check_present(table, schema.source_columns(with_label=require_label), path)


def check_numeric(table: pa.Table, schema: Schema, path: str | Path | None = None) -> pa.Table:
    """Cast the numeric columns (numeric fields and the label) of ``table`` to float64.

    Text columns are validated first, vectorised: the first value that is neither a number nor
    a missing-value spelling (``""``, ``NA``, ``nan``...) raises. Missing values become null.

    Returns:
        The table with those columns as float64.

    Raises:
        DataError: Naming file, line (or row), column and the offending value.
    """
    name = _source(table, path)[0]
    wanted = [f.source for f in schema.fields if isinstance(f, NumericField)] + [schema.label]
    for col in dict.fromkeys(wanted):
        if col in table.column_names:
            idx = table.column_names.index(col)
            values = _numeric_column(table, col, name)
            _check_float32_range(table, values, col, name)
            table = table.set_column(idx, col, values)
    return table


FLOAT32_MAX = float(np.finfo(np.float32).max)  # the largest value the models compute with


def located_error(table: pa.Table, col: str, row: int, message: str) -> DataError:
    """A DataError at data row ``row`` (0-based) of ``table``'s column ``col``, located in the
    file the table was read from (physical line) or by row number."""
    return _row_error(table, _source(table, None)[0], col, row, message)


def _row_error(table: pa.Table, name: str, col: str, row: int, message: str) -> DataError:
    """A DataError at ``row`` of column ``col``: file, physical line, column name and number."""
    return DataError(
        name, message, column=col, column_number=table.column_names.index(col) + 1,
        **row_location(table, None, row),
    )  # fmt: skip


def _check_float32_range(table: pa.Table, values: pa.ChunkedArray, col: str, name: str) -> None:
    """Models compute in float32: a finite value beyond its range (``1e308``) would become inf
    there (a NaN loss, or a standard deviation that zeroes the column), so it is refused here
    with its location. ``inf`` and ``nan`` spellings stay missing values, as documented."""
    x = values.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    with np.errstate(invalid="ignore"):
        bad = np.flatnonzero(np.isfinite(x) & (np.abs(x) > FLOAT32_MAX))
    if bad.size:
        row = int(bad[0])
        message = f"{float(x[row])!r} is outside the float32 range the models compute in (±3.4e38)"
        raise _row_error(table, name, col, row, message)


def _numeric_column(table: pa.Table, col: str, name: str) -> pa.ChunkedArray:
    data = table[col]
    typ = data.type
    if pa.types.is_floating(typ) or pa.types.is_integer(typ) or pa.types.is_boolean(typ):
        return pc.cast(data, pa.float64())
    if pa.types.is_null(typ):
        return pc.cast(data, pa.float64())
    number = table.column_names.index(col) + 1
    if not (pa.types.is_string(typ) or pa.types.is_large_string(typ)):
        raise DataError(
            name, f"expected numbers, found type {typ}", column=col, column_number=number
        )
    text = pc.utf8_trim_whitespace(data)
    missing = pc.or_(pc.is_null(text), pc.is_in(text, value_set=pa.array(_MISSING)))
    ok = pc.or_(missing, pc.match_substring_regex(text, _NUMBER, ignore_case=True))
    bad = np.flatnonzero(~ok.to_numpy(zero_copy_only=False))
    if bad.size:
        row = int(bad[0])
        raise _row_error(table, name, col, row, f"{text[row].as_py()!r} is not a number")
    return pc.cast(pc.if_else(missing, pa.scalar(None, pa.string()), text), pa.float64())


def validate_labels(table: pa.Table, schema: Schema, path: str | Path | None = None) -> None:
    """Labels are present and finite; for a binary task they are 0 or 1.

    Raises:
        DataError: Naming file, line (or row), the label column and the offending value.
    """
    name = _source(table, path)[0]
    if schema.label not in table.column_names:
        return
    label = _numeric_column(table, schema.label, name)
    number = table.column_names.index(schema.label) + 1
    values = label.to_numpy(zero_copy_only=False).astype(np.float64)
    bad = ~np.isfinite(values)
    rule = "a label must be a finite number"
    if schema.task == "binary":
        bad |= (values != 0.0) & (values != 1.0)
        rule = "a label must be 0 or 1 for a binary task"
    hits = np.flatnonzero(bad)
    if hits.size:
        row = int(hits[0])
        raise DataError(
            name,
            f"{rule}, found {label[row].as_py()!r}",
            column=schema.label,
            column_number=number,
            **row_location(table, None, row),
        )
