"""DIN layers: the activation unit's input and weights, masking of padding."""

from __future__ import annotations

import torch

from recforge.layers.din import ActivationUnit, AttentionPooling
from recforge.layers.mlp import Tower


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
    unit = ActivationUnit(4, Tower((5,), "prelu")).eval()
    keys, query = torch.randn(2, 3, 4), torch.randn(2, 4)
    lengths = torch.tensor([3, 3])
    weights = unit(keys, query, lengths)
    for b in range(2):
        for i in range(3):
            x = torch.cat([keys[b, i], query[b], keys[b, i] - query[b], keys[b, i] * query[b]])
            torch.testing.assert_close(weights[b, i], unit.mlp(x[None]).squeeze())


def _padding_invariance(activation_name: str, softmax: bool, train: bool) -> None:
    torch.manual_seed(2)
    pool = AttentionPooling(ActivationUnit(4, Tower((6,), activation_name), softmax))
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
    unit = ActivationUnit(4, Tower((6,), "prelu"), softmax=True)
    w = unit(torch.randn(2, 5, 4), torch.randn(2, 4), torch.tensor([3, 5]))
    torch.testing.assert_close(w.sum(dim=1), torch.ones(2))
    assert torch.all(w[0, 3:] == 0)


def test_factored_first_layer_equals_the_concatenation_with_gradients() -> None:
    """The unit computes ``W [k, q, k-q, k*q] + b`` with the candidate's term once per sample;
    outputs and every parameter's and input's gradient equal the concatenated form's."""
    torch.manual_seed(4)
    for tower in (Tower((6, 3), "dice"), Tower((), "prelu")):
        unit = ActivationUnit(5, tower).train()
        keys = torch.randn(3, 7, 5, requires_grad=True)
        query = torch.randn(3, 5, requires_grad=True)
        lengths = torch.tensor([7, 2, 4])
        state = {k: v.clone() for k, v in unit.state_dict().items()}
        fast = unit(keys, query, lengths)
        (fast.square().sum()).backward()
        got = [p.grad.clone() for p in unit.parameters()] + [keys.grad, query.grad]

        unit.load_state_dict(state)
        unit.zero_grad()
        keys2, query2 = keys.detach().requires_grad_(), query.detach().requires_grad_()
        mask = torch.arange(7)[None] < lengths[:, None]
        rows = torch.arange(3)[:, None].expand(3, 7)[mask]
        real = ActivationUnit.features(keys2[mask][:, None], query2[rows])[:, 0]
        reference = torch.zeros(3, 7).masked_scatter(mask, unit.mlp(real).squeeze(-1))
        (reference.square().sum()).backward()
        expected = [p.grad for p in unit.parameters()] + [keys2.grad, query2.grad]
        torch.testing.assert_close(fast, reference, rtol=1e-6, atol=1e-6)
        for a, b in zip(got, expected, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
