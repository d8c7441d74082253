"""MovieLens catalogue entries: ML-100K, ML-1M and the NCF paper's leave-one-out split of ML-1M.

* ``movielens-100k``: ``u.data`` (``user \\t item \\t rating \\t unix time``), with the user
  (``u.user``) and movie (``u.item``, genres) side features when those files are present.
* ``movielens-1m``: ``ratings.dat`` (``UserID::MovieID::Rating::Timestamp``) with ``users.dat``
  and ``movies.dat`` side features. The timestamp-free layout ``ratings_no_timestamp.csv``
  (header ``user_id,movie_id,rating``) is accepted too; it has no time column, so time splits
  (and leave-last-out by time) are unavailable and ``extras["has_time"]`` is ``False``.
* ``movielens-1m-ncf``: ``ml-1m.train.rating``, ``ml-1m.test.rating``, ``ml-1m.test.negative``
  of He et al., "Neural Collaborative Filtering", WWW 2017 (ids already 0-based): the test table
  holds each user's held-out item, ``extras["test_negatives"]`` the (U, 99) sampled negatives
  as raw item ids, row-aligned with the test table.

* ``movielens-100k-din`` / ``movielens-1m-din``: the DIN paper's MovieLens experiment (Zhou et
  al., KDD 2018, Sec. 6.1): ratings of 4 and 5 are positives, lower ones negatives; users are
  split into training, validation and test users; each rating after a user's first is a sample
  whose behaviours are the movies the user rated before it (time order, at most ``max_len``),
  with the movie's first genre as its category. ML-1M needs ``ratings.dat`` with timestamps.

Every entry's schema has ``user_id`` (group user) and ``item_id`` (group item). Ratings give a
regression task with label ``rating``; ``implicit=True`` turns every observed rating into a
positive (``label`` = 1, task ``ranking``, negatives to be sampled), the NCF protocol.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recforge.data.read.readers import DataError, check_table, find_file, read_table
from recforge.data.sources.amazon import amazon_schema
from recforge.data.sources.catalogue import DatasetSpec, PreparedDataset, RemoteFile
from recforge.features import CategoricalField, Field, Schema, SequenceField

log = logging.getLogger(__name__)

GROUPLENS_LICENCE = (
    "GroupLens research licence: research use only, acknowledge the source (Harper & Konstan, "
    "TiiS 2015), no redistribution without permission, no commercial use."
)
_ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
_USER_SIDE = ("gender", "age", "occupation", "zip")
_NCF_URL = (
    "https://raw.githubusercontent.com/hexiangnan/neural_collaborative_filtering/master/Data/"
)


def _require(root: Path, names: list[str], what: str) -> Path:
    found = find_file(root, names)
    if found is None:
        raise FileNotFoundError(f"{root}: no {what} found (looked for {', '.join(names)})")
    return found


def _as_string(table: pa.Table, names: tuple[str, ...] | list[str]) -> pa.Table:
    for name in names:
        if name in table.column_names:
            i = table.column_names.index(name)
            table = table.set_column(i, name, pc.cast(table[name], pa.string()))
    return table


def _text_schema(names: tuple[str, ...]) -> Schema:
    """Read these columns as text (zip codes keep their leading zeros)."""
    return Schema(fields=tuple(CategoricalField(n) for n in names), label="", task="regression")


def _join(left: pa.Table, right: pa.Table, key: str, columns: list[str]) -> pa.Table:
    """Append ``right[columns]`` to ``left`` by ``key``, keeping ``left``'s row order."""
    index = pc.index_in(left[key], value_set=right[key].combine_chunks())
    for col in columns:
        left = left.append_column(col, pc.take(right[col], index))
    return left


