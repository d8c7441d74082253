"""News logs for DRN: the Globo.com clicks and MIND impressions, and simulator calibration.

* ``globo-news`` — "News Portal User Interactions by Globo.com" (de Souza P. Moreira et al.,
  "News Session-Based Recommendations using Deep Neural Networks", DLRS 2018): 2,988,181 clicks of
  322,897 users in 1,048,594 sessions on 46,033 articles (``clicks.csv``: one row per click with
  session, timestamps and context). Clicks only: negatives must be sampled.
* ``mind-sample`` — MIND (Wu et al., "MIND: A Large-scale Dataset for News Recommendation",
  ACL 2020) ``behaviors.tsv``: impressions with the clicked (``-1``) and skipped (``-0``) news and
  the user's click history. The reader explodes impressions into one row per shown news item;
  ``max_impressions`` draws a seeded sample of impressions.

:func:`calibrate` fits the news simulator's free parameters from these logs: freshness decay
(ages of clicks since an article's first click), popularity spread (log click counts per
article), users' return rates and their spread (sessions per user over the log span) from Globo,
and the base click logit from MIND's click-through rate.
"""

from __future__ import annotations

import gzip
import logging
import lzma
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from recforge.data.datasets import DatasetSpec, PreparedDataset, RemoteFile
from recforge.features import CategoricalField, NumericField, Schema, SequenceField
from recforge.online.simulator import NewsSimulator, SimConfig

log = logging.getLogger(__name__)

GLOBO_CONTEXT = (
    "click_environment",
    "click_deviceGroup",
    "click_os",
    "click_country",
    "click_region",
    "click_referrer_type",
)
MIND_COLUMNS = ("impression_id", "user_id", "time", "history", "impressions")


def _open(path: Path) -> IO[bytes]:
    if path.suffix == ".xz":
        return lzma.open(path, "rb")
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    return open(path, "rb")


def _find(folder: Path, names: tuple[str, ...]) -> Path:
    if folder.is_file():
        return folder
    for name in names:
        for cand in (folder / name, *folder.glob(f"*/{name}")):
            if cand.exists():
                return cand
    raise FileNotFoundError(f"{folder}: none of {names} found")


# ---- readers -------------------------------------------------------------------------------
def read_globo_clicks(path: str | Path) -> pa.Table:
    """Read the Globo ``clicks.csv`` (plain, ``.gz`` or ``.xz``), sorted by click time.

    Columns: ``user_id, session_id, session_start, session_size, click_article_id,
    click_timestamp`` (ms) and the six ``click_*`` context columns, all int64.
    """
    path = Path(path)
    with _open(path) as fh:
        table = pacsv.read_csv(fh)
    missing = {"user_id", "session_id", "click_article_id", "click_timestamp"} - set(
        table.column_names
    )
    if missing:
        raise ValueError(f"{path}: not a Globo clicks file, missing columns {sorted(missing)}")
    return table.sort_by("click_timestamp")


def read_mind_behaviors(
    path: str | Path, max_impressions: int | None = None, seed: int = 0
) -> pa.Table:
    """Read MIND ``behaviors.tsv`` (plain, ``.gz``, ``.xz`` or inside ``MIND*_train.zip``).

    Returns one row per shown news item: ``impression_id, user_id, time`` (timestamp),
    ``hour`` (0-23), ``history`` (space-separated news ids), ``news_id`` and ``label`` (1 =
    click). ``max_impressions`` keeps a seeded random sample of impressions.
    """
    path = Path(path)
    opts = dict(
        read_options=pacsv.ReadOptions(column_names=list(MIND_COLUMNS)),
        parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False),
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in MIND_COLUMNS[1:]}
        ),
    )
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as zf, zf.open("behaviors.tsv") as fh:
            table = pacsv.read_csv(fh, **opts)
    else:
        with _open(path) as fh:
            table = pacsv.read_csv(fh, **opts)
    if max_impressions is not None and table.num_rows > max_impressions:
        keep = np.sort(np.random.default_rng(seed).permutation(table.num_rows)[:max_impressions])
        table = table.take(pa.array(keep))
    tokens = pc.split_pattern(table["impressions"], " ")
    parent = pc.list_parent_indices(tokens)
    flat = pc.list_flatten(tokens)
    parts = pc.split_pattern(flat, "-")
    news = pc.list_element(parts, 0)
    label = pc.cast(pc.list_element(parts, 1), pa.float32())
    time = pc.strptime(table["time"], format="%m/%d/%Y %I:%M:%S %p", unit="s")
    rows = {
        "impression_id": table["impression_id"],
        "user_id": table["user_id"],
        "time": time,
        "hour": pc.hour(time),
        "history": pc.fill_null(table["history"], ""),
    }
    out = pa.table({k: pc.take(v, parent) for k, v in rows.items()})
    out = out.append_column("news_id", news).append_column("label", label)
    log.info("MIND %s: %d impressions, %d shown items", path.name, table.num_rows, out.num_rows)
    return out


