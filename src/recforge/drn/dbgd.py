"""Dueling bandit gradient descent, DRN's exploration (Zheng et al., WWW 2018, Section 4.5).

Following Yue & Joachims (ICML 2009) and Grotov & de Rijke (2016), the agent perturbs the
current network ``Q`` (weights ``W``) into an explore network ``Q~`` with
``W~ = W + alpha * rand(-1, 1) * W`` (elementwise; alpha is the explore coefficient), pushes the
interleaving of both networks' lists, and, if the explore network's items win the clicks,
moves the current network towards it: ``W <- W + eta * (W~ - W)`` (``eta = 1`` keeps the winner).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def perturb(model: nn.Module, alpha: float, generator: torch.Generator) -> nn.Module:
    """An explore copy of ``model`` with ``W~ = W + alpha * U(-1, 1) * W`` on every parameter."""
    explore = copy.deepcopy(model)
    with torch.no_grad():
        for p in explore.parameters():
            noise = torch.rand(p.shape, generator=generator, dtype=p.dtype) * 2.0 - 1.0
            p.add_(alpha * noise * p)
    return explore


def move_towards(model: nn.Module, explore: nn.Module, eta: float = 1.0) -> None:
    """``W <- W + eta * (W~ - W)`` in place (the winner's direction)."""
    with torch.no_grad():
        for p, q in zip(model.parameters(), explore.parameters(), strict=True):
            p.add_(eta * (q - p))


class DuelingBanditGD:
    """Propose explore networks and keep the winner of interleaved comparisons.

    Args:
        alpha: Explore coefficient of ``W~ = W + alpha * rand(-1, 1) * W``.
        eta: Step towards a winning explore network (``1`` replaces ``W`` by ``W~``).
        seed: Seed of the perturbation generator.
    """

    def __init__(self, alpha: float = 0.1, eta: float = 1.0, seed: int = 0) -> None:
        self.alpha, self.eta = alpha, eta
        self.generator = torch.Generator().manual_seed(seed)
        self.wins = 0
        self.trials = 0

    def propose(self, model: nn.Module) -> nn.Module:
        return perturb(model, self.alpha, self.generator)

    def resolve(
        self, model: nn.Module, explore: nn.Module, explore_credit: float, current_credit: float
    ) -> bool:
        """Move ``model`` towards ``explore`` when the explore network won; returns the win."""
        self.trials += 1
        won = explore_credit > current_credit
        if won:
            self.wins += 1
            move_towards(model, explore, self.eta)
        return won
