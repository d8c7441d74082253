"""Categorical CSV columns are read dictionary-encoded and encode exactly as strings do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from recforge.data.encode import preprocess
from recforge.data.encode.preprocess import Preprocessor
from recforge.data.read import readers
from recforge.data.read.readers import DataError, read_table
from recforge.data.sources.synthetic import make_wide_log
from recforge.features import CategoricalField, NumericField, Schema


def _log(tmp_path: Path, rows: int = 6_000) -> tuple[Path, pa.Table, Schema]:
    table, schema = make_wide_log(rows=rows, n_cat=5, n_num=3, max_vocab=3_000, seed=5)
    path = tmp_path / "log.csv"
    pacsv.write_csv(table, path)
    return path, table, schema


def _as_plain_strings(table: pa.Table) -> pa.Table:
    cols = {
        name: col.cast(pa.string()) if pa.types.is_dictionary(col.type) else col
        for name, col in zip(table.column_names, table.columns, strict=True)
    }
    return pa.table(cols)


def test_read_table_reads_categoricals_as_one_dictionary_per_column(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several blocks of the reader, unified into one dictionary per column."""
    monkeypatch.setattr(readers, "_READ_BLOCK", 32 << 10)
    path, table, schema = _log(tmp_path)
    read = read_table(path, schema=schema)
    cat = read.column("C1")
    assert pa.types.is_dictionary(cat.type) and cat.num_chunks > 1
    assert all(c.dictionary.equals(cat.chunk(0).dictionary) for c in cat.chunks)
    assert read.column("C1").cast(pa.string()).equals(table.column("C1").cast(pa.string()))
    assert read.column("I1").type == pa.float64()


def test_dictionary_columns_encode_exactly_as_strings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fit and transform on the dictionary-read table equal those on the same table with plain
    string columns: vocabularies (order included), ids, unknowns and nulls -> 0, numerics."""
    monkeypatch.setattr(readers, "_READ_BLOCK", 32 << 10)
    monkeypatch.setattr(preprocess, "_STACK_BLOCK", 1000)  # several blocks and a partial one
    path, _, schema = _log(tmp_path)
    read = read_table(path, schema=schema)
    plain = _as_plain_strings(read)
    fit_rows = 4_000
    pre_dict = Preprocessor(schema).fit(read.slice(0, fit_rows))
    pre_str = Preprocessor(schema).fit(plain.slice(0, fit_rows))
    assert pre_dict.vocabs.keys() == pre_str.vocabs.keys()
    assert all(pre_dict.vocabs[k].equals(pre_str.vocabs[k]) for k in pre_dict.vocabs)
    assert pre_dict.numeric == pre_str.numeric
    test_dict, test_str = (
        pre_dict.transform(read.slice(fit_rows)),
        pre_str.transform(plain.slice(fit_rows)),
    )
    np.testing.assert_array_equal(test_dict.sparse, test_str.sparse)
    np.testing.assert_array_equal(test_dict.dense, test_str.dense)
    assert (test_dict.sparse == 0).any()  # values unseen in the fit rows are OOV


def test_chunks_with_different_dictionaries_and_nulls() -> None:
    """A column whose chunks carry their own dictionaries (and nulls) is unified first."""
    a = pa.array(["x", "y", None, "x"]).dictionary_encode()
    b = pa.array(["z", "x", "z", None]).dictionary_encode()
    col = pa.chunked_array([a, b])
    schema = Schema(fields=(CategoricalField("c"), NumericField("n")), label="label")
    table = pa.table({"c": col, "n": [1.0] * 8, "label": [0.0, 1.0] * 4})
    plain = _as_plain_strings(table)
    enc_dict = Preprocessor(schema).fit_transform(table)
    enc_str = Preprocessor(schema).fit_transform(plain)
    np.testing.assert_array_equal(enc_dict.sparse, enc_str.sparse)
    assert enc_dict.sparse[:, 0].tolist()[2] == 0 and enc_dict.sparse[:, 0].tolist()[7] == 0


def test_dictionary_read_locates_a_bad_number(tmp_path: Path) -> None:
    """The dictionary read keeps read_table's located errors."""
    path = tmp_path / "bad.csv"
    lines = ["c,n,label"] + [f"v{i % 7},{i},1" for i in range(300)] + ["v1,oops,0"]
    path.write_text("\n".join(lines) + "\n")
    schema = Schema(fields=(CategoricalField("c"), NumericField("n")), label="label")
    with pytest.raises(DataError) as info:
        read_table(path, schema=schema)
    message = str(info.value)
    assert "line 302" in message and "'n'" in message and "oops" in message