# ---- catalogue -----------------------------------------------------------------------------
def globo_schema() -> Schema:
    fields = [
        CategoricalField("user_id", group="user"),
        CategoricalField("click_article_id", group="item"),
    ] + [CategoricalField(c, group="context") for c in GLOBO_CONTEXT]
    return Schema(
        fields=tuple(fields),
        label="label",
        user_key="user_id",
        item_key="click_article_id",
        time_column="click_timestamp",
    )


def prepare_globo(folder: Path, max_rows: int | None = None) -> PreparedDataset:
    """Globo clicks as a time-ordered table with ``label = 1`` (clicks only)."""
    table = read_globo_clicks(_find(Path(folder), ("clicks.csv", "clicks.csv.xz", "clicks.csv.gz")))
    if max_rows is not None:
        table = table.slice(0, max_rows)
    cast = {
        c: pc.cast(table[c], pa.string()) for c in ("user_id", "click_article_id", *GLOBO_CONTEXT)
    }
    out = pa.table({**cast, "click_timestamp": table["click_timestamp"],
                    "session_id": table["session_id"],
                    "label": pa.array(np.ones(table.num_rows, np.float32))})  # fmt: skip
    return PreparedDataset(name="globo-news", schema=globo_schema(), train=out)


def mind_schema() -> Schema:
    return Schema(
        fields=(
            CategoricalField("user_id", group="user"),
            CategoricalField("news_id", group="item"),
            SequenceField(
                "history", group="user", max_len=50, share_embedding_with="news_id", separator=" "
            ),  # fmt: skip
            NumericField("hour", group="context", buckets=0, transform="none"),
        ),
        label="label",
        user_key="user_id",
        item_key="news_id",
        time_column="time",
    )


def prepare_mind(
    folder: Path, max_impressions: int | None = 5000, seed: int = 0
) -> PreparedDataset:
    """MIND impressions exploded to (user, news, label) rows; a 5,000-impression sample by
    default (``max_impressions=None`` for all)."""
    path = _find(
        Path(folder),
        ("behaviors.tsv", "behaviors.tsv.xz", "behaviors.tsv.gz", "MINDsmall_train.zip"),
    )
    table = read_mind_behaviors(path, max_impressions, seed)
    table = table.set_column(table.schema.get_field_index("hour"), "hour",
                             pc.cast(table["hour"], pa.float32()))  # fmt: skip
    return PreparedDataset(name="mind-sample", schema=mind_schema(), train=table)


DATASETS = (
    DatasetSpec(
        name="globo-news",
        description="Globo.com G1 news portal clicks (DLRS 2018): 2,988,181 clicks, 322,897 "
        "users, 1,048,594 sessions, 46,033 articles, 16 days; clicks only",
        homepage="https://www.kaggle.com/datasets/gspmoreira/news-portal-user-interactions-by-globocom",
        files=(),  # Kaggle needs a login: pass path= to clicks.csv or the folder holding it
        prepare=prepare_globo,
        licence="CC BY-NC-SA 4.0 (as published on Kaggle); non-commercial research use.",
    ),
    DatasetSpec(
        name="mind-sample",
        description="MIND-small train impressions (ACL 2020) with clicks and non-clicks; a "
        "seeded 5,000-impression sample by default",
        homepage="https://msnews.github.io/",
        files=(
            RemoteFile(
                url="https://mind201910small.blob.core.windows.net/release/MINDsmall_train.zip",
                filename="MINDsmall_train.zip",
            ),
        ),
        prepare=prepare_mind,
        licence="Microsoft Research License Terms: non-commercial research use only.",
    ),
)


