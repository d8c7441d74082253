"""User activeness from return times: DRN's survival view of user returns.

Zheng et al., WWW 2018, Section 4.3 treat a user's return to the app as an event in survival
analysis: with hazard ``lambda(t)`` the survival function is ``S(t) = exp(-int_0^t lambda)``,
and DRN keeps an **activeness score** per user that starts at ``s0 = 0.5``, decays with the
survival function between visits and jumps by ``s_a`` (capped at 1) whenever the user returns.
:func:`activeness_scores` computes that score at every event of a log, vectorised per user.

The hazard itself is fitted here as a constant per-user rate with gamma-distributed frailty
(:class:`ReturnModel`): user ``u`` returns as a Poisson process of rate ``lambda_u``, and
``lambda_u ~ Gamma(a, b)`` across users. Over an exposure of ``T_u`` hours with ``n_u``
returns the marginal likelihood is negative binomial, ``(a, b)`` are its maximum-likelihood
estimates, and the posterior ``Gamma(a + n_u, b + T_u)`` gives each user's return
probability within ``w`` hours in closed form: ``1 - ((b + T_u) / (b + T_u + w)) ** (a + n_u)``.
Users without returns are right-censored at the end of their exposure, as survival analysis
requires. An optional weekly profile scales the hazard by day of week (news reading drops at
weekends); exposures and windows are then measured in profile-weighted hours.
:func:`calibration_table` checks the predictions on later days.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import gammaln

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReturnModel:
    """Gamma-frailty exponential return model (rates per hour).

    Attributes:
        a: Gamma shape of users' return rates.
        b: Gamma rate (hours) of users' return rates; the population mean rate is ``a / b``.
        weekly: Relative hazard of each day since the log's first midnight modulo 7 (mean 1),
            or ``None`` for a hazard constant in time. Exposures and windows are then measured
            in "effective hours" (:func:`effective_hours`).
    """

    a: float
    b: float
    weekly: tuple[float, ...] | None = None

    @property
    def mean_rate(self) -> float:
        """Population mean return hazard (returns per hour)."""
        return self.a / self.b

    @classmethod
    def fit(
        cls, returns: np.ndarray, exposure: np.ndarray, weekly: np.ndarray | None = None
    ) -> ReturnModel:
        """Maximum-likelihood ``(a, b)`` from per-user return counts and exposures (hours).

        Args:
            returns: ``(U,)`` returns observed per user (sessions after the first).
            exposure: ``(U,)`` hours each user was observed (first session to the end of the
                window; right-censored there), effective hours when ``weekly`` is given.
            weekly: The weekly profile the exposures were measured with (stored).
        """
        n = np.asarray(returns, dtype=np.float64)
        t = np.asarray(exposure, dtype=np.float64)
        keep = t > 0
        n, t = n[keep], t[keep]
        if n.size == 0:
            raise ValueError("no user with a positive exposure to fit the return model on")

        def nll(theta: np.ndarray) -> float:
            a, b = np.exp(theta)
            # negative binomial: Gamma(a) prior on the rate of a Poisson count over t hours
            ll = gammaln(a + n) - gammaln(a) + a * np.log(b / (b + t)) + n * np.log(t / (b + t))
            return -float(ll.sum())

        mean = max(n.sum() / t.sum(), 1e-9)
        res = minimize(nll, np.log([1.0, 1.0 / mean]), method="Nelder-Mead",
                       options={"xatol": 1e-6, "fatol": 1e-6, "maxiter": 2000})  # fmt: skip
        a, b = np.exp(res.x)
        log.info("return model: a=%.3f b=%.2f h (rate %.4f/h), %d users", a, b, a / b, n.size)
        profile = None if weekly is None else tuple(float(w) for w in weekly)
        return cls(float(a), float(b), profile)

    def rate(self, returns: np.ndarray, exposure: np.ndarray) -> np.ndarray:
        """Posterior mean hazard ``(a + n) / (b + T)`` of users with ``n`` returns in ``T`` h."""
        return (self.a + np.asarray(returns)) / (self.b + np.asarray(exposure))

    def p_return(self, returns: np.ndarray, exposure: np.ndarray, window: float) -> np.ndarray:
        """Probability of at least one return within ``window`` hours (posterior predictive)."""
        a = self.a + np.asarray(returns, dtype=np.float64)
        b = self.b + np.asarray(exposure, dtype=np.float64)
        return 1.0 - (b / (b + window)) ** a


def unique_sessions(user: np.ndarray, start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique ``(user, session start)`` pairs of a click log, sorted by user then start."""
    order = np.lexsort((start, user))
    u, s = np.asarray(user)[order], np.asarray(start)[order]
    new = np.r_[True, (u[1:] != u[:-1]) | (s[1:] != s[:-1])] if u.size else np.zeros(0, bool)
    return u[new], s[new]


