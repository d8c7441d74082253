"""Top-K recommendation for users with any model that scores (user, item) pairs."""

from __future__ import annotations

import numpy as np
import torch

from recforge.cf.scoring import score_grid
from recforge.interactions import InteractionMatrix
from recforge.models.base import RecModel


@torch.no_grad()
def recommend(
    model: RecModel,
    user_ids: np.ndarray,
    k: int,
    exclude_seen: bool = True,
    seen: InteractionMatrix | None = None,
    batch_users: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best-scored items of each user, best first.

    Args:
        model: A pairwise model (``ModelSpec.pairwise``) built on a schema with user and item keys.
        user_ids: ``(U,)`` local user ids.
        k: Items per user.
        exclude_seen: Leave out items the user interacted with in training.
        seen: Users x items training interactions; ``None`` asks the model
            (``model.interactions()``, e.g. AutoRec's stored matrix).
        batch_users: Users scored per forward pass.

    Returns:
        ``(items, scores)``, both ``(U, k)``: item ids sorted by descending score. The OOV id 0
        is never recommended; a user with fewer than ``k`` candidates gets ``-1`` padding (score
        ``-inf``).
    """
    schema = model.schema
    if schema.item_key is None:
        raise ValueError("recommend needs schema.item_key")
    if exclude_seen and seen is None:
        seen = model.interactions()
        if seen is None:
            raise ValueError("exclude_seen=True needs `seen` (the training interactions)")
    model.eval()
    n_items = schema.field(schema.item_key).vocab_size
    users = np.asarray(user_ids, dtype=np.int64)
    kk = min(int(k), n_items)
    out_items = np.full((len(users), int(k)), -1, dtype=np.int64)
    out_scores = np.full((len(users), int(k)), -np.inf, dtype=np.float32)
    all_items = np.arange(n_items)
    for s in range(0, len(users), batch_users):
        u = users[s : s + batch_users]
        scores = score_grid(model, u, all_items)  # (b, n_items)
        scores[:, 0] = -torch.inf
        if exclude_seen and seen is not None:
            known = u < seen.shape[0]
            pos, cols, _ = seen.rows_coo(u[known])
            rows = np.flatnonzero(known)[pos]
            keep = cols < n_items
            r_t = torch.as_tensor(rows[keep], device=scores.device)
            scores[r_t, torch.as_tensor(cols[keep], device=scores.device)] = -torch.inf
        top = torch.topk(scores, kk, dim=1)  # sorted, best first
        vals, idx = top.values.cpu().numpy(), top.indices.cpu().numpy()
        idx = np.where(np.isneginf(vals), -1, idx)
        out_items[s : s + batch_users, :kk] = idx
        out_scores[s : s + batch_users, :kk] = vals
    return out_items, out_scores
