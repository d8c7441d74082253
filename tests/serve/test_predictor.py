"""Predictor: training-identical scoring of records/tables/DataFrames, validation naming the
field, recommend/explain through the library, and ModelSlot's atomic, failure-safe reload."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pytest
import torch

from recforge.cf.recommend import recommend
from recforge.cf.scoring import score_pairs
from recforge.data.loader import BatchLoader
from recforge.explain import explain_table
from recforge.interactions import InteractionMatrix
from recforge.serve.bundle import load_bundle
from recforge.serve.predictor import Predictor, RequestError
from recforge.serve.slot import ModelSlot


def _independent_scores(path, records) -> np.ndarray:
    """Encode with the saved preprocessor and run the saved model directly."""
    bundle = load_bundle(path)
    table = pa.Table.from_pylist(records)
    encoded = bundle.preprocessor.transform(table, with_label=False)
    with torch.no_grad():
        logits = torch.cat([bundle.model(b) for b in BatchLoader(encoded, 7)])
    return torch.sigmoid(logits).numpy()


def test_records_tables_and_dataframes_score_as_in_training(serve_bundles):
    records = serve_bundles.records
    pred = Predictor.load(serve_bundles.deepfm)
    scores = pred.predict(records)
    expected = _independent_scores(serve_bundles.deepfm, records)
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scores, load_bundle(serve_bundles.deepfm).predict_records(records))
    table = pa.Table.from_pylist(records)
    np.testing.assert_allclose(pred.predict(table), scores, rtol=1e-6)
    np.testing.assert_allclose(pred.predict(table.to_pandas()), scores, rtol=1e-6)
    assert ((scores > 0) & (scores < 1)).all() and len(np.unique(scores)) > 1


def test_unknown_categories_score_like_missing_ones(serve_bundles):
    pred = Predictor.load(serve_bundles.deepfm)
    base = dict(serve_bundles.records[0])
    n = len(base["hist_cats"])  # the categories stay aligned with the item history
    unknown = {**base, "user_id": "never-seen", "site": "nowhere", "hist_cats": ["zz"] * n}
    as_null = {**base, "user_id": None, "site": None, "hist_cats": [None] * n}
    a, b, known = pred.predict([unknown, as_null, base])
    assert a == pytest.approx(b, rel=1e-6)
    assert abs(float(known) - float(a)) > 1e-6  # known values are not all mapped to OOV


@pytest.mark.parametrize(
    ("change", "field", "status"),
    [
        (lambda r: {k: v for k, v in r.items() if k != "price"}, "price", 422),
        (lambda r: {**r, "price": "cheap"}, "price", 422),
        (lambda r: {**r, "hist_item_ids": 17}, "hist_item_ids", 422),
        (lambda r: {**r, "device": {"os": "x"}}, "device", 422),
    ],
)
def test_bad_records_name_the_field(serve_bundles, change, field, status):
    pred = Predictor.load(serve_bundles.deepfm)
    records = [dict(r) for r in serve_bundles.records[:3]]
    records[1] = change(records[1])
    with pytest.raises(RequestError) as err:
        pred.predict(records)
    assert err.value.field == field and err.value.status == status
    assert field in str(err.value) and isinstance(err.value, ValueError)
    assert pred.predict(serve_bundles.records[:3]).shape == (3,)  # still serving


def test_batch_size_limits_and_missing_table_columns(serve_bundles):
    pred = Predictor.load(serve_bundles.deepfm, max_records=5)
    with pytest.raises(RequestError, match="empty") as err:
        pred.predict([])
    assert err.value.field == "records"
    with pytest.raises(RequestError, match="limit of 5") as err:
        pred.predict(serve_bundles.records[:6])
    assert err.value.status == 413
    table = pa.Table.from_pylist(serve_bundles.records[:3]).drop_columns(["site"])
    with pytest.raises(RequestError, match="'site'") as err:
        pred.predict(table)
    assert err.value.field == "site"
    assert pred.predict(serve_bundles.records[:5]).shape == (5,)


def test_recommend_matches_the_library(serve_bundles):
    pred = Predictor.load(serve_bundles.gmf, seen=serve_bundles.gmf_seen)
    bundle = load_bundle(serve_bundles.gmf)
    pre = bundle.preprocessor
    user_vocab, item_vocab = pre.vocabs["user"].to_pylist(), pre.vocabs["item"].to_pylist()
    seen = serve_bundles.gmf_seen
    uids = np.array([user_vocab.index(u) + 1 for u in seen.column("user").to_pylist()])
    iids = np.array([item_vocab.index(i) + 1 for i in seen.column("item").to_pylist()])
    matrix = InteractionMatrix.from_coo(
        uids, iids, shape=(len(user_vocab) + 1, len(item_vocab) + 1)
    )
    for user in ("u0", "u3"):
        rec = pred.recommend(user, k=4)
        uid = user_vocab.index(user) + 1
        items, scores = recommend(bundle.model, np.array([uid]), 4, seen=matrix)
        assert rec.items == [item_vocab[i - 1] for i in items[0] if i > 0]
        np.testing.assert_allclose(rec.scores, scores[0][items[0] > 0], rtol=1e-6)
        seen_items = set(np.array(seen.column("item").to_pylist())[np.array(
            seen.column("user").to_pylist()) == user])  # fmt: skip
        assert not seen_items & set(rec.items)
        # brute force, independent of cf.recommend: score every known item, drop the seen
        all_items = np.arange(1, len(item_vocab) + 1)
        raw = score_pairs(bundle.model, np.full(len(all_items), uid), all_items)
        unseen = np.array([item_vocab[i - 1] not in seen_items for i in all_items])
        best = np.argsort(-np.where(unseen, raw, -np.inf), kind="stable")[:4]
        assert rec.items == [item_vocab[all_items[j] - 1] for j in best]
    # candidates: ranked by the model's own pair scores, seen ones dropped
    cands = ["i1", "i2", "i5", "i7", "i9"]
    rec = pred.recommend("u0", k=3, candidates=cands, exclude_seen=False)
    uid = user_vocab.index("u0") + 1
    raw = score_pairs(
        bundle.model, np.full(5, uid), np.array([item_vocab.index(c) + 1 for c in cands])
    )
    order = np.argsort(-raw, kind="stable")[:3]
    assert rec.items == [cands[i] for i in order]
    np.testing.assert_allclose(rec.scores, raw[order], rtol=1e-6)


def test_recommend_errors(serve_bundles):
    pred = Predictor.load(serve_bundles.gmf)
    with pytest.raises(RequestError) as err:
        pred.recommend("nobody", k=3)
    assert (err.value.field, err.value.status) == ("user", 404)
    with pytest.raises(RequestError) as err:
        pred.recommend("u0", k=3)  # no seen interactions configured, GMF carries none
    assert err.value.field == "exclude_seen"
    assert len(pred.recommend("u0", k=3, exclude_seen=False).items) == 3
    with pytest.raises(RequestError) as err:
        pred.recommend("u0", k=2, candidates=["i1", "nope"], exclude_seen=False)
    assert err.value.field == "candidates" and "nope" in str(err.value)
    with pytest.raises(RequestError) as err:
        Predictor.load(serve_bundles.deepfm).recommend("u1", k=3)
    assert (err.value.field, err.value.status) == ("model", 400)


def test_explain_matches_recforge_explain(serve_bundles):
    pred = Predictor.load(serve_bundles.din)
    record = next(r for r in serve_bundles.records if len(r["hist_item_ids"]) >= 2)
    got = pred.explain(record)
    expected = explain_table(load_bundle(serve_bundles.din), pa.Table.from_pylist([record]))
    np.testing.assert_allclose(got.weights, expected.weights, rtol=1e-6)
    assert got.labels == expected.labels and len(got.weights) == len(record["hist_item_ids"][-20:])
    assert got.score == pytest.approx(float(pred.predict([record])[0]), rel=1e-6)
    with pytest.raises(RequestError, match="no attention") as err:
        Predictor.load(serve_bundles.deepfm).explain(record)
    assert err.value.status == 400


def test_metadata_reports_model_schema_and_training_metrics(serve_bundles):
    meta = Predictor.load(serve_bundles.deepfm).metadata()
    assert meta["model"] == "deepfm" and meta["params"]["hidden"] == [8]
    assert meta["schema"]["user_key"] == "user_id" and meta["inputs"]["price"] == "numeric"
    assert set(meta["training_metrics"]["summary"]["test"]) >= {"auc", "logloss"}
    assert len(meta["training_metrics"]["history"]) == 1
    assert Predictor.load(serve_bundles.din).metadata()["training_metrics"] == {}


def test_slot_reload_swaps_atomically_and_survives_a_bad_bundle(serve_bundles, tmp_path):
    live = tmp_path / "live"
    shutil.copytree(serve_bundles.deepfm, live)
    slot = ModelSlot(live)
    held = slot.get()
    records = serve_bundles.records[:4]
    before = held.predict(records)
    with pytest.raises(RuntimeError, match="not a recforge bundle"):
        slot.reload(tmp_path / "missing")
    assert slot.get() is held and "missing" in slot.last_error
    fresh = slot.reload(serve_bundles.deepfm_b)
    assert slot.get() is fresh and fresh.generation == held.generation + 1
    np.testing.assert_allclose(
        fresh.predict(records), _independent_scores(serve_bundles.deepfm_b, records), rtol=1e-5
    )
    np.testing.assert_allclose(held.predict(records), before)  # the old object still works
    # watching: a bundle renamed into the watched folder is picked up by poll()
    slot = ModelSlot(live)
    assert slot.poll() is False
    shutil.rmtree(live)
    shutil.copytree(serve_bundles.deepfm_b, live)
    assert slot.poll() is True
    assert slot.get().bundle_id == Predictor.load(serve_bundles.deepfm_b).bundle_id


def test_bundle_carries_its_training_record_when_copied(serve_bundles, tmp_path):
    # a bundle copied away from its output folder (no metrics.json beside it) still reports
    copy = tmp_path / "copied"
    shutil.copytree(serve_bundles.deepfm, copy)
    metrics = Predictor.load(copy).metadata()["training_metrics"]
    beside = json.loads((serve_bundles.deepfm.parent / "metrics.json").read_text())
    assert metrics["summary"]["test"] == beside["test"]
    history = json.loads((serve_bundles.deepfm.parent / "history.json").read_text())
    assert metrics["history"] == history
