"""The return model recovers planted rates; DRN's activeness score, DBGD and interleaving
checked against their definitions (Zheng et al., WWW 2018, Sections 4.3 and 4.5)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from recforge.drn.dbgd import DuelingBanditGD, perturb
from recforge.drn.interleaving import TEAM_A, TEAM_B, credit, team_draft_interleave
from recforge.drn.survival import (
    ReturnModel,
    activeness_scores,
    calibration_table,
    exposure_counts,
    unique_sessions,
)


def _poisson_sessions(rates: np.ndarray, horizon: float, rng: np.random.Generator):
    users, starts = [], []
    for u, lam in enumerate(rates):
        t = rng.uniform(0, 5)
        while t < horizon:
            users.append(u)
            starts.append(t)
            t += rng.exponential(1 / lam)
    return np.array(users), np.array(starts)


def test_return_model_recovers_a_planted_rate_and_frailty() -> None:
    rng = np.random.default_rng(0)
    rates = rng.gamma(3.0, 1 / 60.0, 3000)  # mean 0.05 returns per hour, shape 3
    users, starts = _poisson_sessions(rates, 400.0, rng)
    su, st = unique_sessions(users, starts)
    _, n, t = exposure_counts(su, st, 0.0, 300.0)
    model = ReturnModel.fit(n, t)
    assert abs(model.mean_rate - 0.05) < 0.003, model
    assert 2.0 < model.a < 4.5, model  # the spread of rates, not only their mean
    # checked on the later 100 h: predictions calibrated within a few points
    cal = calibration_table(model, su, st, 0.0, 300.0, 24.0, bins=5)
    assert np.max(np.abs(np.subtract(cal["predicted"], cal["observed"]))) < 0.05, cal
    assert cal["brier"] < cal["brier_population_rate"]


def test_activeness_score_follows_the_papers_recursion() -> None:
    # user 7: sessions at 0 h and 10 h; events at 0, 1 (same session) and 10 h
    user = np.array([7, 7, 7, 3])
    start = np.array([0.0, 0.0, 10.0, 2.0])
    time = np.array([0.0, 1.0, 10.0, 2.5])
    s = activeness_scores(user, time, start, decay=0.1, s0=0.5, jump=0.32)
    assert np.allclose(s, [0.5, 0.5 * np.exp(-0.1), 0.5 * np.exp(-1.0) + 0.32, 0.5 * np.exp(-0.05)])
    # capped at 1 after frequent returns
    many = activeness_scores(np.zeros(10, int), np.arange(10.0), np.arange(10.0), decay=0.01)
    assert many.max() == 1.0 and np.all(np.diff(many[:3]) > 0)


def test_dbgd_alpha_zero_never_changes_the_weights() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 1))
    before = [p.detach().clone() for p in model.parameters()]
    dbgd = DuelingBanditGD(alpha=0.0, eta=1.0, seed=0)
    for i in range(20):
        explore = dbgd.propose(model)
        assert dbgd.resolve(model, explore, explore_credit=i % 3, current_credit=1) == (i % 3 > 1)
    assert dbgd.wins > 0
    for p, q in zip(before, model.parameters(), strict=True):
        assert torch.equal(p, q)
    # alpha > 0: W~ - W = alpha * U(-1, 1) * W, the paper's perturbation
    explore = perturb(model, 0.5, torch.Generator().manual_seed(1))
    ratio = [(q - p) / p for p, q in zip(model.parameters(), explore.parameters(), strict=True)]
    flat = torch.cat([r.flatten() for r in ratio])
    assert flat.abs().max() <= 0.5 and flat.std() > 0.2  # uniform on (-0.5, 0.5): std 0.29


def test_interleaving_credits_the_list_that_got_the_click() -> None:
    rng = np.random.default_rng(0)
    rank_a = np.array([[0, 1, 2, 3, 4, 5]] * 200)
    rank_b = np.array([[5, 4, 3, 2, 1, 0]] * 200)
    merged, team = team_draft_interleave(rank_a, rank_b, 4, rng)
    # the user clicks item 0, A's favourite, wherever it lands
    clicks = (merged == 0).astype(np.float64)
    got = credit(team, clicks)
    assert np.all(got[:, TEAM_A] == 1) and np.all(got[:, TEAM_B] == 0)
    clicks_b = (merged == 5).astype(np.float64)  # B's favourite
    got_b = credit(team, clicks_b)
    assert np.all(got_b[:, TEAM_B] == 1) and np.all(got_b[:, TEAM_A] == 0)


def test_major_update_target_is_double_dqn() -> None:
    from recforge.drn.agent import AgentConfig, DRNAgent

    torch.manual_seed(0)
    agent = DRNAgent(3, 2, AgentConfig(gamma=0.5, seed=0))
    with torch.no_grad():
        for p in agent.target.parameters():
            p.add_(torch.randn_like(p))  # a target network that disagrees with W
    b = {
        "next_state": torch.randn(6, 3),
        "next_action": torch.randn(6, 4, 2),
        "reward": torch.ones(6, 2),
        "done": torch.tensor([0, 0, 0, 0, 0, 1.0]),
    }
    pick = agent.q(b["next_state"], b["next_action"]).argmax(dim=1)
    value = agent.target(b["next_state"], b["next_action"])[torch.arange(6), pick]
    expected = 1.0 + 0.5 * value * (1 - b["done"])
    got = agent.td_target(b)
    assert torch.allclose(got, expected[:, None].expand(6, 2))
    assert torch.allclose(got[5], torch.ones(2))  # no future after the last request


def test_weekly_profile_recovers_a_planted_weekend_dip() -> None:
    from recforge.drn.survival import effective_hours, weekly_profile

    rng = np.random.default_rng(2)
    rates = np.full(2000, 0.05)
    users, starts = _poisson_sessions(rates, 24 * 14, rng)
    weekend = np.floor(starts / 24) % 7 >= 5  # days 5 and 6 of each week: keep half
    keep = ~weekend | (rng.random(starts.size) < 0.5)
    w = weekly_profile(starts[keep], 0.0, 24 * 14)
    assert np.isclose(w.mean(), 1.0)
    # (day 0 holds every first session: compare with days 1 to 4)
    assert abs(w[5] / w[1] - 0.5) < 0.05 and abs(w[6] / w[2:5].mean() - 0.5) < 0.05
    assert np.isclose(effective_hours(np.array([24 * 7]), w)[0], 24 * 7)  # a week is a week
    friday_noon = effective_hours(np.array([24.0 * 5 + 12]), w)[0]
    assert np.isclose(friday_noon, 24 * w[:5].sum() + 12 * w[5])
