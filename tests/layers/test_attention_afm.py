"""AFM attention pooling against its definition."""

from __future__ import annotations

import torch

from recforge.layers.attention import AFMAttentionPooling
from recforge.layers.interaction import PairwiseProducts


def _setup() -> tuple[AFMAttentionPooling, torch.Tensor]:
    torch.manual_seed(0)
    layer = AFMAttentionPooling(dim=4, attention_dim=3).double()
    v = torch.randn(6, 5, 4, dtype=torch.float64)
    return layer, PairwiseProducts(5)(v)


def test_weights_sum_to_one_per_example() -> None:
    layer, products = _setup()
    pooled, a = layer(products)
    assert a.shape == (6, 10) and pooled.shape == (6, 4)
    assert (a > 0).all()
    torch.testing.assert_close(a.sum(1), torch.ones(6, dtype=torch.float64))


def test_weights_and_pooling_equal_explicit_formula() -> None:
    layer, products = _setup()
    W, b = layer.project.weight, layer.project.bias
    h = layer.h.weight[0]
    B, P, _ = products.shape
    expected_pooled = torch.zeros(B, 4, dtype=torch.float64)
    for n in range(B):
        scores = torch.stack([h @ torch.relu(W @ products[n, p] + b) for p in range(P)])
        a = torch.exp(scores) / torch.exp(scores).sum()
        for p in range(P):
            expected_pooled[n] += a[p] * products[n, p]
        torch.testing.assert_close(layer.weights(products)[n], a)
    pooled, _ = layer(products)
    torch.testing.assert_close(pooled, expected_pooled)


def test_equal_scores_give_uniform_weights() -> None:
    layer, products = _setup()
    with torch.no_grad():
        layer.h.weight.zero_()
    _, a = layer(products)
    torch.testing.assert_close(a, torch.full_like(a, 0.1))
