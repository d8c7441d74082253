"""Streaming preprocessing equals in-memory preprocessing; errors, atomicity, the pipeline path."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from recforge.config import DataConfig
from recforge.data import pipeline
from recforge.data.encode.preprocess import Preprocessor
from recforge.data.read.readers import DataError, read_table
from recforge.data.read.stream import FirstSeenIndex, NumericSummary, iter_chunks
from recforge.data.sources.synthetic import make_click_log, write_click_log
from recforge.data.store import EncodedWriter, load_encoded
from recforge.features import CategoricalField, EncodedData, NumericField, Schema, SequenceField

ROWS = 3000


def _schema() -> Schema:
    """The click-log schema with every feature kind: min_count, hashing, buckets, transforms."""
    _, schema = make_click_log(rows=10, seed=0)
    fields = {f.name: f for f in schema.fields}
    fields["item_id"] = dataclasses.replace(fields["item_id"], min_count=3)
    fields["site"] = dataclasses.replace(fields["site"], hash_buckets=32)
    fields["price"] = dataclasses.replace(fields["price"], transform="standard")
    extra = (
        NumericField("price_bucket", column="price", buckets=6),
        NumericField("age_minmax", column="account_age_days", transform="minmax", fill_value=-1.0),
        SequenceField("hist_own", column="hist_cats", max_len=4, min_count=2),
    )
    return dataclasses.replace(schema, fields=tuple(fields.values()) + extra)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stream")
    table, _ = make_click_log(rows=ROWS, seed=3, n_users=300, n_items=900)
    schema = _schema()
    (folder / "schema.json").write_text(schema.to_json())
    return {
        "csv": write_click_log(table, folder / "log.csv"),
        "parquet": write_click_log(table, folder / "log.parquet"),
        "schema": schema,
        "folder": folder,
    }


def _assert_same_arrays(a: EncodedData, b: EncodedData, *, rtol: float = 0.0) -> None:
    x, y = a.arrays(), b.arrays()
    assert x.keys() == y.keys()
    for name in x:
        assert x[name].dtype == y[name].dtype and x[name].shape == y[name].shape, name
        if rtol and x[name].dtype.kind == "f":
            np.testing.assert_allclose(y[name], x[name], rtol=rtol, atol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(y[name], x[name], err_msg=name)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_streaming_fit_equals_in_memory_fit(files, fmt):
    schema = files["schema"]
    whole = read_table(files[fmt], schema=schema)
    train = whole.slice(0, 2000)
    full = Preprocessor(schema).fit(train)
    chunks = list(iter_chunks(files[fmt], schema, chunk_rows=170))
    assert len(chunks) > 15 and sum(c.num_rows for c in chunks) == ROWS
    streamed = Preprocessor(schema).fit_stream(_rows(chunks, 2000))
    assert streamed.schema == full.schema
    assert streamed.vocabs.keys() == full.vocabs.keys()
    for name, vocab in full.vocabs.items():
        assert streamed.vocabs[name].equals(vocab), name  # same values in the same order
    assert full.schema.field("item_id").vocab_size < 900  # min_count=3 dropped rare items
    for name, state in full.numeric.items():
        got = streamed.numeric[name]
        assert got["min"] == state["min"] and got["max"] == state["max"]
        assert got.get("edges") == state.get("edges")  # exact quantile edges
        np.testing.assert_allclose([got["mean"], got["std"]], [state["mean"], state["std"]], 1e-12)
    # the held-out rows have unknown users/items: both map them to OOV identically
    rest = whole.slice(2000)
    _assert_same_arrays(full.transform(rest), streamed.transform(rest), rtol=1e-6)
    assert (full.transform(rest).sparse == 0).any()


def _rows(chunks: list[pa.Table], n: int):
    """The first n rows of a chunk stream, still in chunks."""
    seen = 0
    for chunk in chunks:
        if seen >= n:
            return
        yield chunk.slice(0, n - seen)
        seen += chunk.num_rows


def test_numeric_summary_quantiles_reproduce_numpy():
    rng = np.random.default_rng(0)
    x = np.round(rng.lognormal(2, 1, 10_001), 1)  # ties and a long tail
    qs = np.linspace(0, 1, 12)[1:-1]
    summary = NumericSummary(quantiles=True)
    for part in np.array_split(x, 37):
        summary.add(part)
    np.testing.assert_array_equal(summary.quantile(qs), np.quantile(x, qs))
    sample = NumericSummary(quantiles=True, exact_limit=100, sample_size=4000)
    for part in np.array_split(x, 37):
        sample.add(part)
    assert not sample.exact  # fell back to the sample: close, not exact
    np.testing.assert_allclose(sample.quantile(qs), np.quantile(x, qs), rtol=0.15)


def test_first_seen_index_matches_dictionary_encoding():
    values = pa.array(["b", "a", None, "b", "c", "a", "d", None, "c", "e"])
    index = FirstSeenIndex()
    codes = np.concatenate([index.codes(values.slice(i, 3)) for i in range(0, 10, 3)])
    expected = pa.compute.dictionary_encode(values).indices.fill_null(-1).to_numpy()
    np.testing.assert_array_equal(codes, expected)


def _bad_csv(tmp_path, bad_row: int, value: str = "cheap", blank_after: int | None = None):
    table, _ = make_click_log(rows=600, seed=1, n_users=50, n_items=80)
    path = write_click_log(table, tmp_path / "bad.csv")
    lines = path.read_text().splitlines()
    header = [h.strip('"') for h in lines[0].split(",")]
    cells = lines[bad_row + 1].split(",")
    cells[header.index("price")] = value
    lines[bad_row + 1] = ",".join(cells)
    if blank_after is not None:
        lines.insert(blank_after + 1, "")
    path.write_text("\n".join(lines) + "\n")
    return path, header.index("price") + 1


def test_bad_value_in_a_later_chunk_names_file_line_and_column(tmp_path):
    # row 250 lies in the third chunk of 100 rows; a blank line before it shifts the line by one
    path, col = _bad_csv(tmp_path, bad_row=250, blank_after=20)
    expected = str(pytest.raises(DataError, read_table, path, schema=_schema()).value)
    with pytest.raises(DataError) as info:
        for _ in iter_chunks(path, _schema(), chunk_rows=100, block_size=4096):
            pass
    err = info.value
    assert err.path == str(path) and err.line == 253 and err.column == "price"
    assert err.column_number == col and "'cheap' is not a number" in str(err)
    assert str(err) == expected  # the same message as the in-memory reader


def test_bad_label_in_parquet_names_the_row_of_the_file(tmp_path):
    table, _ = make_click_log(rows=500, seed=1, n_users=50, n_items=80)
    labels = table.column("label").to_numpy().astype(np.int64)
    labels[321] = 7
    table = table.set_column(table.column_names.index("label"), "label", pa.array(labels))
    pq.write_table(table, tmp_path / "bad.parquet")
    with pytest.raises(DataError) as info:
        list(iter_chunks(tmp_path / "bad.parquet", _schema(), chunk_rows=100))
    assert info.value.row == 322 and info.value.column == "label" and "found 7.0" in str(info.value)


@pytest.mark.parametrize("typed", [True, False], ids=["schema", "no-schema"])
def test_bytes_that_are_not_utf8_in_a_later_chunk_are_located(tmp_path, typed):
    """Before, the chunked reader gave a typed column's Arrow message without a line, and an
    untyped one's bytes through as raw binary; now both name the line like read_table."""
    path, _ = _bad_csv(tmp_path, bad_row=10, value="1.5")
    lines = path.read_bytes().split(b"\n")
    fields = lines[300].split(b",")
    fields[1] = b"seg\xff"  # user_segment, a categorical column
    lines[300] = b",".join(fields)
    path.write_bytes(b"\n".join(lines))
    schema = _schema() if typed else None
    with pytest.raises(DataError) as info:
        list(iter_chunks(path, schema, chunk_rows=50, block_size=4096))
    err = info.value
    assert err.line == 301 and err.column == "user_segment" and "not utf8 text" in str(err)
    assert str(err) == str(pytest.raises(DataError, read_table, path, schema=schema).value)


