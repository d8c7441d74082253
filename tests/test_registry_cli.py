"""Every registered model through the front door: ``recforge train`` for one epoch on small
data of its kind, then its bundle reloads and scores like the trained model. No model is
skipped: a new registry entry without a data kind here fails ``test_every_model_has_a_kind``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from recforge.cli import main
from recforge.data.loader import BatchLoader
from recforge.data.pipeline import encode_run
from recforge.models import registry
from recforge.serve.bundle import load_bundle

# model -> the kind of data it trains on through the CLI
RATINGS = {"autorec"}  # explicit ratings, regression (AutoRec's rating rows)
IMPLICIT = {"gmf", "ncf_mlp", "neumf"}  # positives only, ranking with sampled negatives
CLICKS = set(registry.names()) - RATINGS - IMPLICIT  # CTR, sequences, baselines, DRN


@pytest.fixture(scope="module")
def ratings_dir(tmp_path_factory) -> Path:
    """A MovieLens-100K-shaped ``u.data``: 60 users x 40 items, ratings from a planted rank-1
    structure, about 1,000 rows."""
    folder = tmp_path_factory.mktemp("ml")
    rng = np.random.default_rng(0)
    u, i = np.nonzero(rng.random((60, 40)) < 0.45)
    taste = rng.normal(size=60)[u] * rng.normal(size=40)[i]
    rating = np.clip(np.round(3 + 1.2 * taste), 1, 5).astype(int)
    ts = 880_000_000 + rng.permutation(len(u))
    lines = [f"{a + 1}\t{b + 1}\t{r}\t{t}" for a, b, r, t in zip(u, i, rating, ts, strict=True)]
    (folder / "u.data").write_text("\n".join(lines) + "\n")
    return folder


def _args(name: str, ratings_dir: Path) -> list[str]:
    common = ["train.epochs=1", "train.progress=false", "train.threads=1", "train.seed=0"]
    if name in RATINGS:
        return [f"data.path={ratings_dir}", "data.dataset=movielens-100k",
                "data.options.side_features=false", "train.batch_size=16", *common]  # fmt: skip
    if name in IMPLICIT:
        return [f"data.path={ratings_dir}", "data.dataset=movielens-100k",
                "data.options.side_features=false", "data.options.implicit=true",
                "data.split=leave_last", "train.batch_size=64", "train.eval_negatives=20",
                *common]  # fmt: skip
    return ["data.dataset=synthetic", "data.options.rows=3000", "train.batch_size=256", *common]


def test_every_model_has_a_kind() -> None:
    assert set(registry.names()) == CLICKS | RATINGS | IMPLICIT
    assert len(registry.names()) == 24


@pytest.mark.parametrize("name", registry.names())
def test_train_one_epoch_through_the_cli_and_reload(name, ratings_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("RECFORGE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    args = _args(name, ratings_dir)
    assert main(["train", f"model.name={name}", f"output_dir={out}", *args]) == 0
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["model"] == name and summary["test"]
    assert all(np.isfinite(v) for v in summary["test"].values()), summary
    if name in IMPLICIT:
        assert set(summary["test"]) == {"hr@10", "ndcg@10"}
    if name in RATINGS:
        assert set(summary["test"]) == {"rmse", "mae"}
    assert not list(tmp_path.glob(".run.*")), "the partial folder was not published"
    bundle = load_bundle(out / "bundle")
    assert bundle.model_name == name
    # the reloaded bundle scores the test split as the run reported it (same encoding, same
    # weights); ranking candidates are drawn against the training positives, so only the
    # pointwise tasks are compared number for number
    from recforge.config import load_run_config
    from recforge.train import Trainer

    cfg = load_run_config(out / "config.yaml")
    run = encode_run(cfg.data, seed=cfg.train.seed)
    assert run.preprocessor.fingerprint() == bundle.preprocessor.fingerprint()
    if name not in IMPLICIT:
        again = Trainer(bundle.model, cfg.train).evaluate(run.test)
        assert again == pytest.approx(summary["test"], rel=1e-5, abs=1e-6)
    batch = next(iter(BatchLoader(run.test, 64)))
    bundle.model.eval()
    with torch.no_grad():
        assert torch.isfinite(bundle.model(batch)).all()