def _join_users(
    ratings: pa.Table, users: Path | None, delimiter: str, column_names: list[str]
) -> tuple[pa.Table, bool]:
    """Append the user side file's demographics (``_USER_SIDE``) to ``ratings`` by ``user_id``.

    Args:
        ratings: The ratings, ``user_id`` as text.
        users: The header-less user file (``u.user``, ``users.dat``); ``None`` joins nothing.
        delimiter: Its column separator.
        column_names: Its columns in file order (``user_id`` and the ``_USER_SIDE`` names).

    Returns:
        The ratings and whether the user features were added.
    """
    if users is None:
        return ratings, False
    table = read_table(
        users, fmt="csv", delimiter=delimiter, header=False, column_names=column_names,
        schema=_text_schema(("user_id", *_USER_SIDE)),
    )  # fmt: skip
    table = _as_string(table, ["user_id", *_USER_SIDE])
    return _join(ratings, table, "user_id", list(_USER_SIDE)), True


def _schema(
    implicit: bool, time_column: str | None, user_side: bool, genres: bool, embedding_dim: int
) -> Schema:
    fields: list[Field] = [
        CategoricalField("user_id", group="user"),
        CategoricalField("item_id", group="item"),
    ]
    if user_side:
        fields += [CategoricalField(name, group="user") for name in _USER_SIDE]
    if genres:
        fields.append(SequenceField("genres", group="item", max_len=6, separator="|"))
    return Schema(
        fields=tuple(fields),
        label="label" if implicit else "rating",
        task="ranking" if implicit else "regression",
        user_key="user_id",
        item_key="item_id",
        time_column=time_column,
        embedding_dim=embedding_dim,
    )


def _finish(
    name: str,
    ratings: pa.Table,
    implicit: bool,
    user_side: bool,
    genres: bool,
    embedding_dim: int,
    extras: dict,
) -> PreparedDataset:
    time_column = "timestamp" if "timestamp" in ratings.column_names else None
    if implicit:
        ratings = ratings.append_column("label", pa.array(np.ones(ratings.num_rows)))
    schema = _schema(implicit, time_column, user_side, genres, embedding_dim)
    extras = {"has_time": time_column is not None, **extras}
    log.info("%s: %d ratings", name, ratings.num_rows)
    return PreparedDataset(name=name, schema=schema, train=ratings, extras=extras)


# ---- MovieLens-100K ------------------------------------------------------------------------
def prepare_100k(
    path: Path, implicit: bool = False, side_features: bool = True, embedding_dim: int = 16
) -> PreparedDataset:
    """MovieLens-100K from a folder (or ``ml-100k.zip``) holding ``u.data[.gz|.xz]``.

    Args:
        path: Folder, archive or the ``u.data`` file itself.
        implicit: Every rating becomes a positive (``label`` = 1, task ``ranking``).
        side_features: Join ``u.user`` (gender, age, occupation, zip) and ``u.item`` (genres as
            a ``|``-separated sequence) when present.
        embedding_dim: Default embedding dimension of the schema.

    Returns:
        All 100,000 ratings in ``train`` (the caller splits); columns ``user_id``, ``item_id``
        (strings), ``rating``, ``timestamp`` (+ side features).
    """
    path = Path(path)
    ratings = read_table(
        _require(path, ["u.data"], "u.data"),
        fmt="tsv",
        header=False,
        column_names=["user_id", "item_id", "rating", "timestamp"],
        schema=_schema(False, None, False, False, embedding_dim),
    )
    ratings = _as_string(ratings, ["user_id", "item_id"])
    ratings = ratings.set_column(3, "timestamp", pc.cast(ratings["timestamp"], pa.int64()))
    users = find_file(path, ["u.user"]) if side_features else None
    ratings, user_side = _join_users(
        ratings, users, "|", ["user_id", "age", "gender", "occupation", "zip"]
    )
    genres = False
    items = find_file(path, ["u.item"]) if side_features else None
    if items is not None:
        names = ["item_id", "title", "release", "video_release", "url", *_ML100K_GENRES]
        table = read_table(
            items, fmt="csv", delimiter="|", header=False, column_names=names,
            encoding="latin-1", quoting=False,
        )  # fmt: skip
        pieces = [
            pc.if_else(pc.equal(table[g], 1), g + "|", "") for g in _ML100K_GENRES
        ]  # genre flags -> "Action|Comedy"
        joined = pc.utf8_rtrim(pc.binary_join_element_wise(*pieces, ""), characters="|")
        table = _as_string(table, ["item_id"]).append_column("genres", joined)
        ratings, genres = _join(ratings, table, "item_id", ["genres"]), True
    return _finish("movielens-100k", ratings, implicit, user_side, genres, embedding_dim, {})


