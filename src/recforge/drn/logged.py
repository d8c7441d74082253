"""Real news logs as hourly rounds of requests for replay evaluation of DRN and its baselines.

Two logs, both turned into :class:`LoggedData`: a time-ordered list of :class:`Round` (one per
hour), each holding DRN's state features ``(B, Ds)``, the action features of every candidate
``(B, C, Da)`` (padded to the round's largest request, with a mask), the logged labels of all
candidates, the users' activeness and the transition to each user's next request.

* **MIND** impressions (Wu et al., ACL 2020): each impression lists the news the user was shown
  with a click label on every one, so any top-k list over its candidates has known clicks.
* **Globo.com** clicks (de Souza P. Moreira et al., DLRS 2018): clicks only. A request is a
  click; its candidates are the clicked article plus articles drawn from those clicked by anyone
  in the same or the previous hour (the "active" articles), in proportion to those clicks by
  default (or uniformly); the clicked article is the only positive. User activeness comes from
  the real return times between sessions through :mod:`recforge.drn.survival`, fitted on the
  training days only. Its loader lives in :mod:`recforge.drn.globo`.

Without titles or categories, the features are what ids and the log's past give (Zheng et al.,
WWW 2018, Section 4.1, restricted to what these logs hold): news popularity in recent windows
and overall, freshness since first appearance, whether the user clicked the news before; user
history size, time since the previous visit, activeness; the hour of day. Every count uses the
log strictly before the request's hour (the same public information for every policy).
"""

from __future__ import annotations

import logging
import lzma
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from recforge.data.read.readers import DataError

log = logging.getLogger(__name__)

MIND_COLUMNS = ("impression_id", "user_id", "time", "history", "impressions")
PERIODS = ("pretrain", "validation", "evaluation")


@dataclass
class Round:
    """The requests of one hour.

    Attributes:
        hour: Hours since the first day's midnight.
        period: ``pretrain``, ``validation`` or ``evaluation``.
        state: ``(B, Ds)`` user + context features.
        action: ``(B, C, Da)`` user-news + news features of every candidate.
        mask: ``(B, C)`` True for real candidates (False for padding).
        labels: ``(B, C)`` logged clicks of the candidates.
        activeness: ``(B,)`` the users' activeness when they make the request.
        reward_active: ``(B,)`` activeness observed after the request (DRN's ``r_active``).
        next_state: ``(B, Ds)`` each user's next request's state.
        next_action: ``(B, Cn, Da)`` its candidates' features.
        done: ``(B,)`` True where the user makes no later request in the log.
    """

    hour: int
    period: str
    state: np.ndarray
    action: np.ndarray
    mask: np.ndarray
    labels: np.ndarray
    activeness: np.ndarray
    reward_active: np.ndarray
    next_state: np.ndarray
    next_action: np.ndarray
    done: np.ndarray


@dataclass
class LoggedData:
    """A log as rounds, with feature names, skip counts and fitted side models."""

    name: str
    rounds: list[Round]
    state_names: tuple[str, ...]
    action_names: tuple[str, ...]
    skipped: dict[str, int] = field(default_factory=dict)
    info: dict[str, object] = field(default_factory=dict)

    @property
    def state_dim(self) -> int:
        return len(self.state_names)

    @property
    def action_dim(self) -> int:
        return len(self.action_names)

    def period(self, name: str) -> list[Round]:
        return [r for r in self.rounds if r.period == name]


def period_of(
    day: np.ndarray,
    pretrain: tuple[int, int],
    validation: tuple[int, int],
    evaluation: tuple[int, int],
) -> np.ndarray:
    out = np.full(day.shape, "", dtype=object)
    for name, (lo, hi) in zip(PERIODS, (pretrain, validation, evaluation), strict=True):
        out[(day >= lo) & (day < hi)] = name
    return out


