"""Catalogue entries: tiny files in each official layout -> tables and schemas; bad inputs."""

from __future__ import annotations

import gzip
import lzma
import re
from pathlib import Path

import numpy as np
import pytest

from recforge.data.read.readers import DataError
from recforge.data.sources import avazu, criteo, libfm_sets, movielens
from recforge.data.sources import catalogue as datasets
from recforge.features import NumericField, SequenceField

MINE = (
    "movielens-100k",
    "movielens-1m",
    "movielens-1m-ncf",
    "movielens-100k-din",
    "movielens-1m-din",
    "criteo",
    "avazu",
    "frappe",
    "movielens-tag",
)


def put(path: Path, text: str, encoding: str = "utf8") -> Path:
    data = text.encode(encoding)
    if path.suffix == ".gz":
        data = gzip.compress(data)
    elif path.suffix == ".xz":
        data = lzma.compress(data)
    path.write_bytes(data)
    return path


def test_entries_are_registered_with_sources_and_licences():
    cat = datasets.catalogue()
    for name in MINE:
        spec = cat[name]
        assert spec.homepage.startswith("https://") and spec.licence and spec.description
        for remote in spec.files:
            assert remote.url.startswith("https://") and remote.filename
            assert remote.sha256 == "" or re.fullmatch(r"[0-9a-f]{64}", remote.sha256)
            assert remote.md5 == "" or re.fullmatch(r"[0-9a-f]{32}", remote.md5)


