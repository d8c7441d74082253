"""Batch statistics of the global batch on every rank: Dice's mean and variance across ranks.

Dice (DIN, Eq. 10; :class:`recforge.layers.mlp.Dice`) normalises each activation by the mean
and variance of the batch. Under data parallelism each rank holds a slice of the global batch,
so its own statistics differ from one process's, and DIN trained on two ranks drifted ~1e-1 away
from one rank (``docs/SCALING.md``). :class:`SyncDice` sums the count, the sum and the squared
deviations over the ranks (``torch.distributed.nn.functional.all_reduce``, which carries the
gradient back to every rank's rows, as ``torch.nn.SyncBatchNorm`` does), so every rank
normalises by the statistics of the global batch, and the running averages agree too.

The engines swap every :class:`Dice` of the model for a :class:`SyncDice` sharing its
parameters and buffers while the model is wrapped (:func:`sync_batch_statistics`) and put the
originals back afterwards (:func:`restore`), so checkpoints and bundles are unchanged.

TorchRec's padded lookups (:func:`recforge.distributed.torchrec_bridge.padded_lookups`) hand
the model only its real rows, so padding never enters the statistics.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from torch import nn

from recforge.layers.mlp import Dice


class SyncDice(Dice):
    """:class:`Dice` whose training statistics are those of all ranks' rows together.

    In one process (or in evaluation) it is :class:`Dice` exactly.

    Shape:
        As :class:`Dice`: ``(..., C)``, with the batch first; ``mask`` ``(...)``.
    """

    def forward(self, s: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if not self.training or not dist.is_initialized() or dist.get_world_size() == 1:
            return super().forward(s, mask)
        flat = s.reshape(-1, s.shape[-1])
        if mask is not None:
            flat = flat[mask.reshape(-1)]
        count = torch.tensor([flat.shape[0]], dtype=torch.float64, device=s.device)
        dist.all_reduce(count)
        n = int(count.item())
        if n:
            mean = dist_fn.all_reduce(flat.sum(dim=0)) / n  # (C,)
            var = dist_fn.all_reduce(torch.square(flat - mean).sum(dim=0)) / n  # (C,)
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_((var * n / max(n - 1, 1)).detach(), self.momentum)
        else:  # nothing real in the global batch: the running statistics
            mean, var = self.running_mean, self.running_var
        p = torch.sigmoid((s - mean) * torch.rsqrt(var + self.eps))
        return s * torch.addcmul(self.alpha, p, 1.0 - self.alpha)


Swap = tuple[nn.Module, str, nn.Module]


def sync_batch_statistics(model: nn.Module) -> list[Swap]:
    """Replace every :class:`Dice` in ``model`` by a :class:`SyncDice` on the same parameters
    and buffers; returns what :func:`restore` needs to put the originals back."""
    swaps: list[Swap] = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is Dice:
                synced = SyncDice(child.alpha.shape[0], child.eps, child.momentum)
                synced.alpha = child.alpha
                synced.running_mean = child.running_mean
                synced.running_var = child.running_var
                synced.train(child.training)
                setattr(parent, name, synced)
                swaps.append((parent, name, child))
    return swaps


def restore(swaps: list[Swap]) -> None:
    """Put back the modules :func:`sync_batch_statistics` replaced (their state is shared)."""
    for parent, name, original in swaps:
        original.train(getattr(parent, name).training)
        setattr(parent, name, original)
