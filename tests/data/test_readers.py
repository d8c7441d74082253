"""Readers: CSV/TSV/Parquet/libfm tables, compressed copies, and errors naming file/line/column."""

from __future__ import annotations

import gzip
import lzma
import random
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recforge.data.read.readers import (
    DataError,
    check_numeric,
    find_file,
    physical_line,
    read_table,
    validate_labels,
)
from recforge.features import CategoricalField, NumericField, Schema

SCHEMA = Schema(
    fields=(CategoricalField("user"), NumericField("price")), label="click", task="binary"
)
GOOD = "user,price,click\n007,1.5,1\nb,,0\nc,3e2,1\n"


def write(path: Path, text: str) -> Path:
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    elif path.suffix == ".xz":
        path.write_bytes(lzma.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def raises(fn, *parts: str) -> DataError:
    with pytest.raises(DataError) as info:
        fn()
    for part in parts:
        assert part in str(info.value), (part, str(info.value))
    return info.value


# ---- reading ---------------------------------------------------------------------------------
def test_csv_with_schema_types_and_missing_values(tmp_path):
    table = read_table(write(tmp_path / "train.csv", GOOD), schema=SCHEMA)
    assert table["user"].to_pylist() == ["007", "b", "c"]  # categoricals stay text
    assert table["price"].to_pylist() == [1.5, None, 300.0]
    assert table["click"].type == pa.float64()


@pytest.mark.parametrize("name", ["t.tsv", "t.tsv.gz", "t.tsv.xz"])
def test_tsv_by_extension_and_compressed(tmp_path, name):
    table = read_table(write(tmp_path / name, GOOD.replace(",", "\t")), schema=SCHEMA)
    assert table.num_rows == 3 and table["price"].to_pylist() == [1.5, None, 300.0]


def test_columns_selection_and_headerless_names(tmp_path):
    path = write(tmp_path / "u.data", "1\t10\t5\n2\t20\t3\n")
    table = read_table(path, fmt="tsv", header=False, column_names=["u", "i", "r"], columns=["r"])
    assert table.column_names == ["r"] and table["r"].to_pylist() == [5, 3]


def test_multichar_delimiter_splits_like_python(tmp_path):
    rows = [["1", "1193", "5", "978300760"], ["2", "661", "3", "978302109"]]
    path = write(tmp_path / "ratings.dat", "".join("::".join(r) + "\n" for r in rows))
    table = read_table(path, delimiter="::", header=False, column_names=list("uirt"))
    assert table.to_pylist() == [dict(zip("uirt", map(int, r), strict=True)) for r in rows]


def test_parquet_round_trip_and_missing_column(tmp_path):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"user": ["a", "b"], "price": [1.0, 2.0], "click": [0, 1]}), path)
    assert read_table(path, schema=SCHEMA)["click"].to_pylist() == [0.0, 1.0]
    raises(lambda: read_table(path, columns=["nope"]), "d.parquet", "column 'nope'", "missing")


def test_libfm_matches_a_python_parse(tmp_path):
    rng = random.Random(0)
    lines = []
    for _ in range(50):
        feats = [f"{rng.randrange(100)}:1" for _ in range(rng.randrange(1, 5))]
        lines.append(" ".join([rng.choice(["1", "-1"]), *feats]))
    table = read_table(write(tmp_path / "x.libfm", "\n".join(lines) + "\n"))
    width = max(len(line.split()) - 1 for line in lines)
    assert table.column_names == ["label"] + [f"f{j}" for j in range(width)]  # no v: all 1
    for row, line in zip(table.to_pylist(), lines, strict=True):
        label, *feats = line.split()
        assert row["label"] == float(label)
        want = [f.split(":")[0] for f in feats] + [None] * (width - len(feats))
        assert [row[f"f{j}"] for j in range(width)] == want


def test_libfm_values_kept_only_when_not_all_one(tmp_path):
    table = read_table(write(tmp_path / "x.libsvm", "1 3:0.5 7:1\n0  2:1   9:2\n"))
    assert table["f1"].to_pylist() == ["7", "9"]
    assert table["v0"].to_pylist() == [0.5, 1.0] and table["v1"].to_pylist() == [1.0, 2.0]


def test_physical_line_skips_blank_lines_like_brute_force(tmp_path):
    rng = random.Random(1)
    lines = [rng.choice(["", "x", "\r", "yy"]) for _ in range(300)]
    path = write(tmp_path / "b.txt", "\n".join(lines))
    nonempty = [i + 1 for i, s in enumerate(lines) if s not in ("", "\r")]
    for record in (1, 2, 50, len(nonempty)):
        assert physical_line(path, record) == nonempty[record - 1]


def test_find_file_compressed_and_in_zip(tmp_path):
    write(tmp_path / "a.txt.xz", "x\n")
    assert find_file(tmp_path, ["a.txt"]) == tmp_path / "a.txt.xz"
    with zipfile.ZipFile(tmp_path / "ml.zip", "w") as zf:
        zf.writestr("ml/u.data", "1\t2\t3\t4\n")
    found = find_file(tmp_path, ["u.data"], extract_to=tmp_path / "out")
    assert found is not None and found.read_text() == "1\t2\t3\t4\n"
    assert find_file(tmp_path, ["missing"]) is None


# ---- errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["train.csv", "train.csv.gz"])
def test_malformed_row_names_line_and_column(tmp_path, name):
    text = "user,price,click\na,1,0\n\nb,2,1\nc,3\nd,4,0\n"  # blank line 3; short row on line 5
    path = write(tmp_path / name, text)
    err = raises(lambda: read_table(path), name, "line 5", "column 'click' (3)", "found 2")
    assert err.line == 5 and err.column == "click" and err.column_number == 3


