"""Evaluation metrics as pure numpy functions.

Point-wise metrics take flat arrays of one row per impression:

* :func:`auc` - ROC AUC (Mann-Whitney U with average ranks, so tied scores count one half).
* :func:`logloss` - binary cross-entropy of probabilities clipped to ``[eps, 1 - eps]``.
* :func:`gauc` - group AUC of Zhou et al., "Deep Interest Network for Click-Through Rate
  Prediction", KDD 2018: ``GAUC = sum_u n_u AUC_u / sum_u n_u`` over users (groups) that have
  both a click and a non-click; ``n_u`` is the user's impression count. Fully vectorised.
* :func:`rmse`, :func:`mae` - regression errors.

Ranking metrics take a score matrix ``scores (U, C)`` (one row per user, one column per
candidate item) and a binary relevance matrix of the same shape; the leave-one-out protocol of
He et al., "Neural Collaborative Filtering", WWW 2017 is one relevant column per row (the held
out item among 99 sampled negatives). Every ranking metric returns the mean over users, or the
per-user values with ``reduce=False``.

Tie rule for ranking metrics (deterministic, pessimistic): candidates are ordered by score,
descending; among equal scores the non-relevant candidates come first, then column order.
A model that outputs a constant therefore scores the worst possible ranking, never a lucky
one. Rows with no relevant candidate are undefined: their per-user value is ``nan`` and the
mean skips them.

:func:`compute` is the dispatcher the trainer calls with metric names; for binary tasks it
takes logits.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import numpy as np

__all__ = [
    "auc",
    "compute",
    "gauc",
    "higher_is_better",
    "hit_rate_at_k",
    "logloss",
    "mae",
    "mrr",
    "ndcg_at_k",
    "precision_at_k",
    "rank_of_target",
    "ranking_metrics",
    "recall_at_k",
    "rmse",
    "sigmoid",
]

LOGLOSS_EPS = 1e-7

# ----------------------------------------------------------------------------- helpers


def _as_1d(x: np.ndarray, name: str) -> np.ndarray:
    if np.ndim(x) > 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {np.shape(x)}")
    return np.asarray(x, dtype=np.float64).reshape(-1)


def _check_pair(labels: np.ndarray, values: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    y = _as_1d(labels, "labels")
    v = _as_1d(values, name)
    if y.shape != v.shape:
        raise ValueError(f"labels {y.shape} and {name} {v.shape} differ in length")
    if y.size == 0:
        raise ValueError("metrics need at least one row")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} contain NaN or infinite values")
    return y, v


def _binary_labels(y: np.ndarray) -> np.ndarray:
    pos = y == 1
    if not np.all(pos | (y == 0)):
        raise ValueError("binary metrics need labels in {0, 1}")
    return pos


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function (float64)."""
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _average_ranks_sorted(boundary: np.ndarray) -> np.ndarray:
    """1-based average ranks of an already sorted array, given where new tie runs start.

    Args:
        boundary: ``(N,)`` bool, ``True`` at positions that start a new run of equal values
            (position 0 must be ``True``).

    Returns:
        ``(N,)`` float64: each position's rank, averaged over its tie run.
    """
    n = boundary.size
    starts = np.flatnonzero(boundary)  # (R,)
    ends = np.append(starts[1:], n)  # exclusive
    run_rank = 0.5 * (starts + 1 + ends)  # mean of ranks starts+1 .. ends
    return np.repeat(run_rank, ends - starts)


