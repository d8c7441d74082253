"""DIN's real-positions path (only the real behaviours embedded, pooled by index_add) equals the
padded (B, L, Dk) path in outputs and gradients."""

from __future__ import annotations

import pytest
import torch

from recforge.features import Schema, random_batch
from recforge.models import registry


def _padded(model, batch):  # noqa: ANN001, ANN202
    pooled, _ = model.attention(*model.embed_behaviours(batch))
    return model.score(batch, pooled)


@pytest.mark.parametrize("softmax", [True, False])
@pytest.mark.parametrize("activation", ["dice", "relu"])
@pytest.mark.parametrize("training", [True, False])
def test_real_positions_equal_the_padded_path(
    tiny_schema: Schema, softmax: bool, activation: str, training: bool
):
    schema = tiny_schema
    batch = random_batch(schema, 48, torch.Generator().manual_seed(4))
    batch.lengths["hist_item_ids"][:3] = 0  # rows without behaviours
    batch.lengths["hist_cats"][:3] = 0
    params = {"softmax": softmax, "activation": activation, "attention_activation": activation}
    torch.manual_seed(0)
    model = registry.build("din", schema, {**params, "hidden": [16], "attention_hidden": [8]})
    model.train(training)
    taken = []
    real_path = model.attend_real
    model.attend_real = lambda b: taken.append(1) or real_path(b)  # type: ignore[method-assign]
    grads = []
    outs = []
    for fn in (model, lambda b: _padded(model, b)):
        model.zero_grad()
        out = fn(batch)
        (out * torch.linspace(-1, 1, len(out))).sum().backward()
        outs.append(out.detach())
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    assert taken == [1]  # the model's forward took the real-positions path, the reference did not
    torch.testing.assert_close(outs[0], outs[1], atol=1e-6, rtol=1e-5)
    assert len(grads[0]) == len(grads[1])
    for a, b in zip(grads[0], grads[1], strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
