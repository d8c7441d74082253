"""Optimizers that respect sparse embeddings.

Parameters of ``nn.Embedding(sparse=True)`` tables get sparse gradients; they go to an optimizer
that updates only the touched rows (``SparseAdam``, sparse ``Adagrad`` or ``SGD``). Dense weights
get the chosen optimizer with ``dense_l2`` as weight decay. Models may expose
``optimizer_groups() -> {"wide": [...], "deep": [...]}``; with ``wide_optimizer="ftrl"`` the wide
part is trained by FTRL-Proximal, the rest as configured.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from recforge.config import TrainConfig
from recforge.models.base import RecModel


class SparseRowAdam(torch.optim.Optimizer):
    """Adam for sparse embedding gradients that updates only the rows a batch touched.

    Same update as ``torch.optim.SparseAdam`` (lazy Adam: moments of untouched rows are not
    decayed), but duplicate row gradients are merged with ``torch.unique`` + ``index_add_``
    instead of coalescing a sparse tensor, which profiling showed to dominate SparseAdam's
    step. Work per step is O(rows touched x dim), independent of the vocabulary.
    """

    def __init__(
        self,
        params: Iterable[nn.Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001, ANN201
        loss = closure() if closure is not None else None
        # tables looked up with the same ids (an FM's factors and first-order weights) share
        # one sort: the unique rows of the previous table are reused when its ids are equal
        last: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                grad = p.grad
                if grad is None:
                    continue
                if not grad.is_sparse:
                    raise RuntimeError("SparseRowAdam expects sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                ids = grad._indices()[0]
                if last is not None and last[0].shape == ids.shape and torch.equal(last[0], ids):
                    rows, inverse = last[1], last[2]
                else:
                    rows, inverse = torch.unique(ids, return_inverse=True)
                    last = (ids, rows, inverse)
                g = torch.zeros(len(rows), p.shape[1], dtype=p.dtype, device=p.device)
                g.index_add_(0, inverse, grad._values())
                m = state["exp_avg"].index_select(0, rows).mul_(beta1).add_(g, alpha=1 - beta1)
                v = state["exp_avg_sq"].index_select(0, rows)
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                state["exp_avg"].index_copy_(0, rows, m)
                state["exp_avg_sq"].index_copy_(0, rows, v)
                bias1 = 1 - beta1 ** state["step"]
                bias2 = 1 - beta2 ** state["step"]
                step_size = group["lr"] * (bias2**0.5) / bias1
                update = m.div_(v.sqrt_().add_(group["eps"])).mul_(-step_size)
                p.index_add_(0, rows, update)
        return loss


@torch.no_grad()
def clip_gradients(parameters: Iterable[nn.Parameter], max_norm: float) -> torch.Tensor:
    """Scale the gradients in place so that their joint L2 norm is at most ``max_norm``.

    The rule of ``torch.nn.utils.clip_grad_norm_`` (factor ``min(1, max_norm / (norm +
    1e-6))``), extended to sparse gradients: a sparse embedding gradient holds one row per
    lookup, so it is coalesced first (duplicate rows summed) and its norm is that of the dense
    gradient it stands for; it stays coalesced, which the sparse optimizers accept.

    Returns:
        The joint norm before clipping (a scalar tensor; 0 when there is no gradient).
    """
    grads: list[torch.Tensor] = []  # the dense tensors to scale (a sparse one's values)
    for p in parameters:
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            p.grad = p.grad.coalesce()
            grads.append(p.grad._values())
        else:
            grads.append(p.grad)
    if not grads:
        return torch.zeros(())
    total = torch.nn.utils.get_total_norm(grads)
    factor = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for g in grads:  # one call per parameter tensor
        g.mul_(factor.to(g.device, g.dtype))
    return total


def embedding_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(sparse-gradient embedding weights, dense-gradient embedding weights)."""
    sparse, dense = [], []
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            (sparse if module.sparse else dense).append(module.weight)
    return sparse, dense


def build_optimizers(
    model: nn.Module, cfg: TrainConfig, exclude: Iterable[nn.Parameter] = ()
) -> list[torch.optim.Optimizer]:
    """One or more optimizers covering every trainable parameter exactly once.

    The one optimizer factory of recforge: the Trainer builds every model's optimizers here, and
    DRN's online Q-network (a plain ``nn.Module``, not a registry model) its TD-update one.

    Args:
        model: The model.
        cfg: Training options.
        exclude: Parameters updated elsewhere (the TorchRec engine's fused tables).
    """
    excluded = {id(p) for p in exclude}
    sparse_emb, dense_emb = embedding_parameters(model)
    taken = {id(p) for p in sparse_emb + dense_emb} | excluded
    wide: list[nn.Parameter] = []
    if cfg.wide_optimizer == "ftrl" and isinstance(model, RecModel):
        wide = [p for p in model.optimizer_groups().get("wide", []) if p.requires_grad]
    wide_ids = {id(p) for p in wide}
    sparse_emb = [p for p in sparse_emb if id(p) not in wide_ids]
    dense_emb = [p for p in dense_emb if id(p) not in wide_ids]
    dense = [
        p
        for p in model.parameters()
        if p.requires_grad and id(p) not in taken and id(p) not in wide_ids
    ]
    optimizers: list[torch.optim.Optimizer] = []
    dense_groups = [
        {"params": dense, "weight_decay": cfg.dense_l2},
        {"params": dense_emb, "weight_decay": 0.0},  # embedding L2 acts on looked-up rows
    ]
    dense_groups = [g for g in dense_groups if g["params"]]
    if cfg.optimizer == "adam":
        if dense_groups:
            # the fused kernel does the whole update in one pass (CPU and CUDA, torch >= 2.4)
            try:
                optimizers.append(torch.optim.Adam(dense_groups, lr=cfg.lr, fused=True))
            except (RuntimeError, TypeError):
                optimizers.append(torch.optim.Adam(dense_groups, lr=cfg.lr))
        if sparse_emb:
            optimizers.append(SparseRowAdam(sparse_emb, lr=cfg.lr))
    elif cfg.optimizer == "adagrad":
        groups = dense_groups + (
            [{"params": sparse_emb, "weight_decay": 0.0}] if sparse_emb else []
        )
        if groups:
            optimizers.append(torch.optim.Adagrad(groups, lr=cfg.lr))
    elif cfg.optimizer == "sgd":
        groups = dense_groups + (
            [{"params": sparse_emb, "weight_decay": 0.0}] if sparse_emb else []
        )
        if groups:
            optimizers.append(torch.optim.SGD(groups, lr=cfg.lr))
    else:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}")
    if wide:
        from recforge.train.ftrl import FTRL

        optimizers.append(FTRL(wide, **_ftrl_kwargs(cfg)))
    return optimizers


def _ftrl_kwargs(cfg: TrainConfig) -> dict[str, float]:
    return {"lr": cfg.wide_lr, "beta": cfg.wide_beta, "l1": cfg.wide_l1, "l2": cfg.wide_l2}


def scale_lr(optimizers: Iterable[torch.optim.Optimizer], factor: float) -> None:
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] *= factor