# ----------------------------------------------------------------------------- point-wise


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve.

    ``AUC = (R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg)`` where ``R_pos`` is the sum of the
    positives' ranks among all scores, tied scores sharing their average rank (a tied
    positive/negative pair counts 1/2), as in ``sklearn.metrics.roc_auc_score``.

    Args:
        labels: ``(N,)`` in {0, 1}.
        scores: ``(N,)`` any monotone score (logits or probabilities).

    Returns:
        AUC in [0, 1].

    Raises:
        ValueError: if only one class is present, labels are not binary, or scores are not
            finite.
    """
    y, s = _check_pair(labels, scores, "scores")
    pos = _binary_labels(y)
    n_pos = int(pos.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC is undefined when only one class is present")
    order = np.argsort(s, kind="stable")
    s_sorted = s[order]
    boundary = np.empty(s.size, dtype=bool)
    boundary[0] = True
    np.not_equal(s_sorted[1:], s_sorted[:-1], out=boundary[1:])
    ranks = _average_ranks_sorted(boundary)
    rank_sum = ranks[pos[order]].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def logloss(labels: np.ndarray, probs: np.ndarray, eps: float = LOGLOSS_EPS) -> float:
    """Mean binary cross-entropy ``-[y log p + (1 - y) log(1 - p)]``.

    Args:
        labels: ``(N,)`` in [0, 1] (soft labels allowed).
        probs: ``(N,)`` probabilities (apply :func:`sigmoid` to logits first), clipped to
            ``[eps, 1 - eps]``.
        eps: Clipping constant.

    Returns:
        Mean logloss (natural log).
    """
    y, p = _check_pair(labels, probs, "probs")
    if np.any((y < 0) | (y > 1)):
        raise ValueError("logloss needs labels in [0, 1]")
    p = np.clip(p, eps, 1.0 - eps)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def gauc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> float:
    """Impression-weighted group AUC (DIN, Zhou et al. KDD 2018, eq. 8).

    ``GAUC = sum_g n_g AUC_g / sum_g n_g`` where ``AUC_g`` is the AUC of group ``g``'s rows and
    ``n_g`` its row count. Groups whose rows are all positive or all negative have no AUC and
    are skipped (they add to neither sum). Vectorised: one lexsort by (group, score), tie runs
    found per group, per-group rank sums via ``np.add.reduceat``; no loop over groups.

    Args:
        labels: ``(N,)`` in {0, 1}.
        scores: ``(N,)`` scores.
        groups: ``(N,)`` group key per row (user id); any sortable dtype.

    Returns:
        GAUC in [0, 1].

    Raises:
        ValueError: if no group has both classes.
    """
    y, s = _check_pair(labels, scores, "scores")
    g = np.asarray(groups).reshape(-1)
    if g.shape != y.shape:
        raise ValueError(f"groups {g.shape} and labels {y.shape} differ in length")
    pos = _binary_labels(y)
    order = np.lexsort((s, g))  # by group, then score
    g_sorted = g[order]
    s_sorted = s[order]
    pos_sorted = pos[order].astype(np.float64)
    n = y.size

    new_group = np.empty(n, dtype=bool)
    new_group[0] = True
    np.not_equal(g_sorted[1:], g_sorted[:-1], out=new_group[1:])
    new_run = new_group.copy()
    new_run[1:] |= s_sorted[1:] != s_sorted[:-1]

    group_start = np.flatnonzero(new_group)  # (G,)
    group_size = np.diff(np.append(group_start, n))  # (G,)
    # Global average ranks minus the group's offset give within-group ranks (runs never cross
    # a group boundary because every group start also starts a run).
    offset = np.repeat(group_start, group_size).astype(np.float64)
    ranks = _average_ranks_sorted(new_run) - offset  # (N,) 1-based within group

    n_pos = np.add.reduceat(pos_sorted, group_start)  # (G,)
    rank_sum = np.add.reduceat(ranks * pos_sorted, group_start)  # (G,)
    n_neg = group_size - n_pos
    valid = (n_pos > 0) & (n_neg > 0)
    if not np.any(valid):
        raise ValueError("GAUC is undefined: no group has both positive and negative rows")
    auc_g = (rank_sum[valid] - n_pos[valid] * (n_pos[valid] + 1) / 2.0) / (
        n_pos[valid] * n_neg[valid]
    )
    weight = group_size[valid].astype(np.float64)
    return float(np.sum(weight * auc_g) / np.sum(weight))


def rmse(targets: np.ndarray, preds: np.ndarray) -> float:
    """Root mean squared error ``sqrt(mean((y - yhat)^2))`` over ``(N,)`` arrays."""
    y, p = _check_pair(targets, preds, "preds")
    return float(np.sqrt(np.mean((y - p) ** 2)))


def mae(targets: np.ndarray, preds: np.ndarray) -> float:
    """Mean absolute error ``mean(|y - yhat|)`` over ``(N,)`` arrays."""
    y, p = _check_pair(targets, preds, "preds")
    return float(np.mean(np.abs(y - p)))


# ----------------------------------------------------------------------------- ranking


def _check_matrix(scores: np.ndarray, relevance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    r = np.asarray(relevance)
    if s.ndim != 2 or r.shape != s.shape:
        raise ValueError(
            f"scores and relevance must be (U, C) of one shape, got {s.shape} and {r.shape}"
        )
    if s.shape[1] == 0:
        raise ValueError("ranking metrics need at least one candidate column")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or infinite values")
    if not np.all((r == 0) | (r == 1)):
        raise ValueError("relevance must be binary (0/1)")
    return s, r.astype(bool)


def _sorted_relevance(scores: np.ndarray, relevance: np.ndarray) -> np.ndarray:
    """Relevance reordered by the documented tie rule.

    Returns:
        ``(U, C)`` bool: row ``u`` is user ``u``'s relevance in ranked order (best first);
        ties in score put non-relevant candidates first, then keep column order.
    """
    # lexsort: last key is primary. Stable, so equal (score, relevance) keep column order.
    order = np.lexsort((relevance, -scores), axis=-1)  # (U, C)
    return np.take_along_axis(relevance, order, axis=1)


def _check_k(k: int, n_cols: int) -> int:
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return min(int(k), n_cols)


def _reduce(per_user: np.ndarray, n_rel: np.ndarray, reduce: bool) -> float | np.ndarray:
    per_user = np.where(n_rel > 0, per_user, np.nan)
    if not reduce:
        return per_user
    if not np.any(n_rel > 0):
        raise ValueError("no row has a relevant candidate")
    return float(np.nanmean(per_user))


def _hits(ranked: np.ndarray, k: int) -> np.ndarray:
    return ranked[:, : _check_k(k, ranked.shape[1])].sum(axis=1).astype(np.float64)  # (U,)


def _dcg_discount(length: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, length + 2, dtype=np.float64))  # (length,)


# per-user values from the ranked relevance (U, C), the relevant counts (U,) and the cut-off
PerUser = Callable[..., np.ndarray]


def _hit_rate(ranked: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    return (_hits(ranked, k) > 0).astype(np.float64)


def _ndcg(ranked: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    kk = _check_k(k, ranked.shape[1])
    disc = _dcg_discount(kk)
    dcg = ranked[:, :kk] @ disc  # (U,)
    ideal = np.concatenate([[0.0], np.cumsum(disc)])  # ideal[m] = IDCG with m relevant in top-k
    idcg = ideal[np.minimum(n_rel, kk)]
    return np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0)


def _precision(ranked: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    return _hits(ranked, k) / int(k)  # the divisor stays k, even with fewer candidates


def _recall(ranked: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    hits = _hits(ranked, k)
    return np.divide(hits, n_rel, out=np.zeros_like(hits), where=n_rel > 0)


def _reciprocal_rank(ranked: np.ndarray, n_rel: np.ndarray, k: int | None) -> np.ndarray:
    first = np.argmax(ranked, axis=1)  # 0-based rank of the first relevant item
    rr = 1.0 / (first + 1.0)
    found = ranked[np.arange(ranked.shape[0]), first]
    if k is not None:
        found &= first < _check_k(k, ranked.shape[1])
    return np.where(found, rr, 0.0)


_AT_K: dict[str, PerUser] = {
    "hr": _hit_rate,
    "ndcg": _ndcg,
    "precision": _precision,
    "recall": _recall,
}


def _ranking(
    per_user: PerUser, scores: np.ndarray, relevance: np.ndarray, k: int | None, reduce: bool
) -> float | np.ndarray:
    """Check, rank with the tie rule, compute ``per_user`` and reduce: every ranking metric."""
    s, r = _check_matrix(scores, relevance)
    n_rel = r.sum(axis=1)
    return _reduce(per_user(_sorted_relevance(s, r), n_rel, k), n_rel, reduce)


_RANKING_ARGS = """

    Args:
        scores: ``(U, C)`` candidate scores.
        relevance: ``(U, C)`` binary relevance.
        k: Cut-off{k}.
        reduce: Mean over users (``True``) or the ``(U,)`` per-user values.
