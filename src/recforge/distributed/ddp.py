"""Distributed data-parallel training on PyTorch's own engine (``torch.distributed`` + DDP).

A run has ``N`` processes (ranks). They are started either by ``torchrun`` (which sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; see
:func:`process_group_from_env`) or by :func:`launch`, which spawns ``N`` local processes with
``torch.multiprocessing`` on a free loopback port. The backend is gloo on CPU and NCCL on CUDA
(one GPU per rank, ``cuda:LOCAL_RANK``).

How training stays equal to one process with the same global batch (see
:class:`recforge.train.Trainer`):

* Data: every rank draws the same seeded permutation; global batch ``t`` is rows
  ``perm[t*B:(t+1)*B]`` and rank ``r`` takes the contiguous slice :func:`shard_bounds` of it, so
  the global batches (and a resumed run's order) do not depend on ``N``. A final global batch
  with fewer rows than ranks is skipped by every rank (a rank would otherwise get no rows).
* Loss: rank ``r`` with ``b_r`` of the ``b`` rows of a global batch scales its mean loss
  (task loss, extra loss and the batch-row embedding L2 alike) by ``N * b_r / b``; DDP averages
  gradients over ``N`` ranks, so the update is the gradient of the global mean loss, including
  for an unequal last batch. A batch-independent term (``embedding_l2_scope='table'``) is
  scaled the same way and its ``b_r / b`` shares sum to one.
* Fused embedding gradients: gloo all-reduces sparse gradients (``sparse=True`` tables keep
  ``SparseRowAdam``, DDP puts each sparse parameter in its own bucket); NCCL does not, so on
  CUDA the tables are switched to dense gradients (and dense Adam) before the optimizers are
  built.
* Evaluation: rank ``r`` predicts rows :func:`shard_bounds` ``(n, r, N)`` of the evaluation set;
  :func:`gather_rows` concatenates the shards in rank order, and every rank computes AUC, GAUC,
  logloss on all ``n`` predictions (so early-stopping decisions agree across ranks).
* Outputs: rank 0 alone writes checkpoints, history and bundles (atomically); the others wait
  at a barrier. Every rank loads the same checkpoint to resume.

Not reproduced exactly: dropout masks (each rank seeds its own stream), batch normalisation
(statistics per rank shard; buffers are broadcast from rank 0 each step, as DDP does by
default) and custom negative samplers (each rank draws from its own generator). Dice's batch
statistics (DIN, DIEN) are reproduced: the engines synchronise them over the ranks
(:mod:`recforge.distributed.sync_stats`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class World:
    """Where this process sits in a distributed run.

    Attributes:
        rank: Global rank, 0 .. size-1.
        size: Number of processes.
        local_rank: Rank on this machine (picks the GPU).
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def current_world() -> World:
    """The initialised process group's world, or a single process when there is none."""
    if dist.is_available() and dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
        return World(dist.get_rank(), dist.get_world_size(), local)
    return World()


