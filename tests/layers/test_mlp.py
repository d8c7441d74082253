"""The shared tower: Tower blocks, MLP structure, Dice against its formula and as an MLP
activation (with masked statistics)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from recforge.layers.mlp import MLP, BatchNorm, Dice, Tower, activation


def test_mlp_blocks_follow_the_tower() -> None:
    tower = Tower(hidden=(5, 3), activation="tanh", dropout=0.5, batch_norm=True)
    mlp = MLP(4, tower, output_dim=1)
    kinds = [type(m) for m in mlp.net]
    block = [BatchNorm, nn.Tanh, nn.Dropout]
    assert kinds == [nn.Linear, *block, nn.Linear, *block, nn.Linear]
    assert [m.out_features for m in mlp.net if isinstance(m, nn.Linear)] == [5, 3, 1]
    assert mlp.output_dim == 1 and MLP(4, tower).output_dim == 3
    # defaults: ReLU, no batch norm, no dropout; no hidden layer is a linear map
    assert [type(m) for m in MLP(4, Tower((2,))).net] == [nn.Linear, nn.ReLU]
    assert [type(m) for m in MLP(4, Tower(), output_dim=2).net] == [nn.Linear]


def test_activation_names() -> None:
    assert isinstance(activation("prelu"), nn.PReLU)
    dice = activation("dice", 7)
    assert isinstance(dice, Dice) and dice.alpha.shape == (7,)
    with pytest.raises(ValueError, match="needs the width"):
        activation("dice")
    with pytest.raises(ValueError, match="unknown activation 'swish'.*dice"):
        activation("swish")


def _dice_reference(s: torch.Tensor, alpha: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Eq. 10 with the mini-batch (biased) statistics of ``s`` (B, D)."""
    mean = s.mean(dim=0)
    var = ((s - mean) ** 2).mean(dim=0)
    p = torch.sigmoid((s - mean) / torch.sqrt(var + eps))
    return p * s + (1 - p) * alpha * s


def test_mlp_with_dice_equals_the_dice_tower_by_hand() -> None:
    """``activation="dice"``: Linear -> Dice -> Dropout per hidden layer, then the output
    Linear; computed by hand from the same weights (the former separate Dice tower)."""
    torch.manual_seed(7)
    mlp = MLP(6, Tower(hidden=(5, 4), activation="dice"), output_dim=1)
    l1, d1, l2, d2, out = mlp.net
    assert isinstance(d1, Dice) and isinstance(d2, Dice)
    with torch.no_grad():
        d1.alpha.uniform_(-1, 1)
        d2.alpha.uniform_(-1, 1)
    x = torch.randn(32, 6)
    h1 = _dice_reference(x @ l1.weight.T + l1.bias, d1.alpha)
    h2 = _dice_reference(h1 @ l2.weight.T + l2.bias, d2.alpha)
    expected = h2 @ out.weight.T + out.bias
    torch.testing.assert_close(mlp(x), expected)
    # eval mode uses the running statistics the training pass moved
    mlp.eval()
    z1 = x @ l1.weight.T + l1.bias
    p1 = torch.sigmoid((z1 - d1.running_mean) / torch.sqrt(d1.running_var + d1.eps))
    h1 = p1 * z1 + (1 - p1) * d1.alpha * z1
    z2 = h1 @ l2.weight.T + l2.bias
    p2 = torch.sigmoid((z2 - d2.running_mean) / torch.sqrt(d2.running_var + d2.eps))
    h2 = p2 * z2 + (1 - p2) * d2.alpha * z2
    torch.testing.assert_close(mlp(x), h2 @ out.weight.T + out.bias)


def test_mlp_mask_reaches_every_dice() -> None:
    """A mask over (B, L) rows keeps padded rows out of every Dice's batch statistics."""
    torch.manual_seed(8)
    masked = MLP(3, Tower((4, 2), "dice", dropout=0.0), output_dim=1)
    real = MLP(3, Tower((4, 2), "dice"), output_dim=1)
    real.load_state_dict(masked.state_dict())
    x = torch.randn(5, 6, 3)
    mask = torch.zeros(5, 6, dtype=torch.bool)
    mask[:, :3] = True
    x_padded = x.clone()
    x_padded[:, 3:] = 100.0  # garbage in the padding
    out = masked(x_padded, mask)
    torch.testing.assert_close(out[:, :3], real(x[:, :3].reshape(-1, 3)).reshape(5, 3, 1))
    torch.testing.assert_close(masked.state_dict(), real.state_dict())


def test_mlp_without_dice_ignores_the_mask() -> None:
    mlp = MLP(4, Tower((3,), "prelu"), output_dim=1)
    x = torch.randn(5, 4)
    torch.testing.assert_close(mlp(x, torch.zeros(5, dtype=torch.bool)), mlp(x))


def test_dice_equals_formula_in_train_mode() -> None:
    torch.manual_seed(4)
    dice = Dice(3, eps=1e-8, momentum=0.1)
    with torch.no_grad():
        dice.alpha.copy_(torch.tensor([0.1, -0.5, 2.0]))
    s = torch.randn(64, 3) * 2 + 1
    out = dice(s)
    mean = s.mean(dim=0)
    var = ((s - mean) ** 2).mean(dim=0)  # mini-batch (biased) variance
    p = 1 / (1 + torch.exp(-(s - mean) / torch.sqrt(var + 1e-8)))
    torch.testing.assert_close(out, p * s + (1 - p) * dice.alpha * s)
    # running statistics moved towards the batch statistics
    torch.testing.assert_close(dice.running_mean, 0.1 * mean)
    torch.testing.assert_close(dice.running_var, 0.9 + 0.1 * s.var(dim=0, unbiased=True))


