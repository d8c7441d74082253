"""Amazon review datasets prepared as the DIN paper does (behaviour histories, sampled negatives).

Sources:

* ``amazon-electronics`` / ``amazon-books``: the 2014 Amazon review data of McAuley et al.
  (UCSD; "Image-based recommendations on styles and substitutes", SIGIR 2015), the 5-core
  ``reviews_<Category>_5.json.gz`` (one JSON review per line: ``reviewerID``, ``asin``,
  ``unixReviewTime``) and ``meta_<Category>.json.gz`` (one Python-literal dict per line with
  ``asin`` and ``categories``), the files the DIN code (``zhougr1993/DeepInterestNetwork``)
  starts from. An item's category is the leaf of its last category path
  (``categories[-1][-1]``), as in DIN's ``convert_pd.py``.
* ``amazon-beauty``: the Amazon 2014 5-core Beauty reviews as distributed by S3-Rec
  (Zhou et al., CIKM 2020; ``RUCAIBox/CIKM2020-S3Rec`` ``data/``): ``Beauty.txt`` holds one line
  per user, ``user item_1 item_2 ...`` in chronological order, and
  ``Beauty_item2attributes.json`` maps an item to attribute ids (its brand, then the levels of
  its category paths without the root). No timestamps: the position in the sequence is the
  time. The category is the last attribute id (the leaf of the last category path, DIN's
  choice); items without attributes get category ``-1``.

Protocol (DIN, Sec. 6.1 and ``build_dataset.py``): every review is a behaviour, ordered by time
per user. For each review after a user's first, the reviews before it (at most ``max_len``,
most recent kept) predict it: one positive sample with the reviewed item and one negative
sample with a uniformly drawn item the user never reviewed (with its category). The last
review of each user is the test sample pair, the one before it the validation pair (the DIN
code has no validation split and selects on test; we do not), the rest is training data.
"""

from __future__ import annotations

import ast
import gzip
import json
import logging
import lzma
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa

from recforge.data.encode.sampling import NegativeSampler
from recforge.data.sources.catalogue import DatasetSpec, PreparedDataset, RemoteFile
from recforge.features import CategoricalField, Schema, SequenceField

log = logging.getLogger(__name__)

MAX_LEN = 100  # DIN and DIEN keep at most 100 behaviours
_SNAP = "https://snap.stanford.edu/data/amazon/productGraph/categoryFiles"
_S3REC = (
    "https://raw.githubusercontent.com/RUCAIBox/CIKM2020-S3Rec/"
    "2a81540ae18615d88ef88227b0c066e5b74781e5/data"
)


