"""Cross layers (DCN, DCN-V2) and the Deep Crossing residual unit against their formulas."""

from __future__ import annotations

import torch

from recforge.layers.cross import CrossLayer, CrossLayerV2, CrossNetwork
from recforge.layers.residual import ResidualUnit


def _inputs(d: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(4, d, generator=g), torch.randn(4, d, generator=g)


def _randomise(module: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g))


def test_cross_layer_equals_explicit_outer_product() -> None:
    x0, xl = _inputs()
    layer = CrossLayer(6)
    _randomise(layer)
    out = layer(x0, xl)
    w, b = layer.weight.detach(), layer.bias.detach()
    for r in range(4):
        # x_{l+1} = x_0 x_l^T w + b + x_l, with the d x d matrix formed explicitly
        expected = torch.outer(x0[r], xl[r]) @ w + b + xl[r]
        torch.testing.assert_close(out[r].detach(), expected)


def test_cross_v2_full_equals_formula() -> None:
    x0, xl = _inputs()
    layer = CrossLayerV2(6)
    _randomise(layer)
    W, b = layer.project.weight.detach(), layer.project.bias.detach()
    for r in range(4):
        expected = x0[r] * (W @ xl[r] + b) + xl[r]
        torch.testing.assert_close(layer(x0, xl)[r].detach(), expected)


def test_cross_v2_low_rank_equals_formula() -> None:
    x0, xl = _inputs()
    layer = CrossLayerV2(6, rank=2)
    _randomise(layer)
    V_t = layer.project[0].weight.detach()  # (r, d) = V^T
    U, b = layer.project[1].weight.detach(), layer.project[1].bias.detach()  # (d, r), (d,)
    assert V_t.shape == (2, 6) and U.shape == (6, 2)
    for r in range(4):
        expected = x0[r] * (U @ (V_t @ xl[r]) + b) + xl[r]
        torch.testing.assert_close(layer(x0, xl)[r].detach(), expected)


def test_cross_network_iterates_from_x0() -> None:
    x0, _ = _inputs()
    net = CrossNetwork(6, num_layers=3, version=1)
    _randomise(net)
    x = x0.clone()
    for layer in net.layers:
        x = torch.stack(
            [torch.outer(x0[r], x[r]) @ layer.weight + layer.bias + x[r] for r in range(4)]
        )
    torch.testing.assert_close(net(x0), x)


def test_residual_unit_equals_formula() -> None:
    x, _ = _inputs()
    unit = ResidualUnit(6, hidden=5)
    _randomise(unit)
    W1, b1 = unit.inner.weight.detach(), unit.inner.bias.detach()
    W2, b2 = unit.outer.weight.detach(), unit.outer.bias.detach()
    for r in range(4):
        expected = torch.relu(x[r] + W2 @ torch.relu(W1 @ x[r] + b1) + b2)
        torch.testing.assert_close(unit(x)[r].detach(), expected)
    assert unit(x).shape == x.shape


def test_residual_unit_batch_norm_normalises_the_sum() -> None:
    x, _ = _inputs()
    unit = ResidualUnit(6, hidden=5, batch_norm=True)
    _randomise(unit)
    unit.train()
    W1, b1 = unit.inner.weight.detach(), unit.inner.bias.detach()
    W2, b2 = unit.outer.weight.detach(), unit.outer.bias.detach()
    s = x + torch.relu(x @ W1.T + b1) @ W2.T + b2
    bn = unit.norm
    normed = (s - s.mean(0)) / torch.sqrt(s.var(0, unbiased=False) + bn.eps)
    expected = torch.relu(normed * bn.weight.detach() + bn.bias.detach())
    torch.testing.assert_close(unit(x).detach(), expected)