def _windows(counts: np.ndarray, hours: np.ndarray, item: np.ndarray, span: int) -> np.ndarray:
    """Counts of ``item`` in the ``span`` hours before ``hours`` (from an ``(I, H+1)`` cumsum)."""
    hi = counts[item, hours]
    lo = counts[item, np.maximum(hours - span, 0)]
    return hi - lo


def hourly_cumsum(
    item: np.ndarray, hour: np.ndarray, weight: np.ndarray, n_items: int, n_hours: int
) -> np.ndarray:
    """``(I, H + 1)``: column ``h`` holds the total weight of ``item`` in hours ``< h``."""
    flat = np.bincount(item * n_hours + hour, weights=weight, minlength=n_items * n_hours)
    out = np.zeros((n_items, n_hours + 1), dtype=np.float32)
    out[:, 1:] = np.cumsum(flat.reshape(n_items, n_hours), axis=1)
    return out


def news_features(
    imps: np.ndarray,
    clicks: np.ndarray,
    first_hour: np.ndarray,
    item: np.ndarray,
    hour: np.ndarray,
    prior_ctr: float,
) -> list[np.ndarray]:
    """Popularity and freshness of ``item`` at ``hour`` (only hours before ``hour`` count)."""
    n_all, c_all = imps[item, hour], clicks[item, hour]
    n_day, c_day = _windows(imps, hour, item, 24), _windows(clicks, hour, item, 24)
    c_hour = _windows(clicks, hour, item, 1)
    age = np.maximum(hour - first_hour[item], 0).astype(np.float32)
    return [
        np.log1p(n_all) / 5,
        np.log1p(c_all) / 5,
        np.log1p(c_day) / 5,
        np.log1p(c_hour) / 5,
        10 * (c_all + 10 * prior_ctr) / (n_all + 10),  # smoothed click-through rate
        10 * (c_day + 10 * prior_ctr) / (n_day + 10),
        np.log1p(age) / 5,
        (n_all == 0).astype(np.float32),  # never seen before this hour
    ]


NEWS_NAMES = (
    "log_imps",
    "log_clicks",
    "log_clicks_24h",
    "log_clicks_1h",
    "ctr",
    "ctr_24h",
    "log_age_h",
    "is_new",
)


def to_rounds(
    hour: np.ndarray,
    period: np.ndarray,
    state: np.ndarray,
    cand_index: np.ndarray,
    cand_len: np.ndarray,
    action_flat: np.ndarray,
    label_flat: np.ndarray,
    active: np.ndarray,
    reward_active: np.ndarray,
    next_event: np.ndarray,
    n_next: int,
) -> list[Round]:
    """Cut time-sorted requests into hourly rounds; candidates of request ``i`` are rows
    ``cand_index[i] : cand_index[i] + cand_len[i]`` of the flat candidate arrays."""
    rounds = []
    # next request's first n_next candidates, repeated cyclically when it has fewer
    has_next = next_event >= 0
    nxt = np.where(has_next, next_event, np.arange(next_event.size))
    pos = np.arange(n_next)
    next_rows = cand_index[nxt, None] + pos % cand_len[nxt, None]
    bounds = np.flatnonzero(np.r_[True, hour[1:] != hour[:-1], True])
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        if period[lo] == "":
            continue
        idx = np.arange(lo, hi)
        width = int(cand_len[idx].max())
        p = np.arange(width)
        mask = p < cand_len[idx, None]
        rows = cand_index[idx, None] + np.where(mask, p, p % cand_len[idx, None])
        rounds.append(
            Round(
                hour=int(hour[lo]),
                period=str(period[lo]),
                state=state[idx],
                action=action_flat[rows],
                mask=mask,
                labels=np.where(mask, label_flat[rows], 0.0).astype(np.float32),
                activeness=active[idx].astype(np.float32),
                reward_active=reward_active[idx].astype(np.float32),
                next_state=state[nxt[idx]],
                next_action=action_flat[next_rows[idx]],
                done=~has_next[idx],
            )
        )
    return rounds