def test_duplicate_or_undecodable_header_is_located(tmp_path):
    path, _ = _bad_csv(tmp_path, bad_row=10, value="1.5")
    lines = path.read_bytes().split(b"\n")
    good = lines[0]
    lines[0] = good.replace(b'"price"', b'"user_id"')
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(DataError, match=r"line 1, column 'user_id' \(\d+\): column 'user_id' "
                       r"appears twice in the header"):  # fmt: skip
        list(iter_chunks(path, None, chunk_rows=50))
    lines[0] = good.replace(b"price", b"pr\xe9ce")
    path.write_bytes(b"\n".join(lines))
    for read in (lambda: list(iter_chunks(path, None, chunk_rows=50)), lambda: read_table(path)):
        with pytest.raises(DataError, match=r"line 1, column \(8\): bytes b'\\xe9' are not utf8"):
            read()


def test_malformed_row_is_located(tmp_path):
    path, _ = _bad_csv(tmp_path, bad_row=10, value="1.5")
    lines = path.read_text().splitlines()
    lines[400] += ",extra"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as info:
        list(iter_chunks(path, _schema(), chunk_rows=50, block_size=4096))
    assert info.value.line == 401 and "expected 13 fields, found 14" in str(info.value)


def test_compressed_csv_streams(tmp_path, files):
    import gzip

    gz = tmp_path / "log.csv.gz"
    gz.write_bytes(gzip.compress(files["csv"].read_bytes()))
    plain = pa.concat_tables(iter_chunks(files["csv"], files["schema"], chunk_rows=500))
    packed = pa.concat_tables(iter_chunks(gz, files["schema"], chunk_rows=500))
    assert packed.equals(plain.replace_schema_metadata(packed.schema.metadata))