# ---- MovieLens-1M --------------------------------------------------------------------------
def prepare_1m(
    path: Path, implicit: bool = False, side_features: bool = True, embedding_dim: int = 16
) -> PreparedDataset:
    """MovieLens-1M from ``ratings.dat`` (or ``ratings_no_timestamp.csv``), compressed or not.

    Args:
        path: Folder, ``ml-1m.zip`` or the ratings file itself.
        implicit: Every rating becomes a positive (``label`` = 1, task ``ranking``).
        side_features: Join ``users.dat`` (gender, age, occupation, zip) and ``movies.dat``
            (genres) when present.
        embedding_dim: Default embedding dimension of the schema.

    Returns:
        All 1,000,209 ratings in ``train``. Without timestamps (the ``user_id,movie_id,rating``
        layout) the schema has no ``time_column`` and ``extras["has_time"]`` is ``False``.
    """
    path = Path(path)
    base = _schema(False, None, False, False, embedding_dim)
    dat = find_file(path, ["ratings.dat"])
    if dat is not None:
        ratings = read_table(
            dat, fmt="csv", delimiter="::", header=False,
            column_names=["user_id", "item_id", "rating", "timestamp"], schema=base,
        )  # fmt: skip
        ratings = ratings.set_column(3, "timestamp", pc.cast(ratings["timestamp"], pa.int64()))
    else:
        csv = _require(path, ["ratings_no_timestamp.csv", "ratings.csv"], "ML-1M ratings")
        ratings = read_table(csv, fmt="csv")
        if "movie_id" in ratings.column_names:
            ratings = ratings.rename_columns(
                ["item_id" if c == "movie_id" else c for c in ratings.column_names]
            )
        ratings = check_table(ratings, base, csv)
        log.warning("%s has no timestamps: time splits are unavailable", csv)
    ratings = _as_string(ratings, ["user_id", "item_id"])
    users = find_file(path, ["users.dat"]) if side_features else None
    ratings, user_side = _join_users(
        ratings, users, "::", ["user_id", "gender", "age", "occupation", "zip"]
    )
    genres = False
    movies = find_file(path, ["movies.dat"]) if side_features else None
    if movies is not None:
        table = read_table(
            movies, fmt="csv", delimiter="::", header=False,
            column_names=["item_id", "title", "genres"], encoding="latin-1",
        )  # fmt: skip
        table = _as_string(table, ["item_id"])
        ratings, genres = _join(ratings, table, "item_id", ["genres"]), True
    return _finish("movielens-1m", ratings, implicit, user_side, genres, embedding_dim, {})


