"""Train several run configs in one ``torchrun`` job (each rank calls ``train_job`` in turn).

Used by ``test_torchrec_engine.py`` so that one two-process launch (one TorchRec import per
rank) covers several models: ``python -m torch.distributed.run --standalone --nproc-per-node 2
tests/distributed/torchrec_job.py CONFIG.yaml ...``. This is the ``torchrun -m recforge train``
path with the configs given in a row.
"""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist

from recforge.config import load_run_config
from recforge.distributed.ddp import init_process_group
from recforge.run import train_job

if __name__ == "__main__":
    torch.set_num_threads(1)
    # one process group for all the runs: joining it again through the agent's store after
    # destroying it can read the first group's stale addresses and hang
    init_process_group("cpu", timeout_s=120)
    try:
        for path in sys.argv[1:]:
            train_job(load_run_config(path, []))
    finally:
        dist.destroy_process_group()
