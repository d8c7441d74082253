"""Amazon preparation: the DIN protocol on tiny files written by the test."""

from __future__ import annotations

import gzip
import json
import lzma
from pathlib import Path

import numpy as np

from recforge.data.sources import catalogue as datasets
from recforge.data.sources.amazon import (
    build_din_samples,
    prepare_beauty,
    read_mcauley,
)


def _write_beauty(folder: Path) -> dict[int, list[int]]:
    seqs = {1: [1, 2, 3, 4, 5], 2: [6, 7, 1, 8, 9, 10], 3: [2, 4, 6, 8, 10, 3, 5]}
    text = "".join(f"{u} " + " ".join(map(str, s)) + "\n" for u, s in seqs.items())
    (folder / "Beauty.txt.xz").write_bytes(lzma.compress(text.encode()))
    attrs = {str(i): [100 + i, 200 + i % 3] for i in range(1, 11)}
    attrs["7"] = []
    (folder / "Beauty_item2attributes.json").write_text(json.dumps(attrs))
    return seqs


def test_beauty_follows_the_din_protocol(tmp_path: Path) -> None:
    seqs = _write_beauty(tmp_path)
    data = prepare_beauty(tmp_path, max_len=3, seed=0)
    assert "amazon-beauty" in datasets.catalogue()
    test, valid, train = data.test.to_pylist(), data.valid.to_pylist(), data.train.to_pylist()
    # one positive + one negative per user in valid and test; every other target in train
    assert len(test) == len(valid) == 2 * len(seqs)
    assert len(train) == 2 * sum(len(s) - 3 for s in seqs.values())
    for rows, offset in ((test, 1), (valid, 2)):
        for pos, neg in zip(rows[::2], rows[1::2], strict=True):
            seq = seqs[pos["user_id"]]
            k = len(seq) - offset
            assert (pos["label"], neg["label"]) == (1, 0)
            assert pos["item_id"] == seq[k]
            assert pos["hist_item_ids"] == seq[max(0, k - 3) : k]  # most recent 3 kept
            assert neg["hist_item_ids"] == pos["hist_item_ids"]
            assert neg["item_id"] not in seq  # never touched by the user
    # category = last attribute (leaf of the last path), -1 without attributes
    for row in train + valid + test:
        expected = -1 if row["item_id"] == 7 else 200 + row["item_id"] % 3
        assert row["item_category"] == expected
        assert row["hist_cats"] == [-1 if i == 7 else 200 + i % 3 for i in row["hist_item_ids"]]
    # training targets come strictly before the validation target of the same user
    for row in train:
        assert len(row["hist_item_ids"]) >= 1
        assert row["ts"] < len(seqs[row["user_id"]]) - 2


def test_history_is_capped_and_left_out_of_the_future() -> None:
    users = np.array([0] * 8 + [1] * 3)
    items = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
    cats = np.arange(12) * 10
    times = np.array([0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2])
    train, valid, test = build_din_samples(users, items, times, cats, max_len=4, seed=1)
    pos = test.to_pylist()[0]
    assert pos["item_id"] == 8 and pos["hist_item_ids"] == [4, 5, 6, 7]
    assert pos["hist_cats"] == [40, 50, 60, 70]
    assert train.num_rows == 2 * 5  # user 0: targets 2..6; user 1: none
    assert test.to_pylist()[1]["item_id"] in (9, 10, 11)


def test_negatives_are_items_the_user_never_reviewed() -> None:
    """User 0 reviewed items 1-5 of 6, so every negative of theirs is item 6."""
    users = np.array([0] * 5 + [1] * 3)
    items = np.array([1, 2, 3, 4, 5, 6, 1, 2])
    times = np.arange(8)
    train, valid, test = build_din_samples(users, items, times, np.zeros(7, dtype=np.int64))
    rows = [r for t in (train, valid, test) for r in t.to_pylist() if r["label"] == 0]
    assert {r["item_id"] for r in rows if r["user_id"] == 0} == {6}
    assert all(r["item_id"] in (3, 4, 5) for r in rows if r["user_id"] == 1)


def test_mcauley_reader_sorts_by_time_and_takes_the_leaf_category(tmp_path: Path) -> None:
    reviews = [
        {"reviewerID": "B", "asin": "x2", "unixReviewTime": 30},
        {"reviewerID": "A", "asin": "x1", "unixReviewTime": 20},
        {"reviewerID": "A", "asin": "x2", "unixReviewTime": 10},
        {"reviewerID": "B", "asin": "x3", "unixReviewTime": 5},
    ]
    with gzip.open(tmp_path / "reviews_Toys_5.json.gz", "wt") as fh:
        fh.write("\n".join(json.dumps(r) for r in reviews))
    meta = [
        {"asin": "x1", "categories": [["Toys", "Cars"], ["Toys", "Games", "Dice"]]},
        {"asin": "x2", "categories": [["Toys", "Cars"]]},
        {"asin": "x9", "categories": [["Other"]]},
    ]
    with gzip.open(tmp_path / "meta_Toys.json.gz", "wt") as fh:
        fh.write("\n".join(repr(m) for m in meta))  # Python literals, as in the 2014 files
    users, items, times, item_category, names = read_mcauley(tmp_path, "Toys")
    assert names[users].tolist() == ["A", "A", "B", "B"]
    assert times.tolist() == [10, 20, 5, 30]
    assert items.tolist() == [2, 1, 3, 2]  # x1 -> 1, x2 -> 2, x3 -> 3
    cats = item_category[items]
    assert cats[1] != cats[0] and cats[0] == cats[3]  # Dice vs Cars
