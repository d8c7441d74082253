"""How the one training loop places a model on the ranks: the Trainer's engine strategies.

:class:`recforge.train.Trainer` has one loop. What differs between running it in one process,
under ``DistributedDataParallel`` or with TorchRec's sharded tables is asked of a
:class:`TrainingEngine`, and only through the hooks declared here:

* :meth:`~TrainingEngine.setup` once the model is on its device (TorchRec shards it here);
* :meth:`~TrainingEngine.fused_parameters`, the parameters the engine updates itself (the
  Trainer's optimizers leave them out), and :meth:`~TrainingEngine.step` /
  :meth:`~TrainingEngine.scale_lr` for that optimizer;
* :meth:`~TrainingEngine.wrap` / :meth:`~TrainingEngine.unwrap`, the training call;
* :meth:`~TrainingEngine.eval_batches`, the batches a rank predicts (collective engines need
  the same number on every rank);
* :meth:`~TrainingEngine.model_state` / :meth:`~TrainingEngine.load_model_state`,
  :meth:`~TrainingEngine.state_dict` / :meth:`~TrainingEngine.load_state_dict` and
  :meth:`~TrainingEngine.checkpoint_file`, what a checkpoint holds and which rank writes it;
* :meth:`~TrainingEngine.finish`, after the last epoch (TorchRec gathers the tables back into
  recforge's fused :class:`~recforge.layers.embedding.FeatureEmbedding`), or
  :meth:`~TrainingEngine.close` when ``fit`` (or the setup) fails.

This base class is the ``ddp`` engine: nothing in one process, ``DistributedDataParallel`` in a
process group (see :mod:`recforge.distributed.ddp`). :func:`build_engine` picks the engine named
by ``train.engine``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from recforge.config import TrainConfig
from recforge.data.loader import BatchLoader
from recforge.distributed import ddp, sync_stats
from recforge.features import Batch, EncodedData

CHECKPOINT = "checkpoint.pt"


class TrainingEngine:
    """Data parallel (or single-process) placement of a model: the ``ddp`` engine.

    Args:
        cfg: Training options.
    """

    name = "ddp"

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.world = ddp.current_world()
        self._synced: list[sync_stats.Swap] = []

    def setup(self, model: nn.Module, device: torch.device, task: str = "binary") -> None:
        """Prepare ``model`` (already on ``device``, trained for ``task``) before the
        optimizers are built."""

    def fused_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """Parameters the engine updates itself (left out of the Trainer's optimizers)."""
        return []

    def wrap(self, model: nn.Module) -> nn.Module | None:
        """The module whose call is ``model.forward_train(batch)`` (or ``objective``) in
        training, or ``None`` to call the model itself. DDP in a process group, with Dice's
        batch statistics taken over all ranks (:mod:`recforge.distributed.sync_stats`)."""
        if not self.world.distributed:
            return None
        self._synced = sync_stats.sync_batch_statistics(model)
        return ddp.wrap_ddp(model)

    def unwrap(self, wrapped: nn.Module) -> None:
        """Undo :meth:`wrap` at the end of ``fit`` (the model stays usable alone)."""
        ddp.unwrap_ddp(wrapped)
        sync_stats.restore(self._synced)
        self._synced = []

    def step(self) -> None:
        """After the Trainer's optimizers stepped: step the engine's own optimizer."""

    def scale_lr(self, factor: float) -> None:
        """Multiply the learning rate of the engine's own optimizer by ``factor``."""

    def eval_batches(self, data: EncodedData, batch_size: int) -> Iterator[Batch]:
        """The batches this rank predicts for its rows ``data`` (in row order)."""
        return iter(BatchLoader(data, batch_size))

    def model_state(self, model: nn.Module) -> dict[str, Any]:
        """The model's weights as a checkpoint keeps them (the ``state_dict``)."""
        return model.state_dict()

    def load_model_state(self, model: nn.Module, state: dict[str, Any]) -> None:
        """Load what :meth:`model_state` returned."""
        model.load_state_dict(state)

    def state_dict(self) -> dict[str, Any]:
        """The engine's own state for a checkpoint (its optimizer): nothing here."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""

    def checkpoint_file(self, output_dir: Path) -> Path | None:
        """The checkpoint this rank writes (rank 0 alone here: every rank holds all weights)."""
        return output_dir / CHECKPOINT if self.world.is_main else None

    def resume_file(self, output_dir: Path) -> Path:
        """The checkpoint this rank resumes from."""
        return output_dir / CHECKPOINT

    def check_resume(self, saved: dict[str, Any], path: Path) -> None:
        """Refuse a checkpoint this engine cannot continue (written by another engine)."""
        engine = saved.get("engine", "ddp")
        if engine != self.name:
            raise RuntimeError(
                f"{path}: checkpoint of the {engine!r} engine; resume it with train.engine={engine}"
            )

    def close(self) -> None:
        """Release what :meth:`setup` acquired when ``fit`` ends with an error (a process
        group the engine started itself)."""

    def finish(self, model: nn.Module) -> None:
        """After the last epoch (and the best weights restored): the model as recforge keeps
        it on one device, for evaluation and the bundle."""


def build_engine(cfg: TrainConfig) -> TrainingEngine:
    """The engine ``cfg.engine`` names (``ddp`` or ``torchrec``)."""
    if cfg.engine == "torchrec":
        from recforge.distributed.torchrec_engine import TorchRecEngine

        return TorchRecEngine(cfg)
    if cfg.engine != "ddp":
        raise ValueError(f"train.engine: unknown engine {cfg.engine!r} (ddp or torchrec)")
    if cfg.sharding:
        raise ValueError("train.sharding is for train.engine=torchrec")
    return TrainingEngine(cfg)
