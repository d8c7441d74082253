"""Deep Interest Network layers: the Dice activation and the local activation unit.

Zhou et al., "Deep Interest Network for Click-Through Rate Prediction", KDD 2018.

The local activation unit scores each user behaviour ``v_i`` against the candidate ``v_a`` from
the four-way concatenation ``[v_i, v_a, v_i - v_a, v_i * v_a]`` through a small MLP ending in one
weight, and the user representation is the weighted sum ``v_U(A) = sum_i a(v_i, v_a) v_i`` over
the real (unpadded) behaviours. The paper deliberately does not normalise the weights with a
softmax, so that their sum keeps the intensity of the user's interest; a softmax is an option.

Dice (Eq. 9-10) is a data-adaptive PReLU whose rectification point follows the input
distribution: ``f(s) = p(s) s + (1 - p(s)) alpha s`` with
``p(s) = sigmoid((s - E[s]) / sqrt(Var[s] + eps))``; training uses the mini-batch statistics and
evaluation the running averages. Padded positions are excluded from the statistics through a
mask, so padding never changes a Dice output.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from recforge.layers.mlp import MLP, activation


def length_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """Boolean ``(B, L)`` mask, True on the first ``lengths[b]`` positions of each row."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


class Dice(nn.Module):
    """Dice activation (DIN, Eq. 10) over the last dimension, with running statistics.

    Args:
        num_features: Size of the last dimension (statistics are kept per feature).
        eps: The epsilon of Eq. 10 (the paper uses 1e-8).
        momentum: Weight of the current batch in the running averages (PyTorch convention).

    Shape:
        ``(..., num_features)`` -> same shape; ``mask`` of shape ``(...)`` marks the rows that
        contribute to the batch statistics (e.g. real, unpadded behaviours).
    """

    def __init__(self, num_features: int, eps: float = 1e-8, momentum: float = 0.1) -> None:
        super().__init__()
        self.eps = eps
        self.momentum = momentum
        self.alpha = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, s: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.training:
            flat = s.reshape(-1, s.shape[-1])
            if mask is not None:
                flat = flat[mask.reshape(-1)]
            if flat.shape[0] > 0:
                mean = flat.mean(dim=0)
                var = flat.var(dim=0, unbiased=False)
                with torch.no_grad():
                    n = flat.shape[0]
                    unbiased = var * n / max(n - 1, 1)
                    self.running_mean.lerp_(mean.detach(), self.momentum)
                    self.running_var.lerp_(unbiased.detach(), self.momentum)
            else:  # nothing real in the batch: fall back to the running statistics
                mean, var = self.running_mean, self.running_var
        else:
            mean, var = self.running_mean, self.running_var
        p = torch.sigmoid((s - mean) / torch.sqrt(var + self.eps))  # Eq. 10
        return p * s + (1.0 - p) * self.alpha * s


class FeedForward(nn.Module):
    """An MLP whose activation may be Dice (masked statistics) or any :func:`activation` name.

    With a non-Dice activation this is exactly :class:`recforge.layers.mlp.MLP` (PReLU, ReLU,
    sigmoid ...). With ``"dice"`` every hidden ``Linear`` is followed by a :class:`Dice`.

    Args:
        input_dim: Input width.
        hidden: Hidden widths.
        output_dim: Width of a final linear layer (no activation), or ``None``.
        activation: ``"dice"`` or an activation name accepted by :func:`activation`.
        dropout: Dropout after each hidden activation.

    Shape:
        ``(..., input_dim)`` -> ``(..., output_dim or hidden[-1])``.
    """

    def __init__(
        self,
        input_dim: int,
        hidden: Sequence[int],
        output_dim: int | None = None,
        activation_name: str = "dice",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.is_dice = activation_name == "dice"
        if not self.is_dice:
            activation(activation_name)  # validates the name early
            self.mlp = MLP(input_dim, hidden, output_dim, activation_name, dropout)
            self.output_dim = self.mlp.output_dim
            return
        self.linears = nn.ModuleList()
        self.dices = nn.ModuleList()
        width = input_dim
        for h in hidden:
            self.linears.append(nn.Linear(width, h))
            self.dices.append(Dice(h))
            width = h
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.out = nn.Linear(width, output_dim) if output_dim is not None else None
        self.output_dim = output_dim if output_dim is not None else width

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if not self.is_dice:
            return self.mlp(x)
        for linear, dice in zip(self.linears, self.dices, strict=True):
            x = self.dropout(dice(linear(x), mask))
        return self.out(x) if self.out is not None else x


class ActivationUnit(nn.Module):
    """DIN's local activation unit: one weight per behaviour from ``[v_i, v_a, v_i-v_a, v_i*v_a]``.

    Args:
        dim: Width of a behaviour vector ``v_i`` and of the candidate ``v_a``.
        hidden: Hidden widths of the unit's MLP (the paper uses one layer of 36).
        activation_name: ``"dice"``, ``"prelu"``, ``"sigmoid"`` ...
        softmax: Normalise the weights over the real behaviours (off in the paper).

    Shape:
        keys ``(B, L, D)``, query ``(B, D)``, lengths ``(B,)`` -> weights ``(B, L)``; padded
        positions get exactly 0.
    """

    def __init__(
        self,
        dim: int,
        hidden: Sequence[int] = (36,),
        activation_name: str = "dice",
        softmax: bool = False,
    ) -> None:
        super().__init__()
        self.softmax = softmax
        self.mlp = FeedForward(4 * dim, hidden, output_dim=1, activation_name=activation_name)

    @staticmethod
    def features(keys: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """The unit's input ``[v_i, v_a, v_i - v_a, v_i * v_a]``: ``(B, L, 4D)``."""
        q = query.unsqueeze(1).expand_as(keys)  # (B, L, D)
        return torch.cat([keys, q, keys - q, keys * q], dim=-1)

    def forward(
        self, keys: torch.Tensor, query: torch.Tensor, lengths: torch.Tensor
    ) -> torch.Tensor:
        B, L, _ = keys.shape
        mask = length_mask(lengths, L)  # (B, L)
        # score the real behaviours only (padding costs nothing and cannot leak in)
        rows = torch.arange(B, device=keys.device)[:, None].expand(B, L)[mask]  # (R,)
        real = self.features(keys[mask][:, None], query[rows])[:, 0]  # (R, 4D)
        real_scores = self.mlp(real).squeeze(-1)  # (R,)
        scores = real_scores.new_zeros(B, L).masked_scatter(mask, real_scores)
        if self.softmax:
            # a finite fill keeps rows without any behaviour free of NaN (their weights are 0)
            scores = scores.masked_fill(~mask, -1e9)
            return torch.softmax(scores, dim=-1) * mask
        return scores * mask


class AttentionPooling(nn.Module):
    """Masked weighted sum pooling ``v_U = sum_i a(v_i, v_a) v_i`` (DIN, Eq. 3).

    Shape:
        keys ``(B, L, D)``, query ``(B, D)``, lengths ``(B,)`` -> pooled ``(B, D)`` and the
        weights ``(B, L)``.
    """

    def __init__(
        self,
        dim: int,
        hidden: Sequence[int] = (36,),
        activation_name: str = "dice",
        softmax: bool = False,
    ) -> None:
        super().__init__()
        self.unit = ActivationUnit(dim, hidden, activation_name, softmax)

    def forward(
        self, keys: torch.Tensor, query: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        weights = self.unit(keys, query, lengths)  # (B, L), zero on padding
        pooled = torch.einsum("bl,bld->bd", weights, keys)  # (B, D)
        return pooled, weights
