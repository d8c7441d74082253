"""The synthetic click log: determinism, shape, skew, sequences, planted signal, drift, files."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from scipy.sparse import hstack
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import OneHotEncoder

from recforge.data.sources import catalogue as datasets
from recforge.data.sources.synthetic import make_click_log, make_wide_log, write_click_log
from recforge.features import CategoricalField, NumericField, Schema, SequenceField

COLUMNS = [
    "user_id",
    "user_segment",
    "item_id",
    "item_category",
    "device",
    "hour",
    "site",
    "price",
    "account_age_days",
    "hist_item_ids",
    "hist_cats",
    "ts",
    "label",
]


@pytest.fixture(scope="module")
def medium():
    """40k rows with the hidden truth, shared by the statistical tests."""
    return make_click_log(rows=40_000, seed=3, n_users=1_000, n_items=3_000, return_truth=True)


def test_deterministic_under_seed():
    a, schema_a = make_click_log(rows=3_000, seed=7, n_users=200, n_items=500)
    b, schema_b = make_click_log(rows=3_000, seed=7, n_users=200, n_items=500)
    c, _ = make_click_log(rows=3_000, seed=8, n_users=200, n_items=500)
    assert a.equals(b) and schema_a == schema_b
    assert not a.equals(c)


def test_columns_types_and_schema(medium):
    table, schema, _ = medium
    assert table.column_names == COLUMNS and table.num_rows == 40_000
    for name in ("user_id", "user_segment", "item_id", "item_category", "device", "site"):
        assert table.schema.field(name).type == pa.string()
    for name in ("hist_item_ids", "hist_cats"):
        assert table.schema.field(name).type == pa.list_(pa.string())
    assert table.schema.field("ts").type == pa.int64()
    assert table.schema.field("price").type == pa.float64()
    label = table["label"].to_numpy()
    assert set(np.unique(label)) == {0, 1}
    assert 0.10 <= label.mean() <= 0.25
    ts = table["ts"].to_numpy()
    assert np.all(np.diff(ts) > 0)  # chronological, no ties
    hours = table["hour"].to_numpy()
    assert hours.min() >= 0 and hours.max() <= 23

    assert schema.task == "binary" and schema.label == "label" and schema.time_column == "ts"
    assert schema.user_key == "user_id" and schema.item_key == "item_id"
    assert set(schema.source_columns()) <= set(table.column_names)
    groups = {f.name: f.group for f in schema.fields}
    assert groups["user_id"] == "user" and groups["user_segment"] == "user"
    assert groups["item_id"] == groups["item_category"] == "item"
    assert groups["device"] == groups["hour"] == groups["site"] == "context"
    assert isinstance(schema.field("item_id"), CategoricalField)
    price = schema.field("price")
    assert isinstance(price, NumericField) and price.transform == "log" and price.fill_value > 0
    hist = schema.field("hist_item_ids")
    assert isinstance(hist, SequenceField) and hist.share_embedding_with == "item_id"
    assert hist.max_len == 20
    assert schema.field("hist_cats").share_embedding_with == "item_category"
    assert Schema.from_json(schema.to_json()) == schema
    assert pc.max(pc.list_value_length(table["hist_item_ids"])).as_py() == 20


def test_zipf_skew(medium):
    table, _, _ = medium
    _, counts = np.unique(table["item_id"].to_numpy(zero_copy_only=False), return_counts=True)
    counts = np.sort(counts)[::-1]
    top = max(1, 3_000 // 100)
    assert counts[:top].sum() / counts.sum() > 0.3  # top 1% of items: a large share
    _, site_counts = np.unique(table["site"].to_numpy(zero_copy_only=False), return_counts=True)
    assert site_counts.max() / site_counts.sum() > 0.1


def test_missing_values_only_in_numerics(medium):
    table, _, _ = medium
    for name in table.column_names:
        nulls = table[name].null_count / table.num_rows
        if name in ("price", "account_age_days"):
            assert 0.04 < nulls < 0.11, name
            present = table[name].drop_null().to_numpy()
            assert present.min() > 0 and present.max() / np.median(present) > 10  # heavy tail
        else:
            assert nulls == 0, name


def test_histories_are_the_users_earlier_clicks():
    table, _ = make_click_log(rows=3_000, seed=1, n_users=40, n_items=300, max_history=5)
    users = table["user_id"].to_pylist()
    items = table["item_id"].to_pylist()
    cats = table["item_category"].to_pylist()
    labels = table["label"].to_pylist()
    hist_items = table["hist_item_ids"].to_pylist()
    hist_cats = table["hist_cats"].to_pylist()
    clicks: dict[str, list[tuple[str, str]]] = {}
    non_empty = 0
    for r in range(table.num_rows):  # brute force, rows are chronological
        earlier = clicks.get(users[r], [])[-5:]
        assert hist_items[r] == [i for i, _ in earlier], r
        assert hist_cats[r] == [c for _, c in earlier], r
        non_empty += bool(earlier)
        if labels[r]:
            clicks.setdefault(users[r], []).append((items[r], cats[r]))
    assert non_empty > table.num_rows // 2


def _auc(label: np.ndarray, score: np.ndarray) -> float:
    return float(roc_auc_score(label, score))


def test_oracle_beats_linear_model_beats_constant(medium):
    table, _, truth = medium
    label = table["label"].to_numpy()
    cats = ["user_id", "user_segment", "item_id", "item_category", "device", "hour", "site"]
    x_cat = np.column_stack([table[c].to_numpy(zero_copy_only=False).astype(str) for c in cats])
    x_num = np.column_stack(
        [np.log1p(table[c].fill_null(20.0).to_numpy()) for c in ("price", "account_age_days")]
    )
    split = 32_000
    enc = OneHotEncoder(handle_unknown="ignore").fit(x_cat[:split])

    def features(rows: slice):
        return hstack([enc.transform(x_cat[rows]), x_num[rows]]).tocsr()

    lr = LogisticRegression(C=0.5, max_iter=300, solver="liblinear").fit(
        features(slice(0, split)), label[:split]
    )
    test = slice(split, None)
    lr_auc = _auc(label[test], lr.decision_function(features(test)))
    oracle_auc = _auc(label[test], truth["logit"][test])
    assert oracle_auc > 0.78
    assert lr_auc > 0.58  # a constant predictor scores 0.5
    assert oracle_auc > lr_auc + 0.05  # planted interactions and drift are out of a linear reach
    # the components really sum to the logit
    parts = [
        "user_bias",
        "item_bias",
        "factor",
        "segment_category",
        "device_hour",
        "triple",
        "site_bias",
        "numeric",
        "interest",
    ]
    total = sum(truth[p] for p in parts) + truth["intercept"]
    np.testing.assert_allclose(total, truth["logit"], rtol=1e-9, atol=1e-9)
    for p in parts:
        assert truth[p].std() > 0.1, p


def test_history_carries_the_interest_signal(medium):
    table, _, truth = medium
    label = table["label"].to_numpy()
    hist = table["hist_cats"]
    parent = pc.list_parent_indices(hist).to_numpy()
    flat = pc.list_flatten(hist).to_numpy(zero_copy_only=False)
    cand = table["item_category"].to_numpy(zero_copy_only=False)
    in_hist = np.bincount(parent, weights=flat == cand[parent], minlength=len(label)) > 0
    assert label[in_hist].mean() > 1.5 * label[~in_hist].mean()
    # and the latent interest match is the strongest single driver
    match = truth["interest_match"]
    assert label[match].mean() > 2.0 * label[~match].mean()


def test_drift_changes_interests():
    table, _, truth = make_click_log(
        rows=30_000, seed=5, n_users=500, n_items=2_000, drift=1.0, return_truth=True
    )
    assert truth["drifted"].all()
    before, after = truth["interests_before"], truth["interests_after"]
    assert not (before[:, :, None] == after[:, None, :]).any()  # disjoint interest sets
    user = truth["user_index"]
    cat_codes = truth["item_category"][truth["item_index"]]
    in_old = (before[user] == cat_codes[:, None]).any(axis=1)
    clicked = table["label"].to_numpy() == 1
    post = truth["after_drift"]
    old_share_before = in_old[clicked & ~post].mean()
    old_share_after = in_old[clicked & post].mean()
    assert old_share_before > 0.4 and old_share_after < 0.5 * old_share_before

    _, _, none = make_click_log(rows=2_000, seed=5, n_users=500, drift=0.0, return_truth=True)
    assert not none["drifted"].any() and not none["after_drift"].any()
    _, _, some = make_click_log(rows=2_000, seed=5, n_users=2_000, drift=0.3, return_truth=True)
    assert 0.25 < some["drifted"].mean() < 0.35


def test_stale_share_keeps_showing_old_interests_without_the_boost():
    kw = dict(rows=30_000, seed=5, n_users=500, n_items=2_000, drift=1.0, return_truth=True)
    plain, _, t0 = make_click_log(**kw)
    stale, _, t1 = make_click_log(**kw, stale_share=0.8)
    again, _, _ = make_click_log(**kw, stale_share=0.0)
    assert plain.equals(again)  # stale_share 0 leaves the random stream (and the log) as it was

    def old_share(truth):
        user, post = truth["user_index"], truth["after_drift"]
        cats = truth["item_category"][truth["item_index"]]
        in_old = (truth["interests_before"][user] == cats[:, None]).any(axis=1)
        return in_old[post].mean(), truth["interest"][post & in_old].max()

    share_plain, _ = old_share(t0)
    share_stale, boost = old_share(t1)
    assert share_stale > share_plain + 0.2  # old interests are still shown after the drift...
    assert boost == 0.0  # ...and get no interest boost
    with pytest.raises(ValueError, match="stale_share"):
        make_click_log(rows=100, stale_share=1.5)


def test_catalogue_entry_splits_by_time():
    prepared = datasets.load("synthetic", rows=5_000, seed=2, n_users=300)
    parts = (prepared.train, prepared.valid, prepared.test)
    assert [p.num_rows for p in parts] == [4_000, 500, 500]
    assert pc.max(prepared.train["ts"]).as_py() < pc.min(prepared.valid["ts"]).as_py()
    assert pc.max(prepared.valid["ts"]).as_py() < pc.min(prepared.test["ts"]).as_py()
    assert datasets.get_spec("synthetic").files == ()
    assert prepared.schema.user_key == "user_id"


def test_write_click_log_csv_and_parquet(tmp_path):
    table, _ = make_click_log(rows=2_000, seed=4, n_users=50, n_items=200)
    pq_path = write_click_log(table, tmp_path / "log.parquet")
    assert pq.read_table(pq_path).equals(table)
    csv_path = write_click_log(table, tmp_path / "log.csv")
    back = pacsv.read_csv(csv_path)
    assert back.num_rows == table.num_rows and back.column_names == table.column_names
    joined = ["|".join(h) for h in table["hist_item_ids"].to_pylist()]
    read = [v or "" for v in back["hist_item_ids"].to_pylist()]
    assert read == joined
    assert back["price"].null_count == table["price"].null_count
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.csv", "log.parquet"]
    with pytest.raises(ValueError, match="extension"):
        write_click_log(table, tmp_path / "log.json")


def test_bad_arguments():
    with pytest.raises(TypeError, match="known knobs"):
        make_click_log(rows=100, not_a_knob=1)
    with pytest.raises(ValueError):
        make_click_log(rows=100, drift=1.5)


def test_wide_log_shape():
    table, schema = make_wide_log(rows=5_000, n_cat=5, n_num=3, max_vocab=1_000, seed=0)
    assert table.column_names == ["C1", "C2", "C3", "C4", "C5", "I1", "I2", "I3", "label"]
    assert len(schema.sparse_fields) == 5 and len(schema.dense_fields) == 3
    distinct = [pc.count_distinct(table[f"C{j}"]).as_py() for j in range(1, 6)]
    assert distinct[0] <= 4 and distinct[-1] <= 1_000 and distinct[-1] > 100
    assert all(table[f"I{j}"].null_count > 0 for j in range(1, 4))
    assert 0.2 < pc.mean(table["label"]).as_py() < 0.3
    ints, _ = make_wide_log(rows=100, n_cat=2, n_num=1, max_vocab=10, seed=0, string_ids=False)
    assert ints.schema.field("C2").type == pa.int64()
    again, _ = make_wide_log(rows=5_000, n_cat=5, n_num=3, max_vocab=1_000, seed=0)
    assert again.equals(table)
