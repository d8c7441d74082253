"""The ``torchrec`` training engine: embedding tables sharded by TorchRec, the rest by DDP.

``recforge train ... train.engine=torchrec --nproc N`` runs the one :class:`recforge.train.Trainer`
loop with this :class:`~recforge.distributed.engine.TrainingEngine`:

* :meth:`TorchRecEngine.setup` swaps each fused :class:`FeatureEmbedding` of the model for a
  pooled :class:`~recforge.distributed.torchrec_bridge.TorchRecEmbedding` (the same weights),
  attaches FBGEMM's fused optimizer to its tables (``apply_optimizer_in_backward``: the update
  runs inside ``backward``, so the tables have no ``.grad``), lets TorchRec's
  ``EmbeddingShardingPlanner`` place every table (``train.sharding`` constrains it per table)
  and wraps the model in ``DistributedModelParallel``, which shards the tables and puts every
  other parameter in ``DistributedDataParallel``. The unsharded weights are then loaded into
  the shards, so every rank starts from the one-process initialisation.
* The Trainer's optimizers cover only the dense parameters (:meth:`fused_parameters` are left
  out); :meth:`step` steps ``dmp.fused_optimizer`` with them (a no-op for FBGEMM, whose update
  already ran in ``backward``, kept so that any optimizer TorchRec places there is stepped).
* Loss scaling is the DDP engine's: rank ``r`` weighs its mean loss by ``N * b_r / b``; DDP
  averages dense gradients over ``N`` and TorchRec divides the embedding gradients it sends
  back by ``N`` (``comm_ops.GRADIENT_DIVISION``), so both follow the global mean loss.
* Row-wise sharding reduce-scatters pooled embeddings, which over gloo needs the same batch on
  every rank: a rank holding one row fewer of a global batch pads its *lookups* with a copy of
  its last row and drops the padded vectors (``padded_lookups``), so the model computes on its
  real rows only and the padding gets no gradient.
* Dice's batch statistics (DIN, DIEN) are taken over all ranks' rows while the model is wrapped
  (:mod:`recforge.distributed.sync_stats`), so a model with Dice trains as on one rank. DIN's
  unpooled histories go through an unpooled ``EmbeddingCollection`` (``pool_sequences=False``).
* Evaluation runs the sharded model (collectively: every rank predicts the same number of
  batches, see :meth:`eval_batches`).
* Checkpoints are sharded: rank ``r`` writes its own shards (and the fused optimizer's state)
  to ``checkpoint.pt`` (rank 0) or ``checkpoint.rank{r}.pt``; resuming needs the same number
  of ranks.
* :meth:`finish` gathers every table and writes it back into the model's original fused
  :class:`FeatureEmbedding` (``load_feature_embedding``), on every rank: the evaluation and the
  bundle that follow see an ordinary recforge model, so ``serve``/``predict`` need nothing new.

On CPU, TorchRec offers row-wise sharding only for CUDA; FBGEMM's CPU kernels and gloo's
reduce-scatter run it correctly (tests/distributed/test_torchrec_engine.py checks it against
one process), so :class:`_Sharder` allows it on CPU too. FBGEMM's CPU kernels have no Adam:
``train.fused_optimizer=auto`` then uses row-wise Adagrad (with a warning).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from recforge.config import TrainConfig
from recforge.data.loader import BatchLoader
from recforge.distributed import sync_stats
from recforge.distributed.engine import CHECKPOINT, TrainingEngine
from recforge.distributed.torchrec_bridge import (
    INSTALL_HINT,
    TorchRecEmbedding,
    _require_torchrec,
    load_feature_embedding,
    padded_lookups,
)
from recforge.features import Batch, EncodedData
from recforge.layers.embedding import FeatureEmbedding, StackedInput
from recforge.models.base import RecModel

log = logging.getLogger(__name__)

SHARDING_TYPES = ("table_wise", "row_wise", "column_wise", "table_row_wise", "data_parallel")
# FBGEMM's table-batched embedding kernels: which fused optimizers each device has
CPU_FUSED_OPTIMIZERS = ("adagrad", "rowwise_adagrad", "sgd")


def _optimizer_class(name: str) -> type[torch.optim.Optimizer]:
    """The optimizer class TorchRec maps onto the FBGEMM optimizer ``name``."""
    if name == "rowwise_adagrad":
        from torchrec.optim import RowWiseAdagrad

        return RowWiseAdagrad
    return {"adagrad": torch.optim.Adagrad, "sgd": torch.optim.SGD, "adam": torch.optim.Adam}[name]


def fused_optimizer_name(cfg: TrainConfig, device: torch.device) -> str:
    """The FBGEMM optimizer for the sharded tables (see ``train.fused_optimizer``).

    Raises:
        ValueError: ``adam`` asked for on a CPU, where FBGEMM has no Adam kernel.
    """
    name = cfg.fused_optimizer
    cpu = device.type != "cuda"
    if name == "auto":
        name = cfg.optimizer
        if cpu and name not in CPU_FUSED_OPTIMIZERS:
            log.warning(
                "torchrec engine: FBGEMM has no %s on CPU; the sharded tables use row-wise "
                "Adagrad (set train.fused_optimizer to choose)",
                name,
            )
            name = "rowwise_adagrad"
    elif cpu and name not in CPU_FUSED_OPTIMIZERS:
        raise ValueError(
            f"train.fused_optimizer={name}: FBGEMM's CPU kernels offer only "
            f"{', '.join(CPU_FUSED_OPTIMIZERS)}"
        )
    return name


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """TorchRec's planner tables and FBGEMM's kernel arguments (logged at INFO, partly on the
    root logger) are kept out of recforge's log; the plan is logged in short instead."""
    loggers = [logging.getLogger(), logging.getLogger("torchrec"), logging.getLogger("fbgemm_gpu")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def column_width(dim: int, world: int) -> int:
    """Columns per shard that split a ``dim``-wide table over ``world`` ranks: the smallest
    divisor of ``dim`` not below ``dim / world``."""
    return next(w for w in range(max(-(-dim // world), 1), dim + 1) if dim % w == 0)


def _sharded(value: Any) -> bool:
    return hasattr(value, "local_shards")


class _Sharder:
    """Builds TorchRec's ``EmbeddingBagCollectionSharder`` that also offers row-wise (and
    table-row-wise) sharding on CPU, which TorchRec lists for CUDA only."""

    @staticmethod
    def make() -> list[Any]:
        """Sharders for pooled (``EmbeddingBagCollection``) and unpooled collections."""
        from torchrec.distributed.embedding import EmbeddingCollectionSharder
        from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder

        class CPURowWiseSharder(EmbeddingBagCollectionSharder):
            def sharding_types(self, compute_device_type: str) -> list[str]:
                types = list(super().sharding_types(compute_device_type))
                for extra in ("row_wise", "table_row_wise"):
                    if extra not in types:
                        types.append(extra)
                return types

        return [CPURowWiseSharder(), EmbeddingCollectionSharder()]


class _ShardedForwardTrain(nn.Module):
    """The training call under ``DistributedModelParallel``: ``model.forward_train(batch)``,
    with the embedding lookups padded to the largest rank's batch (row-wise sharding over gloo
    needs equal batches; :func:`~recforge.distributed.torchrec_bridge.padded_lookups` drops the
    padded rows' vectors, so the model computes on its real rows only)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        n = len(batch)
        target = n
        if dist.get_world_size() > 1:
            size = torch.tensor([n], dtype=torch.int64)
            dist.all_reduce(size, op=dist.ReduceOp.MAX)
            target = int(size)
        with padded_lookups(target):
            return self.model.forward_train(batch)


class TorchRecEngine(TrainingEngine):
    """Model-parallel embedding tables (TorchRec) + data-parallel dense layers (DDP).

    Args:
        cfg: Training options (``sharding``, ``fused_optimizer``, ``lr``, ``optimizer``).

    Raises:
        RuntimeError: TorchRec cannot be imported (one line naming the install).
        ValueError: An unknown sharding type.
    """

    name = "torchrec"

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__(cfg)
        try:
            _require_torchrec()
        except ImportError:
            raise RuntimeError(f"train.engine=torchrec: {INSTALL_HINT}") from None
        for table, kind in cfg.sharding.items():
            if kind not in SHARDING_TYPES:
                raise ValueError(
                    f"train.sharding.{table}: unknown sharding type {kind!r} "
                    f"(one of {', '.join(SHARDING_TYPES)})"
                )
        self.dmp: Any = None
        self.plan: Any = None
        self._own_group = False
        self._shapes: dict[int, torch.Size] = {}  # id(fused parameter) -> its shape
        # (parent module, attribute, the original fused embedding, its TorchRec replacement)
        self._swapped: list[tuple[nn.Module, str, FeatureEmbedding, TorchRecEmbedding]] = []

    # ---- setup ---------------------------------------------------------------------------
    def setup(self, model: nn.Module, device: torch.device, task: str = "binary") -> None:
        """Swap in TorchRec tables, attach the fused optimizer, plan, shard (collective)."""
        try:
            self._setup(model, device, task)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Leave the one-rank process group the engine started (after a failure)."""
        self.dmp = None
        if self._own_group and dist.is_initialized():
            dist.destroy_process_group()
        self._own_group = False

    def _setup(self, model: nn.Module, device: torch.device, task: str) -> None:
        from torchrec.distributed import DistributedModelParallel
        from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward

        if not isinstance(model, RecModel) or model.own_objective or task == "ranking":
            raise ValueError(
                "train.engine=torchrec trains binary and regression models with "
                f"forward_train (not {type(model).__name__} on the {task} task)"
            )
        if self.cfg.embedding_l2 > 0:
            raise ValueError(
                "train.embedding_l2 needs the looked-up rows, which TorchRec's pooled lookups "
                "do not return; use 0 with train.engine=torchrec"
            )
        if not dist.is_initialized():  # one process: a group of one, so DMP can run
            dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
            self._own_group = True
        self._swap_embeddings(model, device)
        fused = fused_optimizer_name(self.cfg, device)
        params = [p for *_, tr in self._swapped for p in tr.collection.parameters()]
        apply_optimizer_in_backward(_optimizer_class(fused), params, {"lr": self.cfg.lr})
        call = _ShardedForwardTrain(model)
        sharders = _Sharder.make()
        with _quiet():
            self.plan = self._plan(call, device, sharders)
            start = {k: v.detach().clone() for k, v in call.state_dict().items()}
            self.dmp = DistributedModelParallel(
                module=call, device=device, plan=self.plan, sharders=sharders
            )
            # DMP initialises the shards afresh: load the one-process weights into them
            self.dmp.load_state_dict(start)
        del start
        self._release_fused_tables()
        kinds = self.sharding_types()
        if fused == "rowwise_adagrad" and {"column_wise", "table_column_wise"} & set(
            kinds.values()
        ):
            log.warning(
                "torchrec engine: row-wise Adagrad keeps one accumulator per row of each "
                "column shard, so column-wise tables train differently than on one rank "
                "(train.fused_optimizer=adagrad does not)"
            )
        plan = ", ".join(f"{t}: {k}" for t, k in kinds.items())
        log.info(
            "torchrec engine: %d rank(s), fused optimizer %s, plan %s",
            dist.get_world_size(),
            fused,
            plan,
        )

    def _swap_embeddings(self, model: nn.Module, device: torch.device) -> None:
        for parent in list(model.modules()):
            for attr, child in list(parent.named_children()):
                if not isinstance(child, FeatureEmbedding):
                    continue
                dims = {t.dim for t in child.tables.values()}  # type: ignore[attr-defined]
                # a layer that leaves its sequences unpooled is read through sequence() (DIN):
                # an EmbeddingCollection then, whose lookups keep every position
                pooled = child.pool_sequences or not child.schema.sequence_fields
                tr = TorchRecEmbedding(
                    child.schema,
                    dim=dims.pop() if len(dims) == 1 else None,
                    pooled=pooled,
                    pool_sequences=child.pool_sequences,
                    include_dense=child.include_dense,
                    stacked=isinstance(child, StackedInput),
                )
                if not pooled:
                    log.info(
                        "torchrec engine: %s reads unpooled sequences: its tables are sharded "
                        "as an EmbeddingCollection (every history position crosses the network)",
                        type(model).__name__,
                    )
                tr.load_from(child)
                tr.to(device)
                setattr(parent, attr, tr)
                self._swapped.append((parent, attr, child, tr))
        if not self._swapped:
            raise ValueError(
                f"train.engine=torchrec: {type(model).__name__} has no FeatureEmbedding to shard"
            )

    def _release_fused_tables(self) -> None:
        """Free the fused tables the sharded ones replaced (each rank keeps only its shards);
        :meth:`finish` allocates them again to gather the trained rows into."""
        for _, _, original, _ in self._swapped:
            for param in original.parameters():
                self._shapes[id(param)] = param.shape
                param.data = param.data.new_empty(0)

    def _plan(self, module: nn.Module, device: torch.device, sharders: list[Any]) -> Any:
        from torchrec.distributed.planner import EmbeddingShardingPlanner, Topology
        from torchrec.distributed.planner.types import ParameterConstraints, PlannerError

        dims = {s.name: s.embedding_dim for *_, tr in self._swapped for s in tr.specs}
        tables = list(dims)
        world = dist.get_world_size()
        constraints = {}
        default = self.cfg.sharding.get("*")
        for name in self.cfg.sharding:
            if name != "*" and name not in tables:
                raise ValueError(
                    f"train.sharding.{name}: no such table (tables: {', '.join(tables)})"
                )
        for name in tables:
            kind = self.cfg.sharding.get(name, default)
            if kind == "column_wise":  # over every rank (TorchRec's default is 128 columns)
                width = column_width(dims[name], world)
                constraints[name] = ParameterConstraints(sharding_types=[kind], min_partition=width)
            elif kind is not None:
                constraints[name] = ParameterConstraints(sharding_types=[kind])
        planner = EmbeddingShardingPlanner(
            topology=Topology(world_size=world, compute_device=device.type),
            constraints=constraints or None,
        )
        try:
            plan = planner.collective_plan(module, sharders, dist.group.WORLD)
        except PlannerError as exc:
            first = (str(exc).strip().splitlines() or ["no plan"])[0]
            asked = {k: v.sharding_types[0] for k, v in constraints.items()}  # type: ignore[index]
            raise ValueError(
                f"train.sharding: TorchRec's planner found no plan for {asked or 'the tables'} "
                f"on {dist.get_world_size()} {device.type} rank(s): {first}"
            ) from None
        return plan

    def sharding_types(self) -> dict[str, str]:
        """Table name -> the sharding type of the plan."""
        out = {}
        for module_plan in self.plan.plan.values():
            for table, spec in module_plan.items():
                out[table] = spec.sharding_type
        return out

    # ---- the training loop's hooks ---------------------------------------------------------
    def fused_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return [p for p in model.parameters() if hasattr(p, "_in_backward_optimizers")]

    def wrap(self, model: nn.Module) -> nn.Module | None:
        """The sharded model, with Dice's batch statistics taken over all ranks."""
        self._synced = sync_stats.sync_batch_statistics(model)
        return self.dmp

    def unwrap(self, wrapped: nn.Module) -> None:
        """Dice as it was (:meth:`finish` gives the model its fused tables back)."""
        sync_stats.restore(self._synced)
        self._synced = []

    def step(self) -> None:
        self.dmp.fused_optimizer.step()

    def scale_lr(self, factor: float) -> None:
        for group in self.dmp.fused_optimizer.param_groups:
            group["lr"] *= factor

    def eval_batches(self, data: EncodedData, batch_size: int) -> Iterator[Batch]:
        """Rows in order, in as many batches as the rank with most rows needs (every sharded
        lookup is a collective, so all ranks must run the same number)."""
        n = len(data)
        count = torch.tensor([-(-n // batch_size)], dtype=torch.int64)
        if self.dmp is not None and dist.get_world_size() > 1:
            dist.all_reduce(count, op=dist.ReduceOp.MAX)
        k = int(count)
        for i in range(k):
            lo, hi = n * i // k, n * (i + 1) // k
            part = EncodedData.from_arrays({a: v[lo:hi] for a, v in data.arrays().items()})
            yield next(iter(BatchLoader(part, max(hi - lo, 1))))

    def model_state(self, model: nn.Module) -> dict[str, Any]:
        """This rank's weights: its local shards (a list of tensors) for sharded tables."""
        out: dict[str, Any] = {}
        for key, value in model.state_dict().items():
            if _sharded(value):
                out[key] = [s.tensor.detach().clone() for s in value.local_shards()]
            else:
                out[key] = value.detach().clone()
        return out

    @torch.no_grad()
    def load_model_state(self, model: nn.Module, state: dict[str, Any]) -> None:
        _copy_into(model.state_dict(), state, "model")

    def state_dict(self) -> dict[str, Any]:
        """The fused optimizer's state of this rank's shards, and its learning rates."""
        fused = self.dmp.fused_optimizer
        return {
            "state": _local(fused.state_dict()["state"]),
            "lr": [group["lr"] for group in fused.param_groups],
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        fused = self.dmp.fused_optimizer
        _copy_into(fused.state_dict()["state"], state["state"], "fused optimizer")
        for group, lr in zip(fused.param_groups, state["lr"], strict=True):
            group["lr"] = lr

    def checkpoint_file(self, output_dir: Path) -> Path | None:
        return self.resume_file(output_dir)

    def resume_file(self, output_dir: Path) -> Path:
        rank = self.world.rank
        return output_dir / (CHECKPOINT if rank == 0 else f"checkpoint.rank{rank}.pt")

    def check_resume(self, saved: dict[str, Any], path: Path) -> None:
        super().check_resume(saved, path)
        ranks = saved.get("world_size", 1)
        if ranks != self.world.size:
            raise RuntimeError(
                f"{path}: its tables are sharded over {ranks} rank(s), this run has "
                f"{self.world.size}; resume with --nproc {ranks} (sharded checkpoints are not "
                "resharded)"
            )

    # ---- the end -------------------------------------------------------------------------
    @torch.no_grad()
    def finish(self, model: nn.Module) -> None:
        """Gather every table on every rank into the model's original fused embeddings."""
        if self.dmp is None:
            return
        state = model.state_dict()
        for parent, attr, original, tr in self._swapped:
            path = next(k for k, m in model.named_modules() if m is tr)
            prefix = f"{path}.collection.{tr.state_prefix}"
            tables = {s.name: _full(state[f"{prefix}{s.name}.weight"]) for s in tr.specs}
            for param in original.parameters():
                param.data = param.data.new_zeros(self._shapes[id(param)])
            load_feature_embedding(original, tables, tr.specs)
            for key, w in tr.dense_weight.items():
                original.dense_weight[key].copy_(w)
            setattr(parent, attr, original)
        self._swapped.clear()
        self.close()


def _full(value: Any) -> torch.Tensor:
    """The whole tensor of a (possibly sharded) state entry, on every rank."""
    if not _sharded(value):
        return value.detach().clone()
    rank = dist.get_rank()
    full = torch.empty(tuple(value.size()), dtype=value.dtype) if rank == 0 else None
    value.gather(dst=0, out=full)
    if full is None:
        full = torch.empty(tuple(value.size()), dtype=value.dtype)
    if dist.get_world_size() > 1:
        dist.broadcast(full, src=0)
    return full


def _local(tree: Any) -> Any:
    """A nested state with every sharded tensor replaced by copies of this rank's shards."""
    if _sharded(tree):
        return [s.tensor.detach().clone() for s in tree.local_shards()]
    if isinstance(tree, torch.Tensor):
        return tree.detach().clone()
    if isinstance(tree, dict):
        return {k: _local(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_local(v) for v in tree)
    return tree


def _copy_into(current: Any, saved: Any, what: str) -> None:
    """Copy ``saved`` (from :func:`_local`) into the live tensors of ``current`` in place."""
    if _sharded(current):
        shards = current.local_shards()
        if len(shards) != len(saved):
            raise RuntimeError(f"{what}: the checkpoint's shards do not match the plan")
        for shard, tensor in zip(shards, saved, strict=True):
            shard.tensor.copy_(tensor)
    elif isinstance(current, torch.Tensor):
        current.copy_(saved)
    elif isinstance(current, dict):
        if set(current) != set(saved):
            raise RuntimeError(f"{what}: the checkpoint does not match the model")
        for key, value in current.items():
            _copy_into(value, saved[key], what)