def env_world() -> World | None:
    """The world ``torchrun`` describes in the environment; ``None`` when it describes none."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    return World(rank, size, int(os.environ.get("LOCAL_RANK", rank)))


def shard_bounds(n: int, rank: int, size: int) -> tuple[int, int]:
    """Contiguous ``[lo, hi)`` of ``n`` rows for ``rank`` of ``size`` (sizes differ by <= 1)."""
    return n * rank // size, n * (rank + 1) // size


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def rank_device(name: str, world: World) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` for ``cuda``/``auto`` with GPUs, else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", world.local_rank)
    return device


def init_process_group(device: str = "cpu", timeout_s: float = DEFAULT_TIMEOUT_S) -> World:
    """Join the process group the environment describes (``env://`` rendezvous).

    Args:
        device: The training device name (``cpu``, ``cuda``, ``auto``); CUDA selects NCCL.
        timeout_s: Seconds a collective waits for a missing rank before failing.

    Returns:
        This process's :class:`World`.
    """
    world = env_world()
    if world is None:
        raise RuntimeError("no distributed environment (RANK/WORLD_SIZE are unset)")
    dev = rank_device(device, world)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    backend = backend_for(dev)
    dist.init_process_group(
        backend,
        rank=world.rank,
        world_size=world.size,
        timeout=timedelta(seconds=timeout_s),
    )
    log.info("rank %d/%d joined the %s process group", world.rank, world.size, backend)
    return world


@contextlib.contextmanager
def process_group_from_env(
    device: str = "cpu", timeout_s: float = DEFAULT_TIMEOUT_S
) -> Iterator[World]:
    """Context: join the group ``torchrun`` describes (nothing when world size is 1), leave it."""
    world = env_world()
    if world is None or world.size == 1 or dist.is_initialized():
        yield current_world()
        return
    world = init_process_group(device, timeout_s)
    try:
        yield world
    finally:
        dist.destroy_process_group()


# ---- collectives (no-ops in a single process) ----------------------------------------------
def barrier() -> None:
    if current_world().distributed:
        dist.barrier()


def _comm_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(values: list[float]) -> list[float]:
    """Element-wise sum of ``values`` over ranks (float64)."""
    if not current_world().distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t)
    return t.cpu().tolist()


class RankExchange:
    """The data pipeline's collectives (:class:`recforge.data.read.parts.Exchange`) over the
    process group: byte strings gathered as ``uint8`` tensors.

    Always over gloo on the CPU (under NCCL a gloo group is made for it), so the encoded data
    never passes through GPU memory. Every rank must build it (making a group is collective).
    """

    def __init__(self) -> None:
        self.rank, self.size = dist.get_rank(), dist.get_world_size()
        self._group = None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")

    def all_gather_bytes(self, data: bytes) -> list[bytes]:
        """Every rank's ``data``, in rank order."""
        length = torch.tensor([len(data)], dtype=torch.int64)
        lengths = [torch.zeros(1, dtype=torch.int64) for _ in range(self.size)]
        dist.all_gather(lengths, length, group=self._group)
        sizes = [int(n) for n in lengths]
        width = max(sizes)
        if width == 0:
            return [b""] * self.size
        buffer = torch.zeros(width, dtype=torch.uint8)
        if data:
            buffer[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        out = [torch.empty(width, dtype=torch.uint8) for _ in range(self.size)]
        dist.all_gather(out, buffer, group=self._group)
        return [o[:n].numpy().tobytes() for o, n in zip(out, sizes, strict=True)]


def gather_rows(local: torch.Tensor, total: int) -> torch.Tensor:
    """Concatenate every rank's shard (rows :func:`shard_bounds` ``(total, r, N)``) in rank order.

    Shards are padded to the largest shard for one ``all_gather`` and trimmed after.

    Shape:
        local ``(n_r, ...)`` -> ``(total, ...)`` on the CPU, on every rank.
    """
    world = current_world()
    if not world.distributed:
        return local
    sizes = [hi - lo for lo, hi in (shard_bounds(total, r, world.size) for r in range(world.size))]
    if local.shape[0] != sizes[world.rank]:
        raise ValueError(
            f"rank {world.rank}: shard has {local.shape[0]} rows, not {sizes[world.rank]}"
        )
    device = _comm_device()
    width = max(sizes)
    padded = torch.zeros((width, *local.shape[1:]), dtype=local.dtype, device=device)
    padded[: local.shape[0]] = local.to(device)
    parts = [torch.empty_like(padded) for _ in range(world.size)]
    dist.all_gather(parts, padded)
    return torch.cat([p[:s] for p, s in zip(parts, sizes, strict=True)]).cpu()


class _ForwardTrain(nn.Module):
    """Exposes a model's training call as ``forward`` for DDP: ``objective`` (its whole loss)
    for a model with ``own_objective``, else ``forward_train`` (logits, extra loss)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Any) -> Any:
        if self.model.own_objective:
            return self.model.objective(batch)
        return self.model.forward_train(batch)


def _coalesce(grad: torch.Tensor) -> torch.Tensor:
    return grad.coalesce() if grad.is_sparse else grad


def wrap_ddp(model: nn.Module) -> nn.Module:
    """``DistributedDataParallel`` whose call is ``model.forward_train(batch)``.

    Gradients are averaged over ranks during ``backward``; ``model`` itself stays unwrapped
    (its ``state_dict`` keys and plain ``forward`` for evaluation are unchanged). A sparse
    embedding gradient has one row per lookup; gloo's sparse all-reduce sends every row, so a
    hook coalesces it first (duplicate ids summed), which shortened the 2-process DNN step of
    ``benchmarks/bench_ddp.py`` by about 11%. :func:`unwrap_ddp` removes the hooks.
    """
    handles = [
        m.weight.register_hook(_coalesce)
        for m in model.modules()
        if isinstance(m, nn.Embedding) and m.sparse
    ]
    ddp = nn.parallel.DistributedDataParallel(
        _ForwardTrain(model),
        device_ids=None,  # the trainer moves batches; None suits CPU modules and one GPU
    )
    ddp._recforge_hooks = handles  # type: ignore[attr-defined]
    return ddp


def unwrap_ddp(ddp: nn.Module) -> None:
    """Remove what :func:`wrap_ddp` added to the model (the model stays usable alone)."""
    for handle in getattr(ddp, "_recforge_hooks", ()):
        handle.remove()


# ---- launching local processes (``--nproc N``) --------------------------------------------
def _elastic_worker(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    device: str,
    timeout_s: float,
    threads: int,
    log_level: int,
) -> Any:
    """One rank started by the elastic agent (which sets RANK, WORLD_SIZE, MASTER_*)."""
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(
        level=log_level if rank == 0 else max(log_level, logging.WARNING),
        format=f"%(levelname)s [rank {rank}] %(name)s: %(message)s",
    )
    torch.set_num_threads(threads)
    init_process_group(device, timeout_s)
    try:
        result = fn(*args)
    finally:
        dist.destroy_process_group()
    return result if rank == 0 else None


def launch(
    fn: Callable[..., Any],
    nproc: int,
    *args: Any,
    device: str = "cpu",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    threads: int = 0,
    nnodes: int = 1,
    rdzv_endpoint: str | None = None,
    rdzv_id: str | None = None,
) -> Any:
    """Run ``fn(*args)`` in ``nproc`` local processes joined in one group; rank 0's result.

    The processes are started by ``torch.distributed.run``'s elastic agent
    (:func:`torch.distributed.launcher.api.elastic_launch`, as ``torchrun --standalone``): a
    c10d rendezvous on a port the agent picks, no hand-picked free port. ``fn`` must be
    importable (a module-level function) and its result picklable. If any rank raises or dies,
    the agent stops the others and a ``RuntimeError`` names the failure; a rank blocked on a
    dead peer gives up after ``timeout_s`` at the latest.

    Args:
        fn: What each rank runs once its process group is up.
        nproc: Number of processes.
        *args: Arguments of ``fn`` (pickled to every process).
        device: ``cpu`` (gloo) or ``cuda``/``auto`` (NCCL when GPUs exist, ``nproc`` of them).
        timeout_s: Collective timeout.
        threads: torch intra-op threads per process; 0 shares the machine's cores evenly.
        nnodes: Machines in the job. With more than one, every machine runs the same command
            with the same ``rdzv_endpoint``; the agents meet there (c10d rendezvous hosted by
            the first agent to arrive) and number the ranks, ``nproc`` per machine.
        rdzv_endpoint: ``host:port`` of the rendezvous, reachable from every machine
            (required when ``nnodes > 1``; one machine: a port the agent picks).
        rdzv_id: The job's name at the rendezvous (default: derived from the endpoint).

    Returns:
        What ``fn`` returned on global rank 0, on the machine that runs it; ``None`` elsewhere.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if nproc < 1:
        raise ValueError("nproc must be >= 1")
    if nnodes < 1:
        raise ValueError(f"--nnodes must be at least 1, got {nnodes}")
    if nnodes > 1 and not rdzv_endpoint:
        raise ValueError("--nnodes > 1 needs --rdzv-endpoint HOST:PORT, the same on every machine")
    if rdzv_endpoint and not re.fullmatch(r"\[?[\w.:-]+\]?:\d{1,5}", rdzv_endpoint):
        raise ValueError(f"--rdzv-endpoint must look like HOST:PORT, got {rdzv_endpoint!r}")
    dev = rank_device(device, World())
    if dev.type == "cuda" and nproc > torch.cuda.device_count():
        raise ValueError(f"nproc={nproc} needs {nproc} GPUs, found {torch.cuda.device_count()}")
    threads = threads or max(1, (os.cpu_count() or 1) // nproc)
    config = LaunchConfig(
        min_nodes=nnodes,
        max_nodes=nnodes,
        nproc_per_node=nproc,
        run_id=rdzv_id or (f"recforge-{rdzv_endpoint}" if rdzv_endpoint else uuid.uuid4().hex),
        rdzv_backend="c10d",
        rdzv_endpoint=rdzv_endpoint or "localhost:0",
        max_restarts=0,
        monitor_interval=0.1,
        start_method="spawn",
    )
    level = logging.getLogger().getEffectiveLevel()
    try:
        results = elastic_launch(config, _elastic_worker)(
            fn, args, device, timeout_s, threads, level
        )
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        message = failure.message
        if isinstance(message, dict):  # a recorded exception: its message, not its callstack
            message = message.get("message")
        raise RuntimeError(
            f"distributed run failed on rank {rank} (exit code {failure.exitcode}): "
            f"{message or 'see the log above'}"
        ) from None
    # the agent returns its own machine's ranks; only global rank 0 returns a value
    return next((r for r in results.values() if r is not None), None)
