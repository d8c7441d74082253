"""Globo.com clicks as hourly rounds of click requests (see :mod:`recforge.drn.logged`).

"News Portal User Interactions by Globo.com" (de Souza P. Moreira et al., DLRS 2018) logs clicks
only. A request is a click; its candidates are the clicked article and articles clicked by
anyone in the same or the previous hour; the user's activeness comes from the real session
starts through the survival model of :mod:`recforge.drn.survival`, fitted on the first days.
"""

from __future__ import annotations

import logging
import lzma
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from recforge.data.read.readers import DataError
from recforge.drn.logged import (
    NEWS_NAMES,
    LoggedData,
    hourly_cumsum,
    news_features,
    next_event,
    period_of,
    to_rounds,
)
from recforge.drn.survival import (
    ReturnModel,
    activeness_scores,
    calibration_table,
    exposure_counts,
    unique_sessions,
    weekly_profile,
)

log = logging.getLogger(__name__)

GLOBO_COLUMNS = ("user_id", "session_id", "session_start", "click_article_id", "click_timestamp")


def _int_column(table: pa.Table, name: str, path: Path) -> np.ndarray:
    col = table[name]
    as_int = pc.cast(col, pa.int64(), safe=False) if pa.types.is_integer(col.type) else None
    if as_int is None:  # Arrow read something that is not an integer: find the first bad row
        text = col.to_numpy(zero_copy_only=False).astype(str)
        good = np.char.isdigit(np.char.lstrip(text, "-"))
        first = int(np.flatnonzero(~good)[0]) if (~good).any() else None
        if first is not None:
            raise DataError(
                path,
                f"{text[first]!r} is not an integer timestamp/id",
                line=first + 2,
                column=name,
                column_number=table.column_names.index(name) + 1,
            )
        return text.astype(np.int64)
    return as_int.to_numpy(zero_copy_only=False)


def read_globo_columns(path: Path, columns: Sequence[str]) -> dict[str, np.ndarray]:
    """``columns`` of a Globo ``clicks.csv[.xz]`` as int64 arrays.

    Raises:
        DataError: Unreadable file, missing column, no rows, or a non-integer value (file,
            line, column).
    """
    opener = lzma.open if path.suffix == ".xz" else open
    try:
        with opener(path, "rb") as fh:
            table = pacsv.read_csv(
                fh, convert_options=pacsv.ConvertOptions(include_columns=list(columns))
            )
    except (pa.ArrowInvalid, KeyError) as exc:
        raise DataError(path, str(exc).splitlines()[0]) from None
    if table.num_rows == 0:
        raise DataError(path, "no data rows", line=2)
    return {c: _int_column(table, c, path) for c in columns}


