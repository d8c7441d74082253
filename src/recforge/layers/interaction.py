"""Feature-interaction layers: factorization machine, bi-interaction pooling, pairwise products.

All layers take stacked field embeddings ``v`` of shape ``(B, F, D)`` (see
:class:`recforge.layers.FeatureEmbedding`) and are vectorised over pairs: none loops in Python
over examples or field pairs. Every layer over explicit field pairs (AFM's products here, PNN's
inner and outer products in :mod:`recforge.layers.product`) is a :class:`FieldPairs`, which
holds the pairs ``i < j`` of :func:`pair_indices` in one order.
"""

from __future__ import annotations

import sys

import torch
from torch import nn


class FMInteraction(nn.Module):
    """Second-order FM term ``sum_{i<j} <v_i, v_j>`` in O(kn) (Rendle, ICDM 2010).

    Uses ``1/2 * sum_k [(sum_i v_ik)^2 - sum_i v_ik^2]``.

    Shape:
        ``(B, F, D)`` -> ``(B,)``.
    """

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        if v.requires_grad and torch.is_grad_enabled() and not _exporting():
            return _FMPairwise.apply(v)
        square_of_sum = v.sum(dim=1).pow(2)  # (B, D)
        sum_of_square = v.pow(2).sum(dim=1)  # (B, D)
        return 0.5 * (square_of_sum - sum_of_square).sum(dim=1)


def _exporting() -> bool:
    """Under TorchScript or an ONNX export (which imported ``torch.onnx``; not imported here)."""
    if torch.jit.is_scripting() or torch.jit.is_tracing():
        return True
    onnx = sys.modules.get("torch.onnx")
    return onnx is not None and onnx.is_in_onnx_export()


class _FMPairwise(torch.autograd.Function):
    """The FM's pairwise term with a closed-form gradient, for training.

    ``y = 1/2 (||s||^2 - ||v||_F^2)`` with ``s = sum_i v_i``, so ``dy/dv_i = s - v_i``. Autograd
    of the textbook expression materialises ``v^2`` and makes four more passes over the
    ``(B, F, D)`` block in the backward; here the forward reads ``v`` twice and writes nothing
    of its size, and the backward makes two passes. On a memory-bound CPU step (DeepFM, 39
    fields x 16, batch 4096) that is most of the FM's cost.
    """

    @staticmethod
    def forward(ctx, v: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        s = v.sum(dim=1)  # (B, D)
        flat = v.reshape(v.shape[0], -1)
        out = 0.5 * (torch.linalg.vecdot(s, s) - torch.linalg.vecdot(flat, flat))
        ctx.save_for_backward(v, s)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        v, s = ctx.saved_tensors
        g = grad.to(v.dtype)
        out = v * g.neg()[:, None, None]  # -g v_i
        out += (s * g[:, None])[:, None, :]  # + g s
        return out


class BiInteraction(nn.Module):
    """Bi-interaction pooling of NFM (He & Chua, "Neural Factorization Machines for Sparse
    Predictive Analytics", SIGIR 2017), Eq. (4).

    ``f_BI(V_x) = sum_{i<j} x_i v_i ⊙ x_j v_j = 1/2 [(sum_i x_i v_i)^2 - sum_i (x_i v_i)^2]``,
    computed in O(kn); unlike :class:`FMInteraction` the ``D`` factors are not summed, so the
    result is a vector per example. The input vectors already carry ``x_i`` (1 for one-hot
    fields, the value for numerics; see :class:`FeatureEmbedding`).

    Shape:
        ``(B, F, D)`` -> ``(B, D)``.
    """

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        square_of_sum = v.sum(dim=1).pow(2)  # (B, D)
        sum_of_square = v.pow(2).sum(dim=1)  # (B, D)
        return 0.5 * (square_of_sum - sum_of_square)


def pair_indices(
    num_fields: int, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column indices of all pairs ``i < j`` in row-major order.

    Returns:
        ``(rows, cols)``, each ``(P,)`` int64 with ``P = F (F - 1) / 2``.
    """
    rows, cols = torch.triu_indices(num_fields, num_fields, offset=1, device=device)
    return rows, cols


class FieldPairs(nn.Module):
    """Base of the layers over field pairs ``i < j``.

    The pair order is row-major over ``i < j`` (``(0, 1), (0, 2), ..., (1, 2), ...``) and is
    kept in the (non-persistent) buffers ``rows`` / ``cols``, so callers can name the pairs.

    Args:
        num_fields: Number of fields ``F``.
    """

    def __init__(self, num_fields: int) -> None:
        super().__init__()
        rows, cols = pair_indices(num_fields)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)
        self.num_fields = num_fields

    @property
    def num_pairs(self) -> int:
        """``P = F (F - 1) / 2``."""
        return int(self.rows.numel())

    def pairs(self) -> list[tuple[int, int]]:
        """The ``(i, j)`` field indices of each pair, in output order."""
        return list(zip(self.rows.tolist(), self.cols.tolist(), strict=True))


class PairwiseProducts(FieldPairs):
    """Element-wise products ``v_i ⊙ v_j`` of every field pair ``i < j``.

    The pair-wise interaction layer of AFM (Xiao et al., IJCAI 2017), Eq. (2), pairs in the
    order of :class:`FieldPairs`.

    Args:
        num_fields: Number of fields ``F``.

    Shape:
        ``(B, F, D)`` -> ``(B, P, D)`` with ``P = F (F - 1) / 2``.
    """

    def __init__(self, num_fields: int) -> None:
        if num_fields < 2:
            raise ValueError(f"pairwise products need at least 2 fields, got {num_fields}")
        super().__init__(num_fields)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return v[:, self.rows] * v[:, self.cols]  # (B, P, D)
