"""The online loop: push, feedback, learn; metrics over time for several policies.

Each policy runs against its own copy of the seeded :class:`NewsSimulator` (same seed, so all
policies face the same users, news and interest shift) with its own :class:`FeatureBuilder`.
A run has two phases, as in DRN (Zheng et al., WWW 2018, Figure 3): an **offline** phase of
``log_steps`` steps served by a uniformly random logging policy (identical across policies),
on which every policy is pretrained, then the **online** phase of ``steps`` steps in which the
policy ranks, the environment answers and the policy learns. Per step it records CTR,
precision@5, nDCG@5 (clicks as relevance, users without clicks count 0) and the mean user
activeness over all users.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from recforge.drn.agent import AgentConfig, DRNAgent
from recforge.drn.features import FeatureBuilder
from recforge.drn.policies import (
    DailyCTRPolicy,
    LinUCBPolicy,
    Policy,
    RandomPolicy,
    StaticCTRPolicy,
    Step,
)
from recforge.drn.simulator import NewsSimulator, Request, SimConfig

log = logging.getLogger(__name__)

METRICS = ("ctr", "precision@5", "ndcg@5", "activeness")
POLICIES = (
    "drn",
    "drn-probabilistic",
    "drn-no-activeness",
    "drn-myopic",
    "drn-no-minor",
    "drn-no-major",
    "greedy",
    "drn-no-dbgd",
    "drn-major",
    "egreedy",
    "linucb",
    "static",
    "static-daily",
    "random",
)


@dataclass
class History:
    """Per-step metrics of one policy's run."""

    policy: str
    step: list[int] = field(default_factory=list)
    users: list[int] = field(default_factory=list)
    clicks: list[float] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in METRICS})

    def summary(self, last: int = 50) -> dict[str, float]:
        """Cumulative CTR, step-averaged metrics and the average over the last ``last`` steps."""
        users = np.asarray(self.users, dtype=np.float64)
        out = {"cumulative_ctr": float(np.sum(self.clicks) / max(np.sum(users) * 1.0, 1.0))}
        for m, v in self.metrics.items():
            arr = np.asarray(v)
            out[f"avg_{m}"] = float(arr.mean()) if arr.size else float("nan")
            out[f"final_{m}"] = float(arr[-last:].mean()) if arr.size else float("nan")
        return out

    def to_dict(self) -> dict[str, object]:
        return {"step": self.step, "users": self.users, **self.metrics}


def list_metrics(clicks: np.ndarray, k: int = 5) -> dict[str, float]:
    """CTR, precision@k and nDCG@k of one step's ``(B, L)`` click matrix."""
    discount = 1.0 / np.log2(np.arange(k) + 2.0)
    dcg = (clicks[:, :k] * discount).sum(axis=1)
    ideal_hits = np.minimum(clicks.sum(axis=1), k).astype(np.int64)
    idcg = np.concatenate([[0.0], np.cumsum(discount)])[ideal_hits]
    ndcg = np.where(idcg > 0, dcg / np.where(idcg > 0, idcg, 1.0), 0.0)
    return {
        "ctr": float(clicks.mean()),
        "precision@5": float(clicks[:, :k].sum(axis=1).mean() / k),
        "ndcg@5": float(ndcg.mean()),
    }


