"""Metrics against scikit-learn, brute-force loops and hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    ndcg_score,
    roc_auc_score,
)

from recforge import metrics as M

# ----------------------------------------------------------------------------- AUC


def test_auc_hand_computed_with_ties() -> None:
    # pairs (pos, neg): (0.8,0.5)=1, (0.8,0.5)=1, (0.8,0.8)=0.5, (0.5,0.5)=.5 x2, (0.5,0.8)=0 ...
    labels = np.array([1, 0, 1, 0, 0])
    scores = np.array([0.8, 0.5, 0.5, 0.8, 0.1])
    # positives 0.8 and 0.5 vs negatives 0.5, 0.8, 0.1:
    # 0.8: 1 + 0.5 + 1 = 2.5 ; 0.5: 0.5 + 0 + 1 = 1.5 -> 4 / 6
    assert M.auc(labels, scores) == pytest.approx(4 / 6)


def test_auc_matches_sklearn_with_heavy_ties() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 5000)
    scores = rng.integers(0, 7, 5000).astype(float) + 0.3 * labels  # many ties
    assert M.auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    cont = rng.normal(size=5000) + labels
    assert M.auc(labels, cont) == pytest.approx(roc_auc_score(labels, cont), abs=1e-12)


def test_auc_extremes_and_errors() -> None:
    assert M.auc([0, 0, 1, 1], [1, 2, 3, 4]) == 1.0
    assert M.auc([0, 0, 1, 1], [4, 3, 2, 1]) == 0.0
    assert M.auc([0, 1, 0, 1], [5, 5, 5, 5]) == 0.5
    with pytest.raises(ValueError, match="one class"):
        M.auc([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match=r"\{0, 1\}"):
        M.auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        M.auc([0, 1], [np.nan, 0.2])
    with pytest.raises(ValueError, match="differ"):
        M.auc([0, 1, 1], [0.1, 0.2])


# ----------------------------------------------------------------------------- logloss


def test_logloss_matches_sklearn_and_hand_value() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 1000)
    p = rng.uniform(0.01, 0.99, 1000)
    assert M.logloss(y, p) == pytest.approx(log_loss(y, p), rel=1e-12)
    assert M.logloss([1, 0], [0.8, 0.4]) == pytest.approx(-(np.log(0.8) + np.log(0.6)) / 2)


def test_logloss_clips_at_eps() -> None:
    value = M.logloss([1, 0], [0.0, 1.0])
    assert value == pytest.approx(-np.log(1e-7), rel=1e-6)
    assert np.isfinite(value)


# ----------------------------------------------------------------------------- GAUC


def _gauc_brute_force(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> float:
    num = den = 0.0
    for g in np.unique(groups):
        m = groups == g
        if labels[m].min() == labels[m].max():
            continue
        num += m.sum() * roc_auc_score(labels[m], scores[m])
        den += m.sum()
    return num / den


def test_gauc_hand_computed() -> None:
    # group 7: AUC 1 over 2 rows; group 3: single class (skipped);
    # group 5: 4 rows, pos scores 0.2, 0.9 vs neg 0.5, 0.9 -> (0 + 0 + 1 + 0.5) / 4 = 0.375
    groups = np.array([7, 3, 5, 7, 5, 3, 5, 5, 3])
    labels = np.array([1, 1, 1, 0, 0, 1, 1, 0, 1])
    scores = np.array([0.9, 0.1, 0.2, 0.3, 0.5, 0.4, 0.9, 0.9, 0.0])
    expected = (2 * 1.0 + 4 * 0.375) / 6
    assert M.gauc(labels, scores, groups) == pytest.approx(expected)


def test_gauc_matches_brute_force_uneven_groups_and_ties() -> None:
    rng = np.random.default_rng(2)
    n = 6000
    groups = rng.zipf(1.5, n) % 400  # very uneven group sizes, many singletons
    labels = (rng.random(n) < 0.3).astype(int)
    scores = np.round(rng.normal(size=n) + labels, 1)  # ties within groups
    order = rng.permutation(n)
    groups, labels, scores = groups[order], labels[order], scores[order]
    sizes = np.bincount(groups)
    assert sizes.max() > 50 * np.median(sizes[sizes > 0])  # really uneven
    expected = _gauc_brute_force(labels, scores, groups)
    assert M.gauc(labels, scores, groups) == pytest.approx(expected, abs=1e-12)
    # string group keys give the same answer
    str_groups = np.array([f"u{g}" for g in groups], dtype=object)
    assert M.gauc(labels, scores, str_groups) == pytest.approx(expected, abs=1e-12)


def test_gauc_one_group_equals_auc_and_no_valid_group_raises() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    s = rng.normal(size=300)
    assert M.gauc(y, s, np.zeros(300, dtype=int)) == pytest.approx(M.auc(y, s))
    with pytest.raises(ValueError, match="no group"):
        M.gauc([1, 0], [0.1, 0.2], [0, 1])


# ----------------------------------------------------------------------------- regression


def test_rmse_mae_match_sklearn() -> None:
    rng = np.random.default_rng(4)
    y = rng.normal(size=200)
    p = rng.normal(size=200)
    assert M.rmse(y, p) == pytest.approx(np.sqrt(mean_squared_error(y, p)))
    assert M.mae(y, p) == pytest.approx(mean_absolute_error(y, p))
    assert M.rmse([1, 2], [1, 4]) == pytest.approx(np.sqrt(2.0))
    assert M.mae([1, 2], [1, 4]) == pytest.approx(1.0)


# ----------------------------------------------------------------------------- ranking


def test_leave_one_out_hand_values() -> None:
    # target in column 0; ranks: row0 -> 0, row1 -> 2, row2 -> 4 (last of 5)
    scores = np.array(
        [
            [0.9, 0.1, 0.2, 0.3, 0.4],
            [0.5, 0.9, 0.8, 0.1, 0.2],
            [0.0, 0.1, 0.2, 0.3, 0.4],
        ]
    )
    rel = np.zeros_like(scores, dtype=int)
    rel[:, 0] = 1
    np.testing.assert_array_equal(M.rank_of_target(scores, 0), [0, 2, 4])
    assert M.hit_rate_at_k(scores, rel, k=3) == pytest.approx(2 / 3)
    assert M.hit_rate_at_k(scores, rel, k=2) == pytest.approx(1 / 3)
    assert M.ndcg_at_k(scores, rel, k=3) == pytest.approx((1 + 1 / np.log2(4)) / 3)
    assert M.mrr(scores, rel) == pytest.approx((1 + 1 / 3 + 1 / 5) / 3)
    assert M.mrr(scores, rel, k=3) == pytest.approx((1 + 1 / 3) / 3)
    assert M.precision_at_k(scores, rel, k=2) == pytest.approx((1 / 2) / 3)
    assert M.recall_at_k(scores, rel, k=3) == pytest.approx(2 / 3)
    per_user = M.ndcg_at_k(scores, rel, k=3, reduce=False)
    np.testing.assert_allclose(per_user, [1.0, 0.5, 0.0])


def test_pessimistic_tie_rule() -> None:
    # a constant scorer ranks the relevant item last, never first
    scores = np.zeros((4, 10))
    rel = np.zeros((4, 10), dtype=int)
    rel[np.arange(4), [0, 3, 5, 9]] = 1
    assert M.hit_rate_at_k(scores, rel, k=9) == 0.0
    assert M.hit_rate_at_k(scores, rel, k=10) == 1.0
    assert M.mrr(scores, rel) == pytest.approx(0.1)
    np.testing.assert_array_equal(M.rank_of_target(scores, [0, 3, 5, 9]), [9, 9, 9, 9])
    # partial tie: target ties with one negative, beaten by one other
    s = np.array([[0.5, 0.5, 0.9, 0.1]])
    r = np.array([[1, 0, 0, 0]])
    assert M.rank_of_target(s, 0)[0] == 2
    assert M.mrr(s, r) == pytest.approx(1 / 3)
    # two relevant items tied with each other: order among them does not change the metrics
    s2 = np.array([[0.7, 0.7, 0.1]])
    r2 = np.array([[1, 1, 0]])
    assert M.ndcg_at_k(s2, r2, k=2) == pytest.approx(1.0)


def test_rank_of_target_agrees_with_matrix_metrics() -> None:
    rng = np.random.default_rng(5)
    scores = np.round(rng.normal(size=(300, 100)), 1)  # ties
    target = rng.integers(0, 100, 300)
    rel = np.zeros_like(scores, dtype=int)
    rel[np.arange(300), target] = 1
    rank = M.rank_of_target(scores, target)
    for k in (1, 5, 10):
        assert M.hit_rate_at_k(scores, rel, k) == pytest.approx(np.mean(rank < k))
        ndcg = np.mean(np.where(rank < k, 1 / np.log2(rank + 2), 0.0))
        assert M.ndcg_at_k(scores, rel, k) == pytest.approx(ndcg)
    assert M.mrr(scores, rel) == pytest.approx(np.mean(1 / (rank + 1)))


def _brute_force_ranking(scores: np.ndarray, rel: np.ndarray, k: int) -> dict[str, float]:
    out = {"hr": [], "ndcg": [], "precision": [], "recall": [], "mrr": []}
    for s, r in zip(scores, rel, strict=True):
        if r.sum() == 0:
            continue
        order = sorted(range(len(s)), key=lambda j: (-s[j], r[j], j))
        ranked = r[order]
        top = ranked[:k]
        dcg = sum(top[i] / np.log2(i + 2) for i in range(len(top)))
        idcg = sum(1 / np.log2(i + 2) for i in range(min(int(r.sum()), k)))
        out["hr"].append(float(top.sum() > 0))
        out["ndcg"].append(dcg / idcg)
        out["precision"].append(top.sum() / k)
        out["recall"].append(top.sum() / r.sum())
        out["mrr"].append(1 / (1 + int(np.argmax(ranked))))
    return {key: float(np.mean(v)) for key, v in out.items()}


def test_multi_relevant_metrics_match_brute_force_and_sklearn() -> None:
    rng = np.random.default_rng(6)
    scores = np.round(rng.normal(size=(120, 30)), 1)
    rel = (rng.random((120, 30)) < 0.15).astype(int)
    rel[0] = 0  # a row with no relevant item is skipped
    got = M.ranking_metrics(scores, rel, ks=(5, 10))
    for k in (5, 10):
        exp = _brute_force_ranking(scores, rel, k)
        assert got[f"hr@{k}"] == pytest.approx(exp["hr"])
        assert got[f"ndcg@{k}"] == pytest.approx(exp["ndcg"])
        assert got[f"precision@{k}"] == pytest.approx(exp["precision"])
        assert got[f"recall@{k}"] == pytest.approx(exp["recall"])
        assert M.hit_rate_at_k(scores, rel, k) == pytest.approx(exp["hr"])
        assert M.ndcg_at_k(scores, rel, k) == pytest.approx(exp["ndcg"])
        assert M.precision_at_k(scores, rel, k) == pytest.approx(exp["precision"])
        assert M.recall_at_k(scores, rel, k) == pytest.approx(exp["recall"])
    assert got["mrr"] == pytest.approx(exp["mrr"])
    assert np.isnan(M.recall_at_k(scores, rel, 5, reduce=False)[0])

    # without ties our NDCG equals scikit-learn's
    cont = rng.normal(size=(120, 30))
    keep = rel.sum(axis=1) > 0
    for k in (3, 10, 30):
        assert M.ndcg_at_k(cont[keep], rel[keep], k) == pytest.approx(
            ndcg_score(rel[keep], cont[keep], k=k)
        )


def test_ranking_input_errors() -> None:
    with pytest.raises(ValueError, match="binary"):
        M.hit_rate_at_k(np.zeros((2, 3)), np.full((2, 3), 2))
    with pytest.raises(ValueError, match="one shape"):
        M.ndcg_at_k(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="k must be"):
        M.precision_at_k(np.zeros((1, 3)), np.ones((1, 3)), k=0)
    with pytest.raises(ValueError, match="no row"):
        M.mrr(np.zeros((2, 3)), np.zeros((2, 3)))


# ----------------------------------------------------------------------------- dispatch


def test_compute_binary_takes_logits() -> None:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 500)
    logits = rng.normal(size=500) + y
    users = rng.integers(0, 20, 500)
    out = M.compute(["auc", "logloss", "gauc"], y, logits, groups=users)
    assert list(out) == ["auc", "logloss", "gauc"]
    assert out["auc"] == pytest.approx(roc_auc_score(y, logits))
    assert out["logloss"] == pytest.approx(log_loss(y, 1 / (1 + np.exp(-logits))))
    assert out["gauc"] == pytest.approx(_gauc_brute_force(y, logits, users))
    with pytest.raises(ValueError, match="groups"):
        M.compute(["gauc"], y, logits)
    with pytest.raises(ValueError, match="not available"):
        M.compute(["rmse"], y, logits)


def test_compute_regression_and_direction() -> None:
    out = M.compute(["rmse", "mae"], [1.0, 3.0], [2.0, 3.0], task="regression")
    assert out == {"rmse": pytest.approx(np.sqrt(0.5)), "mae": pytest.approx(0.5)}
    with pytest.raises(ValueError, match="task"):
        M.compute(["auc"], [0, 1], [0, 1], task="listwise")
    assert M.compute(["auc"], [0, 1], [0.3, 0.2], task="ranking") == {"auc": 0.0}
    assert M.higher_is_better("auc") and M.higher_is_better("ndcg@10")
    assert M.higher_is_better("GAUC") and M.higher_is_better("hr@5")
    assert not M.higher_is_better("logloss") and not M.higher_is_better("rmse")
    with pytest.raises(ValueError, match="unknown"):
        M.higher_is_better("f1")


def test_sigmoid_is_stable() -> None:
    x = np.array([-1000.0, 0.0, 1000.0])
    np.testing.assert_allclose(M.sigmoid(x), [0.0, 0.5, 1.0])


def test_mean_ci95_is_the_student_t_interval() -> None:
    """The benchmarks' mean ± half-width over seeds: t(0.975, n-1) * s / sqrt(n), at every n
    (the hand-copied table it replaces had no 7 or 9 and fell back to 1.96 there)."""
    from recforge.metrics import mean_ci95

    values = [0.1, 0.3, 0.2, 0.5, 0.4]  # mean 0.3, sample std sqrt(0.025)
    mean, half = mean_ci95(values)
    assert mean == pytest.approx(0.3)
    assert half == pytest.approx(2.776 * np.sqrt(0.025) / np.sqrt(5), rel=1e-3)
    _, half7 = mean_ci95([0.0, 1.0] * 3 + [0.5])
    assert half7 == pytest.approx(
        2.447 * np.std([0.0, 1.0] * 3 + [0.5], ddof=1) / np.sqrt(7), rel=1e-3
    )
    assert np.isnan(mean_ci95([0.7])[1])
