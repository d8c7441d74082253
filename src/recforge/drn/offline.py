"""Replay evaluation of ranking policies on logged news feedback (bandit feedback, top k).

Each policy first pretrains on the log's pretraining day (as the simulator path pretrains on
its random logging phase), then walks through the validation and evaluation hours in time
order. In each hourly round it ranks every request's candidates; only the labels of the ``k``
items it places on top are revealed to it (bandit feedback) and it learns from them before the
next round. Metrics per round: CTR@k, hit@k (a click in the top k), nDCG@k against every
logged positive of the request, the per-request AUC of the full ranking (positives above
negatives; requests without both are left out) and the users' mean activeness.

Estimator and assumptions (Li, Chu, Langford & Wang, "Unbiased Offline Evaluation of
Contextual-bandit-based News Article Recommendation Algorithms", WSDM 2011):

* **MIND**: every candidate of an impression carries its logged label, so a top-k list's clicks
  are read off directly and no request is discarded. This assumes a user's click on an item
  does not depend on the other items or on its position (MIND's own presentation order is not
  logged), so the figures compare policies, not absolute live CTRs.
* **Globo**: the logged action (the clicked article) is known, nothing else is. The replay
  rewards a policy when the logged click is in its top k; the other candidates (drawn from the
  articles active in that hour) count as non-clicks. This is Li et al.'s replay restricted to
  clicked events: without the logging policy's impressions or propensities, it measures how
  well a policy recovers what users chose (hit@k), not an unbiased CTR; no propensities are
  logged, so no inverse-propensity or doubly robust estimate is possible either.
* In both logs the users' future does not respond to the policy: activeness is what the log
  shows, identical across policies, so the activeness term can change only what a policy
  learns, never the measured activeness.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from recforge.drn.agent import AgentConfig
from recforge.drn.logged import PERIODS, LoggedData, Round
from recforge.drn.loop import make_policy
from recforge.drn.policies import Policy, Step

log = logging.getLogger(__name__)

REPLAY_METRICS = ("ctr@k", "hit@k", "ndcg@k", "auc", "activeness")


def request_metrics(
    ranking: np.ndarray, labels: np.ndarray, mask: np.ndarray, k: int
) -> dict[str, np.ndarray]:
    """Per-request metrics of full rankings.

    Args:
        ranking: ``(B, C)`` candidate positions, best first (padding last).
        labels: ``(B, C)`` logged clicks by candidate position.
        mask: ``(B, C)`` real candidates.
        k: Served list length.

    Returns:
        ``ctr@k``, ``hit@k``, ``ndcg@k`` and ``auc`` (NaN without both a positive and a
        negative), each ``(B,)``.
    """
    rel = np.take_along_axis(labels, ranking, axis=1)  # (B, C) labels in ranked order
    real = np.take_along_axis(mask, ranking, axis=1)
    top = rel[:, :k]
    discount = 1.0 / np.log2(np.arange(k) + 2.0)
    dcg = (top * discount).sum(axis=1)
    n_pos = labels.sum(axis=1)
    ideal = np.concatenate([[0.0], np.cumsum(discount)])[np.minimum(n_pos, k).astype(np.int64)]
    neg = real & (rel == 0)
    n_neg = neg.sum(axis=1)
    # Mann-Whitney: for each positive, the negatives ranked below it
    neg_below = n_neg[:, None] - np.cumsum(neg, axis=1)
    pairs = n_pos * n_neg
    auc = np.where(pairs > 0, (rel * neg_below).sum(axis=1) / np.where(pairs > 0, pairs, 1), np.nan)
    return {
        "ctr@k": top.mean(axis=1),
        "hit@k": (top.sum(axis=1) > 0).astype(np.float64),
        "ndcg@k": np.where(ideal > 0, dcg / np.where(ideal > 0, ideal, 1.0), 0.0),
        "auc": auc,
    }


@dataclass
class ReplayHistory:
    """Per-round metrics of one policy's replay (validation and evaluation rounds)."""

    policy: str
    step: list[int] = field(default_factory=list)
    period: list[str] = field(default_factory=list)
    users: list[int] = field(default_factory=list)
    sums: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in REPLAY_METRICS})
    counts: dict[str, list[int]] = field(default_factory=lambda: {m: [] for m in REPLAY_METRICS})

    def summary(self, period: str = "evaluation") -> dict[str, float]:
        """Request-weighted means over the rounds of ``period``."""
        keep = np.asarray(self.period) == period
        out = {"requests": float(np.asarray(self.users)[keep].sum())}
        for m in REPLAY_METRICS:
            s, c = np.asarray(self.sums[m])[keep], np.asarray(self.counts[m])[keep]
            out[m] = float(s.sum() / c.sum()) if c.sum() else float("nan")
        return out

    def to_dict(self) -> dict[str, object]:
        """Per-round means (the series the plots draw), one list per metric."""
        series: dict[str, object] = {"step": self.step, "period": self.period, "users": self.users}
        for m in REPLAY_METRICS:
            s, c = np.asarray(self.sums[m]), np.asarray(self.counts[m])
            series[m] = np.where(c > 0, s / np.maximum(c, 1), np.nan).tolist()
        return series


