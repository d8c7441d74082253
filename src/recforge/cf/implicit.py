"""Implicit-feedback training for pairwise models: negatives resampled every epoch.

NeuralCF (He et al., WWW 2017, section 3.1.1) treats every observed interaction as a positive
and, at each epoch, pairs every positive with ``n`` fresh uniform negatives (items the user
never interacted with; ``n = 4`` by default), optimising the pointwise log loss (eq. 7).
:class:`ImplicitEpochs` builds those epoch arrays with
:class:`recforge.data.sampling.NegativeSampler` (no per-row Python), and :func:`train_implicit`
is the small loop the reproductions use (evaluating HR/NDCG after each epoch and keeping the
best). :func:`trainer_negative_fn` plugs the same sampler into the generic
:class:`recforge.train.Trainer`, which then draws fresh negatives for every batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from recforge.cf.scoring import model_device, pair_batch
from recforge.cf.selection import BestEpoch
from recforge.data.sampling import NegativeSampler
from recforge.features import Batch
from recforge.models.base import RecModel

log = logging.getLogger(__name__)


class ImplicitEpochs:
    """Epoch arrays of positives plus freshly sampled negatives.

    Args:
        users: ``(P,)`` user ids of the positives (local ids, item 0 reserved for OOV).
        items: ``(P,)`` item ids.
        n_items: Item vocabulary size including the reserved id 0.
        negatives: Negatives per positive (NCF uses 4).
        seed: Seed of the sampling and shuffling generator.
    """

    def __init__(
        self, users: np.ndarray, items: np.ndarray, n_items: int, negatives: int = 4, seed: int = 0
    ) -> None:
        self.users = np.asarray(users, dtype=np.int64)
        self.items = np.asarray(items, dtype=np.int64)
        self.negatives = int(negatives)
        self.sampler = NegativeSampler(self.users, self.items, n_items, seed=seed)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        """Instances per epoch."""
        return len(self.users) * (1 + self.negatives)

    def epoch(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One shuffled epoch: ``(users, items, labels)`` with ``P (1 + n)`` rows."""
        neg = self.sampler.sample(self.users, self.negatives, rng=self.rng)  # (P, n)
        users = np.concatenate([self.users, np.repeat(self.users, self.negatives)])
        items = np.concatenate([self.items, neg.reshape(-1)])
        labels = np.zeros(len(users), dtype=np.float32)
        labels[: len(self.users)] = 1.0
        order = self.rng.permutation(len(users))
        return users[order], items[order], labels[order]


def trainer_negative_fn(
    sampler: NegativeSampler, user_col: int
) -> Callable[[Batch, int, torch.Generator], torch.Tensor]:
    """A ``negative_fn`` for :class:`recforge.train.Trainer` that never returns positives."""

    def fn(batch: Batch, k: int, generator: torch.Generator) -> torch.Tensor:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        users = batch.sparse[:, user_col].cpu().numpy()
        neg = sampler.sample(users, k, rng=np.random.default_rng(seed))
        return torch.from_numpy(neg)

    return fn


@dataclass(frozen=True)
class ImplicitTrainConfig:
    """Args:
    epochs: Epochs (each with fresh negatives).
    batch_size: Instances per step (NCF: 256).
    lr: Learning rate (NCF: 0.001).
    optimizer: ``adam`` or ``sgd`` (NCF fine-tunes pretrained NeuMF with plain SGD).
    l2: Weight decay.
    patience: Epochs without improvement of ``monitor`` before stopping; 0 disables.
    monitor: Key of the evaluation dict to maximise (e.g. ``hr@10``).
    max_seconds: Stop after the epoch during which this much training time has passed
        (0: no limit).
    """

    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    optimizer: str = "adam"
    l2: float = 0.0
    patience: int = 0
    monitor: str = "hr@10"
    max_seconds: float = 0.0


@dataclass
class ImplicitHistory:
    """Per-epoch records, the best epoch (restored) and the training throughput."""

    records: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best: dict[str, float] = field(default_factory=dict)
    instances_per_second: float = 0.0


def train_implicit(
    model: RecModel,
    data: ImplicitEpochs,
    cfg: ImplicitTrainConfig,
    evaluate: Callable[[RecModel], dict[str, float]] | None = None,
) -> ImplicitHistory:
    """Pointwise log-loss training with per-epoch negatives; keeps the best evaluated epoch.

    Args:
        model: A pairwise model returning logits.
        data: The epoch builder.
        cfg: Loop options.
        evaluate: ``fn(model) -> metrics`` run after each epoch (e.g. sampled HR/NDCG).
    """
    device = model_device(model)
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.l2)
    elif cfg.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.l2)
    else:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}")
    history = ImplicitHistory()
    selection = BestEpoch("implicit", True, cfg.patience, cfg.max_seconds)
    seconds, instances = 0.0, 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        start = time.perf_counter()
        users, items, labels = (torch.from_numpy(a).to(device) for a in data.epoch())
        total = torch.zeros((), device=device)
        for s in range(0, len(users), cfg.batch_size):
            u = users[s : s + cfg.batch_size]
            i = items[s : s + cfg.batch_size]
            y = labels[s : s + cfg.batch_size]
            logits = model(pair_batch(model, u, i))
            loss = F.binary_cross_entropy_with_logits(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * len(u)  # no host sync per step
        seconds += time.perf_counter() - start
        instances += len(users)
        record: dict[str, float] = {"epoch": epoch, "loss": float(total) / len(users)}
        if evaluate is not None:
            record.update(evaluate(model))
            if selection.observe(model, epoch, record[cfg.monitor]):
                history.best_epoch, history.best = epoch, dict(record)
        history.records.append(record)
        log.info("implicit epoch %d %s", epoch, record)
        if selection.should_stop(epoch, seconds):
            break
    selection.restore(model)
    history.instances_per_second = instances / max(seconds, 1e-9)
    return history