"""

F = TypeVar("F", bound=Callable[..., Any])


def _ranking_doc(k: str = "") -> Callable[[F], F]:
    """Complete a ranking metric's docstring with the arguments they all share."""

    def decorate(fn: F) -> F:
        fn.__doc__ = (fn.__doc__ or "").rstrip() + _RANKING_ARGS.format(k=k)
        return fn

    return decorate


@_ranking_doc()
def hit_rate_at_k(
    scores: np.ndarray, relevance: np.ndarray, k: int = 10, reduce: bool = True
) -> float | np.ndarray:
    """HR@K: 1 if any relevant candidate is ranked in the top ``k``, else 0."""
    return _ranking(_hit_rate, scores, relevance, k, reduce)


@_ranking_doc()
def ndcg_at_k(
    scores: np.ndarray, relevance: np.ndarray, k: int = 10, reduce: bool = True
) -> float | np.ndarray:
    """NDCG@K with binary gains: ``DCG / IDCG``, ``DCG = sum_{i<k} rel_i / log2(i + 2)``.

    ``IDCG`` is the DCG of the ideal ranking (``min(n_rel, k)`` relevant items first). With one
    relevant item at 0-based rank ``r`` this is ``1 / log2(r + 2)`` if ``r < k``, as in NCF.
    """
    return _ranking(_ndcg, scores, relevance, k, reduce)


