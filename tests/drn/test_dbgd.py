import numpy as np
import torch
from torch import nn

from recforge.drn.dbgd import DuelingBanditGD, move_towards, perturb
from recforge.drn.interleaving import outcome, team_draft_interleave


def test_perturbation_is_multiplicative_and_bounded() -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    with torch.no_grad():
        model.weight[0] = 0.0
    explore = perturb(model, 0.2, torch.Generator().manual_seed(1))
    for p, q in zip(model.parameters(), explore.parameters(), strict=True):
        delta = q - p
        assert torch.all(delta.abs() <= 0.2 * p.abs() + 1e-7)  # |W~ - W| <= alpha |W|
        assert (delta != 0).any()
    assert torch.all(explore.weight[0] == 0)  # zero weights stay zero
    move_towards(model, explore, 1.0)
    assert torch.equal(model.weight, explore.weight)


def test_dbgd_moves_toward_the_better_direction() -> None:
    rng = np.random.default_rng(0)
    n_items, dim = 30, 2
    w_true = np.array([1.0, 0.15])
    model = nn.Linear(dim, 1, bias=False)
    with torch.no_grad():
        model.weight[:] = torch.tensor([[0.15, 1.0]])  # the wrong emphasis
    dbgd = DuelingBanditGD(alpha=0.3, eta=1.0, seed=0)

    def cosine() -> float:
        w = model.weight.detach().numpy().ravel()
        return float(w @ w_true / np.linalg.norm(w) / np.linalg.norm(w_true))

    start = cosine()
    for _ in range(150):
        feats = rng.random((64, n_items, dim))  # 64 queries
        relevance = feats @ w_true
        explore = dbgd.propose(model)
        with torch.no_grad():
            sa = model(torch.from_numpy(feats).float()).squeeze(-1).numpy()
            sb = explore(torch.from_numpy(feats).float()).squeeze(-1).numpy()
        merged, team = team_draft_interleave(
            np.argsort(-sa, axis=1), np.argsort(-sb, axis=1), 5, rng
        )
        rel = np.take_along_axis(relevance, merged, axis=1)
        top = np.sort(relevance, axis=1)[:, -5:].min(axis=1, keepdims=True)
        clicks = rng.random(rel.shape) < 0.8 * (rel >= top)  # users click their true top items
        out = outcome(team, clicks)
        dbgd.resolve(model, explore, float((out > 0).sum()), float((out < 0).sum()))
    assert cosine() > start + 0.1, (start, cosine())
    assert 0 < dbgd.wins < dbgd.trials