def next_event(user: np.ndarray, order_key: np.ndarray) -> np.ndarray:
    """Index of each event's user's next event (by ``order_key``), ``-1`` for the last."""
    order = np.lexsort((order_key, user))
    nxt = np.full(user.size, -1, dtype=np.int64)
    same = user[order][1:] == user[order][:-1]
    nxt[order[:-1][same]] = order[1:][same]
    return nxt


# ---- MIND ----------------------------------------------------------------------------------
def _read_text_table(path: Path, names: tuple[str, ...], delimiter: str, header: bool) -> pa.Table:
    opener = lzma.open if path.suffix == ".xz" else open
    opts = {
        "read_options": pacsv.ReadOptions(
            column_names=None if header else list(names), autogenerate_column_names=False
        ),
        "parse_options": pacsv.ParseOptions(
            delimiter=delimiter, quote_char=False, ignore_empty_lines=False
        ),
        "convert_options": pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string())),
    }
    try:
        with opener(path, "rb") as fh:
            table = pacsv.read_csv(fh, **opts)
    except pa.ArrowInvalid as exc:
        raise DataError(path, str(exc).splitlines()[0]) from None
    if table.num_rows == 0:
        raise DataError(path, "no data rows", line=2 if header else 1)
    missing = [c for c in names if c not in table.column_names]
    if missing:
        raise DataError(path, f"missing columns {missing}", line=1)
    return table