@_ranking_doc(k=" (optional, MRR@K): a first relevant item ranked at ``k`` or later scores 0")
def mrr(
    scores: np.ndarray, relevance: np.ndarray, k: int | None = None, reduce: bool = True
) -> float | np.ndarray:
    """Mean reciprocal rank ``1 / (1 + rank of the first relevant candidate)``."""
    return _ranking(_reciprocal_rank, scores, relevance, k, reduce)


@_ranking_doc()
def precision_at_k(
    scores: np.ndarray, relevance: np.ndarray, k: int = 10, reduce: bool = True
) -> float | np.ndarray:
    """Precision@K: relevant candidates in the top ``k`` divided by ``k``.

    The divisor stays ``k`` even when a row has fewer than ``k`` candidates.
    """
    return _ranking(_precision, scores, relevance, k, reduce)


@_ranking_doc()
def recall_at_k(
    scores: np.ndarray, relevance: np.ndarray, k: int = 10, reduce: bool = True
) -> float | np.ndarray:
    """Recall@K: relevant candidates in the top ``k`` divided by the row's relevant count."""
    return _ranking(_recall, scores, relevance, k, reduce)


def ranking_metrics(
    scores: np.ndarray, relevance: np.ndarray, ks: Sequence[int] = (10,)
) -> dict[str, float]:
    """All ranking metrics from one sort: ``hr@k``, ``ndcg@k``, ``precision@k``, ``recall@k``
    for each ``k`` in ``ks``, plus ``mrr`` (uncut).

    Args:
        scores: ``(U, C)`` candidate scores.
        relevance: ``(U, C)`` binary relevance.
        ks: Cut-offs.

    Returns:
        ``{name: mean over users}``; same values as the individual functions.
    """
    s, r = _check_matrix(scores, relevance)
    ranked = _sorted_relevance(s, r)
    n_rel = r.sum(axis=1)
    out: dict[str, float] = {}
    for k in ks:
        for name, per_user in _AT_K.items():
            out[f"{name}@{k}"] = _reduce(per_user(ranked, n_rel, k), n_rel, True)
    out["mrr"] = _reduce(_reciprocal_rank(ranked, n_rel, None), n_rel, True)
    return out


