"""Optimizer construction and the row-sparse Adam."""

from __future__ import annotations

import torch
from torch import nn

from recforge.config import TrainConfig
from recforge.features import random_batch
from recforge.models import registry
from recforge.train.optim import SparseRowAdam, build_optimizers


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
