"""A seeded news-recommendation environment for online learning (the DRN setting).

Zheng et al., "DRN: A Deep Reinforcement Learning Framework for News Recommendation", WWW 2018,
evaluate on a proprietary news app; this simulator reproduces the ingredients their method relies
on, with every mechanism explicit and seeded (numpy only, vectorised over users and items):

* **Users** hold several interests: latent topic logits ``z_u`` (a few topics boosted at start);
  the interest distribution is ``p_u = softmax(z_u)``. Interests drift (Gaussian random walk on
  ``z_u`` each step) and can shift abruptly at ``shift_step`` (each user's logits are permuted).
* **News** items have a topic, a latent quality (popularity) and a publication step; ``publish``
  items appear each step and live ``lifetime`` steps. Freshness decays as
  ``f_i = exp(-age_i / freshness_tau)``. The live items are the candidates of a request.
* **Clicks** follow a position-based model over the ranked list of ``list_len`` items:
  ``P(click at rank k) = exam_k * sigmoid(b0 + a_int * K * p_u[topic_i] + a_q * q_i
  + a_f * f_i + a_h * sin(2 pi t / 24))`` with examination ``exam_k = (k + 1) ** -eta``.
* **Activeness** is survival-style: a user returns after an exponential gap with hazard
  ``lambda_u = lambda0_u * exp(h_u)``; after a session ``h_u <- rho * h_u + kappa *
  (clicks - c_ref)`` (clipped), so pleasing recommendations bring users back sooner. The
  reported activeness is the probability of returning within ``active_window`` steps,
  ``a_u = 1 - exp(-lambda_u * active_window)`` (the survival function's complement, as in DRN's
  Section 4.3). With ``return_model="quality"`` the hazard follows the **quality** of the lists
  a user received over time instead of the click count: each session's quality is the list's
  expected clicks for that user, ``q = sum_k exam_k * attract_k`` (what was shown, clicked or
  not), a per-user memory ``m_u <- rho * m_u + (1 - rho) * q`` accumulates it over sessions,
  and ``h_u = kappa * log(m_u / c_ref)`` (clipped), so a user served lists as good as the
  reference ``c_ref`` returns at their base rate and better lists bring them back sooner.
  Base hazards are log-normal, or gamma-distributed when ``rate_shape > 0`` (the gamma-frailty
  return model of :mod:`recforge.drn.survival`).

Time is discrete (one step is nominally one hour). Each step the users whose return time has come
arrive (at most ``max_users``); the agent ranks the candidates for each of them; the environment
returns clicks, activeness and return gaps. :func:`recforge.drn.calibration.calibrate` fits
``quality_std``, ``freshness_tau``, ``bias`` and ``rate_std`` from real news logs;
:func:`recforge.drn.recalibration.recalibrate` fits the click model (``bias``, ``eta``,
``quality_std``) to MIND and the return model (``rate``, ``rate_shape``) to Globo.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimConfig:
    """Simulator parameters (defaults give a CTR around 10 % for random lists).

    Args:
        n_users: Number of users.
        n_topics: Number of news topics ``K``.
        interests: Topics boosted in each user's initial interests ("several interests").
        interest_strength: Logit boost of those topics (higher = more concentrated interests).
        drift_std: Std of the per-step Gaussian random walk of interest logits.
        shift_step: Step at which every user's interests are permuted (``-1`` for never).
        publish: News items published per step.
        lifetime: Steps an item stays a candidate (candidates per request = publish * lifetime).
        freshness_tau: Freshness decay time constant (steps).
        quality_std: Std of the latent item quality (popularity).
        list_len: Length of the ranked list shown to a user.
        eta: Position-bias exponent of the examination probability.
        bias: Base click logit ``b0``.
        a_int: Weight of interest relevance.
        a_q: Weight of item quality.
        a_f: Weight of freshness.
        a_h: Weight of the hour-of-day effect.
        rate: Mean base return hazard (returns per step).
        rate_std: Log-normal spread of users' base hazards.
        rho: Persistence of the activeness state ``h_u`` (``clicks``) or of the quality
            memory ``m_u`` (``quality``).
        kappa: Activeness gain per click above ``c_ref`` (``clicks``), or elasticity of the
            hazard in the quality memory (``quality``).
        c_ref: Clicks per session (``clicks``) or expected clicks of a served list
            (``quality``) that leave activeness unchanged.
        h_max: Clip of ``|h_u|``.
        active_window: Window (steps) of the activeness probability.
        max_users: Cap of arrivals served per step (later ones wait for the next step).
        return_model: ``clicks`` (the hazard follows the session's click count) or
            ``quality`` (it follows the expected clicks of the lists received over time).
        rate_shape: Gamma shape of users' base hazards (mean ``rate``); ``0`` keeps the
            log-normal spread ``rate_std``.
        seed: Seed of every random draw.
    """

    n_users: int = 2000
    n_topics: int = 10
    interests: int = 2
    interest_strength: float = 3.0
    drift_std: float = 0.02
    shift_step: int = -1
    publish: int = 6
    lifetime: int = 8
    freshness_tau: float = 4.0
    quality_std: float = 0.5
    list_len: int = 10
    eta: float = 1.0
    bias: float = -3.0
    a_int: float = 0.6
    a_q: float = 1.0
    a_f: float = 1.0
    a_h: float = 0.3
    rate: float = 0.02
    rate_std: float = 0.5
    rho: float = 0.9
    kappa: float = 0.3
    c_ref: float = 0.5
    h_max: float = 2.0
    active_window: float = 24.0
    max_users: int = 64
    return_model: str = "clicks"
    rate_shape: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.return_model not in ("clicks", "quality"):
            raise ValueError(
                f"return_model must be 'clicks' or 'quality', not {self.return_model!r}"
            )
        if self.rate_shape < 0 or self.rate <= 0:
            raise ValueError("rate must be positive and rate_shape non-negative")
        if self.return_model == "quality" and self.c_ref <= 0:
            raise ValueError("the quality return model needs a positive c_ref")
        if self.interests > self.n_topics or self.interests < 1:
            raise ValueError("interests must be in [1, n_topics]")
        if self.list_len > self.publish * self.lifetime:
            raise ValueError("list_len exceeds the number of candidates (publish * lifetime)")

    @property
    def n_candidates(self) -> int:
        return self.publish * self.lifetime

    def replace(self, **changes: object) -> SimConfig:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


@dataclass
class Request:
    """One step's request: arriving users and the shared candidate news.

    Attributes:
        step: Step index ``t``.
        users: ``(B,)`` user ids.
        candidates: ``(C,)`` item ids (the live news).
        topics: ``(C,)`` topic of each candidate.
        age: ``(C,)`` steps since each candidate's publication.
    """

    step: int
    users: np.ndarray
    candidates: np.ndarray
    topics: np.ndarray
    age: np.ndarray

    @property
    def hour(self) -> float:
        return float(self.step % 24)


@dataclass
class Feedback:
    """The environment's answer to a ranked list per user.

    Attributes:
        clicks: ``(B, L)`` 0/1 clicks by rank.
        activeness: ``(B,)`` activeness of each user after the session.
        gap: ``(B,)`` steps until each user returns.
        attract: ``(B, L)`` true attractiveness (click probability at examination 1).
    """

    clicks: np.ndarray
    activeness: np.ndarray
    gap: np.ndarray
    attract: np.ndarray


class NewsSimulator:
    """The seeded environment. ``reset()`` returns the first :class:`Request`; ``step(ranking)``
    serves the current request and returns ``(Feedback, next Request)``.
    """

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.reset()

    # ---- state ---------------------------------------------------------------------------
    def reset(self) -> Request:
        cfg = self.cfg
        rng = self.rng = np.random.default_rng(cfg.seed)
        n, k = cfg.n_users, cfg.n_topics
        # several interests: `interests` topics per user get a boosted logit
        pick = np.argsort(rng.random((n, k)), axis=1)[:, : cfg.interests]
        self.logits = rng.normal(0.0, 0.3, (n, k))
        boost = cfg.interest_strength * rng.uniform(0.7, 1.0, (n, cfg.interests))
        np.put_along_axis(self.logits, pick, np.take_along_axis(self.logits, pick, 1) + boost, 1)
        if cfg.rate_shape > 0:  # gamma frailty: shape a, mean rate
            self.base_rate = rng.gamma(cfg.rate_shape, cfg.rate / cfg.rate_shape, n)
        else:
            self.base_rate = cfg.rate * np.exp(rng.normal(0, cfg.rate_std, n) - cfg.rate_std**2 / 2)
        self.h = np.zeros(n)
        self.memory = np.full(n, cfg.c_ref)  # quality received over time (expected clicks)
        self.next_return = rng.exponential(1.0 / self.base_rate)
        # item store grows by `publish` per step; arrays are extended in blocks
        self.item_topic = np.empty(0, dtype=np.int64)
        self.item_quality = np.empty(0)
        self.item_time = np.empty(0, dtype=np.int64)
        for step in range(1 - cfg.lifetime, 0):  # pre-publish so the first request has C items
            self._publish(step)
        self.t = 0
        self._request = self._advance(first=True)
        return self._request

    def _publish(self, step: int) -> None:
        m = self.cfg.publish
        self.item_topic = np.concatenate(
            [self.item_topic, self.rng.integers(0, self.cfg.n_topics, m)]
        )
        self.item_quality = np.concatenate(
            [self.item_quality, self.rng.normal(0, self.cfg.quality_std, m)]
        )
        self.item_time = np.concatenate([self.item_time, np.full(m, step, dtype=np.int64)])

    @property
    def interests(self) -> np.ndarray:
        """``(n_users, K)`` true interest distributions ``softmax(z_u)``."""
        z = self.logits - self.logits.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    @property
    def activeness(self) -> np.ndarray:
        """``(n_users,)`` ``a_u = 1 - exp(-lambda_u * window)``."""
        lam = self.base_rate * np.exp(self.h)
        return 1.0 - np.exp(-lam * self.cfg.active_window)

    def _advance(self, first: bool = False) -> Request:
        """Move to the next step with at least one arriving user; evolve interests and news."""
        cfg = self.cfg
        while True:
            if not first:
                self.t += 1
            first = False
            self._publish(self.t)
            self.logits += self.rng.normal(0, cfg.drift_std, self.logits.shape)
            if self.t == cfg.shift_step:
                perm = np.argsort(self.rng.random(self.logits.shape), axis=1)
                self.logits = np.take_along_axis(self.logits, perm, axis=1)
                log.debug("interest shift at step %d", self.t)
            due = np.flatnonzero(self.next_return <= self.t)
            if due.size:
                break
        if due.size > cfg.max_users:  # earliest first; the rest wait
            due = due[np.argsort(self.next_return[due], kind="stable")[: cfg.max_users]]
        cand = np.arange(self.item_topic.size - cfg.n_candidates, self.item_topic.size)
        return Request(
            step=self.t,
            users=np.sort(due),
            candidates=cand,
            topics=self.item_topic[cand],
            age=self.t - self.item_time[cand],
        )

    @property
    def request(self) -> Request:
        return self._request

    # ---- the click model -------------------------------------------------------------------
    def attractiveness(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Click probability at examination 1 for ``users (B,)`` x ``items (B, L)``."""
        cfg = self.cfg
        p = self.interests[users]  # (B, K)
        rel = np.take_along_axis(p, self.item_topic[items], axis=1) * cfg.n_topics  # (B, L)
        fresh = np.exp(-(self.t - self.item_time[items]) / cfg.freshness_tau)
        logit = (
            cfg.bias
            + cfg.a_int * rel
            + cfg.a_q * self.item_quality[items]
            + cfg.a_f * fresh
            + cfg.a_h * np.sin(2 * np.pi * self.t / 24)
        )
        return 1.0 / (1.0 + np.exp(-logit))

    def examination(self) -> np.ndarray:
        """``(L,)`` position bias ``(k + 1) ** -eta``."""
        return (np.arange(self.cfg.list_len) + 1.0) ** -self.cfg.eta

    def step(self, ranking: np.ndarray) -> tuple[Feedback, Request]:
        """Serve the current request.

        Args:
            ranking: ``(B, L)`` candidate positions (indices into ``request.candidates``), best
                first, one row per arriving user, no repeats within a row.

        Returns:
            The feedback for this request and the next request.
        """
        req, cfg = self._request, self.cfg
        ranking = np.asarray(ranking)
        if ranking.shape != (req.users.size, cfg.list_len):
            raise ValueError(
                f"ranking must be {(req.users.size, cfg.list_len)}, got {ranking.shape}"
            )
        items = req.candidates[ranking]
        attract = self.attractiveness(req.users, items)
        clicks = (self.rng.random(attract.shape) < attract * self.examination()).astype(np.float32)
        # survival-style activeness: hazard rises after pleasing sessions
        if cfg.return_model == "quality":
            quality = (attract * self.examination()).sum(axis=1)  # expected clicks of the list
            m = cfg.rho * self.memory[req.users] + (1 - cfg.rho) * quality
            self.memory[req.users] = m
            self.h[req.users] = np.clip(cfg.kappa * np.log(m / cfg.c_ref), -cfg.h_max, cfg.h_max)
        else:
            n_clicks = clicks.sum(axis=1)
            self.h[req.users] = np.clip(
                cfg.rho * self.h[req.users] + cfg.kappa * (n_clicks - cfg.c_ref),
                -cfg.h_max,
                cfg.h_max,
            )
        lam = self.base_rate[req.users] * np.exp(self.h[req.users])
        gap = np.maximum(1, np.ceil(self.rng.exponential(1.0 / lam))).astype(np.int64)
        self.next_return[req.users] = self.t + gap
        active = 1.0 - np.exp(-lam * cfg.active_window)
        feedback = Feedback(clicks=clicks, activeness=active, gap=gap, attract=attract)
        self._request = self._advance()
        return feedback, self._request
