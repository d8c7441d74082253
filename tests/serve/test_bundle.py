"""Bundles load in a fresh process, score raw records, and refuse corrupt or mismatched files."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest
import torch

from recforge.data.encode.preprocess import Preprocessor
from recforge.data.loader import BatchLoader
from recforge.features import CategoricalField, NumericField, Schema
from recforge.models import registry
from recforge.serve.bundle import load_bundle, save_bundle
from recforge.train import seed_everything

TABLE = pa.table(
    {
        "u": ["a", "b", "c", "a"],
        "i": ["x", "y", "x", "z"],
        "p": [1.0, 2.0, None, 4.0],
        "label": [1, 0, 1, 0],
    }
)


@pytest.fixture
def bundle_dir(tmp_path):
    schema = Schema(
        fields=(
            CategoricalField("u", group="user"),
            CategoricalField("i", group="item"),
            NumericField("p"),
        ),
        user_key="u",
        item_key="i",
        embedding_dim=4,
    )
    pre = Preprocessor(schema).fit(TABLE)
    seed_everything(0)
    model = registry.build("fm", pre.schema, {})
    with torch.no_grad():  # nn.init moves FM's zero first-order weights: inputs matter
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    path = save_bundle(tmp_path / "bundle", "fm", model, pre)
    # the in-memory model on the preprocessed table, independent of what save/load does
    model.eval()
    with torch.no_grad():
        batch = next(iter(BatchLoader(pre.transform(TABLE), len(TABLE))))
        expected = torch.sigmoid(model(batch)).numpy()
    assert np.ptp(expected) > 1e-4
    return path, expected


def test_fresh_process_scores_raw_records(bundle_dir):
    path, expected = bundle_dir
    code = (
        "import json,sys; from recforge.serve.bundle import load_bundle;"
        f"b=load_bundle({str(path)!r});"
        "print(json.dumps(b.predict_records(["
        "{'u':'a','i':'x','p':1.0},{'u':'b','i':'y','p':2.0},{'u':'c','i':'x','p':None},"
        "{'u':'a','i':'z','p':4.0}]).tolist()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    np.testing.assert_allclose(json.loads(out.stdout), expected, rtol=1e-6)
    assert ((expected > 0) & (expected < 1)).all()  # probabilities for a binary task


def test_unknown_categories_score_without_error(bundle_dir):
    path, _ = bundle_dir
    bundle = load_bundle(path)
    scores = bundle.predict_records([{"u": "never-seen", "i": "nope", "p": 3.0}])
    assert scores.shape == (1,) and np.isfinite(scores).all()
    # unknown categories are the OOV id: the same score as missing values
    oov = bundle.predict_records([{"u": None, "i": None, "p": 3.0}])
    known = bundle.predict_records([{"u": "a", "i": "x", "p": 3.0}])
    np.testing.assert_allclose(scores, oov, rtol=1e-6)
    assert abs(float(known[0]) - float(scores[0])) > 1e-6


def test_corrupt_and_mismatched_bundles_are_refused(bundle_dir, tmp_path):
    path, _ = bundle_dir
    with pytest.raises(RuntimeError, match="not a recforge bundle"):
        load_bundle(tmp_path)
    meta = json.loads((path / "meta.json").read_text())
    (path / "meta.json").write_text(json.dumps({**meta, "model": "lr"}))
    with pytest.raises(RuntimeError, match="do not match"):
        load_bundle(path)
    (path / "meta.json").write_text(json.dumps(meta))
    (path / "model.pt").write_bytes(b"\x00garbage")
    with pytest.raises(RuntimeError, match="corrupt weights"):
        load_bundle(path)
    (path / "meta.json").write_text("{not json")
    with pytest.raises(RuntimeError, match="corrupt bundle metadata"):
        load_bundle(path)
