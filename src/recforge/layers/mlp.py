"""Multi-layer perceptron shared by every deep model."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "prelu": nn.PReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "identity": nn.Identity,
}


def activation(name: str) -> nn.Module:
    """Build an activation module by name (``relu``, ``prelu``, ``tanh``, ``sigmoid`` ...)."""
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; choose from {sorted(_ACTIVATIONS)}"
        ) from None


class MLP(nn.Module):
    """Stack of ``Linear -> [BatchNorm] -> activation -> [Dropout]`` blocks.

    Args:
        input_dim: Input width.
        hidden: Widths of the hidden layers.
        output_dim: Width of a final linear layer without activation; ``None`` for none.
        activation: Activation name.
        dropout: Dropout probability after each hidden layer.
        batch_norm: Batch normalisation before each activation.

    Shape:
        ``(B, input_dim)`` -> ``(B, output_dim or hidden[-1])``.
    """

    def __init__(
        self,
        input_dim: int,
        hidden: Sequence[int],
        output_dim: int | None = None,
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = input_dim
        for h in hidden:
            layers.append(nn.Linear(width, h))
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(globals()["activation"](activation))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        if output_dim is not None:
            layers.append(nn.Linear(width, output_dim))
            width = output_dim
        self.net = nn.Sequential(*layers)
        self.output_dim = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