def load_mind(
    path: str | Path,
    k: int = 5,
    days: tuple[int, int, int] = (1, 1, 4),
    n_next: int = 32,
) -> LoggedData:
    """MIND ``behaviors.tsv[.xz]`` as hourly rounds.

    Args:
        path: The behaviors file (``impression_id, user_id, time, history, impressions``).
        k: Served list length; impressions with fewer than ``k`` candidates are skipped
            (counted in ``skipped``).
        days: Lengths in days of the pretraining, validation and evaluation periods, from the
            first day's midnight.
        n_next: Candidates of the next request kept for the TD target's ``max_a'``.

    Raises:
        DataError: Unreadable file, unparseable time or impression token (file, line, column).
    """
    path = Path(path)
    table = _read_text_table(path, MIND_COLUMNS, "\t", header=False)
    times = pc.strptime(table["time"], format="%m/%d/%Y %I:%M:%S %p", unit="s", error_is_null=True)
    bad = np.flatnonzero(times.is_null().to_numpy(zero_copy_only=False))
    if bad.size:
        value = table["time"][int(bad[0])].as_py()
        raise DataError(
            path,
            f"unparseable time {value!r} (expected e.g. 11/13/2019 8:36:57 AM)",
            line=int(bad[0]) + 1,
            column="time",
            column_number=3,
        )
    imp_text = pc.utf8_trim_whitespace(pc.fill_null(table["impressions"], ""))
    empty = pc.utf8_length(imp_text).to_numpy(zero_copy_only=False) == 0
    tokens = pc.split_pattern(imp_text, " ")
    parent = pc.list_parent_indices(tokens).to_numpy()
    flat_tok = pc.list_flatten(tokens).to_numpy(zero_copy_only=False).astype(str)
    news_all, dash, label_text = np.char.rpartition(flat_tok, "-").T  # "N123-1"
    ok = (dash == "-") & np.isin(label_text, ["0", "1"]) & (np.char.str_len(news_all) > 0)
    bad_tok = np.flatnonzero(~ok & ~empty[parent])
    if bad_tok.size:
        row = int(parent[bad_tok[0]])
        token = str(flat_tok[bad_tok[0]])
        raise DataError(
            path,
            f"impression token {token!r} is not NEWSID-0 or NEWSID-1",
            line=row + 1,
            column="impressions",
            column_number=5,
        )
    keep_tok = ~empty[parent]
    parent = parent[keep_tok]
    news_str = news_all[keep_tok]
    label = label_text[keep_tok] == "1"
    n_imp = table.num_rows
    size = np.bincount(parent, minlength=n_imp)
    skipped = {
        "impressions without candidates": int(empty.sum()),
        f"impressions with fewer than {k} candidates": int(((size > 0) & (size < k)).sum()),
    }
    history = pc.utf8_trim_whitespace(pc.fill_null(table["history"], ""))
    hist_tokens = pc.split_pattern(history, " ")
    hist_len = pc.list_value_length(hist_tokens).to_numpy(zero_copy_only=False)
    hist_len = np.where(pc.utf8_length(history).to_numpy(zero_copy_only=False) == 0, 0, hist_len)

    secs = times.cast(pa.int64()).to_numpy(zero_copy_only=False)
    day0 = secs.min() // 86400 * 86400
    hour_of_imp = ((secs - day0) // 3600).astype(np.int64)
    n_hours = int(hour_of_imp.max()) + 1
    news_ids, news = np.unique(news_str, return_inverse=True)
    user_ids, user = np.unique(table["user_id"].to_numpy(zero_copy_only=False), return_inverse=True)
    # counters from every impression (all labels) before the hour: public popularity
    tok_hour = hour_of_imp[parent]
    imps = hourly_cumsum(news, tok_hour, np.ones(news.size), news_ids.size, n_hours)
    clicks = hourly_cumsum(news, tok_hour, label.astype(np.float64), news_ids.size, n_hours)
    first_hour = np.full(news_ids.size, n_hours, dtype=np.int64)
    np.minimum.at(first_hour, news, tok_hour)
    # candidate in the user's own click history
    hist_flat = pc.list_flatten(hist_tokens).to_numpy(zero_copy_only=False)
    hist_parent = pc.list_parent_indices(hist_tokens).to_numpy()
    in_hist = np.zeros(news.size, dtype=np.float32)
    if hist_flat.size:
        pair = np.char.add(np.char.add(hist_parent.astype(str), ":"), hist_flat.astype(str))
        hist_key = np.unique(pair)
        tok_pair = np.char.add(np.char.add(parent.astype(str), ":"), news_str.astype(str))
        in_hist = np.isin(tok_pair, hist_key).astype(np.float32)
    feats = news_features(imps, clicks, first_hour, news, tok_hour, float(label.mean()))
    action_flat = np.stack([*feats, in_hist], axis=1).astype(np.float32)

    valid = size >= k
    angle = 2 * np.pi * (hour_of_imp % 24) / 24
    state = np.stack(
        [
            np.log1p(hist_len) / 5,
            np.log1p(size) / 5,
            np.sin(angle),
            np.cos(angle),
            np.zeros(n_imp),
        ],  # no returns in a 5,000-impression sample: activeness unknown (0)
        axis=1,
    ).astype(np.float32)
    cand_index = np.searchsorted(parent, np.arange(n_imp))
    # time order of the kept impressions
    order = np.flatnonzero(valid)[np.argsort(secs[valid], kind="stable")]
    following = next_event(user[order], secs[order])
    pre, val, ev = days
    period = period_of(
        hour_of_imp[order] // 24, (0, pre), (pre, pre + val), (pre + val, pre + val + ev)
    )
    rounds = to_rounds(
        hour_of_imp[order],
        period,
        state[order],
        cand_index[order],
        size[order],
        action_flat,
        label.astype(np.float32),
        np.zeros(order.size),
        np.zeros(order.size),
        following,
        n_next,
    )
    skipped["impressions outside the periods"] = int((period == "").sum())
    log.info(
        "MIND %s: %d rounds from %d impressions; skipped %s",
        path.name,
        len(rounds),
        order.size,
        skipped,
    )
    return LoggedData(
        name="mind",
        rounds=rounds,
        state_names=("log_history", "log_candidates", "hour_sin", "hour_cos", "activeness"),
        action_names=(*NEWS_NAMES, "in_history"),
        skipped=skipped,
        info={
            "impressions": int(order.size),
            "users": int(user_ids.size),
            "news": int(news_ids.size),
            "ctr": float(label.mean()),
            "k": k,
            "days": {"pretrain": pre, "validation": val, "evaluation": ev},
        },
    )
