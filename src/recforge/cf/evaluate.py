"""The two evaluation protocols of collaborative filtering, vectorised over users.

* Rating prediction (AutoRec, Sedhain et al. WWW 2015): RMSE / MAE on held-out ratings.
* Top-K (NeuralCF, He et al. WWW 2017): leave-one-out, each user's held-out item ranked against
  99 sampled items the user never interacted with; HR@K and NDCG@K.
* Full ranking: the held-out item ranked against *every* item the user has not interacted with
  in training. Sampled metrics can disagree with full-ranking ones (Krichene & Rendle, "On
  Sampled Metrics for Item Recommendation", KDD 2020), so both are reported.

Ties follow :mod:`recforge.metrics` (pessimistic: an item tied with the target ranks above it),
so a constant scorer gets the worst ranking, never a lucky one.
"""

from __future__ import annotations

import numpy as np
import torch

from recforge import metrics
from recforge.cf.scoring import model_device, score_candidates, score_grid, score_pairs
from recforge.interactions import InteractionMatrix
from recforge.models.base import RecModel


def rating_metrics(
    model: RecModel, users: np.ndarray, items: np.ndarray, ratings: np.ndarray
) -> dict[str, float]:
    """``{"rmse", "mae"}`` of the model's predictions on held-out ``(user, item, rating)``."""
    pred = score_pairs(model, users, items)
    y = np.asarray(ratings, dtype=np.float64)
    return {"rmse": metrics.rmse(y, pred), "mae": metrics.mae(y, pred)}


@torch.no_grad()
def sampled_ranking(
    model: RecModel,
    users: np.ndarray,
    test_items: np.ndarray,
    negatives: np.ndarray,
    ks: tuple[int, ...] = (10,),
    batch_users: int = 2048,
) -> dict[str, float]:
    """Leave-one-out with sampled negatives: the NCF protocol.

    Args:
        model: A pairwise model.
        users: ``(U,)`` test users (local ids).
        test_items: ``(U,)`` each user's held-out item.
        negatives: ``(U, C)`` sampled items the user never interacted with (99 in NCF).
        ks: Cut-offs.
        batch_users: Users scored per forward pass.

    Returns:
        ``hr@k`` and ``ndcg@k`` for each ``k``, averaged over users.
    """
    model.eval()
    users = np.asarray(users, dtype=np.int64)
    cand = np.concatenate([np.asarray(test_items, dtype=np.int64)[:, None], negatives], axis=1)
    ranks = np.empty(len(users), dtype=np.int64)
    for s in range(0, len(users), batch_users):
        scores = score_candidates(model, users[s : s + batch_users], cand[s : s + batch_users])
        ranks[s : s + batch_users] = metrics.rank_of_target(scores.cpu().numpy(), 0)
    return metrics.metrics_from_ranks(ranks, ks)


@torch.no_grad()
def full_ranking(
    model: RecModel,
    users: np.ndarray,
    test_items: np.ndarray,
    seen: InteractionMatrix,
    ks: tuple[int, ...] = (10,),
    batch_users: int = 256,
) -> dict[str, float]:
    """Leave-one-out against every item the user did not interact with in training.

    Args:
        model: A pairwise model.
        users: ``(U,)`` test users.
        test_items: ``(U,)`` held-out items.
        seen: Users x items training interactions; those items are excluded from the ranking
            (the target itself is never excluded). Item id 0 (OOV) is never a candidate.
        ks: Cut-offs.
        batch_users: Users scored per forward pass (``batch_users * n_items`` pairs).
    """
    model.eval()
    users = np.asarray(users, dtype=np.int64)
    targets = np.asarray(test_items, dtype=np.int64)
    n_items = seen.shape[1]
    items = np.arange(n_items)
    device = model_device(model)
    ranks = np.empty(len(users), dtype=np.int64)
    for s in range(0, len(users), batch_users):
        u = users[s : s + batch_users]
        t = torch.as_tensor(targets[s : s + batch_users], device=device)
        scores = score_grid(model, u, items)  # (b, n_items)
        target = scores.gather(1, t[:, None])  # (b, 1)
        excluded = _seen_mask(seen, u, n_items, device)
        excluded[:, 0] = True
        excluded[torch.arange(len(u), device=device), t] = True
        above = (scores >= target) & ~excluded
        ranks[s : s + batch_users] = above.sum(1).cpu().numpy()
    return metrics.metrics_from_ranks(ranks, ks)


def _seen_mask(
    seen: InteractionMatrix, users: np.ndarray, n_items: int, device: torch.device
) -> torch.Tensor:
    """``(len(users), n_items)`` bool mask of each user's training items."""
    pos, cols, _ = seen.rows_coo(users)
    mask = torch.zeros(len(users), n_items, dtype=torch.bool, device=device)
    mask[torch.as_tensor(pos, device=device), torch.as_tensor(cols, device=device)] = True
    return mask
