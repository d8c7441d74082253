"""`recforge recommend` end to end: a saved GMF bundle, raw ids in, sorted unseen items out."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from recforge.cf.recommend import recommend
from recforge.data.encode.preprocess import Preprocessor
from recforge.features import CategoricalField, Schema
from recforge.interactions import InteractionMatrix
from recforge.models import registry
from recforge.serve.bundle import save_bundle


def test_cli_recommend_excludes_seen_and_matches_the_api(tmp_path: Path) -> None:
    users = [f"u{k}" for k in (1, 1, 2, 2, 3, 3, 3)]
    items = [f"i{k}" for k in (1, 2, 2, 3, 1, 4, 5)]
    table = pa.table({"user": users, "item": items, "label": np.ones(len(users))})
    schema = Schema(
        fields=(
            CategoricalField("user", group="user"),
            CategoricalField("item", group="item"),
        ),
        task="ranking",
        user_key="user",
        item_key="item",
    )
    pre = Preprocessor(schema).fit(table)
    torch.manual_seed(0)
    model = registry.build("gmf", pre.schema, {"factors": 4})
    save_bundle(tmp_path / "bundle", "gmf", model, pre)
    seen_file = tmp_path / "seen.csv"
    with open(seen_file, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["user", "item"])
        writer.writerows(zip(users, items, strict=True))
    out = tmp_path / "recs.csv"
    cmd = [sys.executable, "-m", "recforge.cli", "recommend", str(tmp_path / "bundle"),
           "--users", "u1", "u3", "-k", "3", "--seen", str(seen_file), "-o", str(out)]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    with open(out) as fh:
        rows = list(csv.DictReader(fh))
    by_user = {u: [r for r in rows if r["user"] == u] for u in ("u1", "u3")}
    assert [r["item"] for r in by_user["u1"]] and len(by_user["u1"]) == 3
    assert not {"i1", "i2"} & {r["item"] for r in by_user["u1"]}
    assert len(by_user["u3"]) == 2  # only i2 and i3 are unseen for u3
    assert {r["item"] for r in by_user["u3"]} == {"i2", "i3"}
    for recs in by_user.values():
        scores = [float(r["score"]) for r in recs]
        assert scores == sorted(scores, reverse=True)
        assert [int(r["rank"]) for r in recs] == list(range(1, len(recs) + 1))
    # the API gives the same first item for u1
    vocab = pre.vocabs["item"].to_pylist()
    uid = pre.vocabs["user"].to_pylist().index("u1") + 1
    seen_ids = [vocab.index(i) + 1 for i in ("i1", "i2")]
    seen = InteractionMatrix.from_coo(np.full(2, uid), np.array(seen_ids), shape=(4, 6))
    top, _ = recommend(model, np.array([uid]), k=1, seen=seen)
    assert vocab[top[0, 0] - 1] == by_user["u1"][0]["item"]
