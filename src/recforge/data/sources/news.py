"""News logs for DRN: the Globo.com clicks and MIND impressions.

* ``globo-news`` — "News Portal User Interactions by Globo.com" (de Souza P. Moreira et al.,
  "News Session-Based Recommendations using Deep Neural Networks", DLRS 2018): 2,988,181 clicks of
  322,897 users in 1,048,594 sessions on 46,033 articles (``clicks.csv``: one row per click with
  session, timestamps and context). Clicks only: negatives must be sampled.
* ``mind-sample`` — MIND (Wu et al., "MIND: A Large-scale Dataset for News Recommendation",
  ACL 2020) ``behaviors.tsv``: impressions with the clicked (``-1``) and skipped (``-0``) news and
  the user's click history. The reader explodes impressions into one row per shown news item;
  ``max_impressions`` draws a seeded sample of impressions.

:func:`recforge.drn.calibration.calibrate` fits the news simulator's parameters from them.
"""

from __future__ import annotations

import gzip
import logging
import lzma
import zipfile
from pathlib import Path
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from recforge.data.sources.catalogue import DatasetSpec, PreparedDataset, RemoteFile
from recforge.features import CategoricalField, NumericField, Schema, SequenceField

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