# ---- calibration of the simulator ----------------------------------------------------------
@dataclass(frozen=True)
class Calibration:
    """Simulator parameters fitted from news logs (``None`` where no log informed them).

    Attributes:
        freshness_tau: Hours; ages of clicks since an article's first click, median / ln 2.
        quality_std: Std of ``log(clicks)`` per article (popularity spread).
        rate: Mean sessions per user per hour over the log span.
        rate_std: Std of ``log(sessions per user)``.
        ctr: MIND click-through rate of shown items.
        bias: Base click logit matching ``ctr`` for random lists in the simulator.
    """

    freshness_tau: float | None = None
    quality_std: float | None = None
    rate: float | None = None
    rate_std: float | None = None
    ctr: float | None = None
    bias: float | None = None

    def apply(self, cfg: SimConfig, scale_rate: bool = False) -> SimConfig:
        """``cfg`` with the fitted values; the return rate only when ``scale_rate``."""
        changes = {
            k: getattr(self, k)
            for k in ("freshness_tau", "quality_std", "rate_std", "bias")
            if getattr(self, k) is not None
        }
        if scale_rate and self.rate is not None:
            changes["rate"] = self.rate
        return cfg.replace(**changes)


def calibrate_globo(clicks: pa.Table) -> dict[str, float]:
    """Freshness decay, popularity spread and return-rate statistics from Globo clicks."""
    ts = clicks["click_timestamp"].to_numpy().astype(np.float64) / 3.6e6  # hours
    art = clicks["click_article_id"].to_numpy()
    _, inv, counts = np.unique(art, return_inverse=True, return_counts=True)
    first = np.full(counts.size, np.inf)
    np.minimum.at(first, inv, ts)
    age = ts - first[inv]
    span = ts.max() - ts.min()
    users, sessions = clicks["user_id"].to_numpy(), clicks["session_id"].to_numpy()
    pairs = np.unique(np.stack([users, sessions], axis=1), axis=0)
    _, per_user = np.unique(pairs[:, 0], return_counts=True)
    return {
        "freshness_tau": float(np.median(age) / np.log(2)),
        "quality_std": float(np.std(np.log(counts))),
        "rate": float(per_user.mean() / span),
        "rate_std": float(np.std(np.log(per_user))),
    }


def calibrate_mind(impressions: pa.Table) -> dict[str, float]:
    """Click-through rate of shown items from exploded MIND impressions."""
    return {"ctr": float(pc.mean(impressions["label"]).as_py())}


def fit_bias(cfg: SimConfig, ctr: float, samples: int = 50_000) -> float:
    """Base click logit for which uniformly random lists in the simulator click at ``ctr``.

    Monte Carlo over the simulator's own draws: users' initial interests, uniform topics,
    qualities ``N(0, quality_std)``, ages uniform over the lifetime, uniform hours and list
    positions; the bias is then found by bisection (the click rate increases with it).
    """
    rng = np.random.default_rng(cfg.seed)
    env = NewsSimulator(cfg)
    users = rng.integers(0, cfg.n_users, samples)
    topics = rng.integers(0, cfg.n_topics, samples)
    rel = env.interests[users, topics] * cfg.n_topics
    fresh = np.exp(-rng.integers(0, cfg.lifetime, samples) / cfg.freshness_tau)
    hour = np.sin(2 * np.pi * rng.integers(0, 24, samples) / 24)
    rest = (
        cfg.a_int * rel
        + cfg.a_q * rng.normal(0, cfg.quality_std, samples)
        + cfg.a_f * fresh
        + cfg.a_h * hour
    )
    exam = env.examination()[rng.integers(0, cfg.list_len, samples)]
    lo, hi = -15.0, 5.0
    for _ in range(50):
        mid = (lo + hi) / 2
        rate = float(np.mean(exam / (1.0 + np.exp(-(mid + rest)))))
        lo, hi = (mid, hi) if rate < ctr else (lo, mid)
    return (lo + hi) / 2


def calibrate(
    globo: str | Path | pa.Table | None = None,
    mind: str | Path | pa.Table | None = None,
    base: SimConfig | None = None,
) -> Calibration:
    """Fit simulator parameters from a Globo clicks log and/or MIND behaviors.

    Args:
        globo: Path to ``clicks.csv[.xz]`` or its table.
        mind: Path to ``behaviors.tsv[.xz]`` or the exploded table.
        base: Simulator configuration used to translate the CTR into a click bias.
    """
    fitted: dict[str, float] = {}
    if globo is not None:
        table = globo if isinstance(globo, pa.Table) else read_globo_clicks(globo)
        fitted.update(calibrate_globo(table))
    if mind is not None:
        table = mind if isinstance(mind, pa.Table) else read_mind_behaviors(mind)
        fitted.update(calibrate_mind(table))
    if "ctr" in fitted:
        cfg = base or SimConfig()
        for k in ("freshness_tau", "quality_std"):
            if k in fitted:
                cfg = cfg.replace(**{k: fitted[k]})
        fitted["bias"] = fit_bias(cfg, fitted["ctr"])
    log.info("calibration: %s", {k: round(v, 4) for k, v in fitted.items()})
    return Calibration(**fitted)