def test_malformed_row_with_multichar_delimiter(tmp_path):
    path = write(tmp_path / "r.dat", "1::2::3\n4::5::6\n7::8\n")
    raises(lambda: read_table(path, delimiter="::", header=False), "r.dat", "line 3", "(3)")


def test_missing_required_column(tmp_path):
    path = write(tmp_path / "train.csv", "user,click\na,1\n")
    raises(lambda: read_table(path, schema=SCHEMA), "train.csv", "line 1", "column 'price'")


def test_non_numeric_value_is_located(tmp_path):
    text = "user,price,click\na,1,0\nb,2,1\n\nc,abc,1\n"
    err = raises(
        lambda: read_table(write(tmp_path / "train.csv", text), schema=SCHEMA),
        "train.csv, line 5, column 'price' (2): 'abc' is not a number",
    )
    assert err.line == 5


def test_non_numeric_in_memory_table_reports_row():
    table = pa.table({"user": ["a", "b"], "price": ["1", "x"], "click": [0, 1]})
    raises(lambda: check_numeric(table, SCHEMA), "<table>, row 2, column 'price'", "'x'")


@pytest.mark.parametrize("text", ["", "user,price,click\n"])
def test_empty_file(tmp_path, text):
    raises(
        lambda: read_table(write(tmp_path / "e.csv", text)),
        "e.csv",
        "line 1" if not text else "line 2",
    )


def test_binary_label_outside_01(tmp_path):
    path = write(tmp_path / "train.csv", "user,price,click\na,1,0\nb,2,2\n")
    raises(lambda: read_table(path, schema=SCHEMA), "line 3", "column 'click' (3)", "0 or 1")
    table = pa.table({"user": ["a"], "price": [1.0], "click": [0.5]})
    raises(lambda: validate_labels(table, SCHEMA, "mem"), "mem, row 1", "column 'click'")
    reg = Schema(fields=SCHEMA.fields, label="click", task="regression")
    validate_labels(table, reg)  # any finite label is fine for regression


def test_libfm_token_without_colon(tmp_path):
    path = write(tmp_path / "t.libfm", "1 3:1 5:1\n\n-1 2:1 7 9:1\n")
    err = raises(lambda: read_table(path), "t.libfm", "line 3", "column 'f1' (3)", "'7'")
    assert err.line == 3


def test_libfm_bad_label_and_value(tmp_path):
    raises(lambda: read_table(write(tmp_path / "a.libfm", "1 3:1\nyes 4:1\n")), "line 2", "label")
    raises(lambda: read_table(write(tmp_path / "b.libfm", "1 3:x\n")), "line 1", "'v0' (2)")


def test_numeric_columns_are_float_not_silently_null(tmp_path):
    path = write(tmp_path / "n.csv", "user,price,click\na,NA,0\nb,-2.5e-1,1\n")
    assert np.allclose(read_table(path, schema=SCHEMA)["price"].to_pylist()[1], -0.25)


def test_find_file_never_leaves_the_given_folder_and_a_missing_path_is_an_error(tmp_path):
    from recforge.data.read.readers import find_file

    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "frappe.test.libfm").write_text("1 1:1\n")
    empty = tmp_path / "given"
    empty.mkdir()
    assert find_file(empty, ["frappe.test.libfm"]) is None  # the sibling copy is not used
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        find_file(tmp_path / "does-not-exist", ["frappe.test.libfm"])


def test_prepare_with_a_missing_path_fails_in_one_line(tmp_path, capsys):
    from recforge.cli import main

    (tmp_path / "frappe.test.libfm").write_text("1 1:1\n")  # a copy beside the missing folder
    code = main(["datasets", "prepare", "frappe", "--path", str(tmp_path / "missing")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "no such file or folder" in err and "\n" not in err


def test_a_value_beyond_float32_is_refused_with_its_location(tmp_path):
    """1e308 is finite in float64 but inf in the float32 the models use: it used to give a NaN
    loss (or, with transform=standard, a zeroed column); now one line names file, line, column."""
    from recforge.data.encode.preprocess import Preprocessor
    from recforge.data.read.readers import DataError, read_table
    from recforge.features import CategoricalField, NumericField, Schema

    path = tmp_path / "big.csv"
    path.write_text("user,item,price,click\nu1,i1,3.5,1\nu2,i2,1e308,0\nu3,i3,inf,1\n")
    schema = Schema(
        fields=(CategoricalField("user", group="user"), CategoricalField("item", group="item"),
                NumericField("price", transform="standard")),
        label="click",
    )  # fmt: skip
    with pytest.raises(DataError, match="outside the float32 range") as info:
        Preprocessor(schema).fit(read_table(path, schema=schema))
    assert info.value.line == 3 and info.value.column == "price"
    path.write_text("user,item,price,click\nu1,i1,3.5,1\nu2,i2,3e38,0\nu3,i3,inf,1\n")
    Preprocessor(schema).fit(read_table(path, schema=schema))  # in range; inf stays missing


def test_duplicate_header_and_non_utf8_bytes_name_their_place(tmp_path):
    from recforge.data.read.readers import DataError, read_table

    dup = tmp_path / "dup.csv"
    dup.write_text("user,item,user,click\nu1,i1,u2,1\n")
    with pytest.raises(DataError, match="appears twice") as info:
        read_table(dup)
    assert info.value.line == 1 and info.value.column == "user"
    raw = tmp_path / "latin.csv"
    raw.write_bytes(b"user,item,click\nu1,i1,1\nu2,caf\xe9,0\n")
    with pytest.raises(DataError, match="not utf8 text") as info:
        read_table(raw)
    assert info.value.line == 3 and info.value.column == "item"
    assert read_table(raw, encoding="latin-1").column("item").to_pylist() == ["i1", "café"]
