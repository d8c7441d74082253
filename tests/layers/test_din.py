"""DIN layers: the activation unit's input, masking of padding, Dice against its formula."""

from __future__ import annotations

import torch

from recforge.layers.din import ActivationUnit, AttentionPooling, Dice, FeedForward


def test_activation_unit_input_is_four_way_concatenation() -> None:
    torch.manual_seed(0)
    keys, query = torch.randn(2, 3, 4), torch.randn(2, 4)
    feats = ActivationUnit.features(keys, query)
    assert feats.shape == (2, 3, 16)
    for b in range(2):
        for i in range(3):
            v_i, v_a = keys[b, i], query[b]
            expected = torch.cat([v_i, v_a, v_i - v_a, v_i * v_a])
            torch.testing.assert_close(feats[b, i], expected)


def test_activation_unit_weight_is_mlp_of_the_concatenation() -> None:
    torch.manual_seed(1)
    unit = ActivationUnit(4, hidden=(5,), activation_name="prelu").eval()
    keys, query = torch.randn(2, 3, 4), torch.randn(2, 4)
    lengths = torch.tensor([3, 3])
    weights = unit(keys, query, lengths)
    for b in range(2):
        for i in range(3):
            x = torch.cat([keys[b, i], query[b], keys[b, i] - query[b], keys[b, i] * query[b]])
            torch.testing.assert_close(weights[b, i], unit.mlp(x[None]).squeeze())


def _padding_invariance(activation_name: str, softmax: bool, train: bool) -> None:
    torch.manual_seed(2)
    pool = AttentionPooling(4, (6,), activation_name, softmax)
    pool.train(train)
    keys = torch.randn(3, 5, 4)
    lengths = torch.tensor([5, 2, 0])
    query = torch.randn(3, 4)
    # train-mode Dice updates running statistics: restore them before the second pass
    state = {k: v.clone() for k, v in pool.state_dict().items()}
    pooled, weights = pool(keys, query, lengths)
    # garbage in the padded slots and more padded positions must not change anything
    longer = torch.cat([keys, 100 * torch.randn(3, 4, 4)], dim=1)
    longer[1, 2:] = 50.0
    pool.load_state_dict(state)
    pooled2, weights2 = pool(longer, query, lengths)
    torch.testing.assert_close(pooled, pooled2)
    torch.testing.assert_close(weights, weights2[:, :5])
    assert torch.all(weights2[1, 2:] == 0) and torch.all(weights2[2] == 0)
    assert torch.all(weights2[:, 5:] == 0)
    torch.testing.assert_close(pooled[2], torch.zeros(4))


def test_padding_never_receives_attention_dice_train_and_eval() -> None:
    _padding_invariance("dice", softmax=False, train=True)
    _padding_invariance("dice", softmax=False, train=False)


def test_padding_never_receives_attention_softmax() -> None:
    _padding_invariance("prelu", softmax=True, train=True)
    _padding_invariance("sigmoid", softmax=True, train=False)


def test_softmax_option_normalises_over_real_behaviours() -> None:
    torch.manual_seed(3)
    unit = ActivationUnit(4, (6,), "prelu", softmax=True)
    w = unit(torch.randn(2, 5, 4), torch.randn(2, 4), torch.tensor([3, 5]))
    torch.testing.assert_close(w.sum(dim=1), torch.ones(2))
    assert torch.all(w[0, 3:] == 0)


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


def test_feedforward_prelu_is_the_shared_mlp() -> None:
    ff = FeedForward(4, (3,), 1, "prelu")
    assert any(isinstance(m, torch.nn.PReLU) for m in ff.modules())
    assert ff(torch.randn(5, 4)).shape == (5, 1)
