"""Encoded-data cache: keyed by source and schema, reused, never left half-written."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from recforge.config import DataConfig
from recforge.data import pipeline
from recforge.data.read.readers import DataError
from recforge.features import CategoricalField, NumericField, Schema


def _write(tmp_path, rows: int = 300, bad_row: int | None = None):
    rng = np.random.default_rng(0)
    price = [str(round(v, 3)) for v in rng.random(rows)]
    if bad_row is not None:
        price[bad_row] = "cheap"
    table = pa.table(
        {
            "user": rng.integers(0, 20, rows),
            "item": rng.integers(0, 30, rows),
            "price": price,
            "label": rng.integers(0, 2, rows),
        }
    )
    pacsv.write_csv(table, tmp_path / "log.csv")
    schema = Schema(
        fields=(
            CategoricalField("user", group="user"),
            CategoricalField("item", group="item"),
            NumericField("price"),
        ),
        user_key="user",
        item_key="item",
    )
    (tmp_path / "schema.json").write_text(schema.to_json())
    return DataConfig(
        dataset="files",
        train=str(tmp_path / "log.csv"),
        schema=str(tmp_path / "schema.json"),
        cache_dir=str(tmp_path / "cache"),
    )


def test_second_run_reuses_the_cache(tmp_path, monkeypatch):
    cfg = _write(tmp_path)
    first = pipeline.encode_run(cfg, seed=1)
    assert not first.from_cache and len(first.train) + len(first.valid) + len(first.test) == 300
    calls = []
    monkeypatch.setattr(pipeline, "load_raw", lambda c: calls.append(c))
    second = pipeline.encode_run(cfg, seed=1)
    assert second.from_cache and not calls  # no raw read, no preprocessing
    assert isinstance(second.train.sparse, np.memmap)
    np.testing.assert_array_equal(second.test.sparse, first.test.sparse)
    assert second.schema == first.schema


def test_key_changes_with_source_and_seed(tmp_path):
    cfg = _write(tmp_path)
    key = pipeline.cache_key(cfg, 0)
    assert pipeline.cache_key(cfg, 1) != key
    (tmp_path / "log.csv").write_text((tmp_path / "log.csv").read_text() + "1,1,0.5,1\n")
    assert pipeline.cache_key(cfg, 0) != key
    schema = json.loads((tmp_path / "schema.json").read_text())
    schema["embedding_dim"] = 4
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    assert pipeline.cache_key(cfg, 0) != key


def test_bad_input_names_file_line_column_and_leaves_no_cache(tmp_path):
    cfg = _write(tmp_path, bad_row=41)
    with pytest.raises(DataError) as info:
        pipeline.encode_run(cfg, seed=0)
    message = str(info.value)
    assert "log.csv" in message and "line 43" in message and "price" in message
    cache = tmp_path / "cache"
    assert not cache.exists() or not any(cache.iterdir())