def rank_of_target(scores: np.ndarray, target_col: int | np.ndarray) -> np.ndarray:
    """0-based rank of one target column per row under the pessimistic tie rule.

    ``rank_u = #{j : s_uj > s_ut} + #{j != t : s_uj == s_ut}``: every other candidate that ties
    with the target is ranked ahead of it. O(U C), no sort. ``HR@K = mean(rank < K)`` and
    ``NDCG@K = mean((rank < K) / log2(rank + 2))`` for leave-one-out evaluation.

    Args:
        scores: ``(U, C)`` candidate scores.
        target_col: Column of the target item, an int for all rows or ``(U,)`` per row.

    Returns:
        ``(U,)`` int64 ranks in ``[0, C)``.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"scores must be (U, C), got shape {s.shape}")
    cols = np.broadcast_to(np.asarray(target_col, dtype=np.int64), (s.shape[0],))
    if np.any((cols < 0) | (cols >= s.shape[1])):
        raise ValueError("target_col out of range")
    target = s[np.arange(s.shape[0]), cols][:, None]  # (U, 1)
    return (s >= target).sum(axis=1).astype(np.int64) - 1


def metrics_from_ranks(ranks: np.ndarray, ks: tuple[int, ...] = (10,)) -> dict[str, float]:
    """HR@K and NDCG@K from the 0-based rank of each user's single held-out item.

    ``HR@K = mean(rank < K)``, ``NDCG@K = mean(1[rank < K] / log2(rank + 2))``.
    """
    r = np.asarray(ranks, dtype=np.float64)
    out: dict[str, float] = {}
    for k in ks:
        hit = r < k
        out[f"hr@{k}"] = float(hit.mean()) if r.size else float("nan")
        out[f"ndcg@{k}"] = (
            float(np.where(hit, 1.0 / np.log2(r + 2.0), 0.0).mean()) if r.size else float("nan")
        )
    return out


# ----------------------------------------------------------------------------- dispatch

_BINARY = {"auc", "logloss", "gauc"}
_REGRESSION = {"rmse", "mae"}
_HIGHER = {"auc", "gauc", "hr", "ndcg", "mrr", "precision", "recall"}
_LOWER = {"logloss", "rmse", "mae", "loss"}
_NAME = re.compile(r"^([a-z_]+)(?:@(\d+))?$")


def _base_name(name: str) -> str:
    m = _NAME.match(name.strip().lower())
    if m is None:
        raise ValueError(f"unknown metric {name!r}")
    return m.group(1)


def higher_is_better(name: str) -> bool:
    """Whether a larger value of metric ``name`` is better (``auc`` yes, ``logloss`` no).

    Accepts the names :func:`compute` and :func:`ranking_metrics` produce (``ndcg@10``) and
    ``loss``.

    Raises:
        ValueError: for an unknown metric.
    """
    base = _base_name(name)
    if base in _HIGHER:
        return True
    if base in _LOWER:
        return False
    raise ValueError(f"unknown metric {name!r}; known: {sorted(_HIGHER | _LOWER)}")


def compute(
    names: Iterable[str],
    labels: np.ndarray,
    scores: np.ndarray,
    groups: np.ndarray | None = None,
    task: str = "binary",
) -> dict[str, float]:
    """Compute point-wise metrics by name; used by the trainer.

    Args:
        names: Metric names: ``auc``, ``logloss``, ``gauc`` (binary) or ``rmse``, ``mae``
            (regression).
        labels: ``(N,)`` targets.
        scores: ``(N,)`` model outputs: **logits** when ``task="binary"`` (``logloss`` applies
            the sigmoid; ``auc``/``gauc`` are rank based and use them as they are), predictions
            when ``task="regression"``.
        groups: ``(N,)`` group keys (user ids), required by ``gauc``.
        task: ``"binary"``, ``"regression"`` or ``"ranking"`` (point-wise ranking over sampled
            negatives: 0/1 labels and logits, so the same metrics as ``"binary"``).

    Returns:
        ``{name: value}`` in the order of ``names``.

    Raises:
        ValueError: for an unknown name, a name that does not fit the task, or ``gauc``
            without groups.
    """
    if task not in ("binary", "regression", "ranking"):
        raise ValueError(f"task must be 'binary', 'regression' or 'ranking', got {task!r}")
    allowed = _REGRESSION if task == "regression" else _BINARY
    out: dict[str, float] = {}
    probs: np.ndarray | None = None
    for name in names:
        key = name.strip().lower()
        if key not in allowed:
            raise ValueError(f"metric {name!r} is not available for task {task!r}: {allowed}")
        if key == "auc":
            out[name] = auc(labels, scores)
        elif key == "logloss":
            if probs is None:
                probs = sigmoid(scores)
            out[name] = logloss(labels, probs)
        elif key == "gauc":
            if groups is None:
                raise ValueError("gauc needs groups (e.g. the raw user id per row)")
            out[name] = gauc(labels, scores, groups)
        elif key == "rmse":
            out[name] = rmse(labels, scores)
        else:
            out[name] = mae(labels, scores)
    return out


def mean_ci95(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean of ``values`` and the half-width of its two-sided 95% Student-t interval.

    What the benchmarks report as ``mean ± half`` over seeds (or over paired per-seed
    differences). One value: the half-width is NaN.
    """
    a = np.asarray(values, dtype=np.float64)
    if a.size < 2:
        return float(a.mean()), float("nan")
    from scipy.stats import t  # a benchmark-time import: scipy is heavy for every metric

    return float(a.mean()), float(t.ppf(0.975, a.size - 1) * a.std(ddof=1) / np.sqrt(a.size))
