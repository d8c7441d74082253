"""The embedded synthetic click log: realistic, seeded, fully vectorised, with planted signal.

``make_click_log`` draws an impression log that looks like a real one (Zipf-distributed users,
items and sites, heavy-tailed numerics with missing values, behaviour sequences of previously
clicked items) and labels it with a hidden model whose parts favour different model families.
``recforge demo``, the tests and later issues (DIN/DIEN, CF) all use it; ``make_wide_log`` is
a Criteo-shaped variant (26 categorical + 13 numeric fields, vocabularies up to 1e6) for the
speed benchmark.

Hidden label model
------------------
Impression ``n`` shows item ``i`` to user ``u`` at time ``t`` with context (device ``d``,
hour ``h``, site ``s``)::

    logit_n = b0                                   # intercept, calibrated to target_ctr
            + a_u                                  # user bias            ~ N(0, user_bias_std)
            + q_i + popularity_weight * z(log pop_i)   # item quality + popularity
            + factor_scale * <P_u, Q_i> / sqrt(rank)   # low-rank user x item term (MF/NCF)
            + S[segment_u, category_i]             # planted pairwise interaction (not linear)
            + H[d, h]                              # planted pairwise interaction (not linear)
            + T[d, h // 6, category_i]             # planted 3-way interaction (beyond FM)
            + c_s                                  # site bias (Zipf-distributed sites)
            + price_weight * z(log price_n) + price_curve * (z(log price_n)^2 - 1)
            + age_weight * z(log age_u)            # numeric effects (price is non-monotone)
            + interest_boost * 1[category_i in I_u(t)]                    # interest term
    label_n ~ Bernoulli(sigmoid(logit_n))

``z`` standardises over the log. Every user has an interest set ``I_u`` of ``n_interests``
categories; with probability ``drift`` the set is replaced by a disjoint one at a user-specific
moment (uniform in 20-80% of the timeline), so ``I_u(t)`` depends on time. A share
``interest_share`` of impressions is drawn from the user's *current* interests (the rest from
global popularity), so clicks concentrate on ``I_u(t)``. The interest set is latent: its
observable evidence is the behaviour sequence ``hist_item_ids`` / ``hist_cats`` (the user's
previous clicked items / their categories, oldest first, at most ``max_history``). A model
that matches the candidate's category against the recent history can follow the drift; a
user-id embedding only learns the mixture of both regimes. Numerics are observed with
``missing_rate`` nulls (the hidden model uses the true values). ``return_truth=True`` returns
every component so tests can check the oracle.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from recforge.data.encode.split import split_table
from recforge.data.sources.catalogue import DatasetSpec, PreparedDataset
from recforge.features import CategoricalField, NumericField, Schema, SequenceField
from recforge.io import atomic_write

log = logging.getLogger(__name__)

_DEVICES = ("mobile", "desktop", "tablet", "tv", "watch", "console", "car", "kiosk")
_DAY = 86_400


@dataclass(frozen=True)
class ClickLogKnobs:
    """Secondary knobs of :func:`make_click_log` (passed as keyword arguments).

    Args:
        n_categories: Item categories.
        n_segments: User segments.
        n_sites: Sites (Zipf-distributed context field).
        n_devices: Devices (at most 8).
        n_interests: Categories in a user's interest set.
        rank: Rank of the user x item factor term.
        item_zipf: Zipf exponent of item popularity.
        user_zipf: Zipf exponent of user activity.
        site_zipf: Zipf exponent of site traffic.
        target_ctr: Mean click probability the intercept is calibrated to.
        interest_share: Share of impressions drawn from the user's current interests.
        interest_boost: Logit boost when the candidate's category is a current interest.
        stale_share: After a user's drift, share of the interest-drawn impressions that still
            come from the *old* interests (the platform lags behind the user); they get no
            boost, so only a model that knows which behaviours are recent can tell them apart.
        user_bias_std: Std of the user bias.
        item_bias_std: Std of the item quality bias.
        popularity_weight: Weight of standardised log popularity.
        factor_scale: Std of the low-rank factor term.
        segment_category_std: Std of the segment x category interaction table.
        device_hour_std: Std of the device x hour interaction table.
        site_bias_std: Std of the site bias.
        triple_std: Std of the device x day-part x category interaction table.
        price_weight: Weight of standardised log price.
        price_curve: Weight of the squared standardised log price (a non-monotone effect).
        age_weight: Weight of standardised log account age.
        missing_rate: Share of nulls in each numeric column.
        span_days: Length of the timeline in days.
        start_ts: First timestamp (unix seconds).
    """

    n_categories: int = 40
    n_segments: int = 8
    n_sites: int = 300
    n_devices: int = 4
    n_interests: int = 3
    rank: int = 8
    item_zipf: float = 1.1
    user_zipf: float = 0.6
    site_zipf: float = 1.2
    target_ctr: float = 0.15
    interest_share: float = 0.35
    interest_boost: float = 1.8
    stale_share: float = 0.0
    user_bias_std: float = 0.4
    item_bias_std: float = 0.3
    popularity_weight: float = 0.2
    factor_scale: float = 0.8
    segment_category_std: float = 0.7
    device_hour_std: float = 0.5
    site_bias_std: float = 0.2
    triple_std: float = 0.5
    price_weight: float = -0.35
    price_curve: float = -0.2
    age_weight: float = 0.25
    missing_rate: float = 0.07
    span_days: float = 30.0
    start_ts: int = 1_700_000_000

    def __post_init__(self) -> None:
        if not 1 <= self.n_devices <= len(_DEVICES):
            raise ValueError(f"n_devices must be in 1..{len(_DEVICES)}")
        if self.n_categories < 2 * self.n_interests:
            raise ValueError("n_categories must be at least 2 * n_interests (drift is disjoint)")
        if not 0.0 < self.target_ctr < 1.0 or not 0.0 <= self.missing_rate < 1.0:
            raise ValueError("target_ctr must be in (0, 1) and missing_rate in [0, 1)")
        if not 0.0 <= self.interest_share <= 1.0 or not 0.0 <= self.stale_share <= 1.0:
            raise ValueError("interest_share and stale_share must be in [0, 1]")


# ---- small vectorised helpers -------------------------------------------------------------
def _zipf_weights(n: int, a: float) -> np.ndarray:
    """Unnormalised Zipf weights ``(rank + 1) ** -a`` for ranks ``0..n-1``."""
    return np.arange(1, n + 1, dtype=np.float64) ** -a


def _sample_cdf(rng: np.random.Generator, cdf: np.ndarray, size: int) -> np.ndarray:
    """Indices drawn with probabilities proportional to the increments of ``cdf``."""
    idx = np.searchsorted(cdf, rng.random(size) * cdf[-1], side="right")
    return np.minimum(idx, len(cdf) - 1)


def _zipf_ranks(rng: np.random.Generator, n: int, size: int, a: float) -> np.ndarray:
    """Zipf-like ranks in ``[0, n)`` by inverting a continuous power law (no table needed)."""
    u = rng.random(size)
    if abs(a - 1.0) < 1e-9:
        x = np.exp(u * np.log(n + 1.0))
    else:
        e = 1.0 - a
        x = (1.0 + u * ((n + 1.0) ** e - 1.0)) ** (1.0 / e)
    return np.clip(x.astype(np.int64) - 1, 0, n - 1)


def _zscore(x: np.ndarray) -> np.ndarray:
    sd = x.std()
    return (x - x.mean()) / (sd if sd > 0 else 1.0)


def _calibrate_intercept(logit: np.ndarray, target: float) -> float:
    """Intercept ``b0`` with ``mean(sigmoid(logit + b0)) == target`` (Newton steps)."""
    b0 = float(np.log(target / (1.0 - target)) - np.median(logit))
    for _ in range(20):
        p = 1.0 / (1.0 + np.exp(-(logit + b0)))
        gap, slope = p.mean() - target, (p * (1.0 - p)).mean()
        b0 -= gap / max(slope, 1e-6)
        if abs(gap) < 1e-6:
            break
    return b0


def _top_k_without(
    rng: np.random.Generator, logw: np.ndarray, rows: int, k: int, exclude: np.ndarray | None
) -> np.ndarray:
    """Per row, ``k`` distinct indices drawn by weight (Gumbel top-k), avoiding ``exclude``."""
    keys = logw[None, :] + rng.gumbel(size=(rows, len(logw)))
    if exclude is not None:
        np.put_along_axis(keys, exclude, -np.inf, axis=1)
    return np.argpartition(-keys, k - 1, axis=1)[:, :k]


def _names(prefix: str, n: int) -> np.ndarray:
    """Fixed-width names ``prefix + zero-padded k`` for ``k < n`` as a ``(n, W)`` byte matrix."""
    digits = len(str(max(n - 1, 0)))
    powers = 10 ** np.arange(digits - 1, -1, -1, dtype=np.int64)
    body = (np.arange(n, dtype=np.int64)[:, None] // powers) % 10 + ord("0")
    head = np.broadcast_to(np.frombuffer(prefix.encode(), dtype=np.uint8), (n, len(prefix)))
    return np.ascontiguousarray(np.hstack([head, body.astype(np.uint8)]))


def _take_names(names: np.ndarray, index: np.ndarray) -> pa.Array:
    """A pyarrow string array of ``names[index]`` built straight from buffers (no Python)."""
    count, width = len(index), names.shape[1]
    if count * width >= 2**31:
        raise ValueError("string column over 2 GiB; lower rows or max_history")
    data = names[index]  # (count, width) bytes, contiguous
    offsets = np.arange(0, (count + 1) * width, width, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), count, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )


def _histories(
    user: np.ndarray, label: np.ndarray, max_history: int
) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and source rows of each row's history of the same user's earlier clicks.

    Rows must be in chronological order. Returns ``offsets (N + 1,)`` and ``src`` (row index of
    each history entry, oldest first), ready for ``ListArray.from_arrays``. The long arrays
    (one entry per history element) are int32 to halve memory.
    """
    n = len(user)
    order = np.argsort(user, kind="stable").astype(np.int32)  # by user, then by time
    lab = label[order].astype(np.int64)
    before = np.cumsum(lab) - lab  # clicks earlier in this order (all users)
    u_sorted = user[order]
    first = np.empty(n, dtype=bool)
    first[:1] = True
    first[1:] = u_sorted[1:] != u_sorted[:-1]
    user_start = np.maximum.accumulate(np.where(first, before, 0))  # before is nondecreasing
    length_sorted = np.minimum(before - user_start, max_history)
    length = np.empty(n, dtype=np.int64)
    start = np.empty(n, dtype=np.int64)
    length[order] = length_sorted
    start[order] = before - length_sorted
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(length, out=offsets[1:])
    total = int(offsets[-1])
    if total >= 2**31:
        raise ValueError("histories exceed 2**31 entries; lower rows or max_history")
    pos = np.repeat((start - offsets[:-1]).astype(np.int32), length)
    pos += np.arange(total, dtype=np.int32)
    clicked = order[np.flatnonzero(lab)]  # rows of the clicks, grouped by user, by time
    return offsets, clicked[pos]