def _logged_steps(rounds: list[Round], k: int, seed: int) -> list[Step]:
    """The pretraining log as steps: the logged positives first, then uniformly drawn others.

    For MIND (every candidate was shown) a uniform top-k of the impression would do as well; the
    positives-first draw keeps the clicks-only Globo log informative, and is the same for both.
    """
    rng = np.random.default_rng(seed + 4242)
    steps = []
    for r in rounds:
        u = rng.random(r.labels.shape) + 2.0 * r.labels  # positives (labels 1) first
        ranking = np.argsort(np.where(r.mask, -u, np.inf), axis=1)[:, :k]
        clicks = np.take_along_axis(r.labels, ranking, axis=1)
        steps.append(_step(r, ranking, clicks))
    return steps


def _step(r: Round, ranking: np.ndarray, clicks: np.ndarray) -> Step:
    return Step(r.hour, r.state, r.action, ranking, clicks, r.reward_active, r.next_state,
                r.next_action, r.done)  # fmt: skip


def replay_policy(
    policy: Policy, data: LoggedData, k: int, seed: int = 0, pretrain: bool = True
) -> ReplayHistory:
    """Replay one policy over the log (see the module docstring).

    Args:
        policy: A fresh policy.
        data: The log's rounds.
        k: Served list length (feedback is revealed for the top ``k`` only).
        seed: Seed of the pretraining log's draw (shared by all policies of a seed).
        pretrain: Pretrain on the log's ``pretrain`` rounds first.
    """
    if pretrain:
        policy.pretrain(_logged_steps(data.period("pretrain"), k, seed))
    hist = ReplayHistory(policy=getattr(policy, "name", type(policy).__name__))
    for r in data.rounds:
        if r.period == "pretrain":
            continue
        ranking = policy.rank(r.state, r.action, r.action.shape[1], r.mask)  # (B, C)
        top = ranking[:, :k]
        clicks = np.take_along_axis(r.labels, top, axis=1)  # only the top k is revealed
        policy.learn(_step(r, top, clicks))
        per = request_metrics(ranking, r.labels, r.mask, k)
        per["activeness"] = r.activeness.astype(np.float64)
        hist.step.append(r.hour)
        hist.period.append(r.period)
        hist.users.append(int(r.state.shape[0]))
        for m, v in per.items():
            ok = ~np.isnan(v)
            hist.sums[m].append(float(v[ok].sum()))
            hist.counts[m].append(int(ok.sum()))
    return hist


def replay(
    policies: list[str],
    data: LoggedData,
    k: int,
    seed: int = 0,
    agent: AgentConfig | None = None,
) -> dict[str, ReplayHistory]:
    """Replay several named policies (see :func:`recforge.drn.loop.make_policy`) on one log."""
    out = {}
    for name in policies:
        pol = make_policy(name, data.state_dim, data.action_dim, seed, agent)
        out[name] = replay_policy(pol, data, k, seed)
        out[name].policy = name
        log.info("%s seed %d: %s", name, seed,
                 {m: round(v, 4) for m, v in out[name].summary().items()})  # fmt: skip
    return out


def periods_present(data: LoggedData) -> list[str]:
    """The periods with at least one round, in order."""
    return [p for p in PERIODS if data.period(p)]
