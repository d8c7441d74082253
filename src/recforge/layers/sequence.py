"""Recurrent layers over padded behaviour sequences: GRU and DIEN's attentional GRUs.

Zhou et al., "Deep Interest Evolution Network for Click-Through Rate Prediction", AAAI 2019.

:class:`MaskedGRU` is a GRU with the exact parameterisation of :class:`torch.nn.GRU` (gates in
the order reset, update, new; ``weight_ih (3H, I)``, ``weight_hh (3H, H)``)::

    r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
    z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)          # keep gate (torch convention)
    n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}

The paper writes the same update with ``u_t = 1 - z_t`` weighting the new content. The
attentional variants of DIEN's interest evolving layer (Sec. 4.3) take an attention score
``a_t`` per step:

* AIGRU: the input is scaled, ``x'_t = a_t * x_t``, then a plain GRU step;
* AGRU: the attention replaces the update gate, ``h_t = (1 - a_t) h_{t-1} + a_t n_t``;
* AUGRU: the attention scales the update gate, ``u'_t = a_t u_t``,
  ``h_t = (1 - u'_t) h_{t-1} + u'_t n_t`` (Eq. 6-7);
* ``augru_released``: the AUGRU of the authors' released code (``VecAttGRUCell`` in
  mouna99/dien ``script/utils.py``), which scales the *keep* gate instead,
  ``z'_t = (1 - a_t) z_t``, ``h_t = z'_t h_{t-1} + (1 - z'_t) n_t``: with ``a_t = 0`` it is a
  plain GRU step (the paper's keeps the state), with ``a_t = 1`` it takes the candidate whole
  (the paper's is a plain GRU step). The two agree only in that a larger ``a_t`` updates more.

Recurrences are vectorised over the batch: one Python step per time position, never per
sample. Sequences are left-aligned with true ``lengths``; at padded positions the state is
carried unchanged and the output is zero, so padding never changes a result. Training runs
the loop as one autograd node with a hand-written backward (:func:`masked_recurrence`), held
to the same loop in autograd ops (``MaskedGRU._reference_steps``) by
``tests/layers/test_sequence_fused.py``; on DIEN's harness shapes (batch 4096, history 50,
width 32) one AUGRU's forward and backward take about 80 ms against 180 ms
(``benchmarks/results/dien_speed_s9.md``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from recforge.features import Batch, Schema, SequenceField
from recforge.layers.embedding import TABLE_INIT_STD, FeatureEmbedding, length_mask, mask_rows

log = logging.getLogger(__name__)

Mode = Literal["gru", "aigru", "agru", "augru", "augru_released"]
MODES: tuple[str, ...] = ("gru", "aigru", "agru", "augru", "augru_released")
GATED = ("agru", "augru", "augru_released")  # the modes whose gates read the attention


def static_graph() -> bool:
    """True while ``torch.jit.trace``, ``torch.onnx.export`` or ``torch.export`` record a graph.

    Shortcuts that read the data on the host (the longest length, the rows still active at a
    step) would be frozen into such a graph as constants; the layers below switch to masked,
    shape-stable computations with the same results while it is true.
    """
    return torch.jit.is_tracing() or torch.compiler.is_exporting()


class MaskedGRU(nn.Module):
    """A single-layer GRU over left-aligned padded sequences, with optional attention gating.

    Args:
        input_dim: Width of each input vector.
        hidden_dim: Width of the hidden state.
        mode: ``gru``, ``aigru``, ``agru``, ``augru`` or ``augru_released`` (all but ``gru``
            need ``attention``).

    Shape:
        x ``(B, L, I)``, lengths ``(B,)``, attention ``(B, L)`` -> outputs ``(B, L, H)`` (zero
        on padding) and the final state ``(B, H)`` (the state after each row's last real step;
        ``h0`` or zeros for empty rows).
    """

    def __init__(self, input_dim: int, hidden_dim: int, mode: Mode = "gru") -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"unknown GRU mode {mode!r}; choose from {MODES}")
        self.mode = mode
        self.hidden_dim = hidden_dim
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden_dim, input_dim))
        self.weight_hh = nn.Parameter(torch.empty(3 * hidden_dim, hidden_dim))
        self.bias_ih = nn.Parameter(torch.empty(3 * hidden_dim))
        self.bias_hh = nn.Parameter(torch.empty(3 * hidden_dim))
        bound = 1.0 / math.sqrt(hidden_dim)  # torch.nn.GRU's initialisation
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    @torch.no_grad()
    def load_from_torch(self, gru: nn.GRU) -> None:
        """Copy the weights of a single-layer unidirectional ``nn.GRU``."""
        self.weight_ih.copy_(gru.weight_ih_l0)
        self.weight_hh.copy_(gru.weight_hh_l0)
        self.bias_ih.copy_(gru.bias_ih_l0)
        self.bias_hh.copy_(gru.bias_hh_l0)

    def forward(
        self,
        x: torch.Tensor,
        lengths: torch.Tensor,
        attention: torch.Tensor | None = None,
        h0: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        B, L, _ = x.shape
        if self.mode != "gru" and attention is None:
            raise ValueError(f"mode {self.mode!r} needs attention scores (B, L)")
        if self.mode == "aigru":
            x = x * attention.unsqueeze(-1)  # type: ignore[union-attr]
        if static_graph():
            return self._masked_steps(x, lengths, attention, h0)
        if self.mode == "gru" and not torch.is_grad_enabled():
            # inference (evaluation, predict, serving): the fused kernel's forward was ~1.5x the
            # autograd loop's speed; its backward on CPU is ~5x slower than the loop's, so
            # training keeps the loop (benchmarks/results/bench_dien_gru.md)
            return self._fused(x, lengths, h0)
        return self._steps(x, lengths, attention, h0)

    def _fused(
        self, x: torch.Tensor, lengths: torch.Tensor, h0: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The plain GRU through PyTorch's fused kernel on packed sequences (no Python loop
        over the steps), with this module's parameters; equal to :meth:`_steps`, gradients
        included (used without gradients only: see :meth:`forward`)."""
        B, L, _ = x.shape
        empty = lengths <= 0
        packed = nn.utils.rnn.pack_padded_sequence(
            x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
        )
        hx = None if h0 is None else h0.unsqueeze(0)
        params = {
            "weight_ih_l0": self.weight_ih,
            "weight_hh_l0": self.weight_hh,
            "bias_ih_l0": self.bias_ih,
            "bias_hh_l0": self.bias_hh,
        }
        out, h = torch.func.functional_call(self._shape_gru(x), params, (packed, hx))
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=L)
        h = h[0]
        if bool(empty.any()):  # a row without steps keeps h0 (or zeros) and outputs nothing
            start = torch.zeros_like(h) if h0 is None else h0
            h = torch.where(empty[:, None], start, h)
            out = out.masked_fill(empty[:, None, None], 0.0)
        return out, h

    def _shape_gru(self, x: torch.Tensor) -> nn.GRU:
        """An ``nn.GRU`` of this module's shape whose own parameters are never used (the call
        substitutes this module's); built once per device and dtype, kept out of state_dict."""
        key = (x.device, x.dtype)
        cached = self.__dict__.get("_gru_shell")
        if cached is None or cached[0] != key:
            shell = nn.GRU(self.weight_ih.shape[1], self.hidden_dim, batch_first=True)
            cached = (key, shell.to(device=x.device, dtype=x.dtype).requires_grad_(False))
            self.__dict__["_gru_shell"] = cached
        return cached[1]

    def _steps(
        self,
        x: torch.Tensor,
        lengths: torch.Tensor,
        attention: torch.Tensor | None,
        h0: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The recurrence step by step on the active rows: :func:`masked_recurrence`, a loop
        without autograd and a hand-written backward (training, and every mode's inference but
        the plain GRU's); :meth:`_reference_steps` under autocast (its ops' dtype policy)."""
        if torch.is_autocast_enabled(x.device.type):
            return self._reference_steps(x, lengths, attention, h0)
        # rows sorted by length (longest first): at step t the first n_t of them are the ones
        # still inside their sequence
        order = torch.argsort(lengths, descending=True, stable=True)
        counts = _active_counts(lengths[order], x.shape[1])
        h = x.new_zeros(x.shape[0], self.hidden_dim) if h0 is None else h0
        att = attention.to(x.dtype) if attention is not None and self.mode in GATED else None
        weights = (self.weight_ih, self.bias_ih, self.weight_hh, self.bias_hh)
        return masked_recurrence(x, h, att, weights, order, counts, self.mode)

    def _reference_steps(
        self,
        x: torch.Tensor,
        lengths: torch.Tensor,
        attention: torch.Tensor | None,
        h0: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The recurrence step by step in autograd ops, on the active rows only: the reference
        that :func:`masked_recurrence` is tested against (and the path under autocast)."""
        B, L, _ = x.shape
        H = self.hidden_dim
        # rows sorted by length (longest first): at step t only the first n_t rows are still
        # inside their sequence, so each step computes on exactly the real positions
        order = torch.argsort(lengths, descending=True, stable=True)
        inverse = torch.argsort(order)
        x, lengths = x[order], lengths[order]
        gi_all = torch.nn.functional.linear(x, self.weight_ih, self.bias_ih)  # (B, L, 3H)
        active_counts = _active_counts(lengths, L)
        h = x.new_zeros(B, H) if h0 is None else h0[order]
        att_steps = None
        if attention is not None and self.mode in GATED:
            att_steps = attention[order].unsqueeze(-1).unbind(1)
        # unbind once: indexing [:, t] in the loop would make backward build L full-size grads
        gi_steps = gi_all.unbind(1)
        outputs = []
        for t in range(L):
            n = active_counts[t]
            if n == 0:
                break
            h_prev = h[:n]
            gh = torch.nn.functional.linear(h_prev, self.weight_hh, self.bias_hh)  # (n, 3H)
            z, cand = _gru_gates(gi_steps[t][:n], gh, H)
            keep = z if att_steps is None else _attention_keep(self.mode, att_steps[t][:n], z)
            new_h = keep * h_prev + (1.0 - keep) * cand
            # finished rows (n: onwards) carry their state unchanged; padded outputs are 0
            h = torch.cat([new_h, h[n:]], dim=0) if n < B else new_h
            outputs.append(torch.nn.functional.pad(new_h, (0, 0, 0, B - n)))
        out = torch.stack(outputs, dim=1) if outputs else x.new_zeros(B, 0, H)
        if out.shape[1] < L:
            out = torch.nn.functional.pad(out, (0, 0, 0, L - out.shape[1]))
        return out[inverse], h[inverse]

    def _masked_steps(
        self,
        x: torch.Tensor,
        lengths: torch.Tensor,
        attention: torch.Tensor | None,
        h0: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The same recurrence over all rows and all ``L`` steps, masked (graph export).

        No host sync and no data-dependent shape: every step updates every row and
        ``torch.where`` keeps the state of rows past their length, so the outputs equal those
        of the active-prefix loop in :meth:`forward`.
        """
        H = self.hidden_dim
        L = x.shape[1]
        gi_all = torch.nn.functional.linear(x, self.weight_ih, self.bias_ih)  # (B, L, 3H)
        valid = length_mask(lengths, L).unsqueeze(-1)
        h = torch.zeros_like(gi_all[:, 0, :H]) if h0 is None else h0
        outputs = []
        for t in range(L):
            gh = torch.nn.functional.linear(h, self.weight_hh, self.bias_hh)  # (B, 3H)
            z, cand = _gru_gates(gi_all[:, t], gh, H)
            if attention is None or self.mode not in GATED:
                keep = z
            else:
                keep = _attention_keep(self.mode, attention[:, t, None], z)
            new_h = keep * h + (1.0 - keep) * cand
            step = valid[:, t]  # (B, 1)
            h = torch.where(step, new_h, h)
            outputs.append(torch.where(step, new_h, torch.zeros_like(new_h)))
        return torch.stack(outputs, dim=1), h


def _gru_gates(gi: torch.Tensor, gh: torch.Tensor, H: int) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: N803
    """One GRU step's keep gate ``z_t`` and candidate ``n_t`` (torch's gate order r, z, n) from
    the input and hidden projections ``(n, 3H)``, in autograd ops."""
    r = torch.sigmoid(gi[:, :H] + gh[:, :H])
    z = torch.sigmoid(gi[:, H : 2 * H] + gh[:, H : 2 * H])  # keep gate
    return z, torch.tanh(gi[:, 2 * H :] + r * gh[:, 2 * H :])


def _attention_keep(mode: str, a: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The weight of ``h_{t-1}`` in ``h_t`` for the attention-gated modes (``z``: GRU keep gate).

    AGRU: update = ``a_t``; AUGRU (paper): update = ``a_t (1 - z_t)``; the released code's
    AUGRU: keep = ``(1 - a_t) z_t``.
    """
    if mode == "agru":
        return 1.0 - a
    if mode == "augru":
        return 1.0 - a * (1.0 - z)
    return (1.0 - a) * z


def _active_counts(sorted_lengths: torch.Tensor, steps: int) -> list[int]:
    """Rows still inside their sequence at each step, for lengths sorted longest first (one
    host sync per call, not per step)."""
    t = torch.arange(steps, device=sorted_lengths.device)
    return (sorted_lengths[None, :] > t[:, None]).sum(1).tolist()


Weights = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def masked_recurrence(
    x: torch.Tensor,
    h0: torch.Tensor,
    att: torch.Tensor | None,
    weights: Weights,
    order: torch.Tensor,
    counts: list[int],
    mode: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The recurrence of :class:`MaskedGRU` on the active rows, as one autograd node.

    The forward runs the steps without building a graph and keeps each step's gates; the
    backward is a hand-written loop back through the steps (:class:`_MaskedRecurrence`), equal
    to autograd's through :meth:`MaskedGRU._reference_steps`. Without gradients it runs the
    forward loop alone. Step ``t`` gathers its active rows ``order[:n_t]`` (the rows sorted by
    length, longest first) and scatters its states back, so no ``(B, L, .)`` block is permuted
    or built beyond the output, and every tensor of the loop is one step's: buffers of a few
    times ``(B, L, H)`` would be fresh ``mmap`` pages on every call, whose first writes cost
    more than the arithmetic.

    Args:
        x: Inputs ``(B, L, I)``.
        h0: Initial states ``(B, H)``.
        att: Attention ``(B, L)`` for the gated modes (``agru``, ``augru``,
            ``augru_released``), else ``None``.
        weights: ``weight_ih (3H, I)``, ``bias_ih (3H,)``, ``weight_hh (3H, H)``,
            ``bias_hh (3H,)``.
        order: The rows sorted by length, longest first ``(B,)``.
        counts: Rows active at each of the ``L`` steps (non-increasing).
        mode: The :class:`MaskedGRU` mode (``aigru`` scales its input beforehand, so it runs
            as ``gru`` here).

    Returns:
        Outputs ``(B, L, H)`` (zero past each row's length) and the final states ``(B, H)``.
    """
    if att is None or mode not in GATED:
        att, mode = None, "gru"
    tensors = (x, h0, att, *weights)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return _MaskedRecurrence.apply(x, h0, att, *weights, order, counts, mode)
    out, last, _ = _recurrence_forward(x, h0, att, weights, order, counts, mode, save=False)
    return out, last


def _keep_weight(
    mode: str, z: torch.Tensor, a: torch.Tensor | None, one_minus_a: torch.Tensor | None
) -> torch.Tensor:
    """:func:`_attention_keep` from ``a`` and ``1 - a`` (``(n, 1)`` columns) in at most one
    op: AUGRU's ``1 - a (1 - z) = (1 - a) + a z``."""
    if mode == "gru":
        return z
    if mode == "agru":
        return one_minus_a  # type: ignore[return-value]
    if mode == "augru":
        return torch.addcmul(one_minus_a, a, z)  # type: ignore[arg-type]
    return z * one_minus_a  # augru_released


def _sorted_attention(
    att: torch.Tensor | None, order: torch.Tensor
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``a`` and ``1 - a`` time-major with the rows in ``order``: ``(L, B, 1)`` each, so that
    step ``t``'s active rows are the slice ``[t, :n]`` (``None`` without attention)."""
    if att is None:
        return None, None
    a = att.t().index_select(1, order).unsqueeze(-1)
    return a, 1.0 - a


StepState = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _recurrence_forward(
    x: torch.Tensor,
    h0: torch.Tensor,
    att: torch.Tensor | None,
    weights: Weights,
    order: torch.Tensor,
    counts: list[int],
    mode: str,
    save: bool,
) -> tuple[torch.Tensor, torch.Tensor, list[StepState]]:
    """The forward loop of :func:`masked_recurrence`.

    Each step computes ``gh = W_hh h + b_hh``, turns its first ``2H`` columns into
    ``[r, z]`` in place (one sigmoid for both gates), the candidate
    ``n = tanh(gi_n + r * gh_n)`` and ``h = n + keep * (h_prev - n)`` (the reference's
    ``keep * h_prev + (1 - keep) * n``, one ``lerp``). With ``save`` each step's input rows
    ``(n, I)``, ``[r, z, gh_n]`` ``(n, 3H)``, ``n``, ``h`` and ``keep`` ``(n, H)`` (``(n, 1)``
    for AGRU) are returned for the backward.
    """
    weight_ih, bias_ih, weight_hh, bias_hh = weights
    B, L, _ = x.shape
    H = weight_hh.shape[1]
    out = x.new_zeros(B, L, H)
    last = h0.clone()  # rows without steps keep h0
    w_ih, w_hh = weight_ih.t(), weight_hh.t()
    saved: list[StepState] = []
    h = h0.index_select(0, order)  # (B, H), longest rows first
    a, one_minus_a = _sorted_attention(att, order)
    for t in range(L):
        n = counts[t]
        if n == 0:
            break
        idx = order[:n]
        hp = h[:n]
        xt = x[:, t].index_select(0, idx)  # (n, I)
        gi = torch.addmm(bias_ih, xt, w_ih)  # (n, 3H)
        g = torch.addmm(bias_hh, hp, w_hh)  # (n, 3H) -> [r, z, gh_n]
        g[:, : 2 * H].add_(gi[:, : 2 * H]).sigmoid_()
        c = torch.addcmul(gi[:, 2 * H :], g[:, :H], g[:, 2 * H :]).tanh_()  # candidate n_t
        at, keep_a = (None, None) if a is None else (a[t, :n], one_minus_a[t, :n])  # type: ignore[index]
        keep = _keep_weight(mode, g[:, H : 2 * H], at, keep_a)
        h = torch.lerp(c, hp, keep)  # (n, H): n + keep * (h_prev - n)
        out[:, t].index_copy_(0, idx, h)
        done = counts[t + 1] if t + 1 < L else 0
        if done < n:  # rows order[done:n] took their last step
            last.index_copy_(0, order[done:n], h[done:])
        if save:
            saved.append((xt, g, c, h, keep))
    return out, last, saved


class _MaskedRecurrence(torch.autograd.Function):
    """:func:`masked_recurrence` as one autograd node (backpropagation through time by hand)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        x: torch.Tensor,
        h0: torch.Tensor,
        att: torch.Tensor | None,
        weight_ih: torch.Tensor,
        bias_ih: torch.Tensor,
        weight_hh: torch.Tensor,
        bias_hh: torch.Tensor,
        order: torch.Tensor,
        counts: list[int],
        mode: str,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        weights = (weight_ih, bias_ih, weight_hh, bias_hh)
        out, last, saved = _recurrence_forward(x, h0, att, weights, order, counts, mode, True)
        ctx.set_materialize_grads(False)  # an unused output's grad stays None, not zeros
        ctx.save_for_backward(h0, att, weight_ih, weight_hh, order)
        ctx.steps, ctx.counts, ctx.mode = saved, counts, mode  # type: ignore[attr-defined]
        ctx.x_shape = x.shape  # type: ignore[attr-defined]
        return out, last

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        d_out: torch.Tensor | None,
        d_last: torch.Tensor | None,
    ) -> tuple[torch.Tensor | None, ...]:
        h0, att, weight_ih, weight_hh, order = ctx.saved_tensors  # type: ignore[attr-defined]
        saved: list[StepState] = ctx.steps  # type: ignore[attr-defined]
        counts: list[int] = ctx.counts  # type: ignore[attr-defined]
        mode: str = ctx.mode  # type: ignore[attr-defined]
        B, L, _ = ctx.x_shape  # type: ignore[attr-defined]
        H = weight_hh.shape[1]
        # d loss / d h per row (longest rows first): starts as the final state's grad; a row
        # past its last step carries its state unchanged, so its grad waits there until then
        dh = h0.new_zeros(B, H) if d_last is None else d_last.index_select(0, order)
        dx = weight_ih.new_zeros(ctx.x_shape)  # type: ignore[attr-defined]
        a, one_minus_a = _sorted_attention(att, order)
        d_att = None if att is None else att.new_zeros(L, B)  # time-major, rows in order
        d_w_ih, d_w_hh = torch.zeros_like(weight_ih), torch.zeros_like(weight_hh)
        d_b_ih, d_b_hh = [], []
        h0_sorted = h0.index_select(0, order) if saved else h0
        for t in range(len(saved) - 1, -1, -1):
            n = counts[t]
            idx = order[:n]
            xt, g, c, _, keep = saved[t]
            hp = (h0_sorted if t == 0 else saved[t - 1][3])[:n]
            r, z, ghn = g[:, :H], g[:, H : 2 * H], g[:, 2 * H :]
            grad = dh[:n]  # d h_t
            if d_out is not None:
                grad = grad + d_out[:, t].index_select(0, idx)
            # h = n + keep * (h_prev - n)
            d_keep = grad * (hp - c)
            d_carry = grad * keep  # d h_prev, direct
            d_gi = torch.empty_like(g)
            d_gh = torch.empty_like(g)
            d_cand = d_gi[:, 2 * H :]  # d (gi_n + r * gh_n)
            torch.ops.aten.tanh_backward.grad_input(grad - d_carry, c, grad_input=d_cand)
            d_rz = d_gh[:, : 2 * H]
            torch.mul(d_cand, ghn, out=d_rz[:, :H])  # d r
            dz = d_rz[:, H:]
            da = None
            if mode == "gru":
                dz.copy_(d_keep)
            elif mode == "agru":  # keep = 1 - a
                dz.zero_()
                da = d_keep.sum(1)
            elif mode == "augru":  # keep = (1 - a) + a z
                torch.mul(d_keep, a[t, :n], out=dz)  # type: ignore[index]
                da = (d_keep * (1.0 - z)).sum(1)
            else:  # augru_released: keep = (1 - a) z
                torch.mul(d_keep, one_minus_a[t, :n], out=dz)  # type: ignore[index]
                da = (d_keep * z).sum(1)
            if da is not None:  # d keep / d a is -(...) in every gated mode
                torch.neg(da, out=d_att[t, :n])  # type: ignore[index]
            torch.ops.aten.sigmoid_backward.grad_input(d_rz, g[:, : 2 * H], grad_input=d_rz)
            torch.mul(d_cand, r, out=d_gh[:, 2 * H :])  # d gh_n
            d_gi[:, : 2 * H] = d_rz
            torch.addmm(d_carry, d_gh, weight_hh, out=dh[:n])
            dx[:, t].index_copy_(0, idx, d_gi @ weight_ih)
            d_w_ih.addmm_(d_gi.t(), xt)
            d_w_hh.addmm_(d_gh.t(), hp)
            d_b_ih.append(d_gi.sum(0))
            d_b_hh.append(d_gh.sum(0))
        zero = weight_hh.new_zeros(weight_hh.shape[0])
        d_bias_ih = torch.stack(d_b_ih).sum(0) if d_b_ih else zero
        d_bias_hh = torch.stack(d_b_hh).sum(0) if d_b_hh else zero
        d_h0 = torch.empty_like(dh).index_copy_(0, order, dh)
        if d_att is not None:  # back to (B, L), rows in their own order
            d_att = torch.empty_like(att).index_copy_(0, order, d_att.t())
        return dx, d_h0, d_att, d_w_ih, d_bias_ih, d_w_hh, d_bias_hh, None, None, None


def resolve_behaviours(
    schema: Schema, pairs: Sequence[Sequence[str]] | None, exclude: Sequence[str] = ()
) -> tuple[tuple[str, str], ...]:
    """Behaviour (sequence field, candidate field) pairs, validated against the schema.

    ``None`` pairs every :class:`SequenceField` with its ``share_embedding_with`` target (the
    sequences without a target, and those named in ``exclude``, are left out). All pairs must
    describe the same behaviours (e.g. clicked item ids and their categories), so they share
    one length per row.
    """
    if pairs is None:
        pairs = [(s.name, s.share_embedding_with) for s in schema.sequence_fields]
        pairs = [(s, t) for s, t in pairs if t is not None and s not in exclude]
    out = []
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"a behaviour is [sequence_field, candidate_field], got {pair!r}")
        seq, target = str(pair[0]), str(pair[1])
        if not isinstance(schema.field(seq), SequenceField):
            raise ValueError(f"behaviour {seq!r} is not a sequence field")
        schema.sparse_index(target)  # raises when the candidate is not a sparse field
        out.append((seq, target))
    if not out:
        raise ValueError(
            "no behaviour sequences: declare a SequenceField with share_embedding_with, "
            "or set behaviours: [[sequence_field, candidate_field], ...]"
        )
    first = out[0][0]
    for seq, _ in out[1:]:
        declared = {schema.field(seq).aligned_with, schema.field(first).aligned_with}
        if not declared & {seq, first}:
            log.warning(
                "behaviour sequences %r and %r are not declared aligned: set aligned_with on "
                "one of them so that encoding checks they have one length per row",
                seq, first,
            )  # fmt: skip
    return tuple(out)


def behaviour_dim(embedding: FeatureEmbedding, pairs: tuple[tuple[str, str], ...]) -> int:
    """Width ``Dk`` of one behaviour vector: the sum of its fields' embedding dimensions."""
    return sum(embedding.table_of(t).dim for _, t in pairs)


def embed_behaviours(
    embedding: FeatureEmbedding, pairs: tuple[tuple[str, str], ...], batch: Batch
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Behaviours and candidate as concatenated field embeddings, from the same rows.

    One behaviour is ``[e_item; e_cat; ...]`` over the pairs, read from the tables of the
    candidate's fields, so behaviours and the candidate live in one space (DIN Sec. 4.3).

    Shape:
        -> keys ``(B, L', Dk)`` with ``L' = max(lengths)`` (at least 1), query ``(B, Dk)``,
        lengths ``(B,)`` (of the first sequence; the sequences of one behaviour are aligned).
    """
    lengths = batch.lengths[pairs[0][0]]
    # sequences are left-aligned: positions past the longest row are padding everywhere, so
    # cutting them is exact and saves the recurrences their steps
    if static_graph():  # a graph keeps the padded width (the cut would freeze a data value)
        keys = torch.cat([embedding.sequence(batch, s) for s, _ in pairs], dim=-1)
    else:
        width = _longest(lengths)
        keys = torch.cat([embedding.sequence(batch, s)[:, :width] for s, _ in pairs], dim=-1)
    return keys, _candidate(embedding, pairs, batch), lengths


def embed_real_behaviours(
    embedding: FeatureEmbedding, pairs: tuple[tuple[str, str], ...], batch: Batch
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The real behaviours only, as :func:`embed_behaviours` would give them after ``[mask]``.

    Only the real positions' ids are looked up, so the gathers and the embedding backward do
    not pay for padding, and no ``(B, L, Dk)`` block is built.

    Shape:
        -> keys ``(R, Dk)`` (row-major over the mask), query ``(B, Dk)``, rows ``(R,)`` (each
        behaviour's sample) and the mask ``(B, L')`` of the real positions.
    """
    lengths = batch.lengths[pairs[0][0]]
    mask = length_mask(lengths, _longest(lengths))
    keys = torch.cat(
        [embedding.lookup(s, batch.sequences[s][:, : mask.shape[1]][mask]) for s, _ in pairs],
        dim=-1,
    )
    return keys, _candidate(embedding, pairs, batch), mask_rows(mask), mask


def _longest(lengths: torch.Tensor) -> int:
    """The longest history of a batch (at least 1): the width every row can be cut to."""
    return max(int(lengths.max()), 1) if len(lengths) else 1


def _candidate(
    embedding: FeatureEmbedding, pairs: tuple[tuple[str, str], ...], batch: Batch
) -> torch.Tensor:
    """The candidate ``[e_item; e_cat; ...]`` over the pairs' target fields: ``(B, Dk)``."""
    return torch.cat([embedding.field(batch, t) for _, t in pairs], dim=-1)


def sample_behaviours(
    embedding: FeatureEmbedding,
    pairs: tuple[tuple[str, str], ...],
    shape: tuple[int, ...],
    device: torch.device,
) -> torch.Tensor:
    """Embeddings ``(*shape, Dk)`` of behaviours drawn uniformly from rows 1..vocab-1.

    Each field is drawn independently (the model does not know an item's category): the
    "uniform over the item table" negatives of DIEN's auxiliary loss.
    """
    parts = []
    for _, target in pairs:
        vocab = embedding.schema.vocab_of(embedding.schema.field(target))
        ids = torch.randint(1, max(vocab, 2), shape, device=device)
        parts.append(embedding.lookup(target, ids))
    return torch.cat(parts, dim=-1)


def kept_columns(embedding: FeatureEmbedding, skip: Sequence[str]) -> torch.Tensor | None:
    """Columns of ``embedding.flat(batch)`` left after dropping the fields named in ``skip``.

    Returns ``None`` when nothing is skipped (use ``flat`` as it is). Any field vector of the
    embedding can be skipped (sparse and dense fields when built with
    ``pool_sequences=False``, as the sequence models do).
    """
    if not skip:
        return None
    names = embedding.field_names
    unknown = set(skip) - set(names)
    if unknown:
        raise ValueError(f"skip_fields {sorted(unknown)} are not fields of the model's input")
    cols: list[int] = []
    start = 0
    for name, width in zip(names, embedding.output_dims, strict=True):
        if name not in skip:
            cols.extend(range(start, start + width))
        start += width
    return torch.tensor(cols, dtype=torch.long)


def init_tables(embedding: FeatureEmbedding, std: float | None) -> None:
    """Make the embedding tables ``N(0, std)`` draws; ``None`` keeps them as built (``N(0, 0.01)``).

    The behaviour models' option ``embedding_init_std`` (DeepCTR-Torch, torch-rechub and FuxiCTR
    draw from ``N(0, 1e-4)``). The tables' own draw is rescaled rather than redrawn, so the random
    stream, and with it every other parameter's initial value, is the same for any ``std``.
    """
    if std is None:
        return
    with torch.no_grad():
        for table in embedding.tables.values():
            table.weight.mul_(std / TABLE_INIT_STD)
