"""The fused recurrence (one autograd node, hand-written backward) against the reference loop.

``MaskedGRU._steps`` runs :func:`recforge.layers.sequence.masked_recurrence`; these tests hold
it to ``MaskedGRU._reference_steps`` (the same recurrence in autograd ops): outputs, final
states and every gradient, in every mode, with ragged lengths (empty rows, full rows).
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recforge.layers.sequence import MODES, MaskedGRU, masked_recurrence


def _run(
    gru: MaskedGRU,
    step_fn: str,
    x: torch.Tensor,
    lengths: torch.Tensor,
    att: torch.Tensor,
    h0: torch.Tensor | None,
    use_out: bool = True,
    use_last: bool = True,
) -> list[torch.Tensor]:
    """Outputs, final states and the gradients of x, att, h0 and every parameter."""
    leaves = [x, att, *([h0] if h0 is not None else []), *gru.parameters()]
    for t in leaves:
        t.grad = None
    inputs = x * att.unsqueeze(-1) if gru.mode == "aigru" else x  # forward's input scaling
    out, last = getattr(gru, step_fn)(inputs, lengths, att, h0)
    # weights that differ per position, so that a grad routed to the wrong step shows
    w_out = torch.linspace(-1.0, 2.0, out.numel(), dtype=out.dtype).view_as(out)
    w_last = torch.linspace(0.5, -1.5, last.numel(), dtype=last.dtype).view_as(last)
    loss = x.new_zeros(())
    if use_out:
        loss = loss + (out.sin() * w_out).sum()
    if use_last:
        loss = loss + (last.cos() * w_last).sum()
    if loss.requires_grad:  # the reference's outputs are constants when every row is empty
        loss.backward()
    grads = [t.grad if t.grad is not None else torch.zeros_like(t) for t in leaves]
    return [out.detach(), last.detach(), *grads]


def _case(
    mode: str, dtype: torch.dtype, lengths: list[int], steps: int, with_h0: bool, seed: int = 0
) -> tuple[MaskedGRU, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    torch.manual_seed(seed)
    gru = MaskedGRU(5, 7, mode).to(dtype)  # type: ignore[arg-type]
    B = len(lengths)
    x = torch.randn(B, steps, 5, dtype=dtype, requires_grad=True)
    att = torch.rand(B, steps, dtype=dtype, requires_grad=True)
    h0 = torch.randn(B, 7, dtype=dtype, requires_grad=True) if with_h0 else None
    return gru, x, torch.tensor(lengths), att, h0


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("with_h0", [False, True])
@pytest.mark.parametrize(
    ("dtype", "tol"), [(torch.float64, 1e-6), (torch.float32, 1e-4)], ids=["f64", "f32"]
)
def test_fused_equals_the_reference_with_every_gradient(
    mode: str, with_h0: bool, dtype: torch.dtype, tol: float
) -> None:
    """Unsorted ragged lengths with an empty row and full-length rows."""
    gru, x, lengths, att, h0 = _case(mode, dtype, [6, 0, 3, 1, 6, 2, 5], 6, with_h0)
    fused = _run(gru, "_steps", x, lengths, att, h0)
    ref = _run(gru, "_reference_steps", x, lengths, att, h0)
    params = ["w_ih", "w_hh", "b_ih", "b_hh"]
    names = ["out", "last", "x", "att", *(["h0"] if with_h0 else []), *params]
    for name, a, b in zip(names, fused, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol, msg=lambda m, n=name: f"{n}: {m}")
    out, last = fused[0], fused[1]
    assert torch.all(out[1] == 0) and torch.all(out[3, 1:] == 0)  # padding outputs nothing
    start = h0.detach()[1] if h0 is not None else torch.zeros(7, dtype=dtype)
    torch.testing.assert_close(last[1], start)  # an empty row keeps h0
    if with_h0:  # the empty row's h0 grad is the final state's grad alone
        assert fused[4][1].abs().sum() > 0


@pytest.mark.parametrize("mode", ["gru", "augru"])
@pytest.mark.parametrize(("use_out", "use_last"), [(True, False), (False, True)])
def test_one_output_unused(mode: str, use_out: bool, use_last: bool) -> None:
    """DIEN uses only the extractor's outputs and only the evolution's final state: the
    other output's grad never arrives (None in the backward)."""
    gru, x, lengths, att, h0 = _case(mode, torch.float64, [4, 2, 0, 4], 5, True, seed=3)
    fused = _run(gru, "_steps", x, lengths, att, h0, use_out, use_last)
    ref = _run(gru, "_reference_steps", x, lengths, att, h0, use_out, use_last)
    for a, b in zip(fused, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(
    mode=st.sampled_from(MODES),
    lengths=st.lists(st.integers(0, 7), min_size=1, max_size=9),
    extra=st.integers(0, 2),
    seed=st.integers(0, 1000),
)
def test_fused_equals_the_reference_on_random_lengths(
    mode: str, lengths: list[int], extra: int, seed: int
) -> None:
    """Any lengths (all empty, all full, ties), with padding past the longest row."""
    steps = max(max(lengths), 1) + extra
    gru, x, lens, att, h0 = _case(mode, torch.float64, lengths, steps, seed % 2 == 0, seed)
    fused = _run(gru, "_steps", x, lens, att, h0)
    ref = _run(gru, "_reference_steps", x, lens, att, h0)
    for a, b in zip(fused, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("mode", ["gru", "agru", "augru", "augru_released"])
def test_gradcheck(mode: str) -> None:
    """The hand-written backward against finite differences (float64), every input."""
    torch.manual_seed(1)
    B, L, I, H = 4, 3, 3, 2
    x = torch.randn(B, L, I, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(B, H, dtype=torch.float64, requires_grad=True)
    att = torch.rand(B, L, dtype=torch.float64, requires_grad=True)
    weights = [
        torch.randn(3 * H, I, dtype=torch.float64, requires_grad=True),
        torch.randn(3 * H, dtype=torch.float64, requires_grad=True),
        torch.randn(3 * H, H, dtype=torch.float64, requires_grad=True),
        torch.randn(3 * H, dtype=torch.float64, requires_grad=True),
    ]
    lengths = torch.tensor([3, 0, 1, 3])
    order = torch.argsort(lengths, descending=True, stable=True)
    counts = [int((lengths > t).sum()) for t in range(L)]

    def f(x, h0, att, w_ih, b_ih, w_hh, b_hh):  # noqa: ANN001, ANN202
        return masked_recurrence(x, h0, att, (w_ih, b_ih, w_hh, b_hh), order, counts, mode)

    assert torch.autograd.gradcheck(f, (x, h0, att, *weights))


def test_inference_runs_the_same_loop_without_a_graph() -> None:
    gru, x, lengths, att, h0 = _case("augru", torch.float32, [5, 0, 2, 5], 5, True)
    with torch.no_grad():
        out, last = gru(x, lengths, attention=att, h0=h0)
    assert not out.requires_grad
    ref_out, ref_last = gru._reference_steps(x, lengths, att, h0)
    torch.testing.assert_close(out, ref_out.detach())
    torch.testing.assert_close(last, ref_last.detach())


def test_training_forward_takes_the_fused_node() -> None:
    gru, x, lengths, att, _ = _case("augru", torch.float32, [3, 1], 3, False)
    out, last = gru(x, lengths, attention=att)
    assert type(out.grad_fn).__name__ == "_MaskedRecurrenceBackward"
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast keeps the reference's ops
        out, _ = gru(x, lengths, attention=att)
    assert type(out.grad_fn).__name__ != "_MaskedRecurrenceBackward"
