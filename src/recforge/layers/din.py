"""Deep Interest Network layers: the local activation unit and attention pooling.

Zhou et al., "Deep Interest Network for Click-Through Rate Prediction", KDD 2018.

The local activation unit scores each user behaviour ``v_i`` against the candidate ``v_a`` from
the four-way concatenation ``[v_i, v_a, v_i - v_a, v_i * v_a]`` through a small MLP ending in one
weight, and the user representation is the weighted sum ``v_U(A) = sum_i a(v_i, v_a) v_i`` over
the real (unpadded) behaviours. The paper deliberately does not normalise the weights with a
softmax, so that their sum keeps the intensity of the user's interest; a softmax is an option.
The unit's MLP is the shared :class:`~recforge.layers.mlp.MLP`, whose activations include Dice
(:class:`~recforge.layers.mlp.Dice`).
"""

from __future__ import annotations

import torch
from torch import nn

from recforge.layers.embedding import length_mask, mask_rows
from recforge.layers.mlp import MLP, Tower

_PAPER_UNIT = Tower(hidden=(36,), activation="dice")  # the paper's unit: 36 units with Dice


class ActivationUnit(nn.Module):
    """DIN's local activation unit: one weight per behaviour from ``[v_i, v_a, v_i-v_a, v_i*v_a]``.

    Args:
        dim: Width of a behaviour vector ``v_i`` and of the candidate ``v_a``.
        tower: The unit's MLP (the paper: one layer of 36 with Dice, ``prelu``, ``sigmoid`` ...).
        softmax: Normalise the weights over the real behaviours (off in the paper).

    Shape:
        keys ``(B, L, D)``, query ``(B, D)``, lengths ``(B,)`` -> weights ``(B, L)``; padded
        positions get exactly 0.
    """

    def __init__(self, dim: int, tower: Tower = _PAPER_UNIT, softmax: bool = False) -> None:
        super().__init__()
        self.softmax = softmax
        self.mlp = MLP(4 * dim, tower, output_dim=1)

    @staticmethod
    def features(keys: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """The unit's input ``[v_i, v_a, v_i - v_a, v_i * v_a]``: ``(B, L, 4D)``."""
        q = query.unsqueeze(1).expand_as(keys)  # (B, L, D)
        return torch.cat([keys, q, keys - q, keys * q], dim=-1)

    def first_layer(
        self, keys: torch.Tensor, query: torch.Tensor, rows: torch.Tensor
    ) -> torch.Tensor:
        """The MLP's first linear layer on ``[k, q, k - q, k * q]``, without building it.

        With ``W = [W_k, W_q, W_d, W_p]`` split by the four parts,
        ``W [k; q; k-q; k*q] + b = (W_k + W_d) k + W_p (k * q) + ((W_q - W_d) q + b)``: the
        candidate's term is computed once per sample rather than once per behaviour, and the
        ``(R, 4D)`` input is never materialised. Exactly the paper's unit (same parameters).

        Shape:
            keys ``(R, D)`` (real behaviours), query ``(B, D)``, rows ``(R,)`` (each behaviour's
            sample) -> ``(R, H)``.
        """
        first = self.mlp.net[0]
        w_k, w_q, w_d, w_p = first.weight.split(keys.shape[-1], dim=1)
        per_sample = torch.nn.functional.linear(query, w_q - w_d, first.bias)  # (B, H)
        # index_select, not [rows]: its backward is an index_add (parallel), where advanced
        # indexing's is a serial accumulating index_put (2.7x slower for (R, 80) on one thread)
        q = query.index_select(0, rows)
        per_behaviour = torch.cat([keys, keys * q], dim=-1)  # (R, 2D)
        out = per_sample.index_select(0, rows)  # (R, H), a fresh tensor: accumulate into it
        weight = torch.cat([w_k + w_d, w_p], 1).T  # (2D, H)
        # in place, so no (R, H) copy; in-place ops are outside autocast, so the operands take
        # the dtype autocast gave ``per_sample`` (bfloat16 under ``train.bf16``)
        return out.addmm_(per_behaviour.to(out.dtype), weight.to(out.dtype))

    def real_weights(
        self, keys: torch.Tensor, query: torch.Tensor, rows: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """The weights of the real behaviours only.

        Shape:
            keys ``(R, D)`` (the real behaviours, in row-major order of ``mask``), query
            ``(B, D)``, rows ``(R,)`` (each behaviour's sample), mask ``(B, L)`` -> ``(R,)``.
        """
        hidden = self.first_layer(keys, query, rows)  # (R, H)
        real_scores = self.mlp.forward_from(1, hidden).squeeze(-1)  # (R,)
        if not self.softmax:
            return real_scores
        # a finite fill keeps rows without any behaviour free of NaN (they have no weights)
        scores = real_scores.new_full(mask.shape, -1e9).masked_scatter(mask, real_scores)
        return torch.softmax(scores, dim=-1)[mask]

    def forward(
        self, keys: torch.Tensor, query: torch.Tensor, lengths: torch.Tensor
    ) -> torch.Tensor:
        B, L, _ = keys.shape  # (B, L, D)
        mask = length_mask(lengths, L)  # (B, L)
        # score the real behaviours only (padding costs nothing and cannot leak in)
        weights = self.real_weights(keys[mask], query, mask_rows(mask), mask)  # (R,)
        return weights.new_zeros(B, L).masked_scatter(mask, weights)


class AttentionPooling(nn.Module):
    """Masked weighted sum pooling ``v_U = sum_i a(v_i, v_a) v_i`` (DIN, Eq. 3).

    Args:
        unit: The activation unit that weighs each behaviour.

    Shape:
        keys ``(B, L, D)``, query ``(B, D)``, lengths ``(B,)`` -> pooled ``(B, D)`` and the
        weights ``(B, L)``.
    """

    def __init__(self, unit: ActivationUnit) -> None:
        super().__init__()
        self.unit = unit

    def forward(
        self, keys: torch.Tensor, query: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        weights = self.unit(keys, query, lengths)  # (B, L), zero on padding
        pooled = torch.einsum("bl,bld->bd", weights, keys)  # (B, D)
        return pooled, weights