# ---- MovieLens -------------------------------------------------------------------------------
def test_movielens_100k_with_side_features(tmp_path):
    put(tmp_path / "u.data.gz", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n196\t302\t5\t1\n")
    put(tmp_path / "u.user", "196|49|M|writer|55105\n186|39|F|executive|00000\n")
    flags = ["0"] * 19
    comedy, crime = list(flags), list(flags)
    comedy[5] = "1"
    crime[6] = crime[16] = "1"
    items = [
        "242|Kolya (1996)|24-Jan-1997||http://x|" + "|".join(comedy),
        '302|L.A. "Confidential" (1997)|01-Jan-1997||http://y|' + "|".join(crime),
    ]
    put(tmp_path / "u.item", "\n".join(items) + "\n", encoding="latin-1")
    ds = datasets.load("movielens-100k", path=tmp_path)
    t = ds.train
    assert t.num_rows == 3 and ds.schema.task == "regression" and ds.schema.label == "rating"
    assert ds.schema.time_column == "timestamp" and ds.extras["has_time"]
    assert t["user_id"].to_pylist() == ["196", "186", "196"]
    assert t["rating"].to_pylist() == [3.0, 3.0, 5.0]
    assert t["gender"].to_pylist() == ["M", "F", "M"] and t["zip"].to_pylist()[1] == "00000"
    assert t["genres"].to_pylist() == ["Comedy", "Crime|Thriller", "Crime|Thriller"]
    assert isinstance(ds.schema.field("genres"), SequenceField)
    assert ds.schema.field("user_id").group == "user" and ds.schema.field("item_id").group == "item"
    implicit = movielens.prepare_100k(tmp_path, implicit=True, side_features=False)
    assert implicit.schema.task == "ranking" and implicit.train["label"].to_pylist() == [1.0] * 3
    assert "genres" not in implicit.train.column_names


def test_movielens_1m_dat_layout(tmp_path):
    put(tmp_path / "ratings.dat", "1::1193::5::978300760\n2::661::3::978302109\n")
    put(tmp_path / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n")
    movies = "1193::One Flew Over (1975)::Drama\n661::Caf\u00e9 James (1996)::Animation|Musical\n"
    put(tmp_path / "movies.dat", movies, encoding="latin-1")
    ds = movielens.prepare_1m(tmp_path)
    t = ds.train
    assert (
        t["item_id"].to_pylist() == ["1193", "661"] and t["timestamp"].to_pylist()[0] == 978300760
    )
    assert t["age"].to_pylist() == ["1", "56"] and t["genres"].to_pylist()[1] == "Animation|Musical"
    assert ds.schema.time_column == "timestamp"


def test_movielens_1m_without_timestamps(tmp_path):
    put(tmp_path / "ratings_no_timestamp.csv.xz", "user_id,movie_id,rating\n1,1,5\n1,48,4\n2,1,3\n")
    ds = movielens.prepare_1m(tmp_path)
    assert ds.train.num_rows == 3 and ds.train["item_id"].to_pylist() == ["1", "48", "1"]
    assert ds.schema.time_column is None and ds.extras["has_time"] is False
    assert ds.schema.fields[:2] == ds.schema.fields[:2] and "genres" not in ds.train.column_names


def test_din_protocol_histories_labels_and_user_split(tmp_path):
    # user 1 rates 10, 20, 30, 40 (times 1..4, one tie broken by item), user 2 rates 20, 10
    rows = ["1\t30\t2\t3", "1\t10\t5\t1", "2\t20\t4\t7", "1\t20\t4\t2", "1\t40\t4\t3"]
    put(tmp_path / "u.data", "\n".join(rows + ["2\t10\t1\t9"]) + "\n")
    flags = ["0"] * 19
    items = []
    for item, genre in (("10", 1), ("20", 5), ("30", 8), ("40", 5)):
        g = list(flags)
        g[genre] = g[genre + 1] = "1"  # two genres: the first listed is the category
        items.append(f"{item}|t|d||u|" + "|".join(g))
    put(tmp_path / "u.item", "\n".join(items) + "\n", encoding="latin-1")
    full = movielens.prepare_100k(tmp_path)
    train, valid, test = movielens.din_samples(full.train, max_len=2, ratios=(1.0, 0.0))
    assert valid.num_rows == test.num_rows == 0
    by_user = {u: [r for r in train.to_pylist() if r["user_id"] == u] for u in ("1", "2")}
    u1 = by_user["1"]
    assert [r["item_id"] for r in u1] == ["20", "30", "40"]  # every rating after the first
    assert [r["hist_item_ids"] for r in u1] == [["10"], ["10", "20"], ["20", "30"]]  # max_len 2
    assert [r["hist_cats"] for r in u1] == [["Action"], ["Action", "Comedy"], ["Comedy", "Drama"]]
    assert [r["label"] for r in u1] == [1, 0, 1]  # rating >= 4
    assert by_user["2"][0]["hist_item_ids"] == ["20"] and by_user["2"][0]["label"] == 0
    assert u1[0]["item_category"] == "Comedy" and u1[0]["ts"] == 2
    # the split is by user: nobody is in two splits, whatever the seed
    for seed in range(4):
        parts = movielens.din_samples(full.train, seed=seed, ratios=(0.5, 0.0))
        users = [set(p["user_id"].to_pylist()) for p in parts]
        assert not (users[0] & users[2]) and users[0] | users[2] == {"1", "2"}
    ds = datasets.load("movielens-100k-din", path=tmp_path, max_len=5)
    assert ds.schema.field("hist_cats").aligned_with == "hist_item_ids"
    assert sum(t.num_rows for t in (ds.train, ds.valid, ds.test)) == 4


def test_din_protocol_needs_timestamps(tmp_path):
    put(tmp_path / "ratings_no_timestamp.csv", "user_id,movie_id,rating\n1,1,5\n1,48,4\n")
    with pytest.raises(DataError, match="timestamps"):
        movielens.prepare_1m_din(tmp_path)


def test_movielens_1m_bad_rating_is_located(tmp_path):
    put(tmp_path / "ratings.dat", "1::1193::5::978300760\n2::661::five::978302109\n")
    with pytest.raises(DataError, match=r"ratings.dat, line 2, column 'rating' \(3\): 'five'"):
        movielens.prepare_1m(tmp_path)


def _ncf_files(folder: Path, negatives: str | None = None) -> None:
    put(folder / "ml-1m.train.rating", "0\t1\t5\t10\n0\t2\t4\t11\n1\t0\t3\t12\n2\t3\t1\t13\n")
    put(folder / "ml-1m.test.rating", "0\t3\t5\t20\n1\t1\t4\t21\n2\t0\t2\t22\n")
    negs = negatives or "(0,3)\t4\t5\n(1,1)\t2\t6\n(2,0)\t1\t4\n"
    put(folder / "ml-1m.test.negative", negs)


def test_ncf_split_with_test_negatives(tmp_path):
    _ncf_files(tmp_path)
    ds = datasets.load("movielens-1m-ncf", path=tmp_path)
    assert ds.train.num_rows == 4 and ds.test.num_rows == 3
    assert ds.schema.task == "ranking" and ds.train["label"].to_pylist() == [1.0] * 4
    assert ds.test["item_id"].to_pylist() == ["3", "1", "0"]
    negs = ds.extras["test_negatives"]
    assert negs.dtype == np.int64 and negs.tolist() == [[4, 5], [2, 6], [1, 4]]
    assert ds.extras["num_users"] == 3 and ds.extras["num_items"] == 7


def test_ncf_negatives_must_match_test_rating(tmp_path):
    _ncf_files(tmp_path, negatives="(0,3)\t4\t5\n(1,2)\t2\t6\n(2,0)\t1\t4\n")
    with pytest.raises(DataError, match=r"ml-1m.test.negative, line 2"):
        movielens.prepare_ncf(tmp_path)


# ---- Criteo / Avazu --------------------------------------------------------------------------
def _criteo_line(label: int, ints: list[str], cats: list[str]) -> str:
    return "\t".join([str(label), *ints, *cats]) + "\n"


def test_criteo_tab_layout_compressed(tmp_path):
    ints = ["1", "", "-1", *[str(i) for i in range(10)]]
    cats = ["68fd1e64", "", *[f"{i:08x}" for i in range(24)]]
    put(tmp_path / "train.txt.gz", _criteo_line(0, ints, cats) + _criteo_line(1, ints, cats))
    ds = datasets.load("criteo", path=tmp_path, min_count=2, log_transform=True)
    t = ds.train
    assert t.num_rows == 2 and t.column_names == list(criteo.COLUMNS)
    assert t["label"].to_pylist() == [0.0, 1.0] and t["I2"].to_pylist() == [None, None]
    assert t["I3"].to_pylist() == [-1.0, -1.0] and t["C2"].to_pylist() == ["", ""]
    assert len(ds.schema.dense_fields) == 13 and len(ds.schema.sparse_fields) == 26
    assert ds.schema.field("I1").transform == "log" and ds.schema.field("C1").min_count == 2


def test_criteo_header_sample_and_bad_label(tmp_path):
    header = ",".join(criteo.COLUMNS) + "\n"
    row = ",".join(["1", *["2"] * 13, *["ab"] * 26]) + "\n"
    ds = criteo.prepare(put(tmp_path / "deepctr_criteo_sample.txt", header + row), False)
    assert ds.train["I1"].to_pylist() == [2.0]
    assert (
        isinstance(ds.schema.field("I1"), NumericField)
        and ds.schema.field("I1").transform == "none"
    )
    bad = _criteo_line(0, ["1"] * 13, ["a"] * 26) + _criteo_line(3, ["1"] * 13, ["a"] * 26)
    with pytest.raises(DataError, match=r"train.txt, line 2, column 'label' \(1\)"):
        criteo.prepare(put(tmp_path / "train.txt", bad))


AVAZU_HEADER = "id,click,hour," + ",".join(avazu.CATEGORICAL) + "\n"


def test_avazu_hour_expansion(tmp_path):
    rest = ",".join(["x"] * len(avazu.CATEGORICAL))
    text = AVAZU_HEADER + f"1,0,14102100,{rest}\n2,1,14102623,{rest}\n"
    ds = datasets.load("avazu", path=put(tmp_path / "train.gz", text))
    t = ds.train
    assert t["hour_of_day"].to_pylist() == ["00", "23"]
    assert t["weekday"].to_pylist() == ["1", "6"]  # 2014-10-21 Tuesday, 2014-10-26 Sunday
    assert t["hour"].to_pylist() == [14102100, 14102623] and ds.schema.time_column == "hour"
    assert t["click"].to_pylist() == [0.0, 1.0] and "id" not in t.column_names
    assert [f.name for f in ds.schema.fields][:2] == ["hour_of_day", "weekday"]


def test_avazu_bad_hour_is_located(tmp_path):
    rest = ",".join(["x"] * len(avazu.CATEGORICAL))
    text = AVAZU_HEADER + f"1,0,14102100,{rest}\n2,1,1410,{rest}\n"
    with pytest.raises(DataError, match=r"train.csv, line 3, column 'hour' \(3\)"):
        avazu.prepare(put(tmp_path / "train.csv", text))


# ---- Frappe / MovieLens-tag ------------------------------------------------------------------
def _libfm_splits(folder: Path, prefix: str, width: int, train_suffix: str = "") -> None:
    rows = {"train": 7, "validation": 2, "test": 1}
    for split, n in rows.items():
        lines = [
            " ".join(["1" if i % 3 == 0 else "-1"] + [f"{j * 100 + i}:1" for j in range(width)])
            for i in range(n)
        ]
        name = f"{prefix}.{split}.libfm" + (train_suffix if split == "train" else "") + ".xz"
        put(folder / name, "\n".join(lines) + "\n")


def test_frappe_split(tmp_path):
    _libfm_splits(tmp_path, "frappe", 10, train_suffix=".reconstructed")
    ds = datasets.load("frappe", path=tmp_path)
    assert (ds.train.num_rows, ds.valid.num_rows, ds.test.num_rows) == (7, 2, 1)
    assert ds.train.column_names == ["label", *libfm_sets.FRAPPE_FIELDS]
    assert ds.train["label"].to_pylist() == [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0]
    assert ds.train["city"].to_pylist()[2] == "902"
    assert ds.schema.user_key == "user" and ds.schema.item_key == "item"
    assert ds.schema.task == "binary" and ds.schema.embedding_dim == 10


def test_movielens_tag_split_and_regression_labels(tmp_path):
    _libfm_splits(tmp_path, "ml-tag", 3)
    ds = libfm_sets.prepare_movielens_tag(tmp_path, task="regression")
    assert ds.train.column_names == ["label", "user", "item", "tag"]
    assert ds.train["label"].to_pylist()[:2] == [1.0, -1.0] and ds.schema.task == "regression"
    assert ds.extras["num_features"] == 3 * 7  # distinct indices across all splits


def test_libfm_set_wrong_field_count_is_located(tmp_path):
    _libfm_splits(tmp_path, "ml-tag", 3)
    put(tmp_path / "ml-tag.test.libfm.xz", "1 1:1 2:1 3:1\n-1 1:1 2:1\n")
    with pytest.raises(DataError, match=r"ml-tag.test.libfm.xz, line 2, column \(4\): expected 3"):
        libfm_sets.prepare_movielens_tag(tmp_path)


def test_libfm_set_bad_label(tmp_path):
    _libfm_splits(tmp_path, "ml-tag", 3)
    put(tmp_path / "ml-tag.validation.libfm.xz", "1 1:1 2:1 3:1\n2 1:1 2:1 3:1\n")
    with pytest.raises(DataError, match=r"validation.libfm.xz, line 2, column 'label' \(1\)"):
        libfm_sets.prepare_movielens_tag(tmp_path)


def test_fetch_verifies_hashes_and_refuses_plain_http(tmp_path, monkeypatch) -> None:
    """Downloads go through pooch: a file whose sha256 differs is rejected and not kept, a
    matching one is stored and not fetched again, and a non-https URL is refused."""
    import hashlib

    from recforge.data.sources.catalogue import DatasetSpec, RemoteFile

    monkeypatch.setenv("RECFORGE_CACHE", str(tmp_path / "cache"))
    body = b"user,item\n1,2\n"
    calls = []

    def downloader(url, output_file, pooch_obj):  # noqa: ANN001, ARG001
        calls.append(url)
        Path(output_file).write_bytes(body)

    def spec(url: str, sha: str) -> DatasetSpec:
        remote = RemoteFile(url=url, filename="data.csv", sha256=sha)
        return DatasetSpec("tiny", "t", "https://example.org", (remote,), prepare=lambda p: p)

    good = hashlib.sha256(body).hexdigest()
    monkeypatch.setitem(datasets.catalogue(), "tiny", spec("https://example.org/d.csv", "0" * 64))
    with pytest.raises(ValueError, match="SHA256"):
        datasets.fetch("tiny", downloader=downloader)
    assert not (datasets.dataset_dir("tiny") / "data.csv").exists()
    monkeypatch.setitem(datasets.catalogue(), "tiny", spec("https://example.org/d.csv", good))
    folder = datasets.fetch("tiny", downloader=downloader)
    assert (folder / "data.csv").read_bytes() == body
    datasets.fetch("tiny", downloader=downloader)
    assert len(calls) == 2  # the verified copy is reused
    monkeypatch.setitem(datasets.catalogue(), "tiny", spec("http://example.org/d.csv", good))
    with pytest.raises(ValueError, match="https only"):
        datasets.fetch("tiny", downloader=downloader)


def test_every_catalogue_file_is_https() -> None:
    for spec in datasets.catalogue().values():
        for remote in spec.files:
            assert remote.url.startswith("https://"), (spec.name, remote.url)