def amazon_schema(max_len: int = MAX_LEN) -> Schema:
    """Schema of the prepared tables: user, candidate item and category, and the histories."""
    return Schema(
        fields=(
            CategoricalField("user_id", group="user"),
            CategoricalField("item_id", group="item"),
            CategoricalField("item_category", group="item"),
            SequenceField("hist_item_ids", max_len=max_len, share_embedding_with="item_id"),
            SequenceField(
                "hist_cats",
                max_len=max_len,
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


def _open(path: Path) -> IO[str]:
    """Open a text file that may be gzip- or xz-compressed."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    if path.suffix == ".xz":
        return lzma.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def _find(folder: Path, stem: str) -> Path:
    """``folder/stem`` or its ``.gz`` / ``.xz`` variant."""
    if folder.is_file() and folder.name.startswith(stem):
        return folder
    for suffix in ("", ".gz", ".xz"):
        candidate = folder / f"{stem}{suffix}"
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{folder}: no {stem}[.gz|.xz]")


def _ragged_ranges(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(starts[k], stops[k])`` over k, without a Python loop."""
    lengths = stops - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    row_start = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(starts, lengths) + (np.arange(total) - row_start)


def build_din_samples(
    users: np.ndarray,
    items: np.ndarray,
    times: np.ndarray,
    item_category: np.ndarray,
    max_len: int = MAX_LEN,
    seed: int = 0,
    user_names: np.ndarray | None = None,
) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Train/validation/test tables of the DIN protocol from time-ordered behaviours.

    Args:
        users: ``(N,)`` user codes, rows grouped by user and ordered by time within a user.
        items: ``(N,)`` item codes in ``1..n_items``.
        times: ``(N,)`` time of each behaviour (int64; positions when unknown).
        item_category: ``(n_items + 1,)`` category code of each item code.
        max_len: Longest kept history (most recent behaviours).
        seed: Seed of the negative sampling.
        user_names: Optional ``(n_users,)`` raw user ids for the ``user_id`` column.

    Returns:
        ``(train, valid, test)`` with columns ``user_id``, ``item_id``, ``item_category``,
        ``hist_item_ids``, ``hist_cats`` (``list<int64>``), ``ts`` and ``label`` (int8); every
        target contributes a positive row followed by its negative row.
    """
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    n = len(users)
    if n and np.any(np.diff(users) < 0):
        raise ValueError("rows must be grouped by user (sorted by user, then time)")
    n_items = int(items.max()) if n else 0
    first = np.ones(n, dtype=bool)
    first[1:] = users[1:] != users[:-1]
    last = np.ones(n, dtype=bool)
    last[:-1] = users[1:] != users[:-1]
    start = np.maximum.accumulate(np.where(first, np.arange(n), 0))  # first row of the user
    second_last = np.zeros(n, dtype=bool)
    second_last[:-1] = last[1:] & ~first[1:]
    target = np.flatnonzero(~first)  # a review with at least one earlier review
    # one negative per target: an item the user never reviewed (the one negative sampler)
    sampler = NegativeSampler(users, items, n_items + 1, seed=seed)
    negatives = sampler.sample(users[target], 1)[:, 0]

    def table(rows: np.ndarray, neg: np.ndarray) -> pa.Table:
        hist_start = np.maximum(start[rows], rows - max_len)
        flat = _ragged_ranges(hist_start, rows)
        offsets = np.zeros(len(rows) + 1, dtype=np.int32)
        np.cumsum(rows - hist_start, out=offsets[1:])
        hist_items = pa.ListArray.from_arrays(pa.array(offsets), pa.array(items[flat]))
        hist_cats = pa.ListArray.from_arrays(
            pa.array(offsets), pa.array(item_category[items[flat]])
        )
        # positive and negative rows interleaved: 2k is the positive of target k
        twice = np.repeat(np.arange(len(rows)), 2)
        cand = np.stack([items[rows], neg], axis=1).reshape(-1)
        label = np.tile(np.array([1, 0], dtype=np.int8), len(rows))
        user_col = users[rows][twice]
        return pa.table(
            {
                "user_id": user_names[user_col] if user_names is not None else user_col,
                "item_id": cand,
                "item_category": item_category[cand],
                "hist_item_ids": hist_items.take(pa.array(twice)),
                "hist_cats": hist_cats.take(pa.array(twice)),
                "ts": np.asarray(times, dtype=np.int64)[rows][twice],
                "label": label,
            }
        )

    split = np.where(last[target], 2, np.where(second_last[target], 1, 0))
    parts = tuple(table(target[split == k], negatives[split == k]) for k in range(3))
    log.info(
        "DIN samples: %d train / %d valid / %d test rows",
        *(p.num_rows for p in parts),
    )
    return parts  # type: ignore[return-value]


# ---- Amazon Beauty (S3-Rec sequence files) ------------------------------------------------
def read_s3rec(folder: Path, name: str = "Beauty") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read ``<name>.txt`` and ``<name>_item2attributes.json`` (plain, .gz or .xz).

    Returns:
        ``(users, items, item_category)``: behaviours grouped by user in chronological order,
        and the category code per item code (``-1`` without attributes).
    """
    with _open(_find(folder, f"{name}.txt")) as fh:
        lines = [line.split() for line in fh if line.strip()]
    lengths = np.array([len(tokens) - 1 for tokens in lines], dtype=np.int64)
    users = np.repeat(np.array([int(t[0]) for t in lines], dtype=np.int64), lengths)
    items = np.array([int(x) for t in lines for x in t[1:]], dtype=np.int64)
    order = np.argsort(users, kind="stable")  # group by user, keep chronological order
    users, items = users[order], items[order]
    with _open(_find(folder, f"{name}_item2attributes.json")) as fh:
        attributes: dict[str, list[int]] = json.load(fh)
    n_items = max(int(items.max()), max((int(k) for k in attributes), default=0))
    category = np.full(n_items + 1, -1, dtype=np.int64)
    for key, attrs in attributes.items():
        if attrs:
            category[int(key)] = int(attrs[-1])  # leaf of the last category path
    return users, items, category


def prepare_beauty(
    path: Path, max_len: int = MAX_LEN, seed: int = 0, **options: Any
) -> PreparedDataset:
    """Catalogue hook of ``amazon-beauty``: the S3-Rec files in ``path`` -> DIN samples."""
    if options:
        raise ValueError(f"amazon-beauty: unknown options {sorted(options)}")
    users, items, category = read_s3rec(Path(path), "Beauty")
    positions = np.arange(len(users)) - np.searchsorted(users, users)  # order within the user
    train, valid, test = build_din_samples(users, items, positions, category, max_len, seed)
    return PreparedDataset(
        name="amazon-beauty", schema=amazon_schema(max_len), train=train, valid=valid, test=test
    )


# ---- Amazon Electronics / Books (McAuley 2014 review + metadata files) -------------------
def read_mcauley(
    folder: Path, category: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read the 5-core reviews and the metadata of one Amazon 2014 category.

    Returns:
        ``(users, items, times, item_category, user_names)`` with rows sorted by user then
        review time; item codes ``1..n``; category codes per item code.
    """
    with _open(_find(folder, f"reviews_{category}_5.json")) as fh:
        reviews = [json.loads(line) for line in fh if line.strip()]
    reviewer = np.array([r["reviewerID"] for r in reviews])
    asin = np.array([r["asin"] for r in reviews])
    times = np.array([int(r["unixReviewTime"]) for r in reviews], dtype=np.int64)
    user_names, users = np.unique(reviewer, return_inverse=True)
    asins, items = np.unique(asin, return_inverse=True)
    items = items + 1
    wanted = set(asins.tolist())
    leaf: dict[str, str] = {}
    with _open(_find(folder, f"meta_{category}.json")) as fh:
        for line in fh:  # Python-literal dicts, one per line (not JSON)
            if not line.strip():
                continue
            meta = ast.literal_eval(line)
            if meta.get("asin") in wanted:
                paths = meta.get("categories") or [[]]
                leaf[meta["asin"]] = paths[-1][-1] if paths[-1] else ""
    names = np.array([leaf.get(a, "") for a in asins])
    cat_names, cat_codes = np.unique(names, return_inverse=True)
    item_category = np.concatenate([[-1], cat_codes]).astype(np.int64)
    log.info(
        "%s: %d reviews, %d users, %d items, %d categories",
        category,
        len(users),
        len(user_names),
        len(asins),
        len(cat_names),
    )
    order = np.lexsort((times, users))
    return users[order], items[order], times[order], item_category, user_names


def _prepare_mcauley(category: str, name: str):
    def prepare(
        path: Path, max_len: int = MAX_LEN, seed: int = 0, **options: Any
    ) -> PreparedDataset:
        if options:
            raise ValueError(f"{name}: unknown options {sorted(options)}")
        users, items, times, item_category, user_names = read_mcauley(Path(path), category)
        train, valid, test = build_din_samples(
            users, items, times, item_category, max_len, seed, user_names=user_names
        )
        return PreparedDataset(
            name=name, schema=amazon_schema(max_len), train=train, valid=valid, test=test
        )

    prepare.__doc__ = f"Catalogue hook of ``{name}``: McAuley 2014 files -> DIN samples."
    return prepare


def _mcauley_spec(category: str, name: str) -> DatasetSpec:
    return DatasetSpec(
        name=name,
        description=f"Amazon 2014 {category} 5-core reviews as DIN behaviour histories",
        homepage="https://jmcauley.ucsd.edu/data/amazon/index_2014.html",
        files=(
            RemoteFile(f"{_SNAP}/reviews_{category}_5.json.gz", f"reviews_{category}_5.json.gz"),
            RemoteFile(f"{_SNAP}/meta_{category}.json.gz", f"meta_{category}.json.gz"),
        ),
        prepare=_prepare_mcauley(category, name),
        licence="research use; cite McAuley et al. (SIGIR 2015); no formal licence",
    )


DATASETS = (
    _mcauley_spec("Electronics", "amazon-electronics"),
    _mcauley_spec("Books", "amazon-books"),
    DatasetSpec(
        name="amazon-beauty",
        description="Amazon 2014 Beauty 5-core (S3-Rec sequences) as DIN behaviour histories",
        homepage="https://github.com/RUCAIBox/CIKM2020-S3Rec",
        files=(
            RemoteFile(
                f"{_S3REC}/Beauty.txt",
                "Beauty.txt",
                "226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8",
            ),
            RemoteFile(
                f"{_S3REC}/Beauty_item2attributes.json",
                "Beauty_item2attributes.json",
                "129e40f67486f6877eff0f5318cfa8530ee8ac23d8b0d1de04e1bb7a2ba0b2d4",
            ),
        ),
        prepare=prepare_beauty,
        licence="research use; cite McAuley et al. (SIGIR 2015) and S3-Rec (CIKM 2020)",
    ),
)
