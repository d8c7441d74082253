"""Two ranks run :class:`SyncDice` on their rows of one batch; one process runs :class:`Dice` on
all of them. Run by ``test_sync_stats.py`` under ``torch.distributed.run`` (2 processes); every
rank checks its outputs, input gradients, the summed ``alpha`` gradient and the running
statistics against the one-process ones and exits non-zero on a mismatch."""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist

from recforge.distributed.ddp import init_process_group
from recforge.distributed.sync_stats import SyncDice, restore, sync_batch_statistics
from recforge.layers.mlp import Dice


def main() -> int:
    torch.set_num_threads(1)
    world = init_process_group("cpu", timeout_s=60)
    torch.manual_seed(0)
    B, L, C = 11, 5, 4
    x = torch.randn(B, L, C, dtype=torch.float64)
    mask = torch.rand(B, L) < 0.7
    weights = torch.randn(B, L, C, dtype=torch.float64)
    alpha = torch.randn(C, dtype=torch.float64)

    def dice(cls: type[Dice]) -> Dice:
        d = cls(C).double()
        with torch.no_grad():
            d.alpha.copy_(alpha)
        return d

    one = dice(Dice)  # one process, every row (a sum loss over all rows)
    xa = x.clone().requires_grad_(True)
    out_one = one(xa, mask)
    (out_one * weights).sum().backward()

    # a model holding a Dice: swapped for SyncDice on the same tensors, and back
    holder = torch.nn.Sequential(dice(Dice))
    swaps = sync_batch_statistics(holder)
    synced = holder[0]
    assert isinstance(synced, SyncDice) and synced.alpha is swaps[0][2].alpha
    rows = slice(0, 5) if world.rank == 0 else slice(5, B)  # 5 / 6 rows: unequal shares
    xr = x[rows].clone().requires_grad_(True)
    out = synced(xr, mask[rows])
    (out * weights[rows]).sum().backward()
    grad = synced.alpha.grad.clone()
    dist.all_reduce(grad)  # the ranks' parameter gradients add up (DDP averages N scaled ones)
    checks = {
        "output": (out, out_one.detach()[rows]),
        "input gradient": (xr.grad, xa.grad[rows]),
        "alpha gradient": (grad, one.alpha.grad),
        "running mean": (synced.running_mean, one.running_mean),
        "running var": (synced.running_var, one.running_var),
    }
    restore(swaps)
    assert type(holder[0]) is Dice
    bad = [k for k, (a, b) in checks.items() if not torch.allclose(a, b, atol=1e-12, rtol=1e-9)]
    if bad:
        print(f"rank {world.rank}: mismatch in {bad}", file=sys.stderr)
    dist.destroy_process_group()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
