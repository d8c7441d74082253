"""Preprocessor: fit on train only, identical transforms, OOV, hashing, numerics, sequences."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from recforge.data.encode.preprocess import Preprocessor
from recforge.data.read.readers import DataError
from recforge.features import CategoricalField, NumericField, Schema, SequenceField


def _schema(**kw) -> Schema:
    return Schema(
        fields=(
            CategoricalField("user", group="user"),
            CategoricalField("item", group="item", min_count=2),
            CategoricalField("site", hash_buckets=16),
            NumericField("price", fill_value=-1.0, transform="standard"),
            NumericField("price_bucket", column="price", buckets=3),
            NumericField("clicks", transform="log"),
            SequenceField("hist", max_len=3, share_embedding_with="item"),
        ),
        label="y",
        user_key="user",
        item_key="item",
        **kw,
    )


TRAIN = pa.table(
    {
        "user": ["a", "b", "a", "c", "b", "a"],
        "item": [1, 2, 1, 3, 2, 1],
        "site": ["x", "y", "z", "x", "x", "q"],
        "price": [1.0, 2.0, None, 4.0, 5.0, 6.0],
        "clicks": [0, 10, 100, 1000, 3, -5],
        "hist": ["1|2", "", "2|1|2|2", None, "9", "2"],
        "y": [0, 1, 0, 1, 1, 0],
    }
)


def test_vocabulary_min_count_and_oov():
    pre = Preprocessor(_schema()).fit(TRAIN)
    item = pre.schema.field("item")
    # item counts over the column and the history tokens: 1 -> 5, 2 -> 7, 3 -> 1, 9 -> 1
    assert item.vocab_size == 3  # "2", "1" and the reserved OOV row
    assert pre.vocabs["item"].to_pylist() == ["2", "1"]
    enc = pre.transform(TRAIN)
    col = pre.schema.sparse_index("item")
    assert enc.sparse[:, col].tolist() == [2, 1, 2, 0, 1, 2]
    unseen = pre.transform(TRAIN.set_column(0, "user", pa.array(["zz"] * 6)))
    assert (unseen.sparse[:, 0] == 0).all()  # unknown user -> OOV, never a crash


def test_hashing_is_deterministic_and_in_range():
    pre = Preprocessor(_schema()).fit(TRAIN)
    col = pre.schema.sparse_index("site")
    ids = pre.transform(TRAIN).sparse[:, col]
    assert ids.min() >= 1 and ids.max() <= 16
    assert ids[0] == ids[3] == ids[4]  # all "x"
    assert pre.schema.field("site").vocab_size == 17


def test_numeric_fill_transform_and_buckets():
    pre = Preprocessor(_schema()).fit(TRAIN)
    enc = pre.transform(TRAIN)
    price = np.array([1.0, 2.0, -1.0, 4.0, 5.0, 6.0])
    np.testing.assert_allclose(enc.dense[:, 0], (price - price.mean()) / price.std(), rtol=1e-5)
    np.testing.assert_allclose(
        enc.dense[:, 1], np.log1p(np.clip([0, 10, 100, 1000, 3, -5], 0, None)), rtol=1e-6
    )
    buckets = enc.sparse[:, pre.schema.sparse_index("price_bucket")]
    assert buckets.min() >= 1 and buckets.max() <= 3
    order = np.argsort(price)
    assert np.all(np.diff(buckets[order]) >= 0)  # buckets are monotone in the value


def test_sequences_keep_most_recent_left_aligned():
    pre = Preprocessor(_schema()).fit(TRAIN)
    enc = pre.transform(TRAIN)
    # vocabulary: "2" -> 1, "1" -> 2; "9" is below min_count -> OOV 0
    assert enc.lengths["hist"].tolist() == [2, 0, 3, 0, 1, 1]
    assert enc.sequences["hist"].tolist() == [
        [2, 1, 0],
        [0, 0, 0],
        [2, 1, 1],
        [0, 0, 0],
        [0, 0, 0],
        [1, 0, 0],
    ]


def test_list_columns_equal_delimited_strings():
    as_lists = TRAIN.set_column(
        5, "hist", pa.array([["1", "2"], [], ["2", "1", "2", "2"], None, ["9"], ["2"]])
    )
    pre = Preprocessor(_schema()).fit(TRAIN)
    np.testing.assert_array_equal(
        pre.transform(as_lists).sequences["hist"], pre.transform(TRAIN).sequences["hist"]
    )


def test_fit_uses_train_only_and_save_load_round_trip(tmp_path):
    pre = Preprocessor(_schema()).fit(TRAIN.slice(0, 3))
    assert pre.schema.field("user").vocab_size == 3  # only "a", "b" seen
    pre.save(tmp_path / "pre")
    again = Preprocessor.load(tmp_path / "pre")
    assert again.schema == pre.schema
    assert again.fingerprint() == pre.fingerprint()
    a, b = pre.transform(TRAIN), again.transform(TRAIN)
    for key, arr in a.arrays().items():
        np.testing.assert_array_equal(arr, b.arrays()[key])


def test_serving_transform_needs_no_label():
    pre = Preprocessor(_schema()).fit(TRAIN)
    enc = pre.transform(TRAIN.drop_columns(["y"]), with_label=False)
    assert len(enc) == 6


def test_bad_inputs_are_located():
    pre = Preprocessor(_schema()).fit(TRAIN)
    with pytest.raises(DataError, match="price"):
        pre.transform(TRAIN.drop_columns(["price"]))
    bad_numeric = TRAIN.set_column(3, "price", pa.array(["1", "2", "3", "abc", "5", "6"]))
    with pytest.raises(DataError, match=r"row 4.*price|price.*row 4"):
        pre.transform(bad_numeric)
    bad_label = TRAIN.set_column(6, "y", pa.array([0, 1, 2, 1, 1, 0]))
    with pytest.raises(DataError, match="0 or 1"):
        pre.transform(bad_label)


def test_unfitted_transform_is_refused():
    with pytest.raises(RuntimeError, match="before fit"):
        Preprocessor(_schema()).transform(TRAIN)


def test_encode_ids_matches_transform_for_vocab_and_hashed_fields():
    schema = Schema(
        fields=(CategoricalField("user"), CategoricalField("tag", hash_buckets=13)),
        label="y",
    )
    table = pa.table(
        {"user": ["a", "b", "3", "a"], "tag": ["x", "y", "z", None], "y": [1, 0, 1, 0]}
    )
    pre = Preprocessor(schema).fit(table)
    encoded = pre.transform(table)
    assert pre.encode_ids("user", ["a", "b", "3"]).tolist() == encoded.sparse[:3, 0].tolist()
    # 3 and 3.0 are the same category as "3"; unknown and null -> 0
    assert pre.encode_ids("user", pa.array([3.0, None, 7.5])).tolist() == [
        int(encoded.sparse[2, 0]),
        0,
        0,
    ]
    assert pre.encode_ids("tag", ["x", "y", "z", None]).tolist() == encoded.sparse[:, 1].tolist()


def _aligned_schema(max_len: int = 2) -> Schema:
    return Schema(
        fields=(
            CategoricalField("item", group="item"),
            CategoricalField("cat", group="item"),
            SequenceField("hist", max_len=max_len, share_embedding_with="item"),
            SequenceField(
                "hist_cat", max_len=max_len, share_embedding_with="cat", aligned_with="hist"
            ),
        ),
        label="label",
    )


def test_aligned_sequences_must_have_one_length_per_row_before_the_cut():
    """Paired histories (items and their categories) that differ in length on a row were
    silently misaligned; now a DataError names the row and both fields. The check uses the
    full lengths: rows cut to max_len would look aligned when both exceed it."""
    table = pa.table({
        "item": ["a", "b", "c"], "cat": ["x", "y", "x"],
        "hist": [["a"], ["a", "b", "c"], []],
        "hist_cat": [["x"], ["x", "y", "x", "y"], []],
        "label": [1.0, 0.0, 1.0],
    })  # fmt: skip
    pre = Preprocessor(_aligned_schema(max_len=2)).fit(table.slice(0, 1))
    with pytest.raises(DataError) as info:
        pre.transform(table)
    assert info.value.row == 2 and info.value.column == "hist_cat"
    assert "4 entries but 'hist' has 3" in str(info.value)
    ok = pre.transform(table.filter(pa.array([True, False, True])))
    np.testing.assert_array_equal(ok.lengths["hist"], ok.lengths["hist_cat"])


def test_aligned_with_must_name_another_sequence():
    for target in ("item", "hist_cat", "nope"):
        with pytest.raises(ValueError, match="aligned_with"):
            Schema(
                fields=(
                    CategoricalField("item"),
                    SequenceField("hist_cat", share_embedding_with="item", aligned_with=target),
                ),
                label="label",
            )


def test_a_sequence_column_empty_on_every_row_means_no_behaviours():
    """A CSV whose history column is blank on every row is read as Arrow's null type; it used
    to be refused ("must hold lists or delimited strings, got null")."""
    schema = _aligned_schema()
    pre = Preprocessor(schema).fit(
        pa.table(
            {"item": ["a"], "cat": ["x"], "hist": [["a"]], "hist_cat": [["x"]], "label": [1.0]}
        )  # fmt: skip
    )
    blank = pa.nulls(2)
    data = pre.transform(
        pa.table(
            {
                "item": ["a", "b"],
                "cat": ["x", "x"],
                "hist": blank,
                "hist_cat": blank,
                "label": [1.0, 0.0],
            }
        )  # fmt: skip
    )
    assert data.lengths["hist"].tolist() == [0, 0] and not data.sequences["hist"].any()


def test_kept_lookups_encode_every_chunk_as_index_in_does():
    """Inside keep_lookups the per-field vocabulary index built once gives the ids a fresh
    ``index_in`` gives: known, unknown and null values, string and integer columns, chunks with
    different dictionaries, and a column whose type differs from the vocabulary's."""
    schema = Schema(
        fields=(CategoricalField("s"), CategoricalField("n"), CategoricalField("f")),
        label="y",
    )
    rng = np.random.default_rng(0)
    train = pa.table(
        {
            "s": [f"v{i}" for i in rng.integers(0, 50, 400)],
            "n": pa.array(rng.integers(0, 30, 400), pa.int64()),
            "f": [f"w{i}" for i in rng.integers(0, 5, 400)],
            "y": rng.integers(0, 2, 400).astype(np.float32),
        }
    )
    pre = Preprocessor(schema).fit(train)
    chunks = []
    for k in range(4):
        s = [None if i % 7 == 0 else f"v{i}" for i in rng.integers(0, 80, 60)]  # unknown > 49
        chunks.append(
            pa.table(
                {
                    "s": pa.array(s).dictionary_encode() if k % 2 else pa.array(s),
                    "n": pa.array([None, *rng.integers(0, 45, 59)], pa.int64()),
                    "f": pa.array([f"w{i}" for i in rng.integers(0, 9, 60)], pa.large_string()),
                    "y": np.zeros(60, np.float32),
                }
            )
        )
    fresh = [pre.transform(c) for c in chunks]
    with pre.keep_lookups():
        kept = [pre.transform(c) for c in chunks]
        assert set(pre._kept) >= {"s"}  # the index was kept
    assert pre._kept is None
    for a, b in zip(fresh, kept, strict=True):
        np.testing.assert_array_equal(a.sparse, b.sparse)
    ids = np.concatenate([k.sparse for k in kept])
    assert (ids[:, 0] == 0).any() and (ids[:, 0] > 0).any()  # unknown/null and known both met
