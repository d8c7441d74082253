"""Optimizer construction and the row-sparse Adam."""

from __future__ import annotations

import torch
from torch import nn

from recforge.config import TrainConfig
from recforge.features import CategoricalField, EncodedData, NumericField, Schema, random_batch
from recforge.models import registry
from recforge.models.base import SPARSE_MIN_RATIO, SPARSE_MIN_ROWS
from recforge.train.optim import SparseRowAdam, build_optimizers
from recforge.train.trainer import Trainer, seed_everything


def test_sparse_row_adam_equals_torch_sparse_adam():
    results = {}
    for name in ("torch", "ours"):
        torch.manual_seed(0)
        emb = nn.Embedding(300, 5, sparse=True)
        opt = (torch.optim.SparseAdam if name == "torch" else SparseRowAdam)(
            emb.parameters(), lr=1e-2
        )
        g = torch.Generator().manual_seed(1)
        for _ in range(5):
            ids = torch.randint(0, 300, (64, 6), generator=g)  # duplicates within a batch
            opt.zero_grad()
            (emb(ids) ** 2).sum().backward()
            opt.step()
        results[name] = emb.weight.detach()
    torch.testing.assert_close(results["ours"], results["torch"], atol=1e-6, rtol=1e-5)


def test_untouched_rows_and_state_stay_put():
    emb = nn.Embedding(100, 3, sparse=True)
    before = emb.weight.detach().clone()
    opt = SparseRowAdam(emb.parameters(), lr=0.1)
    emb(torch.tensor([[3, 3, 7]])).sum().backward()
    opt.step()
    changed = (emb.weight.detach() != before).any(1).nonzero().flatten().tolist()
    assert changed == [3, 7]
    assert opt.state[emb.weight]["exp_avg"].abs().sum(1).nonzero().flatten().tolist() == [3, 7]


def test_every_parameter_in_exactly_one_optimizer(tiny_schema):
    model = registry.build(
        "deepfm" if "deepfm" in registry.names() else "fm", tiny_schema, {"sparse": True}
    )
    for opt_name in ("adam", "adagrad", "sgd"):
        opts = build_optimizers(model, TrainConfig(optimizer=opt_name, dense_l2=1e-4))
        ids = [id(p) for o in opts for g in o.param_groups for p in g["params"]]
        assert len(ids) == len(set(ids))
        assert set(ids) == {id(p) for p in model.parameters()}
    batch = random_batch(tiny_schema, 4)
    assert model(batch).shape == (4,)


def _big_schema(rows: int) -> Schema:
    return Schema(
        fields=(
            CategoricalField("ad", vocab_size=rows),
            CategoricalField("site", vocab_size=50),
            NumericField("price"),
        ),
        label="label",
        embedding_dim=16,
    )


def _tables(model: nn.Module) -> list[nn.Embedding]:
    return [m for m in model.modules() if isinstance(m, nn.Embedding)]


def test_sparse_auto_switches_only_large_tables_and_sparse_false_never():
    # 2 ids per row, batch 64: 128 lookups. Both tables (the 16-wide factors and the LR part's
    # 1-wide weights) have 70k rows, 547x the lookups: sparse.
    schema = _big_schema(70_000)
    cfg = TrainConfig(batch_size=64, epochs=1, progress=False)
    model = registry.build("deepfm", schema, {"hidden": [8], "batch_norm": False})
    assert not any(t.sparse for t in _tables(model))  # built dense; the engine decides
    trainer = Trainer(model, cfg)
    by_width = {t.weight.shape[1]: t.sparse for t in _tables(model)}
    assert by_width == {16: True, 1: True}
    kinds = sorted(type(o).__name__ for o in trainer.optimizers)
    assert kinds == ["Adam", "SparseRowAdam"]
    # rows below SPARSE_MIN_RATIO x the batch's lookups stay dense
    model = registry.build("deepfm", schema, {"hidden": [8], "batch_norm": False})
    Trainer(model, TrainConfig(batch_size=70_000 // (2 * SPARSE_MIN_RATIO) + 100, progress=False))
    assert not any(t.sparse for t in _tables(model))
    # a table too small to matter, forced-dense models and table-scope L2 stay dense
    for rows, params, tcfg in (
        (SPARSE_MIN_ROWS - 100, {}, cfg),
        (70_000, {"sparse": False}, cfg),
        (70_000, {}, TrainConfig(batch_size=64, embedding_l2=1e-4, embedding_l2_scope="table")),
    ):
        model = registry.build("deepfm", _big_schema(rows), {"hidden": [8], **params})
        Trainer(model, tcfg)
        assert not any(t.sparse for t in _tables(model)), (rows, params)


def test_sparse_auto_trains_like_dense_on_a_planted_signal():
    """The lazy sparse update learns what the dense one does (AUC on a planted ad effect)."""
    g = torch.Generator().manual_seed(0)
    n, rows = 4096, 70_000
    ads = torch.randint(1, 200, (n,), generator=g)
    site = torch.randint(1, 50, (n,), generator=g)
    y = (torch.rand(n, generator=g) < torch.sigmoid((ads % 2) * 3.0 - 1.5)).float()
    data = EncodedData(
        sparse=torch.stack([ads, site], 1).int().numpy(),
        dense=torch.rand(n, 1, generator=g).numpy(),
        label=y.numpy(),
    )
    aucs = {}
    for sparse in ("auto", False):
        seed_everything(0)
        model = registry.build(
            "deepfm", _big_schema(rows), {"hidden": [8], "batch_norm": False, "sparse": sparse}
        )
        trainer = Trainer(model, TrainConfig(batch_size=64, epochs=3, lr=1e-2, progress=False))
        trainer.fit(data)
        aucs[sparse] = trainer.evaluate(data)["auc"]
        assert any(t.sparse for t in _tables(model)) == (sparse == "auto")
    assert aucs["auto"] > 0.8 and abs(aucs["auto"] - aucs[False]) < 0.02, aucs


def test_tables_with_the_same_ids_share_one_sort_and_update_as_separate_steps():
    """Two tables looked up with equal ids (the reused unique rows) update exactly as each
    table alone, also when a third table's ids differ in between."""
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(0, 50, (32, 4), generator=g)
    other = torch.randint(0, 50, (32, 4), generator=g)

    def make():
        torch.manual_seed(0)
        return [nn.Embedding(50, d, sparse=True) for d in (3, 1, 2)]

    together = make()
    opt = SparseRowAdam([p for e in together for p in e.parameters()], lr=0.05)
    for _ in range(3):
        opt.zero_grad()
        a, b, c = together
        (a(ids).pow(2).sum() + b(ids).sum() + c(other).pow(3).sum()).backward()
        opt.step()
    alone = make()
    for emb, which, fn in zip(
        alone, (ids, ids, other), (lambda x: x.pow(2), lambda x: x, lambda x: x.pow(3)), strict=True
    ):
        o = SparseRowAdam(emb.parameters(), lr=0.05)
        for _ in range(3):
            o.zero_grad()
            fn(emb(which)).sum().backward()
            o.step()
    for x, y in zip(together, alone, strict=True):
        torch.testing.assert_close(x.weight, y.weight)
