"""Scoring ``(user, item)`` pairs with any pairwise model through the batch contract.

A pairwise model (``ModelSpec.pairwise``) reads the user and item id columns of
``Batch.sparse``; every other sparse column is filled with the OOV id 0 and dense features with
zeros, so the helpers here work for MF, NeuralCF, AutoRec and popularity alike.
"""

from __future__ import annotations

import numpy as np
import torch

from recforge.features import Batch
from recforge.models.base import RecModel


def pair_batch(model: RecModel, users: torch.Tensor, items: torch.Tensor) -> Batch:
    """A batch whose user and item columns hold ``users`` and ``items`` (other columns 0).

    Shape:
        users ``(B,)``, items ``(B,)`` -> batch of ``B`` rows.
    """
    schema = model.schema
    if schema.user_key is None or schema.item_key is None:
        raise ValueError("pairwise scoring needs schema.user_key and schema.item_key")
    n = int(users.shape[0])
    sparse = torch.zeros(n, len(schema.sparse_fields), dtype=torch.long, device=users.device)
    sparse[:, schema.sparse_index(schema.user_key)] = users
    sparse[:, schema.sparse_index(schema.item_key)] = items
    dense = torch.zeros(n, len(schema.dense_fields), device=users.device)
    return Batch(sparse=sparse, dense=dense)


def model_device(model: RecModel) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


@torch.no_grad()
def score_pairs(
    model: RecModel, users: np.ndarray, items: np.ndarray, batch_size: int = 65536
) -> np.ndarray:
    """Model outputs for each ``(users[k], items[k])`` pair, in eval mode.

    Returns:
        ``(N,)`` float32 logits (ratings for regression models).
    """
    was_training = model.training
    model.eval()
    device = model_device(model)
    u_all = torch.as_tensor(np.asarray(users, dtype=np.int64))
    i_all = torch.as_tensor(np.asarray(items, dtype=np.int64))
    out = []
    for s in range(0, len(u_all), batch_size):
        u = u_all[s : s + batch_size].to(device)
        i = i_all[s : s + batch_size].to(device)
        out.append(model(pair_batch(model, u, i)).float().cpu())
    model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)


@torch.no_grad()
def score_grid(model: RecModel, users: np.ndarray, items: np.ndarray) -> torch.Tensor:
    """Scores of every user in ``users`` against every item in ``items``.

    Shape:
        users ``(U,)``, items ``(I,)`` -> ``(U, I)`` float32 tensor on the model's device.
    """
    device = model_device(model)
    u = torch.as_tensor(np.asarray(users, dtype=np.int64), device=device)
    i = torch.as_tensor(np.asarray(items, dtype=np.int64), device=device)
    uu = u[:, None].expand(len(u), len(i)).reshape(-1)
    ii = i[None, :].expand(len(u), len(i)).reshape(-1)
    return model(pair_batch(model, uu, ii)).float().reshape(len(u), len(i))


@torch.no_grad()
def score_candidates(model: RecModel, users: np.ndarray, candidates: np.ndarray) -> torch.Tensor:
    """Scores of each user against its own candidate list.

    Shape:
        users ``(U,)``, candidates ``(U, C)`` -> ``(U, C)``.
    """
    device = model_device(model)
    cand = torch.as_tensor(np.asarray(candidates, dtype=np.int64), device=device)
    u = torch.as_tensor(np.asarray(users, dtype=np.int64), device=device)
    uu = u[:, None].expand_as(cand).reshape(-1)
    return model(pair_batch(model, uu, cand.reshape(-1))).float().reshape(cand.shape)