def make_policy(
    name: str, state_dim: int, action_dim: int, seed: int, agent: AgentConfig | None = None
) -> Policy:
    """Build a named policy (one of :data:`POLICIES`).

    ``drn`` is the full agent; ``drn-probabilistic`` interleaves probabilistically;
    ``drn-no-activeness`` sets ``beta = 0``; ``drn-myopic`` sets ``gamma = 0``; ``greedy`` (aliases
    ``drn-major``, ``drn-no-dbgd``) is DRN without DBGD exploration and hence without minor
    updates; ``drn-no-minor`` serves the interleaved DBGD lists but never adopts a winning explore
    network (``eta = 0``); ``drn-no-major`` makes no replay gradient steps after pretraining;
    ``egreedy`` explores at random; ``static`` is a DeepFM trained on the log only,
    ``static-daily`` the same retrained every 24 steps on all feedback so far.
    """
    base = agent or AgentConfig()
    import dataclasses

    def agent_with(**kw: object) -> AgentConfig:
        return dataclasses.replace(base, seed=seed, **kw)  # type: ignore[arg-type]

    if name == "drn":
        return DRNAgent(state_dim, action_dim, agent_with(explore="dbgd"), name)
    if name == "drn-probabilistic":
        return DRNAgent(
            state_dim, action_dim, agent_with(explore="dbgd", interleaving="probabilistic"), name
        )
    if name == "drn-no-activeness":
        return DRNAgent(state_dim, action_dim, agent_with(explore="dbgd", beta=0.0), name)
    if name == "drn-myopic":
        return DRNAgent(state_dim, action_dim, agent_with(explore="dbgd", gamma=0.0), name)
    if name == "drn-no-minor":
        return DRNAgent(state_dim, action_dim, agent_with(explore="dbgd", eta=0.0), name)
    if name == "drn-no-major":
        return DRNAgent(state_dim, action_dim, agent_with(explore="dbgd", major_updates=0), name)
    if name in ("greedy", "drn-major", "drn-no-dbgd"):
        return DRNAgent(state_dim, action_dim, agent_with(explore="none"), name)
    if name == "egreedy":
        return DRNAgent(state_dim, action_dim, agent_with(explore="egreedy"), name)
    if name == "linucb":
        return LinUCBPolicy(state_dim + action_dim)
    if name == "static":
        return StaticCTRPolicy(state_dim, action_dim, seed=seed)
    if name == "static-daily":
        return DailyCTRPolicy(state_dim, action_dim, seed=seed)
    if name == "random":
        return RandomPolicy(seed)
    raise ValueError(f"unknown policy {name!r}; choose from {POLICIES}")


def _next_view(users: np.ndarray, nxt: Request) -> Request:
    """The next request's time and candidates, for this step's users (for ``s'`` and ``a'``)."""
    return Request(nxt.step, users, nxt.candidates, nxt.topics, nxt.age)


def _serve(
    env: NewsSimulator, feats: FeatureBuilder, rank: Callable[..., np.ndarray], with_next: bool
) -> tuple[Step, Request]:
    req = env.request
    state, action = feats.state(req), feats.action(req)
    ranking = rank(state, action, env.cfg.list_len)
    feedback, nxt = env.step(ranking)
    feats.observe(req, ranking, feedback)
    step = Step(req.step, state, action, ranking, feedback.clicks, feedback.activeness)
    if with_next:
        view = _next_view(req.users, nxt)
        step.next_state, step.next_action = feats.state(view), feats.action(view)
    return step, nxt


def run_policy(
    name: str,
    sim: SimConfig,
    steps: int,
    log_steps: int = 50,
    agent: AgentConfig | None = None,
    policy: Policy | None = None,
) -> History:
    """Run one policy: ``log_steps`` of random logging + pretraining, then ``steps`` online.

    Args:
        name: Policy name (see :func:`make_policy`).
        sim: Simulator configuration (its seed seeds the policy too).
        steps: Online steps.
        log_steps: Offline logging steps before the online phase (0 for none).
        agent: Base options of the Q-network agents.
        policy: A ready policy instead of building ``name``.

    Returns:
        The per-step history of the online phase.
    """
    env = NewsSimulator(sim)
    feats = FeatureBuilder(sim.n_users, sim.n_topics)
    pol = policy or make_policy(name, feats.state_dim, feats.action_dim, sim.seed, agent)
    logger = RandomPolicy(sim.seed + 12345)
    logged = [_serve(env, feats, logger.rank, pol.needs_next)[0] for _ in range(log_steps)]
    pol.pretrain(logged)
    hist = History(policy=name)
    for _ in range(steps):
        step, _ = _serve(env, feats, pol.rank, pol.needs_next)
        pol.learn(step)
        hist.step.append(step.t)
        hist.users.append(int(step.clicks.size))
        hist.clicks.append(float(step.clicks.sum()))
        for m, v in list_metrics(step.clicks).items():
            hist.metrics[m].append(v)
        hist.metrics["activeness"].append(float(env.activeness.mean()))
    log.info("%s: %s", name, {k: round(v, 4) for k, v in hist.summary().items()})
    return hist


def run_simulation(
    policies: list[str],
    sim: SimConfig,
    steps: int,
    log_steps: int = 50,
    agent: AgentConfig | None = None,
) -> dict[str, History]:
    """Run several policies on identically seeded simulators."""
    return {p: run_policy(p, sim, steps, log_steps, agent) for p in policies}
