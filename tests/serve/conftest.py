"""Small bundles for the predictor and HTTP service tests (built once per test session).

``deepfm`` is trained for one epoch through ``train_from_config`` (so ``metrics.json`` and
``history.json`` sit beside its bundle); the others are freshly initialised models saved with the
same fitted preprocessor, which is all a parity test needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from recforge.config import DataConfig, ModelSection, RunConfig, TrainConfig
from recforge.data.encode.preprocess import Preprocessor
from recforge.data.sources.synthetic import make_click_log
from recforge.features import CategoricalField, Schema
from recforge.models import registry
from recforge.run import train_from_config
from recforge.serve.bundle import load_bundle, save_bundle

LOG = {"rows": 2000, "seed": 0, "n_users": 40, "n_items": 200}


@dataclass
class ServeBundles:
    deepfm: Path  # trained one epoch; metrics.json / history.json beside it
    deepfm_b: Path  # another DeepFM (different weights, same preprocessor)
    din: Path
    gmf: Path
    gmf_seen: pa.Table  # the GMF training interactions (raw ids)
    records: list[dict]  # raw click-log rows in the training columns (+ label, ts)


@pytest.fixture(scope="session")
def serve_bundles(tmp_path_factory: pytest.TempPathFactory) -> ServeBundles:
    root = tmp_path_factory.mktemp("serve")
    cfg = RunConfig(
        data=DataConfig(dataset="synthetic", options=LOG, cache_dir=str(root / "cache")),
        model=ModelSection(name="deepfm", params={"embedding_dim": 4, "hidden": [8]}),
        train=TrainConfig(epochs=1, batch_size=512, progress=False),
        output_dir=str(root / "deepfm"),
    )
    train_from_config(cfg)
    pre = load_bundle(root / "deepfm" / "bundle").preprocessor
    torch.manual_seed(1)
    other = registry.build("deepfm", pre.schema, {"embedding_dim": 4, "hidden": [8]})
    save_bundle(root / "deepfm_b", "deepfm", other, pre)
    din = registry.build(
        "din", pre.schema, {"embedding_dim": 4, "hidden": [8], "attention_hidden": [8]}
    )
    save_bundle(root / "din", "din", din, pre)

    rng = np.random.default_rng(0)
    users = [f"u{k % 6}" for k in range(40)]  # every user and item occurs
    items = [f"i{k}" for k in rng.permutation(np.arange(40) % 12)]
    seen = pa.table({"user": users, "item": items, "label": np.ones(40)})
    schema = Schema(
        fields=(CategoricalField("user", group="user"), CategoricalField("item", group="item")),
        task="ranking",
        user_key="user",
        item_key="item",
    )
    cf_pre = Preprocessor(schema).fit(seen)
    gmf = registry.build("gmf", cf_pre.schema, {"factors": 4})
    save_bundle(root / "gmf", "gmf", gmf, cf_pre)

    table, _ = make_click_log(**LOG)  # the last rows (test split): known ids, long histories
    return ServeBundles(
        deepfm=root / "deepfm" / "bundle",
        deepfm_b=root / "deepfm_b",
        din=root / "din",
        gmf=root / "gmf",
        gmf_seen=seen,
        records=table.slice(table.num_rows - 60).to_pylist(),
    )
