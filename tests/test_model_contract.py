"""One contract suite over the whole model registry, with no skip list.

Every registered model builds from a tiny fitted schema, returns finite logits of shape (B,),
sends a gradient to every parameter, lowers its loss in a few steps on one batch, survives a
save/load round trip and is deterministic under a seed.
"""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F

from recforge.features import random_batch
from recforge.models import registry
from recforge.train import seed_everything

ALL_MODELS = registry.names()


def _build(name, schema, seed=0):
    seed_everything(seed)
    return registry.build(name, schema, {})


def _loss(model, batch):
    logits, extra = model.forward_train(batch)
    loss = F.binary_cross_entropy_with_logits(logits, batch.label)
    return loss if extra is None else loss + extra


def test_registry_is_not_empty_and_has_papers():
    assert {"lr", "fm", "mf"} <= set(ALL_MODELS)
    for name in ALL_MODELS:
        spec = registry.get(name)
        assert spec.paper and spec.family in {"baseline", "ctr", "cf", "sequence", "rl"}


def test_unknown_model_and_unknown_option_are_errors(tiny_schema):
    with pytest.raises(KeyError, match="unknown model"):
        registry.get("no-such-model")
    with pytest.raises(ValueError, match="unknown key"):
        registry.build("fm", tiny_schema, {"no_such_option": 1})


@pytest.mark.parametrize("name", ALL_MODELS)
def test_logits_shape_and_finite(name, tiny_schema, tiny_batch):
    model = _build(name, tiny_schema)
    model.eval()
    logits = model(tiny_batch)
    assert logits.shape == (len(tiny_batch),)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_parameter_gets_a_gradient(name, tiny_schema, tiny_batch):
    model = _build(name, tiny_schema)
    model.train()
    _loss(model, tiny_batch).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"{name}: no gradient for {missing}"


@pytest.mark.parametrize("name", ALL_MODELS)
def test_bf16_autocast_trains_and_predicts(name, tiny_schema, tiny_batch):
    """``train.bf16`` runs every forward under CPU bfloat16 autocast: the training pass gives
    every parameter a finite gradient, and the evaluation logits stay close to float32's."""
    model = _build(name, tiny_schema)
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = _loss(model, tiny_batch).float()
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values()), name
    model.eval()
    with torch.no_grad():
        full = model(tiny_batch)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = model(tiny_batch).float()
    assert torch.isfinite(half).all()
    torch.testing.assert_close(half, full, atol=0.05, rtol=0.05)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_a_few_steps_lower_the_loss(name, tiny_schema, tiny_batch):
    model = _build(name, tiny_schema)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    torch.manual_seed(0)
    first = None
    for _ in range(25):
        opt.zero_grad()
        loss = _loss(model, tiny_batch)
        first = float(loss.detach()) if first is None else first
        loss.backward()
        opt.step()
    # measured in training mode, like the first loss (batch-norm/Dice running statistics of
    # 25 steps do not yet describe the data, so eval mode would compare unlike with unlike)
    with torch.no_grad():
        final = float(_loss(model, tiny_batch))
    assert final < first, f"{name}: loss {first:.4f} -> {final:.4f}"


@pytest.mark.parametrize("name", ALL_MODELS)
def test_save_load_round_trip(name, tiny_schema, tiny_batch, randomise):
    model = randomise(_build(name, tiny_schema, seed=1), 1)
    model.eval()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh = randomise(_build(name, tiny_schema, seed=2), 2).eval()
    with torch.no_grad():
        before = fresh(tiny_batch)
        assert not torch.allclose(before, model(tiny_batch)), f"{name}: load would be untested"
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(tiny_batch), fresh(tiny_batch))


@pytest.mark.parametrize("name", ALL_MODELS)
def test_deterministic_under_seed(name, tiny_schema):
    batch = random_batch(tiny_schema, 16, torch.Generator().manual_seed(3))
    outs = []
    for _ in range(2):
        model = _build(name, tiny_schema, seed=5)
        model.train()
        torch.manual_seed(9)
        outs.append(model.forward_train(batch)[0].detach())
    torch.testing.assert_close(outs[0], outs[1])