# ---- the click log -----------------------------------------------------------------------
def click_log_schema(
    max_history: int = 20, price_fill: float = 20.0, age_fill: float = 60.0
) -> Schema:
    """The declarative schema of :func:`make_click_log`'s table."""
    return Schema(
        fields=(
            CategoricalField("user_id", group="user"),
            CategoricalField("user_segment", group="user"),
            CategoricalField("item_id", group="item"),
            CategoricalField("item_category", group="item"),
            CategoricalField("device", group="context"),
            CategoricalField("hour", group="context"),
            CategoricalField("site", group="context"),
            NumericField("price", group="item", fill_value=price_fill, transform="log"),
            NumericField("account_age_days", group="user", fill_value=age_fill, transform="log"),
            SequenceField(
                "hist_item_ids", group="user", max_len=max_history, share_embedding_with="item_id"
            ),
            SequenceField(
                "hist_cats",
                group="user",
                max_len=max_history,
                share_embedding_with="item_category",
                aligned_with="hist_item_ids",
            ),  # fmt: skip
        ),
        label="label",
        task="binary",
        user_key="user_id",
        item_key="item_id",
        time_column="ts",
    )


def make_click_log(
    rows: int = 100_000,
    seed: int = 0,
    n_users: int = 5_000,
    n_items: int = 20_000,
    max_history: int = 20,
    drift: float = 0.3,
    *,
    return_truth: bool = False,
    **knobs: Any,
) -> tuple[pa.Table, Schema] | tuple[pa.Table, Schema, dict[str, np.ndarray]]:
    """A synthetic impression log with a hidden label model (see the module docstring).

    Args:
        rows: Impressions.
        seed: Seed; equal seeds give equal tables.
        n_users: Users (Zipf-distributed activity).
        n_items: Items (Zipf-distributed popularity).
        max_history: Maximum length of the behaviour sequences.
        drift: Probability that a user's interest set changes mid-timeline.
        return_truth: Also return the hidden components (see Returns).
        **knobs: Fields of :class:`ClickLogKnobs`; unknown names are errors.

    Returns:
        ``(table, schema)``: rows in chronological order with columns ``user_id``,
        ``user_segment``, ``item_id``, ``item_category``, ``device``, ``hour``, ``site``,
        ``price``, ``account_age_days`` (with nulls), ``hist_item_ids``, ``hist_cats``
        (``list<string>``), ``ts`` (int64 seconds) and ``label`` (int8 0/1); with
        ``return_truth`` a third element, a dict of numpy arrays: per row ``logit``, ``prob``,
        each component (``user_bias``, ``item_bias``, ``factor``, ``segment_category``,
        ``device_hour``, ``triple``, ``site_bias``, ``numeric``, ``interest``; they sum with
        ``intercept`` to ``logit``), ``interest_match``, ``after_drift``, ``user_index``,
        ``item_index``; per user ``drifted``, ``change_ts``, ``interests_before``,
        ``interests_after`` ``(n_users, n_interests)`` category codes; per item
        ``item_category``; and ``intercept`` (0-d). Category code ``c`` is the string ``c{c}``
        zero-padded, as in the table.
    """
    try:
        k = ClickLogKnobs(**knobs)
    except TypeError as err:
        names = [f.name for f in dataclasses.fields(ClickLogKnobs)]
        raise TypeError(f"make_click_log: {err}; known knobs: {', '.join(names)}") from None
    if rows < 1 or n_users < 1 or n_items < k.n_categories or max_history < 1:
        raise ValueError("need rows >= 1, n_users >= 1, n_items >= n_categories, max_history >= 1")
    if not 0.0 <= drift <= 1.0:
        raise ValueError(f"drift must be in [0, 1], got {drift}")
    rng = np.random.default_rng(seed)
    n, C, K = rows, k.n_categories, k.n_interests

    # Time: strictly increasing integer seconds, so "earlier" is unambiguous.
    mean_gap = max(k.span_days * _DAY / n, 1.0)
    ts = k.start_ts + np.cumsum(1 + rng.poisson(mean_gap - 1.0, n)).astype(np.int64)
    tfrac = (ts - ts[0]) / max(float(ts[-1] - ts[0]), 1.0)

    # Items: Zipf popularity over a random permutation of ids, categories, quality, price.
    item_w = np.empty(n_items)
    item_w[rng.permutation(n_items)] = _zipf_weights(n_items, k.item_zipf)
    cat_logw = np.log(_zipf_weights(C, 0.5))[rng.permutation(C)]
    item_cat = _sample_cdf(rng, np.cumsum(np.exp(cat_logw)), n_items)
    item_cat[rng.choice(n_items, C, replace=False)] = np.arange(C)  # no empty category
    item_quality = rng.normal(0.0, k.item_bias_std, n_items)
    item_price = rng.lognormal(3.0 + rng.normal(0.0, 0.5, C)[item_cat], 0.8)
    Q = rng.normal(size=(n_items, k.rank))

    # Users: Zipf activity, segment, age (pareto), preferred device, factors, interests.
    user_w = np.empty(n_users)
    user_w[rng.permutation(n_users)] = _zipf_weights(n_users, k.user_zipf)
    segment = rng.integers(0, k.n_segments, n_users)
    age = 30.0 * (1.0 + rng.pareto(1.5, n_users))
    pref_device = rng.integers(0, k.n_devices, n_users)
    user_bias = rng.normal(0.0, k.user_bias_std, n_users)
    P = rng.normal(size=(n_users, k.rank))
    before = _top_k_without(rng, cat_logw, n_users, K, None)
    after = _top_k_without(rng, cat_logw, n_users, K, before)
    drifted = rng.random(n_users) < drift
    change_frac = rng.uniform(0.2, 0.8, n_users)
    change_ts = np.where(drifted, ts[0] + change_frac * (ts[-1] - ts[0]), np.inf)

    # Impressions.
    user = _sample_cdf(rng, np.cumsum(user_w), n)
    after_drift = drifted[user] & (tfrac >= change_frac[user])
    current = np.where(after_drift[:, None], after[user], before[user])  # (N, K)
    item = _sample_cdf(rng, np.cumsum(item_w), n)
    targeted = rng.random(n) < k.interest_share
    pick = rng.integers(0, K, n)
    # drawn only when asked for, so logs without stale impressions keep their random stream
    stale = np.zeros(n, dtype=bool)
    if k.stale_share > 0:
        stale = after_drift & (rng.random(n) < k.stale_share)
    want_cat = np.where(stale, before[user, pick], current[np.arange(n), pick])[targeted]
    by_cat = np.argsort(item_cat, kind="stable")
    cum = np.concatenate([[0.0], np.cumsum(item_w[by_cat])])
    lo = np.searchsorted(item_cat[by_cat], np.arange(C), side="left")
    hi = np.searchsorted(item_cat[by_cat], np.arange(C), side="right")
    target = cum[lo[want_cat]] + rng.random(len(want_cat)) * (cum[hi[want_cat]] - cum[lo[want_cat]])
    pos = np.clip(np.searchsorted(cum, target, side="right") - 1, lo[want_cat], hi[want_cat] - 1)
    item[targeted] = by_cat[pos]
    cat = item_cat[item]
    device = np.where(rng.random(n) < 0.75, pref_device[user], rng.integers(0, k.n_devices, n))
    hour = (ts // 3600) % 24
    site = _zipf_ranks(rng, k.n_sites, n, k.site_zipf)
    price = item_price[item] * rng.lognormal(0.0, 0.15, n)  # per-impression price noise

    # Hidden logit.
    z_price = _zscore(np.log(price))
    interest_match = (current == cat[:, None]).any(axis=1)
    parts = {
        "user_bias": user_bias[user],
        "item_bias": (item_quality + k.popularity_weight * _zscore(np.log(item_w * n_items)))[item],
        "factor": k.factor_scale * np.einsum("nr,nr->n", P[user], Q[item]) / np.sqrt(k.rank),
        "segment_category": rng.normal(0.0, k.segment_category_std, (k.n_segments, C))[
            segment[user], cat
        ],
        "device_hour": rng.normal(0.0, k.device_hour_std, (k.n_devices, 24))[device, hour],
        "site_bias": rng.normal(0.0, k.site_bias_std, k.n_sites)[site],
        "triple": rng.normal(0.0, k.triple_std, (k.n_devices, 4, C))[device, hour // 6, cat],
        "numeric": k.price_weight * z_price
        + k.price_curve * (z_price**2 - 1.0)
        + k.age_weight * _zscore(np.log(age))[user],
        "interest": k.interest_boost * interest_match,
    }
    logit = np.sum(list(parts.values()), axis=0)
    b0 = _calibrate_intercept(logit, k.target_ctr)
    logit += b0
    prob = 1.0 / (1.0 + np.exp(-logit))
    label = (rng.random(n) < prob).astype(np.int8)
    price_missing = rng.random(n) < k.missing_rate
    age_missing = rng.random(n) < k.missing_rate

    # Behaviour sequences: the same user's earlier clicks, oldest first.
    offsets, src = _histories(user, label, max_history)
    hist = item.astype(np.int32)[src]
    item_names, cat_names = _names("i", n_items), _names("c", C)
    list_offsets = pa.array(offsets.astype(np.int32), type=pa.int32())
    table = pa.table(
        {
            "user_id": _take_names(_names("u", n_users), user),
            "user_segment": _take_names(_names("s", k.n_segments), segment[user]),
            "item_id": _take_names(item_names, item),
            "item_category": _take_names(cat_names, cat),
            "device": pa.array(_DEVICES[: k.n_devices]).take(pa.array(device)),
            "hour": pa.array(hour, type=pa.int64()),
            "site": _take_names(_names("site", k.n_sites), site),
            "price": pa.array(np.round(price, 2), mask=price_missing, type=pa.float64()),
            "account_age_days": pa.array(
                np.round(age[user], 1), mask=age_missing, type=pa.float64()
            ),
            "hist_item_ids": pa.ListArray.from_arrays(list_offsets, _take_names(item_names, hist)),
            "hist_cats": pa.ListArray.from_arrays(
                list_offsets, _take_names(cat_names, item_cat[hist])
            ),
            "ts": pa.array(ts, type=pa.int64()),
            "label": pa.array(label, type=pa.int8()),
        }
    )
    schema = click_log_schema(
        max_history, price_fill=float(np.round(np.exp(3.0), 2)), age_fill=60.0
    )
    log.debug("click log: %d rows, ctr %.3f, intercept %.3f", n, label.mean(), b0)
    if not return_truth:
        return table, schema
    truth = {
        **parts,
        "logit": logit,
        "prob": prob,
        "interest_match": interest_match,
        "after_drift": after_drift,
        "user_index": user,
        "item_index": item,
        "drifted": drifted,
        "change_ts": change_ts,
        "interests_before": before,
        "interests_after": after,
        "item_category": item_cat,
        "intercept": np.asarray(b0),
    }
    return table, schema, truth


# ---- the wide (Criteo-shaped) log for the speed benchmark --------------------------------
def make_wide_log(
    rows: int = 1_000_000,
    n_cat: int = 26,
    n_num: int = 13,
    max_vocab: int = 1_000_000,
    seed: int = 0,
    *,
    zipf: float = 0.8,
    missing_rate: float = 0.08,
    target_ctr: float = 0.25,
    string_ids: bool = True,
) -> tuple[pa.Table, Schema]:
    """A Criteo-shaped log: ``C1..C{n_cat}`` categoricals, ``I1..I{n_num}`` numerics, label.

    Field ``j`` draws Zipf(``zipf``) ids from a vocabulary growing geometrically from 4 to
    ``max_vocab`` across the fields. The label is Bernoulli(sigmoid(logit)) with logit = sum of
    per-id biases of the first eight fields + three planted pairwise interactions between small
    fields + effects of the first four log numerics, calibrated to ``target_ctr``. Numerics are
    heavy-tailed counts with ``missing_rate`` nulls.

    Args:
        rows: Rows.
        n_cat: Categorical fields.
        n_num: Numeric fields.
        max_vocab: Vocabulary of the largest field.
        seed: Seed.
        zipf: Zipf exponent of every categorical field.
        missing_rate: Share of nulls per numeric column.
        target_ctr: Mean click probability.
        string_ids: Ids as strings (``"C3_17"``, like Criteo's hashes) rather than int64.

    Returns:
        ``(table, schema)``.
    """
    if rows < 1 or n_cat < 1 or n_num < 0 or max_vocab < 4:
        raise ValueError("need rows >= 1, n_cat >= 1, n_num >= 0, max_vocab >= 4")
    rng = np.random.default_rng(seed)
    grow = np.linspace(0.0, 1.0, n_cat) if n_cat > 1 else np.ones(1)
    vocabs = np.maximum(np.round(4.0 * (max_vocab / 4.0) ** grow).astype(np.int64), 2)
    columns: dict[str, pa.Array] = {}
    logit = np.zeros(rows)
    small = [j for j in range(n_cat) if vocabs[j] <= 1_000]
    pairs = list(zip(small[0::2], small[1::2], strict=False))[:3]
    ids_of: dict[int, np.ndarray] = {}
    for j, vocab in enumerate(vocabs):
        ids = _zipf_ranks(rng, int(vocab), rows, zipf)
        if j < 8:
            logit += rng.normal(0.0, 0.4, int(vocab))[ids]
        if any(j in p for p in pairs):
            ids_of[j] = ids
        name = f"C{j + 1}"
        if string_ids:
            columns[name] = _take_names(_names(f"{name}_", int(vocab)), ids)
        else:
            columns[name] = pa.array(ids, type=pa.int64())
    for a, b in pairs:
        table = rng.normal(0.0, 0.6, (vocabs[a], vocabs[b]))
        logit += table[ids_of[a], ids_of[b]]
    for j in range(n_num):
        values = np.floor(rng.lognormal(1.0 + 0.3 * j, 1.2, rows))
        if j < 4:
            logit += 0.3 * (-1) ** j * _zscore(np.log1p(values))
        columns[f"I{j + 1}"] = pa.array(values, mask=rng.random(rows) < missing_rate)
    logit += _calibrate_intercept(logit, target_ctr)
    columns["label"] = pa.array(
        (rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int8), type=pa.int8()
    )
    schema = Schema(
        fields=tuple(CategoricalField(f"C{j + 1}") for j in range(n_cat))
        + tuple(NumericField(f"I{j + 1}", transform="log") for j in range(n_num)),
        label="label",
        task="binary",
    )
    return pa.table(columns), schema


# ---- files and the catalogue entry -------------------------------------------------------
def write_click_log(table: pa.Table, path: str | Path) -> Path:
    """Write a log atomically as CSV/TSV (lists joined with ``|``) or Parquet, by extension.

    Args:
        table: A table from :func:`make_click_log` (or any table).
        path: Target; ``.csv``, ``.tsv``, ``.parquet`` or ``.pq``.

    Returns:
        The path written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        atomic_write(path, lambda tmp: pq.write_table(table, tmp))
        return path
    if suffix not in (".csv", ".tsv"):
        raise ValueError(f"{path}: unknown extension {suffix!r} (use .csv, .tsv or .parquet)")
    flat = table
    for i, col in enumerate(table.schema):
        if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
            flat = flat.set_column(i, col.name, pc.binary_join(table[col.name], "|"))
    options = pacsv.WriteOptions(delimiter="\t" if suffix == ".tsv" else ",")
    atomic_write(path, lambda tmp: pacsv.write_csv(flat, tmp, write_options=options))
    return path


def prepare(
    path: Path | None = None, rows: int = 100_000, seed: int = 0, **options: Any
) -> PreparedDataset:
    """Catalogue hook: generate the log (``path`` is ignored) and split it 80/10/10 by time.

    Args:
        path: Ignored (the synthetic log needs no files).
        rows: Impressions.
        seed: Seed.
        **options: Further :func:`make_click_log` arguments.

    Returns:
        A :class:`PreparedDataset` with train/valid/test in chronological order.
    """
    table, schema = make_click_log(rows=rows, seed=seed, **options)
    train, valid, test = split_table(table, "time", ratios=(0.8, 0.1, 0.1), time_column="ts")
    return PreparedDataset(name="synthetic", schema=schema, train=train, valid=valid, test=test)


DATASETS = (
    DatasetSpec(
        name="synthetic",
        description="Embedded synthetic click log (Zipf ids, sequences, interest drift)",
        homepage="https://github.com/recforge/recforge",
        files=(),
        prepare=prepare,
        licence="generated locally; no licence restrictions",
    ),
)