def load_globo(
    path: str | Path,
    k: int = 5,
    candidates: int = 50,
    user_fraction: float = 0.02,
    seed: int = 0,
    negatives: str = "popular",
    days: tuple[int, int, int, int] = (7, 1, 2, 7),
    calibration_window: float = 24.0,
) -> LoggedData:
    """Globo ``clicks.csv[.xz]`` as hourly rounds of click requests.

    Args:
        path: The clicks file (header with at least ``user_id, session_id, session_start,
            click_article_id, click_timestamp``; times in ms).
        k: Served list length.
        candidates: Candidates per request (the clicked article + ``candidates - 1`` active
            articles drawn without replacement, see ``negatives``).
        user_fraction: Fraction of users replayed (a seeded draw; the return model and the
            popularity counters use every user).
        seed: Seed of the user draw and the candidate draws.
        negatives: ``popular`` draws the other candidates in proportion to their clicks in
            the hour and the one before (what the portal was likely showing); ``uniform``
            draws them uniformly among the active articles (mostly long-tail articles, which
            makes popularity alone a near-perfect ranker).
        days: ``(fit, pretrain, validation, evaluation)`` in days: the return model is fitted
            on the first ``fit`` days, the last of which is also the pretraining log when
            ``pretrain = 1``; then validation and evaluation follow.
        calibration_window: Hours of the return-probability calibration check.

    Raises:
        DataError: Unreadable file, non-integer timestamp or id (file, line, column), or an
            evaluation period without requests.
    """
    path = Path(path)
    cols = read_globo_columns(path, GLOBO_COLUMNS)
    ms = cols["click_timestamp"]
    day0 = ms.min() // 86_400_000 * 86_400_000
    t = (ms - day0) / 3.6e6  # hours since the first day's midnight
    ts = (cols["session_start"] - day0) / 3.6e6
    fit_days, pre, val, ev = days
    end_h = 24.0 * (fit_days + val + ev)
    inside = t < end_h
    skipped = {"clicks after the last evaluation day": int((~inside).sum())}
    t, ts = t[inside], ts[inside]
    user, article = cols["user_id"][inside], cols["click_article_id"][inside]
    hour = np.floor(t).astype(np.int64)
    n_hours = int(end_h)

    # ---- survival: return model on the fit days, checked on the later days
    su, st = unique_sessions(user, ts)
    fit_end = 24.0 * fit_days
    cuts = [24.0 * d for d in range(fit_days, fit_days + val + ev)]
    _, n_ret, expo = exposure_counts(su, st, 0.0, fit_end)
    constant = ReturnModel.fit(n_ret, expo)
    weekly = weekly_profile(st, 0.0, fit_end)
    _, n_ret, expo = exposure_counts(su, st, 0.0, fit_end, weekly)
    model = ReturnModel.fit(n_ret, expo, weekly)
    calibration = [calibration_table(model, su, st, 0.0, c, calibration_window) for c in cuts]
    brier_constant = [
        calibration_table(constant, su, st, 0.0, c, calibration_window)["brier"] for c in cuts
    ]
    active = activeness_scores(user, t, ts, constant.mean_rate)
    # r_active: the score the user has at their next click (a return lifts it), or the score
    # decayed to the end of the log when they never come back
    nxt_all = next_event(user, t)
    reward_active = np.where(
        nxt_all >= 0,
        active[np.maximum(nxt_all, 0)],
        active * np.exp(-model.mean_rate * (end_h - t)),
    )

    # ---- popularity counters from every user's clicks
    art_ids, art = np.unique(article, return_inverse=True)
    ones = np.ones(art.size)
    clicks = hourly_cumsum(art, hour, ones, art_ids.size, n_hours)
    first_hour = np.full(art_ids.size, n_hours, dtype=np.int64)
    np.minimum.at(first_hour, art, hour)
    # active articles per hour: clicked in this or the previous hour
    pairs, pair_clicks = np.unique(
        np.r_[hour, np.minimum(hour + 1, n_hours - 1)] * art_ids.size + np.r_[art, art],
        return_counts=True,
    )
    act_hour, act_art = pairs // art_ids.size, pairs % art_ids.size
    act_bounds = np.searchsorted(act_hour, np.arange(n_hours + 1))

    # ---- the replayed users' clicks as requests
    rng = np.random.default_rng(seed)
    uniq_users, user_idx = np.unique(user, return_inverse=True)
    keep_user = rng.random(uniq_users.size) < user_fraction
    sel = np.flatnonzero(keep_user[user_idx] & (hour >= 24 * (fit_days - pre)))
    sel = sel[np.argsort(t[sel], kind="stable")]
    skipped["clicks of users not drawn"] = int(inside.sum() - sel.size)
    cand = np.empty((sel.size, candidates), dtype=np.int64)
    ok = np.zeros(sel.size, dtype=bool)
    for h in np.unique(hour[sel]):
        pool = act_art[act_bounds[h] : act_bounds[h + 1]]
        weight = pair_clicks[act_bounds[h] : act_bounds[h + 1]].astype(np.float64)
        rows = np.flatnonzero(hour[sel] == h)
        if pool.size < candidates:
            continue  # a quiet hour: too few active articles to draw from
        pos = art[sel[rows]]
        # Gumbel top-k: a draw without replacement, uniform or proportional to weight
        key = rng.gumbel(size=(rows.size, pool.size))
        if negatives == "popular":
            key += np.log(weight)
        key[pool[None, :] == pos[:, None]] = -np.inf  # never draw the clicked article
        neg = pool[np.argpartition(-key, candidates - 2, axis=1)[:, : candidates - 1]]
        both = np.concatenate([pos[:, None], neg], axis=1)
        shuffle = np.argsort(rng.random(both.shape), axis=1)  # the positive at a random slot
        cand[rows] = np.take_along_axis(both, shuffle, axis=1)
        ok[rows] = True
    skipped["requests in hours with too few active articles"] = int((~ok).sum())
    sel, cand = sel[ok], cand[ok]
    n = sel.size
    req_hour = hour[sel]
    flat_item = cand.ravel()
    flat_hour = np.repeat(req_hour, candidates)
    feats = news_features(clicks, clicks, first_hour, flat_item, flat_hour, 0.0)
    # clicked this article before (any earlier click of the user on it in the log)
    pair_key = user.astype(np.int64) * art_ids.size + art
    order = np.lexsort((t, pair_key))
    keys_sorted, first_t = np.unique(pair_key[order], return_index=True)
    first_t = t[order][first_t]
    q = np.repeat(user[sel].astype(np.int64), candidates) * art_ids.size + flat_item
    at = np.clip(np.searchsorted(keys_sorted, q), 0, keys_sorted.size - 1)
    seen = (keys_sorted[at] == q) & (first_t[at] < np.repeat(t[sel], candidates))
    # only counts, not CTRs, exist for clicks-only logs: drop the two CTR columns
    news = [f for i, f in enumerate(feats) if NEWS_NAMES[i] not in ("ctr", "ctr_24h", "log_imps")]
    action_flat = np.stack([*news, seen.astype(np.float32)], axis=1).astype(np.float32)
    labels = (cand == art[sel][:, None]).astype(np.float32).ravel()

    # state: activeness, visits so far, hours since the previous session, hour of day, depth
    sess_rank = np.searchsorted(su * 1e6 + st, user[sel] * 1e6 + ts[sel]) - np.searchsorted(
        su, user[sel]
    )
    prev_start = st[np.maximum(np.searchsorted(su * 1e6 + st, user[sel] * 1e6 + ts[sel]) - 1, 0)]
    since_prev = np.where(sess_rank > 0, ts[sel] - prev_start, 0.0)
    angle = 2 * np.pi * (req_hour % 24) / 24
    state = np.stack(
        [
            active[sel],
            np.log1p(sess_rank) / 5,
            np.log1p(since_prev) / 5,
            np.sin(angle),
            np.cos(angle),
            np.log1p(np.maximum(t[sel] - ts[sel], 0) * 60) / 5,
        ],
        axis=1,
    ).astype(np.float32)
    nxt = next_event(user[sel], t[sel])
    period = period_of(
        req_hour // 24,
        (fit_days - pre, fit_days),
        (fit_days, fit_days + val),
        (fit_days + val, fit_days + val + ev),
    )
    rounds = to_rounds(
        req_hour,
        period,
        state,
        np.arange(n) * candidates,
        np.full(n, candidates),
        action_flat,
        labels,
        active[sel],
        reward_active[sel],
        nxt,
        candidates,
    )
    if not any(r.period == "evaluation" for r in rounds):
        raise DataError(
            path,
            f"no requests in the evaluation days {fit_days + val}.."
            f"{fit_days + val + ev - 1} (empty period)",
        )
    log.info("Globo %s: %d rounds, %d requests; skipped %s", path.name, len(rounds), n, skipped)
    return LoggedData(
        name="globo",
        rounds=rounds,
        state_names=(
            "activeness",
            "log_sessions",
            "log_hours_since_prev",
            "hour_sin",
            "hour_cos",
            "log_minutes_in_session",
        ),
        action_names=(
            *[m for m in NEWS_NAMES if m not in ("ctr", "ctr_24h", "log_imps")],
            "clicked_before",
        ),
        skipped=skipped,
        info={
            "requests": int(n),
            "users_replayed": int(keep_user.sum()),
            "users": int(uniq_users.size),
            "articles": int(art_ids.size),
            "k": k,
            "candidates": candidates,
            "negatives": negatives,
            "user_fraction": user_fraction,
            "days": {"fit": fit_days, "pretrain": pre, "validation": val, "evaluation": ev},
            "first_day": str(np.datetime64(int(day0), "ms").astype("datetime64[D]")),
            "return_model": {
                "a": model.a,
                "b": model.b,
                "mean_rate_per_h": model.mean_rate,
                "weekly": model.weekly,
            },
            "return_model_constant": {
                "a": constant.a,
                "b": constant.b,
                "mean_rate_per_h": constant.mean_rate,
                "brier": brier_constant,
            },
            "calibration": calibration,
        },
    )
