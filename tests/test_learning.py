"""Training on the embedded synthetic log beats a constant predictor by a clear margin."""

from __future__ import annotations

from recforge.config import TrainConfig
from recforge.data.encode.preprocess import Preprocessor
from recforge.data.encode.split import split_table
from recforge.data.pipeline import EncodedRun
from recforge.data.sources.synthetic import make_click_log
from recforge.run import train_model


def _synthetic_run(rows: int, n_users: int, n_items: int):  # noqa: ANN202
    """The embedded click log split by time 80/10/10 and encoded: (run, schema, raw valid)."""
    table, schema = make_click_log(rows=rows, seed=0, n_users=n_users, n_items=n_items)
    train, valid, test = split_table(table, "time", ratios=(0.8, 0.1, 0.1), time_column="ts")
    pre = Preprocessor(schema).fit(train)
    run = EncodedRun(pre, pre.transform(train), pre.transform(valid), pre.transform(test))
    return run, schema, valid


def test_fm_on_synthetic_log_beats_constant():
    run, schema, valid = _synthetic_run(20_000, 400, 800)
    cfg = TrainConfig(epochs=3, batch_size=512, lr=5e-3, progress=False, seed=0)
    result, _ = train_model("fm", {}, run, cfg)
    # a constant predictor has AUC 0.5; the planted signal is worth far more
    assert result.test_metrics["auc"] > 0.6, result.test_metrics


def test_fnn_trains_its_fm_stage_first_in_the_same_run(monkeypatch):
    from recforge.models.fnn import FNN

    run, schema, valid = _synthetic_run(3_000, 100, 200)
    cfg = TrainConfig(epochs=1, batch_size=512, progress=False, seed=0)
    seen = []
    original = FNN.init_from_fm

    def spy(self, fm):
        seen.append(fm.embedding.tables["16"].weight.detach().clone())
        out = original(self, fm)
        # right after initialisation the FNN's table is the FM's
        assert (self.embedding.tables["16"].weight == seen[-1]).all()
        return out

    monkeypatch.setattr(FNN, "init_from_fm", spy)
    result, _ = train_model("fnn", {}, run, cfg)
    assert result.extra["pretraining"]["fm"]["model"] == "fm" and len(seen) == 1
    result, _ = train_model("fnn", {"pretrain_fm": False}, run, cfg)
    assert "pretraining" not in result.extra and len(seen) == 1


def test_fnn_loads_its_fm_stage_from_a_saved_bundle(tmp_path):
    """``pretrained_fm`` names a bundle: the engine loads it (on the same encoding) instead of
    training an FM, and refuses a bundle of another model or of other data."""
    import pytest
    import torch

    from recforge.serve.bundle import save_bundle

    run, schema, valid = _synthetic_run(3_000, 100, 200)
    pre = run.preprocessor
    cfg = TrainConfig(epochs=1, batch_size=512, progress=False, seed=0)
    _, fm_trainer = train_model("fm", {}, run, cfg)
    save_bundle(tmp_path / "fm", "fm", fm_trainer.model, pre)
    fnn_cfg = TrainConfig(epochs=1, batch_size=512, progress=False, seed=0, lr=1e-12)
    result, trainer = train_model("fnn", {"pretrained_fm": str(tmp_path / "fm")}, run, fnn_cfg)
    assert result.extra["pretraining"]["fm"]["path"] == str(tmp_path / "fm")
    fm_table = fm_trainer.model.embedding.tables["16"].weight
    torch.testing.assert_close(trainer.model.embedding.tables["16"].weight, fm_table)
    _, lr_trainer = train_model("lr", {}, run, cfg)
    save_bundle(tmp_path / "lr", "lr", lr_trainer.model, pre)
    with pytest.raises(ValueError, match="not a fm"):
        train_model("fnn", {"pretrained_fm": str(tmp_path / "lr")}, run, cfg)
    other = Preprocessor(schema).fit(valid)
    from recforge.models import registry

    save_bundle(tmp_path / "other", "fm", registry.build("fm", other.schema), other)
    with pytest.raises(ValueError, match="other data"):
        train_model("fnn", {"pretrained_fm": str(tmp_path / "other")}, run, cfg)


def test_popularity_baseline_is_calibrated():
    """Its probabilities start at the logistic fit on log(1 + count): logloss at or below a
    constant click rate's (it was 2.5 in the demo when the two scalars started at 0 and 1)."""
    import numpy as np

    from recforge import metrics

    run, schema, valid = _synthetic_run(20_000, 400, 800)
    cfg = TrainConfig(epochs=1, batch_size=512, lr=5e-3, progress=False, seed=0)
    result, _ = train_model("popularity", {}, run, cfg)
    rate = float(np.mean(run.train.label))
    constant = metrics.logloss(run.test.label, np.full(len(run.test), rate))
    assert result.test_metrics["logloss"] <= constant + 0.005, (result.test_metrics, constant)
    assert result.test_metrics["auc"] > 0.55