def test_writer_failure_leaves_no_folder(tmp_path):
    target = tmp_path / "out" / "train"
    chunk = EncodedData(
        sparse=np.ones((4, 2), np.int32), dense=np.zeros((4, 1), np.float32), label=np.ones(4)
    )
    with pytest.raises(ValueError), EncodedWriter(target) as writer:
        writer.append(chunk)
        writer.append(dataclasses.replace(chunk, sparse=np.ones((4, 3), np.int32)))  # wrong width
    assert not target.exists() and list(target.parent.iterdir()) == []
    writer = EncodedWriter(target)
    writer.append(chunk)
    writer.append(dataclasses.replace(chunk, sparse=np.full((4, 2), 7, np.int32)))
    data = writer.close()
    assert isinstance(data.sparse, np.memmap) and data.sparse[:, 0].tolist() == [1] * 4 + [7] * 4
    assert len(load_encoded(target)) == 8


def _cfg(files, fmt: str, tmp_path, **kw) -> DataConfig:
    return DataConfig(
        dataset="files",
        train=str(files[fmt]),
        schema=str(files["folder"] / "schema.json"),
        cache_dir=str(tmp_path / kw.pop("cache", "cache")),
        chunk_rows=kw.pop("chunk_rows", 230),
        **kw,
    )


