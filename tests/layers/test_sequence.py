"""GRU and DIEN's attentional GRUs against torch.nn.GRU, closed forms and masking."""

from __future__ import annotations

import pytest
import torch

from recforge.layers.sequence import MaskedGRU


def _gates(cell: MaskedGRU, x_t: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The GRU's keep gate ``z_t`` and candidate ``n_t`` at one step, written out."""
    H = cell.hidden_dim
    gi = x_t @ cell.weight_ih.T + cell.bias_ih
    gh = h @ cell.weight_hh.T + cell.bias_hh
    r = torch.sigmoid(gi[:, :H] + gh[:, :H])
    z = torch.sigmoid(gi[:, H : 2 * H] + gh[:, H : 2 * H])
    return z, torch.tanh(gi[:, 2 * H :] + r * gh[:, 2 * H :])


def _pair(mode: str = "gru") -> tuple[MaskedGRU, torch.nn.GRU]:
    torch.manual_seed(0)
    ref = torch.nn.GRU(5, 7, batch_first=True)
    ours = MaskedGRU(5, 7, mode)  # type: ignore[arg-type]
    ours.load_from_torch(ref)
    return ours, ref


def test_gru_matches_torch_on_unpadded_input() -> None:
    ours, ref = _pair()
    x = torch.randn(4, 9, 5)
    out, last = ours(x, torch.full((4,), 9))
    ref_out, ref_last = ref(x)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(last, ref_last[0])


def test_gru_with_padding_matches_torch_on_each_true_prefix() -> None:
    ours, ref = _pair()
    x = torch.randn(5, 6, 5)
    lengths = torch.tensor([3, 6, 0, 1, 6])  # unsorted, with an empty row
    out, last = ours(x, lengths)
    for b, n in enumerate(lengths.tolist()):
        if n == 0:
            assert torch.all(out[b] == 0) and torch.all(last[b] == 0)
            continue
        ref_out, ref_last = ref(x[b : b + 1, :n])
        torch.testing.assert_close(out[b, :n], ref_out[0])
        torch.testing.assert_close(last[b], ref_last[0, 0])
        assert torch.all(out[b, n:] == 0)


def test_appending_padding_changes_nothing() -> None:
    ours, _ = _pair("augru")
    x, att = torch.randn(2, 4, 5), torch.rand(2, 4)
    lengths = torch.tensor([4, 2])
    out, last = ours(x, lengths, attention=att)
    x2 = torch.cat([x, 9 * torch.randn(2, 3, 5)], dim=1)
    att2 = torch.cat([att, torch.rand(2, 3)], dim=1)
    out2, last2 = ours(x2, lengths, attention=att2)
    torch.testing.assert_close(out, out2[:, :4])
    torch.testing.assert_close(last, last2)


def test_augru_with_attention_one_equals_gru() -> None:
    ours, ref = _pair("augru")
    x = torch.randn(3, 5, 5)
    out, last = ours(x, torch.full((3,), 5), attention=torch.ones(3, 5))
    ref_out, ref_last = ref(x)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(last, ref_last[0])


@pytest.mark.parametrize("mode", ["augru", "agru"])
def test_attention_zero_keeps_previous_state(mode: str) -> None:
    ours, _ = _pair(mode)
    x = torch.randn(2, 4, 5)
    h0 = torch.randn(2, 7)
    out, last = ours(x, torch.full((2,), 4), attention=torch.zeros(2, 4), h0=h0)
    for t in range(4):
        torch.testing.assert_close(out[:, t], h0)
    torch.testing.assert_close(last, h0)


def test_agru_and_aigru_follow_their_equations() -> None:
    torch.manual_seed(1)
    x, att = torch.randn(2, 3, 5), torch.rand(2, 3)
    lengths = torch.full((2,), 3)
    plain, _ = _pair("gru")
    agru, _ = _pair("agru")
    aigru, _ = _pair("aigru")
    # AIGRU = GRU on attention-scaled inputs
    torch.testing.assert_close(
        aigru(x, lengths, attention=att)[0], plain(x * att.unsqueeze(-1), lengths)[0]
    )
    # AGRU: h_t = (1 - a_t) h_{t-1} + a_t n_t, with n_t the GRU candidate state
    H = 7
    h = torch.zeros(2, H)
    out, _ = agru(x, lengths, attention=att)
    for t in range(3):
        _, n = _gates(agru, x[:, t], h)
        h = (1 - att[:, t : t + 1]) * h + att[:, t : t + 1] * n
        torch.testing.assert_close(out[:, t], h)


def test_attention_modes_require_attention() -> None:
    with pytest.raises(ValueError):
        MaskedGRU(3, 4, "augru")(torch.randn(1, 2, 3), torch.tensor([2]))
    with pytest.raises(ValueError):
        MaskedGRU(3, 4, "lstm")  # type: ignore[arg-type]


@pytest.mark.parametrize("with_h0", [False, True])
def test_fused_gru_equals_the_step_loop_with_gradients(with_h0: bool) -> None:
    """The plain GRU's fused path (PyTorch's kernel on packed sequences, which inference
    uses); outputs, final states (empty rows keep h0) and every gradient equal the
    step-by-step recurrence's, and forward takes the fused path exactly when grad is off."""
    torch.manual_seed(5)
    gru = MaskedGRU(5, 7, "gru")
    lengths = torch.tensor([6, 0, 3, 1, 6])
    x = torch.randn(5, 6, 5, requires_grad=True)
    h0 = torch.randn(5, 7, requires_grad=True) if with_h0 else None
    results = []
    fused = lambda x, lengths, attention, h0: gru._fused(x, lengths, h0)  # noqa: E731
    for run in (fused, gru._steps):
        gru.zero_grad()
        for t in (x, h0):
            if t is not None:
                t.grad = None
        out, last = run(x, lengths, None, h0)
        (out.sin().sum() + last.cos().sum()).backward()
        grads = [p.grad.clone() for p in gru.parameters()] + [x.grad.clone()]
        results.append((out.detach(), last.detach(), grads, None if h0 is None else h0.grad))
    (out_a, last_a, grads_a, h0_a), (out_b, last_b, grads_b, h0_b) = results
    torch.testing.assert_close(out_a, out_b, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(last_a, last_b, rtol=1e-5, atol=1e-6)
    assert torch.all(out_a[1] == 0) and torch.all(out_a[3, 1:] == 0)
    for a, b in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    if with_h0:
        torch.testing.assert_close(last_a[1], h0[1].detach())
        torch.testing.assert_close(h0_a, h0_b, rtol=1e-4, atol=1e-5)


def test_forward_uses_the_fused_gru_only_without_gradients(monkeypatch) -> None:
    gru = MaskedGRU(5, 7, "gru")
    calls = []
    monkeypatch.setattr(gru, "_fused", lambda *a: calls.append("fused") or (None, None))
    monkeypatch.setattr(gru, "_steps", lambda *a: calls.append("steps") or (None, None))
    x, lengths = torch.randn(2, 3, 5), torch.tensor([3, 1])
    gru(x, lengths)
    with torch.no_grad():
        gru(x, lengths)
    assert calls == ["steps", "fused"]


def test_released_augru_scales_the_keep_gate() -> None:
    """The released code's AUGRU (``VecAttGRUCell``): ``z' = (1 - a) z``,
    ``h_t = z' h_{t-1} + (1 - z') n_t``; a plain GRU at ``a = 0``, the candidate at ``a = 1``."""
    torch.manual_seed(2)
    x, att = torch.randn(3, 4, 5), torch.rand(3, 4)
    lengths = torch.tensor([4, 2, 3])
    ours, ref = _pair("augru_released")
    H = 7
    h = torch.zeros(3, H)
    out, last = ours(x, lengths, attention=att)
    for t in range(4):
        z, n = _gates(ours, x[:, t], h)
        keep = (1 - att[:, t : t + 1]) * z
        step = (t < lengths)[:, None]
        h = torch.where(step, keep * h + (1 - keep) * n, h)
        torch.testing.assert_close(out[:, t], torch.where(step, h, torch.zeros_like(h)))
    torch.testing.assert_close(last, h)
    full = torch.full((3,), 4)
    ref_out, _ = ref(x)
    torch.testing.assert_close(ours(x, full, attention=torch.zeros(3, 4))[0], ref_out)
    zero_keep, _ = ours(x[:, :1], torch.ones(3, dtype=torch.long), attention=torch.ones(3, 1))
    _, cand = _gates(ours, x[:, 0], torch.zeros(3, H))
    torch.testing.assert_close(zero_keep[:, 0], cand)


@pytest.mark.parametrize("mode", ["agru", "augru", "augru_released"])
def test_export_path_equals_the_step_loop(mode: str) -> None:
    """The masked recurrence (graph export) and the active-rows loop give the same states."""
    torch.manual_seed(3)
    gru = MaskedGRU(5, 7, mode)  # type: ignore[arg-type]
    x, att = torch.randn(4, 6, 5), torch.rand(4, 6)
    lengths = torch.tensor([6, 0, 2, 5])
    out_a, last_a = gru._steps(x, lengths, att, None)
    out_b, last_b = gru._masked_steps(x, lengths, att, None)
    torch.testing.assert_close(out_a, out_b)
    torch.testing.assert_close(last_a, last_b)
