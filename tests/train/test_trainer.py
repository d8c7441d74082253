"""Trainer: learning, early stopping with best weights, LR plateau, checkpoints and resume."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import torch

from recforge.config import TrainConfig
from recforge.data.encode.preprocess import Preprocessor
from recforge.features import CategoricalField, NumericField, Schema
from recforge.models import registry
from recforge.train import Trainer, seed_everything
from recforge.train.optim import SparseRowAdam


def _planted(n: int, seed: int, task: str = "binary"):
    """Two fields whose parity interaction decides the label (LR cannot see it, FM can)."""
    rng = np.random.default_rng(seed)
    a, b, x = rng.integers(0, 12, n), rng.integers(0, 12, n), rng.normal(size=n)
    logit = np.where(a % 2 == b % 2, 2.0, -2.0) + 0.5 * x
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    if task == "regression":
        y = logit + rng.normal(scale=0.1, size=n)
    return pa.table({"a": a, "b": b, "x": x, "y": y})


@pytest.fixture(scope="module")
def planted():
    schema = Schema(
        fields=(
            CategoricalField("a", group="user"),
            CategoricalField("b", group="item"),
            NumericField("x"),
        ),
        label="y",
        user_key="a",
        item_key="b",
        embedding_dim=8,
    )
    pre = Preprocessor(schema).fit(_planted(6000, 0))
    return pre, pre.transform(_planted(6000, 0)), pre.transform(_planted(2000, 1))


def _cfg(**kw) -> TrainConfig:
    base = dict(epochs=4, batch_size=256, lr=2e-2, progress=False, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def _fit(name, pre, train, valid, output_dir=None, **kw):
    seed_everything(0)
    model = registry.build(name, pre.schema, {})
    trainer = Trainer(model, _cfg(**kw), output_dir=output_dir)
    trainer.fit(train, valid)
    return trainer


def test_fm_learns_planted_interaction_and_beats_lr(planted):
    pre, train, valid = planted
    fm = _fit("fm", pre, train, valid).evaluate(valid)
    lr = _fit("lr", pre, train, valid).evaluate(valid)
    assert fm["auc"] > 0.8, fm
    assert fm["auc"] > lr["auc"] + 0.1, (fm, lr)
    assert set(fm) == {"auc", "logloss", "gauc"}


def test_outputs_written_atomically(planted, tmp_path):
    pre, train, valid = planted
    _fit("fm", pre, train, valid, output_dir=tmp_path, epochs=2)
    history = json.loads((tmp_path / "history.json").read_text())
    assert len(history) == 2 and "valid_auc" in history[0]
    assert (tmp_path / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "checkpoint.pt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_early_stopping_restores_best_weights(planted):
    pre, train, valid = planted
    # a huge learning rate makes validation worse after the first epochs
    trainer = _fit("fm", pre, train, valid, epochs=30, lr=0.5, patience=2, lr_patience=0)
    history = trainer.history
    assert len(history) < 30
    best = max(r["valid_auc"] for r in history)
    assert trainer.best_value == pytest.approx(best)
    assert trainer.evaluate(valid)["auc"] == pytest.approx(best, abs=1e-6)


def test_learning_rate_reduced_on_plateau(planted):
    pre, train, valid = planted
    trainer = _fit(
        "fm", pre, train, valid, epochs=12, lr=0.5, patience=0, lr_patience=1, lr_factor=0.5
    )
    lrs = [r["lr"] for r in trainer.history]
    assert min(lrs) < 0.5 and all(b <= a for a, b in zip(lrs, lrs[1:], strict=False))


def test_resume_equals_uninterrupted_run(planted, tmp_path):
    pre, train, valid = planted
    full = _fit("fm", pre, train, valid, output_dir=tmp_path / "full", epochs=4, patience=0)
    # interrupted: 2 epochs, then a fresh process-like Trainer resumes to 4
    _fit("fm", pre, train, valid, output_dir=tmp_path / "cut", epochs=2, patience=0)
    seed_everything(123)  # different init: resume must overwrite it from the checkpoint
    model = registry.build("fm", pre.schema, {})
    resumed = Trainer(model, _cfg(epochs=4, patience=0), output_dir=tmp_path / "cut")
    resumed.fit(train, valid, resume=True)
    for key, value in full.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value)
    assert [r["train_loss"] for r in resumed.history] == pytest.approx(
        [r["train_loss"] for r in full.history]
    )


def test_corrupt_or_mismatched_checkpoint_is_refused(planted, tmp_path):
    pre, train, valid = planted
    _fit("fm", pre, train, valid, output_dir=tmp_path, epochs=1)
    lr_model = registry.build("lr", pre.schema, {})
    with pytest.raises(RuntimeError, match="checkpoint of FM"):
        Trainer(lr_model, _cfg(), output_dir=tmp_path).load_checkpoint()
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    fm = registry.build("fm", pre.schema, {})
    with pytest.raises(RuntimeError, match="unreadable or unsafe checkpoint"):
        Trainer(fm, _cfg(), output_dir=tmp_path).load_checkpoint()


class _Payload:
    """Unpickling this calls ``open`` on a marker file (code run at load time)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (open, (self.marker, "w"))