def weekly_profile(start: np.ndarray, t0: float, t1: float) -> np.ndarray:
    """``(7,)`` relative session-start rate of each day modulo 7 in ``[t0, t1)`` (mean 1).

    Days are counted from hour 0 (the log's first midnight); a day seen in several weeks is
    averaged over them, a day not seen gets 1.
    """
    day = np.floor(start[(start >= t0) & (start < t1)] / 24).astype(np.int64)
    days = np.arange(int(np.ceil(t0 / 24)), int(np.floor(t1 / 24)))
    per_day = np.bincount(day, minlength=int(days.max(initial=0)) + 1)[days]
    total = np.bincount(days % 7, per_day, minlength=7)
    seen = np.bincount(days % 7, minlength=7)
    rate = np.where(seen > 0, total / np.maximum(seen, 1), np.nan)
    rate = rate / np.nanmean(rate)
    return np.where(np.isnan(rate), 1.0, rate)


def effective_hours(t: np.ndarray, weekly: np.ndarray | tuple[float, ...] | None) -> np.ndarray:
    """``int_0^t w(day(u)) du``: hours weighted by the weekly profile (``t`` itself if none)."""
    t = np.asarray(t, dtype=np.float64)
    if weekly is None:
        return t
    w = np.asarray(weekly, dtype=np.float64)
    cum = np.concatenate([[0.0], np.cumsum(w)]) * 24  # (8,) hours up to each day of a week
    day = np.floor(t / 24).astype(np.int64)
    return (day // 7) * cum[7] + cum[day % 7] + (t - 24 * day) * w[day % 7]


def exposure_counts(
    user: np.ndarray,
    start: np.ndarray,
    t0: float,
    t1: float,
    weekly: np.ndarray | tuple[float, ...] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-user returns and exposure within ``[t0, t1)`` hours.

    Args:
        user: ``(S,)`` user of each session, sorted by user then ``start``.
        start: ``(S,)`` session start (hours).
        t0: Window start.
        t1: Window end (censoring time).
        weekly: Weekly profile to measure exposure in effective hours.

    Returns:
        ``users (U,)`` seen in the window, their ``returns`` (sessions after their first one
        in the window) and ``exposure`` (hours from their first session to ``t1``).
    """
    inside = (start >= t0) & (start < t1)
    u, s = user[inside], start[inside]
    users, first_idx, count = np.unique(u, return_index=True, return_counts=True)
    exposure = effective_hours(np.full(users.size, t1), weekly) - effective_hours(
        s[first_idx], weekly
    )
    return users, count - 1.0, exposure


def calibration_table(
    model: ReturnModel,
    user: np.ndarray,
    start: np.ndarray,
    fit_start: float,
    cut: float,
    window: float,
    bins: int = 10,
) -> dict[str, object]:
    """Predicted vs observed returns within ``window`` hours after ``cut``.

    Users seen in ``[fit_start, cut)`` get the posterior return probability from their history
    there; the outcome is whether they start a session in ``[cut, cut + window)``.

    Returns:
        ``bins`` rows of mean predicted and observed rates with counts, the Brier score of the
        model and of the population rate alone, and the number of users.
    """
    users, n, t = exposure_counts(user, start, fit_start, cut, model.weekly)
    span = effective_hours(np.array([cut, cut + window]), model.weekly)
    pred = model.p_return(n, t, float(span[1] - span[0]))
    later = np.unique(user[(start >= cut) & (start < cut + window)])
    observed = np.isin(users, later).astype(np.float64)
    edges = np.quantile(pred, np.linspace(0, 1, bins + 1))
    which = np.clip(np.searchsorted(edges, pred, side="right") - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    safe = np.maximum(count, 1)
    base = 1.0 - np.exp(-model.mean_rate * float(span[1] - span[0]))
    return {
        "cut": cut,
        "window": window,
        "users": int(users.size),
        "predicted": (np.bincount(which, pred, bins) / safe).tolist(),
        "observed": (np.bincount(which, observed, bins) / safe).tolist(),
        "count": count.tolist(),
        "brier": float(np.mean((pred - observed) ** 2)),
        "brier_population_rate": float(np.mean((base - observed) ** 2)),
        "observed_rate": float(observed.mean()) if observed.size else float("nan"),
    }


def activeness_scores(
    user: np.ndarray,
    time: np.ndarray,
    session_start: np.ndarray,
    decay: float,
    s0: float = 0.5,
    jump: float = 0.32,
) -> np.ndarray:
    """DRN's activeness score of each event's user just before the event.

    The score starts at ``s0`` at a user's first session, decays as ``exp(-decay * dt)`` (the
    survival function of a constant hazard ``decay`` per hour) and gains ``jump`` (capped at 1)
    at each later session start.

    Args:
        user: ``(N,)`` user of each event.
        time: ``(N,)`` event time (hours).
        session_start: ``(N,)`` start of the event's session (hours).
        decay: Hazard ``lambda0`` per hour (e.g. :attr:`ReturnModel.mean_rate`).
        s0: Score at a user's first session.
        jump: Increase at each return.

    Returns:
        ``(N,)`` scores in ``[0, 1]``.
    """
    user = np.asarray(user, dtype=np.int64)
    # sessions as exact integer keys (user, start in ms since the earliest start)
    origin = float(np.min(session_start)) if len(session_start) else 0.0
    start_ms = np.round((np.asarray(session_start) - origin) * 3.6e6).astype(np.int64)
    if start_ms.size and start_ms.max() >= 1 << 36:
        raise ValueError("activeness_scores: the log spans more than ~795 days")
    keys = np.unique((user << 36) | start_ms)  # sorted by user, then start
    u_sess, t_sess = keys >> 36, (keys & ((1 << 36) - 1)) / 3.6e6
    # per user, the recursion s_j = min(1, s_{j-1} * exp(-decay * gap_j) + jump) over sessions
    first = np.r_[True, u_sess[1:] != u_sess[:-1]] if keys.size else np.zeros(0, bool)
    gap = np.where(first, 0.0, np.diff(t_sess, prepend=t_sess[:1]))
    keep = np.exp(-decay * gap)
    group_start = np.maximum.accumulate(np.where(first, np.arange(first.size), 0))
    rank = np.arange(first.size) - group_start  # session index within its user
    score = np.full(keys.size, s0)
    # the cap makes the recursion nonlinear: one vectorised pass per session index
    order = np.argsort(rank, kind="stable")
    bounds = np.searchsorted(rank[order], np.arange(int(rank.max(initial=0)) + 2))
    for j in range(1, bounds.size - 1):
        at = order[bounds[j] : bounds[j + 1]]
        score[at] = np.minimum(1.0, score[at - 1] * keep[at] + jump)
    # an event inside a session sees its session's score decayed since the session start
    idx = np.searchsorted(keys, (user << 36) | start_ms)
    return score[idx] * np.exp(-decay * np.maximum(np.asarray(time) - session_start, 0.0))