def test_dice_equals_formula_in_eval_mode_with_running_statistics() -> None:
    torch.manual_seed(5)
    dice = Dice(3)
    with torch.no_grad():
        dice.alpha.fill_(0.25)
        dice.running_mean.copy_(torch.tensor([1.0, -1.0, 0.0]))
        dice.running_var.copy_(torch.tensor([4.0, 0.25, 1.0]))
    dice.eval()
    s = torch.randn(10, 3)
    p = torch.sigmoid((s - dice.running_mean) / torch.sqrt(dice.running_var + dice.eps))
    torch.testing.assert_close(dice(s), p * s + 0.25 * (1 - p) * s)
    # eval output of one row does not depend on the rest of the batch
    torch.testing.assert_close(dice(s[:1]), dice(s)[:1])


def test_dice_masked_statistics_ignore_padding() -> None:
    torch.manual_seed(6)
    s = torch.randn(4, 6, 3)
    mask = torch.zeros(4, 6, dtype=torch.bool)
    mask[:, :2] = True
    a, b = Dice(3), Dice(3)
    out_masked = a(s, mask)
    out_real = b(s[:, :2].reshape(-1, 3)).reshape(4, 2, 3)
    torch.testing.assert_close(out_masked[:, :2], out_real)
    torch.testing.assert_close(a.running_mean, b.running_mean)


def test_batch_norm_takes_a_one_row_training_batch() -> None:
    torch.manual_seed(0)
    bn, ref = BatchNorm(3), nn.BatchNorm1d(3)
    ref.load_state_dict(bn.state_dict())
    x = torch.randn(8, 3)
    torch.testing.assert_close(bn(x), ref(x))  # a real batch: plain batch norm
    torch.testing.assert_close(bn.running_mean, ref.running_mean)
    with pytest.raises(ValueError):
        ref(x[:1])  # torch refuses a one-row training batch
    before = bn.running_mean.clone(), bn.running_var.clone()
    one = bn(x[:1])  # normalised with the running statistics, which stay as they were
    expected = (x[:1] - before[0]) / torch.sqrt(before[1] + bn.eps) * bn.weight + bn.bias
    torch.testing.assert_close(one, expected)
    torch.testing.assert_close(bn.running_mean, before[0])
    one.sum().backward()  # and it trains the affine parameters
    assert bn.weight.grad is not None


@pytest.mark.parametrize("act", ["relu", "dice", "tanh"])
def test_eval_mlp_with_folded_batch_norm_equals_the_layers_one_by_one(act: str) -> None:
    """In evaluation mode each ``Linear -> BatchNorm`` runs as one folded ``Linear`` (the
    tower's ReLU in place): outputs and input gradients equal the unfused layers'."""
    torch.manual_seed(0)
    mlp = MLP(6, Tower(hidden=(5, 4), activation=act, batch_norm=True, dropout=0.3), output_dim=2)
    mlp.train()
    for _ in range(3):  # running statistics and affine parameters away from their init
        mlp(torch.randn(32, 6) * 3 + 1)
    with torch.no_grad():
        for m in mlp.net:
            if isinstance(m, BatchNorm):
                m.weight.uniform_(0.5, 2.0)
                m.bias.uniform_(-1.0, 1.0)
    mlp.eval()
    x = torch.randn(16, 6, requires_grad=True)
    reference = mlp.net(x)  # nn.Sequential: each layer on its own
    (ref_grad,) = torch.autograd.grad(reference.sum(), x)
    out = mlp(x)
    (grad,) = torch.autograd.grad(out.sum(), x)
    torch.testing.assert_close(out, reference, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(grad, ref_grad, atol=1e-6, rtol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(mlp(x), reference, atol=1e-6, rtol=1e-6)
    # the fold reads the current statistics: a changed running mean changes the output
    with torch.no_grad():
        mlp.net[1].running_mean += 1.0
        assert not torch.allclose(mlp(x), reference)


@pytest.mark.parametrize("batch_norm", [True, False])
def test_training_tower_with_in_place_relu_has_the_out_of_place_gradients(batch_norm: bool) -> None:
    """The tower's ReLU runs in place; outputs and every gradient equal out-of-place ReLU's."""
    torch.manual_seed(0)
    mlp = MLP(6, Tower(hidden=(5, 4), batch_norm=batch_norm), output_dim=1)
    assert all(m.inplace for m in mlp.net if isinstance(m, nn.ReLU))
    reference = MLP(6, Tower(hidden=(5, 4), batch_norm=batch_norm), output_dim=1)
    reference.load_state_dict(mlp.state_dict())
    for m in reference.net:
        if isinstance(m, nn.ReLU):
            m.inplace = False
    x = torch.randn(16, 6)
    out, ref = mlp(x), reference(x)
    torch.testing.assert_close(out, ref)
    out.pow(2).sum().backward()
    ref.pow(2).sum().backward()
    for p, q in zip(mlp.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad)