def test_a_crafted_checkpoint_runs_no_code_on_resume(planted, tmp_path):
    """``--resume`` loads checkpoints with ``weights_only=True``: a pickle that would run code
    is refused with one clear error and the code does not run."""
    pre, train, valid = planted
    trainer = _fit("fm", pre, train, valid, output_dir=tmp_path, epochs=1)
    marker = tmp_path / "pwned"
    state = trainer.checkpoint_state()
    state["history"] = [_Payload(str(marker))]
    torch.save(state, tmp_path / "checkpoint.pt")
    fm = registry.build("fm", pre.schema, {})
    with pytest.raises(RuntimeError, match="unreadable or unsafe checkpoint"):
        Trainer(fm, _cfg(), output_dir=tmp_path).load_checkpoint()
    assert not marker.exists()


@pytest.mark.parametrize("optimizer", ["adam", "adagrad", "sgd"])
def test_sparse_embeddings_train_with_every_optimizer(planted, optimizer):
    pre, train, valid = planted
    seed_everything(0)
    model = registry.build("fm", pre.schema, {"sparse": True})
    lr = {"adam": 2e-2, "adagrad": 0.1, "sgd": 5.0}[optimizer]
    trainer = Trainer(model, _cfg(optimizer=optimizer, lr=lr, embedding_l2=1e-5))
    assert any(isinstance(o, SparseRowAdam) for o in trainer.optimizers) == (optimizer == "adam")
    trainer.fit(train, valid)
    assert trainer.evaluate(valid)["auc"] > 0.75


def test_sparse_adam_leaves_untouched_rows_alone(planted):
    pre, train, _ = planted
    model = registry.build("fm", pre.schema, {"sparse": True})
    table = model.embedding.tables["8"]
    before = table.weight.detach().clone()
    trainer = Trainer(model, _cfg(optimizer="adam", epochs=1))
    batch = next(iter(__import__("recforge.data.loader", fromlist=["x"]).BatchLoader(train, 8)))
    trainer.optimizers[0].zero_grad()
    for o in trainer.optimizers:
        o.zero_grad()
    trainer._loss(batch, torch.Generator().manual_seed(0)).backward()
    for o in trainer.optimizers:
        o.step()
    changed = (table.weight.detach() != before).any(dim=1).nonzero().flatten()
    touched = set((batch.sparse + table.offsets).flatten().tolist())
    assert set(changed.tolist()) <= touched


def test_regression_and_ranking_tasks(planted):
    pre, train, valid = planted
    seed_everything(0)
    reg = Trainer(registry.build("fm", pre.schema, {}), _cfg(epochs=2), task="regression")
    reg.fit(train, valid)
    assert set(reg.evaluate(valid)) == {"rmse", "mae"}
    for loss in ("bpr", "bce"):
        model = registry.build("mf", pre.schema, {})
        rank = Trainer(model, _cfg(epochs=1, loss=loss, negatives=2, patience=0), task="ranking")
        history = rank.fit(train)
        assert np.isfinite(history[-1]["train_loss"])


def test_bf16_autocast_trains(planted):
    pre, train, valid = planted
    trainer = _fit("fm", pre, train, valid, bf16=True, epochs=2)
    assert trainer.evaluate(valid)["auc"] > 0.7


def test_table_scope_embedding_l2_is_the_whole_table_penalty(planted):
    pre, train, _ = planted
    from recforge.data.loader import BatchLoader

    batch = next(iter(BatchLoader(train, 64)))
    model = registry.build("fm", pre.schema, {})
    plain = Trainer(model, _cfg())._loss(batch, torch.Generator().manual_seed(0))
    table = Trainer(model, _cfg(embedding_l2=0.1, embedding_l2_scope="table"))
    regularised = table._loss(batch, torch.Generator().manual_seed(0))
    weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.Embedding)]
    expected = plain + 0.05 * sum(w.pow(2).sum() for w in weights)
    torch.testing.assert_close(regularised, expected)
    sparse_model = registry.build("fm", pre.schema, {"sparse": True})
    with pytest.raises(ValueError, match="dense"):
        Trainer(sparse_model, _cfg(embedding_l2=0.1, embedding_l2_scope="table"))


def test_cuda_device_without_cuda_is_a_config_error(monkeypatch):
    from recforge.train.trainer import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a CPU-only build
    with pytest.raises(ValueError, match="train.device: 'cuda' but this torch build"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="is not a device"):
        resolve_device("gpu9")
    assert resolve_device("auto").type == "cpu"
