"""The training loop, kept apart from the models.

Tasks: ``binary`` (BCE with logits), ``regression`` (MSE) and ``ranking`` (pointwise BCE or BPR
over sampled negative items). Early stopping on a validation metric restores the best weights;
the learning rate is reduced on plateaus; every epoch writes an atomic checkpoint from which
:meth:`Trainer.fit` can resume bit-for-bit (data order is a function of ``(seed, epoch)`` and
the RNG states are saved).

Inside an initialised ``torch.distributed`` process group with more than one rank, the same
Trainer runs distributed data parallel: each rank trains on its slice of every global batch
through ``DistributedDataParallel``, evaluation gathers all ranks' predictions, and rank 0
alone writes outputs (see :mod:`recforge.distributed.ddp` for what is kept equal to a single
process). With one process nothing changes. Where the model's parameters live across ranks is
the engine's business (:mod:`recforge.distributed.engine`; ``train.engine=torchrec`` shards the
embedding tables with TorchRec), asked only through the hooks of
:class:`~recforge.distributed.engine.TrainingEngine`.
"""

from __future__ import annotations

import copy
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recforge import metrics
from recforge.config import TrainConfig
from recforge.data.encode.sampling import NegativeSampler
from recforge.data.loader import BatchLoader
from recforge.data.read.stream import release_memory
from recforge.distributed import ddp as distributed
from recforge.distributed.engine import CHECKPOINT as CHECKPOINT
from recforge.distributed.engine import TrainingEngine, build_engine
from recforge.features import Batch, EncodedData
from recforge.io import atomic_write, atomic_write_text
from recforge.models.base import SPARSE_MIN_RATIO, SPARSE_MIN_ROWS, RecModel
from recforge.train.optim import build_optimizers, clip_gradients, scale_lr

log = logging.getLogger(__name__)

NegativeFn = Callable[[Batch, int, torch.Generator], torch.Tensor]


class TrainerCallback:
    """Something that follows a :class:`Trainer` through :meth:`Trainer.fit`.

    Every method is a no-op here; a subclass overrides the ones it needs (experiment tracking
    logs steps and epochs, ``recforge tune`` reports each epoch's validation metric to Optuna
    and stops a trial it prunes by raising). An exception raised by a callback ends ``fit``
    after :meth:`on_fit_end` has run. In a distributed run only rank 0 calls them.
    """

    def on_fit_start(self, trainer: Trainer) -> None:
        """Before the first epoch (after a resumed checkpoint is loaded)."""

    def on_step_end(self, trainer: Trainer, step: int, loss: float, rows: int) -> None:
        """After each optimizer step: global step number (from 0), its mean loss, its rows."""

    def on_epoch_end(self, trainer: Trainer, record: dict[str, float]) -> None:
        """After each epoch's validation, with the epoch's history record (``epoch``,
        ``train_loss``, ``train_samples_per_s``, ``valid_*``, ``lr``)."""

    def on_fit_end(self, trainer: Trainer) -> None:
        """When ``fit`` returns or raises."""


def monitor_metric(metric: str, task: str, top_k: int = 10) -> str:
    """The validation metric that early stopping (and tuning) follows: ``metric`` unless
    ``auto``, which is AUC for binary, RMSE for regression and NDCG@top_k for ranking."""
    if metric != "auto":
        return metric
    if task == "ranking":
        return f"ndcg@{top_k}"
    return "rmse" if task == "regression" else "auc"


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (call before building a model for reproducible init)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; a CUDA device this torch cannot use is an
    error naming ``train.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"train.device: {name!r} is not a device ({exc})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device: {name!r} but this torch build has no usable CUDA")
    return device


