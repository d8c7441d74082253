"""``recforge compare``: every model's bundle is kept and serves the scores the board reports;
GAUC is shown where it is computed; plot axes start at stated baselines (AUC 0.5, logloss 0)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recforge.cli import main
from recforge.commands.compare import leaderboard_figure
from recforge.config import TrainConfig, load_run_config
from recforge.data.pipeline import encode_run
from recforge.serve.bundle import load_bundle
from recforge.train import Trainer


def test_compare_keeps_bundles_shows_gauc_and_draws_honest_axes(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RECFORGE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "board"
    overrides = ["data.options.rows=3000", "train.epochs=1", "train.batch_size=512",
                 "train.progress=false", "train.seed=0"]  # fmt: skip
    code = main(["compare", "--models", "lr", "fm", "--dataset", "synthetic",
                 "--output", str(out), *overrides])  # fmt: skip
    assert code == 0
    board = json.loads((out / "leaderboard.json").read_text())
    rows = {r["model"]: r for r in board["results"]}
    assert all(r["gauc"] is not None for r in rows.values())  # synthetic rows carry users
    assert "GAUC" in (out / "leaderboard.md").read_text()
    # the kept bundle scores the test split exactly as the board says
    cfg = load_run_config(None, ["data.dataset=synthetic", *overrides])
    run = encode_run(cfg.data, seed=cfg.train.seed)
    for name, row in rows.items():
        bundle = load_bundle(row["bundle"])
        assert bundle.model_name == name
        again = Trainer(bundle.model, TrainConfig(progress=False)).evaluate(run.test)
        assert again["auc"] == pytest.approx(row["auc"], abs=1e-9)
    fig = leaderboard_figure(board["results"], "t")
    starts = {ax.get_xlabel().split()[1]: ax.get_xlim()[0] for ax in fig.axes}
    assert starts == {"auc": 0.5, "logloss": 0.0, "gauc": 0.5}
    assert all("axis starts at" in ax.get_xlabel() for ax in fig.axes)
    assert np.isfinite([r["auc"] for r in rows.values()]).all()