# ---- NCF split -----------------------------------------------------------------------------
def prepare_ncf(path: Path, prefix: str = "ml-1m", embedding_dim: int = 16) -> PreparedDataset:
    """The NCF paper's leave-one-out split: train, test positives and 99 negatives per user.

    Args:
        path: Folder holding ``{prefix}.train.rating`` (or ``.train.rating.reconstructed``),
            ``{prefix}.test.rating`` and ``{prefix}.test.negative``, compressed or not.
        prefix: File prefix (``ml-1m``; ``pinterest-20`` has the same layout).
        embedding_dim: Default embedding dimension of the schema.

    Returns:
        ``train`` (every row a positive, ``label`` = 1), ``test`` (one held-out item per user)
        and ``extras``: ``test_negatives`` (U, 99) int64 raw item ids row-aligned with
        ``test``, ``num_users`` and ``num_items`` (max id + 1 over all files). Ids are the
        files' 0-based ints, kept as strings in the tables like every categorical column;
        map negatives through the fitted item vocabulary before scoring.
    """
    path = Path(path)
    train_file = _require(
        path, [f"{prefix}.train.rating", f"{prefix}.train.rating.reconstructed"], "NCF train"
    )
    test_file = _require(path, [f"{prefix}.test.rating"], "NCF test.rating")
    neg_file = _require(path, [f"{prefix}.test.negative"], "NCF test.negative")
    train = _ncf_ratings(train_file)
    test = _ncf_ratings(test_file)
    negatives = read_table(neg_file, fmt="tsv", header=False)
    pairs = pc.extract_regex(negatives.column(0), r"^\((?P<u>\d+),(?P<i>\d+)\)$")
    bad = np.flatnonzero(pc.is_null(pairs).to_numpy(zero_copy_only=False))
    if bad.size:
        raise DataError(neg_file, "first field must be '(user,item)'", line=int(bad[0]) + 1,
                        column_number=1)  # fmt: skip
    neg_users = pc.cast(pc.struct_field(pairs, "u"), pa.int64()).to_numpy(zero_copy_only=False)
    neg_items = pc.cast(pc.struct_field(pairs, "i"), pa.int64()).to_numpy(zero_copy_only=False)
    mismatch = (
        np.flatnonzero(
            (neg_users != test["user_id"].to_numpy()) | (neg_items != test["item_id"].to_numpy())
        )
        if len(neg_users) == test.num_rows
        else np.array([min(len(neg_users), test.num_rows)])
    )
    if mismatch.size:
        raise DataError(
            neg_file, f"line does not match {test_file.name} (same users and items, same order)",
            line=int(mismatch[0]) + 1, column_number=1,
        )  # fmt: skip
    matrix = np.column_stack(
        [negatives.column(j).to_numpy().astype(np.int64) for j in range(1, negatives.num_columns)]
    )
    num_users = int(max(pc.max(train["user_id"]).as_py(), pc.max(test["user_id"]).as_py())) + 1
    num_items = int(max(pc.max(train["item_id"]).as_py(), pc.max(test["item_id"]).as_py(),
                        matrix.max(initial=0))) + 1  # fmt: skip
    train, test = (_as_string(t, ["user_id", "item_id"]) for t in (train, test))
    ones = pa.array(np.ones(train.num_rows))
    train = train.append_column("label", ones)
    test = test.append_column("label", pa.array(np.ones(test.num_rows)))
    time_column = "timestamp" if "timestamp" in train.column_names else None
    extras = {
        "test_negatives": matrix,
        "num_users": num_users,
        "num_items": num_items,
        "has_time": time_column is not None,
    }
    schema = _schema(True, time_column, False, False, embedding_dim)
    log.info("ncf %s: %d train, %d test users", prefix, train.num_rows, test.num_rows)
    return PreparedDataset(name="movielens-1m-ncf", schema=schema, train=train, test=test,
                           extras=extras)  # fmt: skip


def _ncf_ratings(path: Path) -> pa.Table:
    table = read_table(path, fmt="tsv", header=False)
    names = ["user_id", "item_id", "rating", "timestamp"][: table.num_columns]
    if table.num_columns < 2:
        raise DataError(path, "expected 'user\\titem[\\trating[\\ttimestamp]]'", line=1)
    table = table.rename_columns(names)
    for name in names:
        if not pa.types.is_integer(table[name].type) and name != "rating":
            raise DataError(path, f"ids must be integers, found {table[name].type}", column=name,
                            column_number=names.index(name) + 1)  # fmt: skip
    return table


