import numpy as np

from recforge.drn.agent import AgentConfig, DRNAgent
from recforge.drn.features import FeatureBuilder
from recforge.drn.loop import list_metrics, run_policy
from recforge.drn.simulator import SimConfig


def test_list_metrics_closed_form() -> None:
    clicks = np.array([[1, 0, 1, 0, 0, 1], [0, 0, 0, 0, 0, 0]], dtype=np.float32)
    m = list_metrics(clicks, k=5)
    dcg = 1 + 1 / np.log2(4)
    idcg = 1 + 1 / np.log2(3) + 1 / np.log2(4)  # all three clicked items in the ideal top 5
    assert np.isclose(m["ctr"], 3 / 12)
    assert np.isclose(m["precision@5"], (2 / 5) / 2)
    assert np.isclose(m["ndcg@5"], (dcg / idcg) / 2)


def test_drn_online_run_improves_ctr_over_first_window() -> None:
    sim = SimConfig(n_users=300, rate=0.1, max_users=32, seed=0)
    agent = AgentConfig(major_every=5, major_updates=15, minor_every=2, seed=0)
    hist = run_policy("drn", sim, steps=60, log_steps=0, agent=agent)
    ctr = np.asarray(hist.metrics["ctr"])
    users = np.asarray(hist.users)
    first = (ctr[:15] * users[:15]).sum() / users[:15].sum()
    last = (ctr[-20:] * users[-20:]).sum() / users[-20:].sum()
    assert last > first * 1.2, (first, last)


def test_dbgd_agent_updates_and_interleaves() -> None:
    sim = SimConfig(n_users=200, rate=0.1, seed=1)
    feats = FeatureBuilder(sim.n_users, sim.n_topics)
    agent = DRNAgent(
        feats.state_dim, feats.action_dim, AgentConfig(minor_every=1, major_every=1000, seed=1)
    )
    hist = run_policy("drn", sim, steps=12, log_steps=0, policy=agent)
    assert len(hist.step) == 12
    assert agent.dbgd.trials == 12
    assert len(agent.replay) == sum(hist.users) // sim.list_len