@pytest.mark.parametrize(("fmt", "split"), [("csv", "random"), ("parquet", "leave_last")])
def test_encode_run_streams_under_a_tiny_budget_with_equal_arrays(files, tmp_path, fmt, split):
    small = _cfg(files, fmt, tmp_path, split=split, memory_budget_mb=0.01, cache="a")
    assert pipeline.use_streaming(small)
    big = _cfg(files, fmt, tmp_path, split=split, streaming="never", cache="b")
    assert pipeline.cache_key(small, 5) == pipeline.cache_key(big, 5)  # the how is not the what
    streamed = pipeline.encode_run(small, seed=5)
    whole = pipeline.encode_run(big, seed=5)
    assert isinstance(streamed.train.sparse, np.memmap)
    assert streamed.schema == whole.schema
    for name in ("train", "valid", "test"):
        _assert_same_arrays(getattr(whole, name), getattr(streamed, name), rtol=1e-6)
    assert sum(len(getattr(streamed, n)) for n in ("train", "valid", "test")) == ROWS
    again = pipeline.encode_run(small, seed=5)
    assert again.from_cache and again.cache_path == streamed.cache_path


def test_given_validation_file_and_time_split(files, tmp_path):
    whole = read_table(files["csv"], schema=files["schema"])
    pacsv.write_csv(whole.slice(2500), tmp_path / "valid.csv")
    pacsv.write_csv(whole.slice(0, 2500), tmp_path / "train.csv")
    common = dict(dataset="files", schema=str(files["folder"] / "schema.json"), split="time")
    common |= dict(train=str(tmp_path / "train.csv"), valid=str(tmp_path / "valid.csv"))
    streamed = pipeline.encode_run(
        DataConfig(**common, streaming="always", chunk_rows=300, cache_dir=str(tmp_path / "s")), 1
    )
    memory = pipeline.encode_run(
        DataConfig(**common, streaming="never", cache_dir=str(tmp_path / "m")), 1
    )
    assert len(streamed.valid) == 500
    for name in ("train", "valid", "test"):
        _assert_same_arrays(getattr(memory, name), getattr(streamed, name), rtol=1e-6)


def test_failure_mid_transform_leaves_no_cache(files, tmp_path, monkeypatch):
    cfg = _cfg(files, "csv", tmp_path, streaming="always")
    calls = {"n": 0}
    original = Preprocessor.transform

    def failing(self, table, with_label=True):
        calls["n"] += 1
        if calls["n"] == 6:
            raise RuntimeError("disk full")
        return original(self, table, with_label)

    monkeypatch.setattr(Preprocessor, "transform", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        pipeline.encode_run(cfg, seed=0)
    assert list((tmp_path / "cache").iterdir()) == []


def test_streaming_always_refuses_what_cannot_stream(tmp_path):
    with pytest.raises(ValueError, match="streaming: always"):
        pipeline.use_streaming(DataConfig(dataset="synthetic", streaming="always"))
    (tmp_path / "x.libfm").write_text("1 3:1\n")
    cfg = DataConfig(dataset="files", train=str(tmp_path / "x.libfm"), schema="s.json")
    assert not pipeline.use_streaming(cfg)  # auto falls back to reading whole tables
    with pytest.raises(ValueError, match="cannot stream"):
        pipeline.use_streaming(dataclasses.replace(cfg, streaming="always"))


def test_categorical_ints_and_nulls_in_parquet(tmp_path):
    table = pa.table(
        {
            "u": pa.array([1, 2, None, 1, 3, 2, 2, None, 9, 1], pa.int64()),
            "x": pa.array([0.5, None, 2.0, 1.0, None, 3.0, 4.0, 1.0, 2.5, 7.0]),
            "label": pa.array([0, 1, 0, 1, 0, 1, 1, 0, 0, 1], pa.int8()),
        }
    )
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=3)
    schema = Schema(
        fields=(CategoricalField("u", min_count=2), NumericField("x", buckets=3, fill_value=-1)),
        label="label",
    )
    full = Preprocessor(schema).fit(table)
    streamed = Preprocessor(schema).fit_stream(iter_chunks(tmp_path / "t.parquet", schema, 4))
    assert streamed.vocabs["u"].to_pylist() == full.vocabs["u"].to_pylist() == ["1", "2"]
    assert streamed.numeric["x"]["edges"] == full.numeric["x"]["edges"]