# ---- the DIN paper's MovieLens protocol ---------------------------------------------------
def din_samples(
    ratings: pa.Table, max_len: int = 100, seed: int = 0, ratios: tuple[float, float] = (0.8, 0.1)
) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Rating-prediction samples with behaviour histories, split by user (DIN, Sec. 6.1).

    Args:
        ratings: ``user_id``, ``item_id``, ``rating``, ``timestamp`` and ``genres``
            (``|``-separated) columns.
        max_len: Most recent earlier ratings kept as the history.
        seed: Seed of the user split.
        ratios: Shares of users for training and validation (the rest are test users).

    Returns:
        ``(train, valid, test)`` with ``user_id``, ``item_id``, ``item_category``,
        ``hist_item_ids``, ``hist_cats`` (``list<string>``, oldest first), ``ts`` and ``label``
        (int8: rating >= 4), one row per rating after the user's first.
    """
    order = pc.sort_indices(
        ratings, [("user_id", "ascending"), ("timestamp", "ascending"), ("item_id", "ascending")]
    )
    ratings = ratings.take(order)
    users = pc.dictionary_encode(ratings["user_id"]).combine_chunks().indices.to_numpy()
    n = len(users)
    first = np.ones(n, dtype=bool)
    first[1:] = users[1:] != users[:-1]
    start = np.maximum.accumulate(np.where(first, np.arange(n), 0))  # the user's first row
    rows = np.flatnonzero(~first)  # samples: every rating with an earlier one
    lo = np.maximum(start[rows], rows - max_len)
    lengths = rows - lo
    offsets = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.repeat(lo - offsets[:-1], lengths) + np.arange(offsets[-1])  # history row indices
    genres = pc.fill_null(ratings["genres"], "").combine_chunks()
    category = pc.list_element(pc.split_pattern(genres, "|"), 0)
    category = pc.if_else(pc.equal(category, ""), "unknown", category)
    items = ratings["item_id"].combine_chunks()
    hist = pa.ListArray.from_arrays(pa.array(offsets), items.take(pa.array(flat)))
    hist_cats = pa.ListArray.from_arrays(pa.array(offsets), category.take(pa.array(flat)))
    take = pa.array(rows)
    table = pa.table(
        {
            "user_id": ratings["user_id"].take(take),
            "item_id": items.take(take),
            "item_category": category.take(take),
            "hist_item_ids": hist,
            "hist_cats": hist_cats,
            "ts": pc.cast(ratings["timestamp"], pa.int64()).take(take),
            "label": pc.cast(pc.greater_equal(ratings["rating"].take(take), 4), pa.int8()),
        }
    )
    n_users = int(users.max()) + 1 if n else 0
    rank = np.empty(n_users, dtype=np.int64)
    rank[np.random.default_rng(seed).permutation(n_users)] = np.arange(n_users)
    share = rank[users[rows]] / max(n_users, 1)
    parts = (share < ratios[0], (share >= ratios[0]) & (share < sum(ratios)), share >= sum(ratios))
    return tuple(table.filter(pa.array(m)) for m in parts)  # type: ignore[return-value]


def din_schema(max_len: int = 100) -> Schema:
    """Schema of :func:`din_samples`' tables: the columns of the Amazon DIN preparation."""
    return amazon_schema(max_len)


def _din_dataset(name: str, full: PreparedDataset, max_len: int, seed: int) -> PreparedDataset:
    if "timestamp" not in full.train.column_names or "genres" not in full.train.column_names:
        raise DataError(
            name, "the DIN protocol needs ratings with timestamps and the movies' genres "
            "(ratings.dat / u.data with movies.dat / u.item)",
        )  # fmt: skip
    train, valid, test = din_samples(full.train, max_len=max_len, seed=seed)
    return PreparedDataset(
        name=name, schema=din_schema(max_len), train=train, valid=valid, test=test
    )