class Trainer:
    """Fits a :class:`RecModel` on encoded data: the one training loop of recforge.

    The model is called only through the hooks of :class:`RecModel`: ``fit_statistics(train)``
    once before the first epoch (parts estimated by counting: item popularity, AutoRec's rating
    matrix), ``training_data(train)`` for the rows an epoch iterates over, and either
    ``forward_train`` (task loss plus an optional extra term) or, for a model with
    ``own_objective``, ``objective`` (its whole loss: AutoRec's masked reconstruction error).

    For the ranking task, each positive is paired with ``cfg.negatives`` items drawn uniformly
    from those the user has no training positive with (fresh every batch), and validation ranks
    each held-out positive among ``cfg.eval_negatives`` such items (or the candidates the data
    carries in ``extras["candidates"]``, e.g. the NCF test negatives): HR@K and NDCG@K.

    Args:
        model: The model (built after :func:`seed_everything` for reproducible init).
        cfg: Training options.
        task: ``binary``, ``regression`` or ``ranking``; defaults to the model schema's task.
        output_dir: Where checkpoints, ``history.json`` and ``learning_curve.png`` go; ``None``
            keeps everything in memory.
        negative_fn: For ranking, ``fn(batch, k, generator) -> (B, k)`` negative item ids; the
            default samples uniformly from the items the row's user has no training positive
            with.
        callbacks: :class:`TrainerCallback` objects called during :meth:`fit` (rank 0 only).
        engine: Where the model's parameters live across ranks; default
            :func:`~recforge.distributed.engine.build_engine` of ``cfg.engine`` (``ddp``: whole
            model per rank; ``torchrec``: tables sharded by TorchRec).
    """

    def __init__(
        self,
        model: RecModel,
        cfg: TrainConfig,
        task: str | None = None,
        output_dir: str | Path | None = None,
        negative_fn: NegativeFn | None = None,
        callbacks: Sequence[TrainerCallback] = (),
        engine: TrainingEngine | None = None,
    ) -> None:
        self.model = model
        self.cfg = cfg
        self.task = task or model.schema.task
        if self.task not in ("binary", "regression", "ranking"):
            raise ValueError(f"unknown task {self.task!r}")
        self.output_dir = Path(output_dir) if output_dir else None
        self.world = distributed.current_world()
        self.callbacks = list(callbacks) if self.world.is_main else []
        self.global_step = 0
        if self.world.distributed:
            self.device = distributed.rank_device(cfg.device, self.world)
            nccl = distributed.backend_for(self.device) == "nccl"
            if nccl:
                _dense_embedding_gradients(model)  # NCCL cannot all-reduce sparse gradients
        else:
            self.device = resolve_device(cfg.device)
            nccl = False
        self.model.to(self.device)
        self.engine = engine or build_engine(cfg)
        self.engine.setup(model, self.device, self.task)
        self._ddp: nn.Module | None = None  # the engine's training call (DDP, DMP) in fit
        self._shard = (0, 0, 0)  # (lo, hi, rows) of the current global batch on this rank
        fused = self.engine.fused_parameters(model)
        if model.cfg.sparse == "auto" and not nccl and not fused:
            resolve_sparse_tables(model, cfg)
        self.optimizers = build_optimizers(model, cfg, fused)
        if cfg.grad_clip_norm > 0 and fused:
            raise ValueError(
                "train.grad_clip_norm needs every gradient, but the torchrec engine's fused "
                "tables update inside the backward pass; drop grad_clip_norm or use engine ddp"
            )
        self.negative_fn = negative_fn
        self._sampler: NegativeSampler | None = None  # training positives (ranking)
        self._positives: EncodedData | None = None
        # id(split) -> (split, its sampled ranking candidates); the split is kept so an id is
        # never reused for another object while its entry lives
        self._candidates: dict[int, tuple[EncodedData, np.ndarray]] = {}
        self.history: list[dict[str, float]] = []
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_value: float | None = None
        self.best_epoch = -1
        self.bad_epochs = 0
        self.plateau_epochs = 0
        self.epoch = 0
        self._emb_penalty: list[torch.Tensor] = []
        self._emb_tables = [m for m in model.modules() if isinstance(m, nn.Embedding)]
        if cfg.embedding_l2 > 0 and cfg.embedding_l2_scope == "table":
            if any(m.sparse for m in self._emb_tables):
                raise ValueError(
                    "embedding_l2_scope='table' touches every row each step; it needs dense "
                    "embedding gradients (model sparse=false) or use scope 'batch'"
                )
        elif cfg.embedding_l2 > 0:
            for module in self._emb_tables:
                module.register_forward_hook(self._collect_embedding_penalty)

    # ---- losses --------------------------------------------------------------------------
    def _collect_embedding_penalty(self, module: nn.Module, inputs: Any, output: torch.Tensor):
        if module.training:
            # L2 on the rows this batch looked up (scales with the batch, not the vocabulary)
            self._emb_penalty.append(output.float().pow(2).sum() / max(output.shape[0], 1))

    @property
    def metric_names(self) -> list[str]:
        if self.task == "ranking":
            return [f"hr@{self.cfg.top_k}", f"ndcg@{self.cfg.top_k}"]
        return ["rmse", "mae"] if self.task == "regression" else ["auc", "logloss"]

    @property
    def monitor(self) -> str:
        return monitor_metric(self.cfg.metric, self.task, self.cfg.top_k)

    def _autocast(self):
        return torch.autocast(
            device_type=self.device.type, dtype=torch.bfloat16, enabled=self.cfg.bf16
        )

    def _loss(self, batch: Batch, generator: torch.Generator) -> torch.Tensor:
        if self.model.own_objective:
            with self._autocast():
                call = self.model.objective if self._ddp is None else self._ddp
                return call(batch).float()
        with self._autocast():
            forward = self.model.forward_train if self._ddp is None else self._ddp
            logits, extra = forward(batch)
        logits = logits.float()
        if self.task == "binary":
            loss = F.binary_cross_entropy_with_logits(logits, batch.label)
        elif self.task == "regression":
            loss = F.mse_loss(logits, batch.label)
        else:
            loss = self._ranking_loss(batch, logits, generator)
        if extra is not None:
            loss = loss + extra.float()
        if self._emb_penalty:
            loss = loss + self.cfg.embedding_l2 * torch.stack(self._emb_penalty).sum()
        elif self.cfg.embedding_l2 > 0 and self.cfg.embedding_l2_scope == "table":
            table_sq = sum(m.weight.pow(2).sum() for m in self._emb_tables)
            loss = loss + self.cfg.embedding_l2 / 2 * table_sq
        return loss

    def _ranking_loss(
        self, batch: Batch, pos_logits: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        schema = self.model.schema
        if schema.item_key is None:
            raise ValueError("the ranking task needs schema.item_key")
        k = max(self.cfg.negatives, 1)
        col = schema.sparse_index(schema.item_key)
        if self.negative_fn is not None:
            neg_ids = self.negative_fn(batch, k, generator).to(batch.sparse.device)
        elif self._sampler is not None:
            seed = int(torch.randint(0, 2**62, (1,), generator=generator))
            users = batch.sparse[:, schema.sparse_index(schema.user_key)].cpu().numpy()
            rng = np.random.default_rng(seed)
            neg = self._sampler.sample(users, k, rng=rng, all_positive="uniform")
            neg_ids = torch.from_numpy(neg).to(batch.sparse.device)
        else:  # no user field: uniform over the item vocabulary
            n_items = schema.field(schema.item_key).vocab_size
            lo, hi, rows = self._shard if self.world.distributed else (0, len(batch), len(batch))
            # drawn for the whole global batch, so N ranks use the single-process negatives
            neg_ids = torch.randint(1, max(n_items, 2), (rows, k), generator=generator)[lo:hi]
        repeated = batch.select(torch.arange(len(batch)).repeat(k))
        neg_batch = repeated.with_sparse_column(col, neg_ids.T.reshape(-1).to(batch.sparse.device))
        with self._autocast():
            neg_logits = self.model(neg_batch).float().view(k, len(batch))
        if self.cfg.loss == "bpr":
            return -F.logsigmoid(pos_logits[None, :] - neg_logits).mean()
        pos = F.binary_cross_entropy_with_logits(pos_logits, torch.ones_like(pos_logits))
        neg = F.binary_cross_entropy_with_logits(neg_logits, torch.zeros_like(neg_logits))
        return (pos + k * neg) / (1 + k)

    # ---- fit -----------------------------------------------------------------------------
    def fit(
        self,
        train: EncodedData,
        valid: EncodedData | None = None,
        resume: bool = False,
    ) -> list[dict[str, float]]:
        """Train for ``cfg.epochs`` epochs with early stopping; returns the metrics history.

        The callbacks see the fit start, every step, every epoch and the end (also when a
        callback or the loop raises).
        """
        try:
            return self._fit(train, valid, resume)
        except BaseException:
            self.engine.close()
            raise
        finally:
            for callback in self.callbacks:
                callback.on_fit_end(self)

    def _fit(
        self, train: EncodedData, valid: EncodedData | None, resume: bool
    ) -> list[dict[str, float]]:
        cfg = self.cfg
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        resumed = self.load_checkpoint() if resume else False
        if resume and self.world.distributed:
            # every rank must continue from the same epoch: a sharded checkpoint has one file
            # per rank, and a rank killed while they were written leaves them unequal
            found, total, squares = distributed.all_reduce_sum(
                [float(resumed), float(self.epoch), float(self.epoch) ** 2]
            )
            if 0 < found < self.world.size:
                raise RuntimeError(
                    f"{self.output_dir}: checkpoint files for {int(found)} of "
                    f"{self.world.size} ranks; cannot resume"
                )
            if abs(self.world.size * squares - total**2) > 0.5:
                raise RuntimeError(
                    f"{self.output_dir}: the ranks' checkpoint files are from different epochs "
                    "(a rank stopped while they were written); cannot resume"
                )
        if not resumed:
            self.model.fit_statistics(train)  # count-based parts come from the data
        if self.task == "ranking":
            self._positives = train
            self._candidates.clear()
            if self.negative_fn is None and self.model.schema.user_key is not None:
                self._sampler = _positive_sampler(self.model.schema, train)
        world = self.world
        loader = BatchLoader(
            self.model.training_data(train),
            cfg.batch_size,
            shuffle=True,
            seed=cfg.seed,
            rank=world.rank,
            world_size=world.size,
            shuffle_window=cfg.shuffle_window,
        )
        if resumed:  # step numbers continue where the interrupted run's left off
            self.global_step = self.epoch * len(loader)
        if self._ddp is None and any(p.requires_grad for p in self.model.parameters()):
            self._ddp = self.engine.wrap(self.model)
        # rank 0 keeps the single-process streams; other ranks draw their own dropout masks
        # (and custom negatives, which cannot be drawn for the global batch)
        rank_offset = 1_000_003 * world.rank
        custom = self.negative_fn is not None or self._sampler is not None
        custom_negatives = rank_offset if custom else 0
        higher = metrics.higher_is_better(self.monitor)
        for callback in self.callbacks:
            callback.on_fit_start(self)
        while self.epoch < cfg.epochs:
            epoch = self.epoch
            loader.set_epoch(epoch)
            generator = torch.Generator().manual_seed(cfg.seed * 1000 + epoch + custom_negatives)
            # dropout etc.: a function of the epoch
            torch.manual_seed(cfg.seed * 7919 + epoch + rank_offset)
            record = self._train_epoch(loader, generator, epoch)
            # the epoch's freed activations go back to the OS before validation allocates
            # its own (otherwise the heap keeps both: +500 MB at the end of a 10M-row epoch)
            release_memory()
            if valid is not None and len(valid):
                record.update({f"valid_{k}": v for k, v in self.evaluate(valid).items()})
                value = record[f"valid_{self.monitor}"]
                improved = self.best_value is None or (
                    value > self.best_value if higher else value < self.best_value
                )
                if improved:
                    self.best_value, self.best_epoch = value, epoch
                    self.best_state = copy.deepcopy(self.engine.model_state(self.model))
                    self.bad_epochs = self.plateau_epochs = 0
                else:
                    self.bad_epochs += 1
                    self.plateau_epochs += 1
                    if cfg.lr_patience and self.plateau_epochs >= cfg.lr_patience:
                        scale_lr(self.optimizers, cfg.lr_factor)
                        self.engine.scale_lr(cfg.lr_factor)
                        self.plateau_epochs = 0
                        log.info("epoch %d: learning rate reduced by %g", epoch, cfg.lr_factor)
            record["lr"] = self.optimizers[0].param_groups[0]["lr"] if self.optimizers else 0.0
            self.history.append(record)
            self.epoch = epoch + 1
            log.info("epoch %d: %s", epoch, _fmt(record))
            for callback in self.callbacks:
                callback.on_epoch_end(self, record)
            stop = bool(cfg.patience) and self.bad_epochs >= cfg.patience
            if stop:
                self.epoch = cfg.epochs  # a resumed stopped run does not train further
            self._write_outputs()
            if stop:
                log.info("early stopping at epoch %d (best epoch %d)", epoch, self.best_epoch)
                break
        if self.best_state is not None:
            self.engine.load_model_state(self.model, self.best_state)
        if self._ddp is not None:
            self.engine.unwrap(self._ddp)
        self._ddp = None  # the wrapper's hooks go; the next fit wraps again
        self.engine.finish(self.model)
        return self.history

    def _train_epoch(
        self, loader: BatchLoader, generator: torch.Generator, epoch: int
    ) -> dict[str, float]:
        from tqdm.auto import tqdm

        self.model.train()
        world = self.world
        total, seen, batches, start = 0.0, 0, 0, time.perf_counter()
        own = self.model.own_objective
        show = self.cfg.progress and world.is_main
        bar = tqdm(loader, desc=f"epoch {epoch}", disable=not show, leave=False, unit="batch")
        for step, batch in enumerate(bar):
            batch = batch.to(self.device)
            self._emb_penalty.clear()
            for opt in self.optimizers:
                opt.zero_grad(set_to_none=True)
            loss = self._loss_on_shard(batch, generator, loader.global_rows(step))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"epoch {epoch}, step {step}: loss is {loss.item()}")
            if world.distributed:
                # DDP averages gradients over N ranks: a rank holding b_r of the global batch's
                # b rows weighs its mean loss by N * b_r / b, so the step follows the gradient
                # of the global mean loss, also for an unequal last batch
                (loss * (world.size * len(batch) / self._shard[2])).backward()
            else:
                loss.backward()
            if self.cfg.grad_clip_norm > 0:
                clip_gradients(self.model.parameters(), self.cfg.grad_clip_norm)
            for opt in self.optimizers:
                opt.step()
            self.engine.step()
            # mean loss per row; a model's own objective (a sum over its rows) per batch
            value = float(loss.detach())
            total += value * (1 if own else len(batch))
            for callback in self.callbacks:
                callback.on_step_end(self, self.global_step, value, len(batch))
            self.global_step += 1
            batches += 1
            seen += len(batch)
            if step % 20 == 0:
                rate = seen * world.size / max(time.perf_counter() - start, 1e-9)
                bar.set_postfix(
                    loss=f"{total / max(batches if own else seen, 1):.4f}", samples_s=f"{rate:,.0f}"
                )
        total, seen, batches = distributed.all_reduce_sum([total, float(seen), float(batches)])
        elapsed = time.perf_counter() - start
        self._emb_penalty.clear()
        return {
            "epoch": float(epoch),
            "train_loss": total / max(batches if own else seen, 1),
            "train_seconds": elapsed,
            "train_samples_per_s": seen / max(elapsed, 1e-9),
        }

    def _loss_on_shard(
        self, batch: Batch, generator: torch.Generator, global_rows: int
    ) -> torch.Tensor:
        """Mean loss of this rank's rows; records where they sit in the global batch."""
        if self.world.distributed:
            lo, hi = distributed.shard_bounds(global_rows, self.world.rank, self.world.size)
            self._shard = (lo, hi, global_rows)
        return self._loss(batch, generator)

    # ---- inference -----------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, data: EncodedData) -> np.ndarray:
        """Model outputs for every row (logits for binary/ranking, predictions for regression).

        In a distributed run this is collective (every rank must call it): each rank predicts
        its contiguous shard and every rank returns all rows' outputs in order.
        """
        world = self.world
        if world.distributed:
            lo, hi = distributed.shard_bounds(len(data), world.rank, world.size)
            shard = EncodedData.from_arrays({k: v[lo:hi] for k, v in data.arrays().items()})
            local = torch.from_numpy(self._predict_local(shard))
            return distributed.gather_rows(local, len(data)).numpy()
        return self._predict_local(data)

    @torch.no_grad()
    def _predict_local(self, data: EncodedData) -> np.ndarray:
        self.model.eval()
        out = []
        for batch in self.engine.eval_batches(data, self.cfg.eval_batch_size):
            with self._autocast():
                out.append(self.model(batch.to(self.device)).float().cpu())
        return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)

    def evaluate(self, data: EncodedData) -> dict[str, float]:
        """Validation/test metrics; GAUC too when the data carries user groups.

        Ranking: HR@K and NDCG@K of each positive row's item ranked among its candidates (see
        :meth:`rank_positives`).
        """
        if self.task == "ranking":
            ranks = self.rank_positives(data)
            return metrics.metrics_from_ranks(ranks, (self.cfg.top_k,))
        scores = self.predict(data)
        names = list(self.metric_names)
        groups = data.extras.get("group")
        task = "regression" if self.task == "regression" else "binary"
        if task == "binary" and groups is not None:
            names.append("gauc")
        labels = np.asarray(data.label)
        if task == "binary" and len(np.unique(labels)) < 2:
            names = [n for n in names if n == "logloss"]
        return metrics.compute(names, labels, scores, groups=groups, task=task)

    @torch.no_grad()
    def rank_positives(self, data: EncodedData) -> np.ndarray:
        """0-based rank of each positive row's item among its candidate items.

        Candidates are ``data.extras["candidates"]`` (encoded item ids, one row per data row)
        when present, else ``cfg.eval_negatives`` distinct items drawn (with a fixed seed) from
        those the user has no positive with in the training data nor in ``data``. Each
        candidate is scored on a copy of the row with its item replaced, so context features
        stay as observed. Ties count against the positive (a constant scorer ranks last).
        """
        schema = self.model.schema
        if schema.item_key is None:
            raise ValueError("the ranking task needs schema.item_key")
        item_col = schema.sparse_index(schema.item_key)
        keep = np.flatnonzero(np.asarray(data.label) > 0)
        rows = data.take(keep)
        candidates = rows.extras.get("candidates")
        if candidates is None:  # drawn once per evaluated split (fixed seed), not every epoch
            cached = self._candidates.get(id(data))
            if cached is None or cached[0] is not data:
                cached = (data, self._eval_candidates(rows))
                self._candidates[id(data)] = cached
            candidates = cached[1]
        candidates = np.asarray(candidates, dtype=np.int64)
        n_cand = candidates.shape[1] + 1
        per_batch = max(self.cfg.eval_batch_size // n_cand, 1)
        self.model.eval()
        ranks = []
        for start in range(0, len(rows), per_batch):
            part = rows.take(np.arange(start, min(start + per_batch, len(rows))))
            batch = next(iter(BatchLoader(part, len(part)))).to(self.device)
            items = torch.cat(
                [batch.sparse[:, item_col : item_col + 1],
                 torch.from_numpy(candidates[start : start + len(part)]).to(self.device)],
                dim=1,
            )  # fmt: skip
            wide = batch.select(torch.arange(len(part), device=self.device).repeat(n_cand))
            wide = wide.with_sparse_column(item_col, items.T.reshape(-1))
            with self._autocast():
                scores = self.model(wide).float().view(n_cand, len(part)).T
            ranks.append(metrics.rank_of_target(scores.cpu().numpy(), 0))
        return np.concatenate(ranks) if ranks else np.zeros(0, dtype=np.int64)

    def _eval_candidates(self, rows: EncodedData) -> np.ndarray:
        schema = self.model.schema
        if schema.user_key is None:
            raise ValueError("sampled ranking evaluation needs schema.user_key")
        user_col = schema.sparse_index(schema.user_key)
        item_col = schema.sparse_index(schema.item_key)
        parts = [rows] if self._positives is None else [self._positives, rows]
        users = np.concatenate([np.asarray(p.sparse[:, user_col]) for p in parts])
        items = np.concatenate([np.asarray(p.sparse[:, item_col]) for p in parts])
        n_items = schema.field(schema.item_key).vocab_size
        sampler = NegativeSampler(users, items, n_items)
        rng = np.random.default_rng(self.cfg.seed)
        eval_users = np.asarray(rows.sparse[:, user_col])
        n = self.cfg.eval_negatives
        available = int(sampler.num_negatives(eval_users).min(initial=n))
        if available < n:
            log.warning("ranking evaluation: %d candidates per positive, not %d (a user has "
                        "fewer items left)", available, n)  # fmt: skip
            n = available
        return sampler.sample_fixed_candidates(eval_users, n, rng=rng)

    # ---- checkpoints ---------------------------------------------------------------------
    def checkpoint_state(self) -> dict[str, Any]:
        return {
            "format": "recforge-checkpoint-1",
            "model_class": type(self.model).__name__,
            "model": self.engine.model_state(self.model),
            "optimizers": [o.state_dict() for o in self.optimizers],
            "engine": self.engine.name,
            "engine_state": self.engine.state_dict(),
            "epoch": self.epoch,
            "history": self.history,
            "best_state": self.best_state,
            "best_value": self.best_value,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "plateau_epochs": self.plateau_epochs,
            "torch_rng": torch.get_rng_state(),
            "world_size": self.world.size,
        }

    def _write_outputs(self) -> None:
        if self.output_dir is None:
            return
        # one checkpoint writer (ddp), or one per rank (sharded tables); the other ranks wait at
        # the barrier until the files are whole
        path = self.engine.checkpoint_file(self.output_dir)
        if path is not None:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            state = self.checkpoint_state()
            atomic_write(path, lambda tmp: torch.save(state, tmp))
        if self.world.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            history = json.dumps(self.history, indent=1)
            atomic_write_text(self.output_dir / "history.json", history)
            plot_history(self.history, self.output_dir / "learning_curve.png")
        distributed.barrier()

    def load_checkpoint(self, path: str | Path | None = None) -> bool:
        """Restore model, optimizers and loop state; False when there is no checkpoint."""
        if path is None:
            if self.output_dir is None:
                raise ValueError("resume needs an output_dir or a checkpoint path")
            path = self.engine.resume_file(self.output_dir)
        path = Path(path)
        if not path.exists():
            log.info("no checkpoint at %s; starting fresh", path)
            return False
        try:
            # tensors and plain types only: a checkpoint cannot run code when it is loaded
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as exc:  # torch raises several types for a damaged or unsafe file
            # torch's own advice (load with weights_only=False) is never right for a file we
            # did not write: say what is wrong, not how to run its code
            unsafe = "Weights only load failed" in str(exc)
            why = (
                "it holds objects other than tensors and plain values, which recforge never "
                "unpickles"
                if unsafe
                else (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            )
            raise RuntimeError(f"{path}: unreadable or unsafe checkpoint ({why})") from None
        if not isinstance(state, dict) or state.get("format") != "recforge-checkpoint-1":
            raise RuntimeError(f"{path}: not a recforge checkpoint")
        if state["model_class"] != type(self.model).__name__:
            raise RuntimeError(
                f"{path}: checkpoint of {state['model_class']}, not {type(self.model).__name__}"
            )
        self.engine.check_resume(state, path)
        try:
            self.engine.load_model_state(self.model, state["model"])
        except RuntimeError as exc:
            raise RuntimeError(f"{path}: checkpoint does not match the model ({exc})") from exc
        self.engine.load_state_dict(state.get("engine_state", {}))
        for opt, opt_state in zip(self.optimizers, state["optimizers"], strict=True):
            opt.load_state_dict(opt_state)
        self.epoch = state["epoch"]
        self.history = state["history"]
        self.best_state = state["best_state"]
        self.best_value = state["best_value"]
        self.best_epoch = state["best_epoch"]
        self.bad_epochs = state["bad_epochs"]
        self.plateau_epochs = state["plateau_epochs"]
        torch.set_rng_state(state["torch_rng"])
        saved_world = state.get("world_size", 1)
        if saved_world != self.world.size:
            # the global batches do not depend on N, so this continues the same run
            log.info(
                "checkpoint written by %d process(es), resuming with %d",
                saved_world,
                self.world.size,
            )
        log.info("resumed from %s at epoch %d", path, self.epoch)
        return True


def _positive_sampler(schema: Any, train: EncodedData) -> NegativeSampler:
    """Negatives for ranking: items the row's user has no positive training row with."""
    user_col = schema.sparse_index(schema.user_key)
    item_col = schema.sparse_index(schema.item_key)
    positive = np.asarray(train.label) > 0
    return NegativeSampler(
        np.asarray(train.sparse[:, user_col])[positive],
        np.asarray(train.sparse[:, item_col])[positive],
        schema.field(schema.item_key).vocab_size,
    )


def resolve_sparse_tables(model: RecModel, cfg: TrainConfig) -> int:
    """Resolve ``sparse: auto``: switch the embedding tables where a dense update would dominate
    the step to sparse gradients; return how many tables are sparse.

    A table goes sparse when it has at least :data:`~recforge.models.base.SPARSE_MIN_ROWS` rows
    and at least :data:`~recforge.models.base.SPARSE_MIN_RATIO` times as many rows
    as one training batch looks up ids (``batch_size`` x (sparse fields + sequence positions),
    an upper bound), unless the run needs dense gradients (``embedding_l2_scope: table``; the
    Trainer does not call it under NCCL or with TorchRec's fused tables). On the 1M-row
    Criteo-shaped peer benchmark (an 800k-row table, 106k ids per batch) it trains DeepFM
    1.2x as fast as the dense path at the same AUC (``benchmarks/results/deepfm_default_i16.md``).
    """
    if cfg.embedding_l2 > 0 and cfg.embedding_l2_scope == "table":
        return 0
    schema = model.schema
    lookups = cfg.batch_size * (
        len(schema.sparse_fields) + sum(f.max_len for f in schema.sequence_fields)
    )
    switched = 0
    for module in model.modules():
        if not isinstance(module, nn.Embedding):
            continue
        rows = module.weight.shape[0]
        if rows >= SPARSE_MIN_ROWS and rows >= SPARSE_MIN_RATIO * lookups:
            module.sparse = True
            switched += 1
    if switched:
        log.info(
            "sparse: auto -> %d embedding table(s) with sparse gradients (lazy %s on the rows "
            "a batch touches; set model.params.sparse=false for dense %s)",
            switched, cfg.optimizer, cfg.optimizer,
        )  # fmt: skip
    return switched


def _dense_embedding_gradients(model: nn.Module) -> None:
    """Switch ``sparse=True`` embedding tables to dense gradients (for backends without sparse
    all-reduce); the optimizers built afterwards then treat them as dense weights."""
    switched = 0
    for module in model.modules():
        if isinstance(module, nn.Embedding) and module.sparse:
            module.sparse = False
            switched += 1
    if switched:
        log.warning(
            "NCCL: %d embedding table(s) use dense gradients (no sparse all-reduce)", switched
        )


def _fmt(record: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.5g}" for k, v in record.items() if k != "epoch")


def plot_history(history: list[dict[str, float]], path: Path) -> None:
    """Learning curves (training loss and validation metrics per epoch) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        return
    keys = [k for k in history[0] if k == "train_loss" or k.startswith("valid_")]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3), squeeze=False)
    epochs = [int(r["epoch"]) for r in history]
    for ax, key in zip(axes[0], keys, strict=True):
        ax.plot(epochs, [r.get(key, float("nan")) for r in history], marker="o")
        ax.set_title(key)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    plt.close(fig)
