"""Training AutoRec on row batches of the rating matrix.

AutoRec's unit of data is a whole (partially observed) rating row rather than a feature row,
so it does not fit the generic row-wise :class:`recforge.train.Trainer`. This loop takes one
batch of CSR rows at a time, densifies only that batch, and minimises the masked reconstruction
error of paper eq. 3 plus the weight decay; it selects the epoch with the best validation RMSE
and restores it. ``dense=False`` instead computes the loss from the batch's observed entries
only (``O(nnz k)`` gathers, no densification); it gives the same objective and gradients and
pays off only for very sparse rows (on MovieLens-1M the dense batch is ~3.7x faster on a CPU).

Optimisers: ``adam`` (mini-batches of rows), or the paper's full-batch ``rprop`` and ``lbfgs``
(gradients accumulated over row chunks).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from recforge.cf.scoring import score_pairs
from recforge.cf.selection import BestEpoch
from recforge.models.autorec import AutoRec, masked_loss

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AutoRecTrainConfig:
    """Args:
    epochs: Maximum epochs (full-batch optimisers: one step per epoch).
    batch_size: Rows per mini-batch (and per chunk of the full-batch optimisers).
    lr: Learning rate.
    optimizer: ``adam``, ``rprop`` or ``lbfgs``.
    patience: Epochs without validation improvement before stopping; 0 disables.
    seed: Seed of the initialisation-independent randomness (row order).
    eval_every: Validate every this many epochs.
    dense: Densify each row batch and mask the full reconstruction (default); ``False``
        decodes only the observed entries (identical objective and gradients).
    max_seconds: Stop after the epoch during which this much training time has passed
        (0: no limit); the best epoch so far is kept.
    """

    epochs: int = 200
    batch_size: int = 256
    lr: float = 1e-3
    optimizer: str = "adam"
    patience: int = 20
    seed: int = 0
    eval_every: int = 1
    dense: bool = True
    max_seconds: float = 0.0


@dataclass
class AutoRecHistory:
    """Per-epoch records and the best epoch that was restored."""

    records: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_rmse: float = float("inf")
    rows_per_second: float = 0.0


def rmse_of(model: AutoRec, users: np.ndarray, items: np.ndarray, ratings: np.ndarray) -> float:
    """RMSE of the model's clipped predictions on held-out ratings."""
    pred = score_pairs(model, users, items)
    return float(np.sqrt(np.mean((pred - np.asarray(ratings, dtype=np.float32)) ** 2)))


def _objective(
    model: AutoRec, rows: torch.Tensor, n_rows_total: int, dense: bool = False
) -> torch.Tensor:
    """Masked loss of a row batch plus its share of the weight decay (eq. 3 stays a sum).

    ``dense`` densifies the batch and masks the full reconstruction; otherwise the loss is
    computed from the observed entries only (``O(nnz k)``); both give the same value and
    gradients.
    """
    if dense:
        r, mask = model.dense_rows(rows)
        loss = masked_loss(model.reconstruct(r), r, mask)
    else:
        pos, cols, vals = model.matrix.rows_coo(rows.numpy())
        device = model.encoder.weight.device
        pos_t, cols_t = torch.from_numpy(pos).to(device), torch.from_numpy(cols).to(device)
        vals_t = torch.from_numpy(vals).to(device)
        pred = model.observed_reconstruction(pos_t, cols_t, vals_t, len(rows))
        loss = (pred - vals_t).square().sum()
    return loss + model.regularization() * (len(rows) / n_rows_total)


def train_autorec(
    model: AutoRec,
    cfg: AutoRecTrainConfig,
    valid: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> AutoRecHistory:
    """Fit ``model`` on the ratings stored with :meth:`AutoRec.set_ratings`.

    Args:
        model: An AutoRec whose training matrix is set.
        cfg: Loop options.
        valid: ``(users, items, ratings)`` for model selection; ``None`` keeps the last epoch.

    Returns:
        The history; the model holds the weights of the best validation epoch.
    """
    matrix = model.matrix
    if matrix.nnz == 0:
        raise ValueError("call model.set_ratings(...) before training")
    rows_all = np.flatnonzero(matrix.row_counts > 0)  # rows with no rating carry no loss
    rng = np.random.default_rng(cfg.seed)
    params = list(model.parameters())
    if cfg.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=cfg.lr)
    elif cfg.optimizer == "rprop":
        opt = torch.optim.Rprop(params, lr=cfg.lr)
    elif cfg.optimizer == "lbfgs":
        opt = torch.optim.LBFGS(params, lr=cfg.lr, max_iter=1, history_size=20)
    else:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}")

    def full_batch_closure() -> torch.Tensor:
        opt.zero_grad()
        total = torch.zeros(())
        for s in range(0, len(rows_all), cfg.batch_size):
            chunk = torch.from_numpy(rows_all[s : s + cfg.batch_size])
            loss = _objective(model, chunk, len(rows_all), cfg.dense)
            loss.backward()
            total = total + loss.detach().cpu()
        return total

    history = AutoRecHistory()
    selection = BestEpoch("autorec", False, cfg.patience, cfg.max_seconds)
    seen_rows, train_seconds = 0, 0.0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        start = time.perf_counter()
        if cfg.optimizer == "adam":
            order = rng.permutation(rows_all)
            epoch_loss = 0.0
            for s in range(0, len(order), cfg.batch_size):
                rows = torch.from_numpy(order[s : s + cfg.batch_size])
                opt.zero_grad()
                loss = _objective(model, rows, len(rows_all), cfg.dense)
                loss.backward()
                opt.step()
                epoch_loss += float(loss.detach())
        else:
            epoch_loss = float(opt.step(full_batch_closure))  # type: ignore[arg-type]
        train_seconds += time.perf_counter() - start
        seen_rows += len(rows_all)
        record: dict[str, float] = {"epoch": epoch, "loss": epoch_loss / matrix.nnz}
        if valid is not None and epoch % cfg.eval_every == 0:
            record["valid_rmse"] = rmse_of(model, *valid)
            if selection.observe(model, epoch, record["valid_rmse"], epochs=cfg.eval_every):
                history.best_rmse, history.best_epoch = record["valid_rmse"], epoch
        history.records.append(record)
        log.info("autorec epoch %d %s", epoch, record)
        if selection.should_stop(epoch, train_seconds):
            break
    selection.restore(model)
    history.rows_per_second = seen_rows / max(train_seconds, 1e-9)
    return history