def prepare_100k_din(path: Path, max_len: int = 100, seed: int = 0) -> PreparedDataset:
    """Catalogue hook of ``movielens-100k-din`` (see :func:`din_samples`)."""
    return _din_dataset("movielens-100k-din", prepare_100k(path), max_len, seed)


def prepare_1m_din(path: Path, max_len: int = 100, seed: int = 0) -> PreparedDataset:
    """Catalogue hook of ``movielens-1m-din`` (see :func:`din_samples`)."""
    return _din_dataset("movielens-1m-din", prepare_1m(path), max_len, seed)


# GroupLens publishes an md5 (ml-100k.zip.md5), not a sha256.
_ML100K_ZIP = RemoteFile(
    url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
    filename="ml-100k.zip",
    md5="0e33842e24a9c977be4e0107933c0723",
)
_ML1M_ZIP = RemoteFile(
    url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
    filename="ml-1m.zip",
    md5="c4d9eecfca2ab87c1945afe126590906",
)

DATASETS = (
    DatasetSpec(
        name="movielens-100k",
        description="MovieLens 100K: 100,000 ratings (1-5) of 1,682 movies by 943 users, with "
        "timestamps, user demographics and movie genres",
        homepage="https://grouplens.org/datasets/movielens/100k/",
        files=(_ML100K_ZIP,),
        prepare=prepare_100k,
        licence=GROUPLENS_LICENCE,
    ),
    DatasetSpec(
        name="movielens-1m",
        description="MovieLens 1M: 1,000,209 ratings of 3,706 movies by 6,040 users, with "
        "timestamps, user demographics and movie genres",
        homepage="https://grouplens.org/datasets/movielens/1m/",
        files=(_ML1M_ZIP,),
        prepare=prepare_1m,
        licence=GROUPLENS_LICENCE,
    ),
    DatasetSpec(
        name="movielens-1m-ncf",
        description="ML-1M leave-one-out split of the NCF paper (He et al., WWW 2017): train, "
        "one test item per user and 99 sampled negatives",
        homepage="https://github.com/hexiangnan/neural_collaborative_filtering",
        # test.rating / test.negative sha256: identical to the originals in shared/datasets.
        # The train file's sha256 is unknown here (only a reconstruction was available).
        files=(
            RemoteFile(url=_NCF_URL + "ml-1m.train.rating", filename="ml-1m.train.rating"),
            RemoteFile(
                url=_NCF_URL + "ml-1m.test.rating",
                filename="ml-1m.test.rating",
                sha256="231ae11eb060b643a8c58c063cd17ffc743b54f569afb073d1abb6cf126b88b5",
            ),
            RemoteFile(
                url=_NCF_URL + "ml-1m.test.negative",
                filename="ml-1m.test.negative",
                sha256="127853228a76b7d21c0481e8ef8d00dd009cd5c88670dbdd9e9debfdb9f93de4",
            ),
        ),
        prepare=prepare_ncf,
        licence=GROUPLENS_LICENCE + " Split files: He et al., WWW 2017 (code Apache-2.0).",
    ),
    DatasetSpec(
        name="movielens-100k-din",
        description="MovieLens 100K as DIN behaviour histories (the DIN paper's MovieLens "
        "protocol: rating >= 4 is a click, users split into train/valid/test)",
        homepage="https://grouplens.org/datasets/movielens/100k/",
        files=(_ML100K_ZIP,),
        prepare=prepare_100k_din,
        licence=GROUPLENS_LICENCE,
    ),
    DatasetSpec(
        name="movielens-1m-din",
        description="MovieLens 1M as DIN behaviour histories (the DIN paper's MovieLens "
        "protocol; needs ratings.dat with timestamps)",
        homepage="https://grouplens.org/datasets/movielens/1m/",
        files=(_ML1M_ZIP,),
        prepare=prepare_1m_din,
        licence=GROUPLENS_LICENCE,
    ),
)
