"""FTRL-Proximal, the per-coordinate online optimizer used for Wide&Deep's wide part.

McMahan, Holt, Sculley, Young, Ebner, Grady, Nie, Phillips, Davydov, Golovin, Chikkerur, Liu,
Wattenberg, Hrafnkelsson, Boulos & Kubica, "Ad Click Prediction: a View from the Trenches",
KDD 2013, Algorithm 1. Per coordinate ``i``, with gradient ``g_i``:

    sigma_i = (sqrt(n_i + g_i^2) - sqrt(n_i)) / alpha
    z_i    <- z_i + g_i - sigma_i w_i
    n_i    <- n_i + g_i^2
    w_i     = 0                                                    if |z_i| <= lambda_1
            = -(z_i - sgn(z_i) lambda_1) / ((beta + sqrt(n_i)) / alpha + lambda_2)   otherwise

The L1 term produces exact zeros (sparse models); the per-coordinate learning rate
``alpha / (beta + sqrt(n_i))`` adapts to how often a feature is seen. Weights are the closed-form
solution of the accumulated state ``(z, n)``; a coordinate that has never had a non-zero
gradient (``n_i = 0``) keeps its current value, so unseen embedding rows are left untouched.
Sparse gradients (``nn.Embedding(sparse=True)``) update only the rows they touch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer


def _ftrl_update(
    w: torch.Tensor,
    g: torch.Tensor,
    z: torch.Tensor,
    n: torch.Tensor,
    alpha: float,
    beta: float,
    l1: float,
    l2: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One FTRL-Proximal step on matching tensors; returns new ``(w, z, n)``."""
    n_new = n + g * g
    sigma = (n_new.sqrt() - n.sqrt()) / alpha
    z_new = z + g - sigma * w
    denom = (beta + n_new.sqrt()) / alpha + l2
    w_new = -(z_new - torch.sign(z_new) * l1) / denom
    w_new = torch.where(z_new.abs() <= l1, torch.zeros_like(w_new), w_new)
    # coordinates never touched by a gradient keep their value (the paper's lazy update)
    w_new = torch.where(n_new > 0, w_new, w)
    return w_new, z_new, n_new


class FTRL(Optimizer):
    """FTRL-Proximal (McMahan et al., KDD 2013) as a ``torch.optim.Optimizer``.

    Args:
        params: Parameters or parameter groups.
        lr: ``alpha``, the learning-rate scale.
        beta: ``beta`` of the per-coordinate rate ``alpha / (beta + sqrt(n))``.
        l1: ``lambda_1`` (L1 strength; larger gives more exact zeros).
        l2: ``lambda_2`` (L2 strength).

    Works with dense gradients and with sparse (COO) gradients of embedding tables, for which
    only the rows present in the gradient are read and written.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.05,
        beta: float = 1.0,
        l1: float = 0.0,
        l2: float = 0.0,
    ) -> None:
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if beta < 0 or l1 < 0 or l2 < 0:
            raise ValueError("beta, l1 and l2 must be >= 0")
        super().__init__(params, {"lr": lr, "beta": beta, "l1": l1, "l2": l2})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Apply one update to every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            hyper = (group["lr"], group["beta"], group["l1"], group["l2"])
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["z"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["n"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                z, n = state["z"], state["n"]
                grad = p.grad
                if grad.is_sparse:
                    grad = grad.coalesce()
                    if grad.sparse_dim() != 1:
                        raise ValueError("FTRL supports sparse gradients over the first dim only")
                    rows = grad.indices()[0]  # unique after coalesce
                    values = grad.values()  # (nnz, *p.shape[1:])
                    w_r, z_r, n_r = _ftrl_update(p[rows], values, z[rows], n[rows], *hyper)
                    p.index_copy_(0, rows, w_r)
                    z.index_copy_(0, rows, z_r)
                    n.index_copy_(0, rows, n_r)
                else:
                    w_new, z_new, n_new = _ftrl_update(p, grad, z, n, *hyper)
                    p.copy_(w_new)
                    z.copy_(z_new)
                    n.copy_(n_new)
        return loss
