"""The tower every deep model uses: a :class:`Tower` config and the :class:`MLP` built from it.

A tower is a stack of ``Linear -> [BatchNorm] -> activation -> [Dropout]`` blocks. The
activation is named: ``relu``, ``prelu``, ``tanh``, ``sigmoid``, ``gelu``, ``identity`` or
``dice``.

Dice (Zhou et al., "Deep Interest Network for Click-Through Rate Prediction", KDD 2018,
Eq. 9-10) is a data-adaptive PReLU whose rectification point follows the input distribution:
``f(s) = p(s) s + (1 - p(s)) alpha s`` with ``p(s) = sigmoid((s - E[s]) / sqrt(Var[s] + eps))``;
training uses the mini-batch statistics and evaluation the running averages. Padded positions
can be excluded from the statistics through a mask, so padding never changes a Dice output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "prelu": nn.PReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "identity": nn.Identity,
}


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
                var, mean = torch.var_mean(flat, dim=0, unbiased=False)  # one pass
                with torch.no_grad():
                    n = flat.shape[0]
                    unbiased = var * n / max(n - 1, 1)
                    # the buffers stay float32 when autocast hands in bfloat16 activations
                    dtype = self.running_mean.dtype
                    self.running_mean.lerp_(mean.detach().to(dtype), self.momentum)
                    self.running_var.lerp_(unbiased.detach().to(dtype), self.momentum)
            else:  # nothing real in the batch: fall back to the running statistics
                mean, var = self.running_mean, self.running_var
        else:
            mean, var = self.running_mean, self.running_var
        # Eq. 10: p s + (1 - p) alpha s, written s (alpha + p (1 - alpha)) so that the
        # per-feature factors are vectors and only three passes run over the activations
        p = torch.sigmoid((s - mean) * torch.rsqrt(var + self.eps))
        return s * torch.addcmul(self.alpha, p, 1.0 - self.alpha)


def activation(name: str, width: int | None = None) -> nn.Module:
    """Build an activation module by name.

    Args:
        name: ``relu``, ``prelu``, ``tanh``, ``sigmoid``, ``gelu``, ``identity`` or ``dice``.
        width: Size of the last dimension of the input; Dice keeps its statistics per feature
            and needs it, the others ignore it.

    Raises:
        ValueError: for an unknown name, or ``dice`` without a width.
    """
    if name == "dice":
        if width is None:
            raise ValueError("the dice activation needs the width of its input")
        return Dice(width)
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; choose from {sorted([*_ACTIVATIONS, 'dice'])}"
        ) from None


class BatchNorm(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` that also takes a training batch of one row.

    A single row has no batch variance and ``nn.BatchNorm1d`` raises on it; this layer
    normalises such a batch (e.g. the last, incomplete batch of an epoch) with its running
    statistics instead and leaves them unchanged. Every other batch is plain batch norm, and
    the parameters and buffers are ``nn.BatchNorm1d``'s, so saved weights load either way.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] == 1:
            return F.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
            )
        return super().forward(x)


@dataclass(frozen=True)
class Tower:
    """The hidden layers of an MLP and the options of each block.

    Model configs with a tower inherit these fields (``TowerConfig`` in
    :mod:`recforge.models.tower`), so their YAML keys stay flat (``model.params.hidden``).

    Args:
        hidden: Widths of the hidden layers.
        activation: Hidden activation (see :func:`activation`; ``dice`` included).
        dropout: Dropout probability after each hidden activation.
        batch_norm: Batch normalisation between each hidden ``Linear`` and its activation.
    """

    hidden: tuple[int, ...] = ()
    activation: str = "relu"
    dropout: float = 0.0
    batch_norm: bool = False

    def block(self, width: int) -> list[nn.Module]:
        """What follows a hidden ``Linear`` of ``width`` units: ``[BatchNorm], act, [Dropout]``."""
        layers: list[nn.Module] = [BatchNorm(width)] if self.batch_norm else []
        act = activation(self.activation, width)
        if isinstance(act, nn.ReLU):
            # in place: what it follows (a Linear's or batch norm's fresh output) is not saved
            # for either one's backward, and ReLU's own backward needs only its result
            act.inplace = True
        layers.append(act)
        if self.dropout > 0:
            layers.append(nn.Dropout(self.dropout))
        return layers


class MLP(nn.Module):
    """The tower's ``Linear -> [BatchNorm] -> activation -> [Dropout]`` blocks, then an optional
    final ``Linear`` without activation.

    Args:
        input_dim: Input width.
        tower: Hidden widths and block options.
        output_dim: Width of the final linear layer; ``None`` for none.

    Shape:
        ``(..., input_dim)`` -> ``(..., output_dim or hidden[-1])`` (batch norm wants
        ``(B, input_dim)``); ``mask`` of shape ``(...)`` marks the rows that count in Dice's
        batch statistics.
    """

    def __init__(self, input_dim: int, tower: Tower, output_dim: int | None = None) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = input_dim
        for h in tower.hidden:
            layers.append(nn.Linear(width, h))
            layers.extend(tower.block(h))
            width = h
        if output_dim is not None:
            layers.append(nn.Linear(width, output_dim))
            width = output_dim
        self.net = nn.Sequential(*layers)
        self.output_dim = width
        self._masked = any(isinstance(layer, Dice) for layer in layers)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_from(0, x, mask)

    def forward_from(
        self, start: int, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The layers from ``net[start]`` on (a caller that computed the first ones itself)."""
        layers = self.net if start == 0 else self.net[start:]
        if not self.training and x.dim() == 2:
            return _inference(layers, x, mask)
        if not self._masked:
            return layers(x)
        for layer in layers:
            x = layer(x, mask) if isinstance(layer, Dice) else layer(x)
        return x


def glorot_(*modules: nn.Module) -> None:
    """Redraw every ``nn.Linear`` inside ``modules`` Glorot-uniform with zero biases (the draw of
    TensorFlow's ``dense`` layers, which the NCF and DIN/DIEN authors' released code uses)."""
    for root in modules:
        for module in root.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)


def _folded(linear: nn.Linear, norm: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """The weight and bias of ``norm(linear(x))`` with ``norm`` in evaluation mode.

    Evaluation-mode batch norm is the affine map ``(z - mean) * gamma / sqrt(var + eps) + beta``
    of each unit, so it folds into the linear layer before it:
    ``W' = diag(scale) W`` and ``b' = scale * (b - mean) + beta``. Folding costs one pass over
    the weight; applying batch norm costs one pass over the batch's activations.
    """
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight
    bias = linear.bias if linear.bias is not None else torch.zeros_like(norm.running_mean)
    bias = (bias - norm.running_mean) * scale
    if norm.bias is not None:
        bias = bias + norm.bias
    return linear.weight * scale.unsqueeze(1), bias


def _inference(layers: nn.Sequential, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The blocks in evaluation mode, each ``Linear -> BatchNorm`` pair as one folded ``Linear``
    (one pass fewer over the activations per block)."""
    mods = list(layers)
    i = 0
    while i < len(mods):
        layer, after = mods[i], mods[i + 1] if i + 1 < len(mods) else None
        if (
            isinstance(layer, nn.Linear)
            and isinstance(after, nn.BatchNorm1d)
            and after.running_mean is not None
            and after.running_var is not None
        ):
            x = F.linear(x, *_folded(layer, after))
            i += 2
        else:
            x = layer(x, mask) if isinstance(layer, Dice) else layer(x)
            i += 1
    return x
