"""Gradient clipping (``train.grad_clip_norm``): torch's rule, sparse gradients, the trainer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from recforge.config import FieldValueError, TrainConfig
from recforge.features import CategoricalField, EncodedData, NumericField, Schema
from recforge.models import registry
from recforge.train.optim import clip_gradients
from recforge.train.trainer import Trainer, seed_everything


def _mlp_with_grads(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 1))
    net(torch.randn(32, 7)).pow(2).sum().backward()
    return net


@pytest.mark.parametrize("max_norm", [0.05, 1e6])
def test_dense_gradients_follow_torch_clip_grad_norm(max_norm):
    ours, ref = _mlp_with_grads(0), _mlp_with_grads(0)
    norm = clip_gradients(list(ours.parameters()), max_norm)
    ref_norm = torch.nn.utils.clip_grad_norm_(ref.parameters(), max_norm)
    torch.testing.assert_close(norm, ref_norm)
    for p, q in zip(ours.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad)
    clipped = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in ours.parameters()]))
    assert clipped <= max_norm * (1 + 1e-5)
    if max_norm > norm:  # below the limit: untouched
        assert torch.allclose(clipped, norm)


def test_sparse_gradient_counts_as_its_dense_equivalent():
    """Duplicate rows of a sparse gradient are summed before the norm (not squared apart)."""
    ids = torch.tensor([[3, 3, 3, 7], [7, 1, 3, 3]])  # row 3 five times: duplicates matter
    grads = {}
    norms = {}
    for sparse in (True, False):
        torch.manual_seed(0)
        emb = nn.Embedding(10, 4, sparse=sparse)
        lin = nn.Linear(4, 1)
        lin(emb(ids)).pow(2).sum().backward()
        params = [emb.weight, *lin.parameters()]
        norms[sparse] = clip_gradients(params, 0.5)
        g = emb.weight.grad
        assert g.is_sparse == sparse
        grads[sparse] = [g.to_dense() if sparse else g, *(p.grad for p in lin.parameters())]
    assert norms[True] > 0.5  # the limit bites
    torch.testing.assert_close(norms[True], norms[False])
    for a, b in zip(grads[True], grads[False], strict=True):
        torch.testing.assert_close(a, b)


def test_no_gradients_is_a_zero_norm():
    p = nn.Parameter(torch.ones(3))
    assert clip_gradients([p], 1.0) == 0
    assert p.grad is None


def test_negative_limit_is_a_config_error():
    with pytest.raises(FieldValueError, match="grad_clip_norm"):
        TrainConfig(grad_clip_norm=-1.0)


@pytest.mark.parametrize("sparse", [True, False])
def test_trainer_steps_with_the_clipped_gradient(sparse):
    """One SGD step of lr 1: the parameters move by the clipped gradient, norm <= the limit."""
    schema = Schema(
        fields=(
            CategoricalField("ad", vocab_size=50),
            CategoricalField("site", vocab_size=20),
            NumericField("price"),
        ),
        label="label",
        embedding_dim=4,
    )
    g = torch.Generator().manual_seed(0)
    n = 64
    data = EncodedData(
        sparse=torch.stack(
            [torch.randint(1, 50, (n,), generator=g), torch.randint(1, 20, (n,), generator=g)], 1
        )
        .int()
        .numpy(),
        dense=torch.rand(n, 1, generator=g).numpy(),
        label=(torch.rand(n, generator=g) < 0.5).float().numpy(),
    )
    moved = {}
    for limit in (0.0, 1e-3):
        seed_everything(0)
        model = registry.build("deepfm", schema, {"hidden": [8], "sparse": sparse})
        before = [p.detach().clone() for p in model.parameters()]
        cfg = TrainConfig(
            optimizer="sgd", lr=1.0, batch_size=n, epochs=1, progress=False, grad_clip_norm=limit
        )
        Trainer(model, cfg).fit(data)
        after = list(model.parameters())
        step = torch.cat([(p.detach() - b).flatten() for p, b in zip(after, before, strict=True)])
        moved[limit] = torch.linalg.vector_norm(step)
    assert moved[0.0] > 1e-2  # unclipped, the step is far larger than the limit
    torch.testing.assert_close(moved[1e-3], torch.tensor(1e-3), rtol=1e-3, atol=0)
