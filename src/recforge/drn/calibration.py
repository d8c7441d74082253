"""Calibration of the news simulator from real logs (Globo.com clicks, MIND impressions).

:func:`calibrate` fits the simulator's free parameters: freshness decay (ages of clicks since an
article's first click), popularity spread (log click counts per article), users' return rates
and their spread (sessions per user over the log span) from Globo, and the base click logit from
MIND's click-through rate. The logs are read by :mod:`recforge.data.sources.news`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recforge.data.sources.news import read_globo_clicks, read_mind_behaviors
from recforge.drn.simulator import NewsSimulator, SimConfig

log = logging.getLogger(__name__)


# ---- calibration of the simulator ----------------------------------------------------------
@dataclass(frozen=True)
class Calibration:
    """Simulator parameters fitted from news logs (``None`` where no log informed them).

    Attributes:
        freshness_tau: Hours; ages of clicks since an article's first click, median / ln 2.
        quality_std: Std of ``log(clicks)`` per article (popularity spread).
        rate: Mean sessions per user per hour over the log span.
        rate_std: Std of ``log(sessions per user)``.
        ctr: MIND click-through rate of shown items.
        bias: Base click logit matching ``ctr`` for random lists in the simulator.
    """

    freshness_tau: float | None = None
    quality_std: float | None = None
    rate: float | None = None
    rate_std: float | None = None
    ctr: float | None = None
    bias: float | None = None

    def apply(self, cfg: SimConfig, scale_rate: bool = False) -> SimConfig:
        """``cfg`` with the fitted values; the return rate only when ``scale_rate``."""
        changes = {
            k: getattr(self, k)
            for k in ("freshness_tau", "quality_std", "rate_std", "bias")
            if getattr(self, k) is not None
        }
        if scale_rate and self.rate is not None:
            changes["rate"] = self.rate
        return cfg.replace(**changes)


def calibrate_globo(clicks: pa.Table) -> dict[str, float]:
    """Freshness decay, popularity spread and return-rate statistics from Globo clicks."""
    ts = clicks["click_timestamp"].to_numpy().astype(np.float64) / 3.6e6  # hours
    art = clicks["click_article_id"].to_numpy()
    _, inv, counts = np.unique(art, return_inverse=True, return_counts=True)
    first = np.full(counts.size, np.inf)
    np.minimum.at(first, inv, ts)
    age = ts - first[inv]
    span = ts.max() - ts.min()
    users, sessions = clicks["user_id"].to_numpy(), clicks["session_id"].to_numpy()
    pairs = np.unique(np.stack([users, sessions], axis=1), axis=0)
    _, per_user = np.unique(pairs[:, 0], return_counts=True)
    return {
        "freshness_tau": float(np.median(age) / np.log(2)),
        "quality_std": float(np.std(np.log(counts))),
        "rate": float(per_user.mean() / span),
        "rate_std": float(np.std(np.log(per_user))),
    }


def calibrate_mind(impressions: pa.Table) -> dict[str, float]:
    """Click-through rate of shown items from exploded MIND impressions."""
    return {"ctr": float(pc.mean(impressions["label"]).as_py())}


def fit_bias(cfg: SimConfig, ctr: float, samples: int = 50_000) -> float:
    """Base click logit for which uniformly random lists in the simulator click at ``ctr``.

    Monte Carlo over the simulator's own draws: users' initial interests, uniform topics,
    qualities ``N(0, quality_std)``, ages uniform over the lifetime, uniform hours and list
    positions; the bias is then found by bisection (the click rate increases with it).
    """
    rng = np.random.default_rng(cfg.seed)
    env = NewsSimulator(cfg)
    users = rng.integers(0, cfg.n_users, samples)
    topics = rng.integers(0, cfg.n_topics, samples)
    rel = env.interests[users, topics] * cfg.n_topics
    fresh = np.exp(-rng.integers(0, cfg.lifetime, samples) / cfg.freshness_tau)
    hour = np.sin(2 * np.pi * rng.integers(0, 24, samples) / 24)
    rest = (
        cfg.a_int * rel
        + cfg.a_q * rng.normal(0, cfg.quality_std, samples)
        + cfg.a_f * fresh
        + cfg.a_h * hour
    )
    exam = env.examination()[rng.integers(0, cfg.list_len, samples)]
    lo, hi = -15.0, 5.0
    for _ in range(50):
        mid = (lo + hi) / 2
        rate = float(np.mean(exam / (1.0 + np.exp(-(mid + rest)))))
        lo, hi = (mid, hi) if rate < ctr else (lo, mid)
    return (lo + hi) / 2


def calibrate(
    globo: str | Path | pa.Table | None = None,
    mind: str | Path | pa.Table | None = None,
    base: SimConfig | None = None,
) -> Calibration:
    """Fit simulator parameters from a Globo clicks log and/or MIND behaviors.

    Args:
        globo: Path to ``clicks.csv[.xz]`` or its table.
        mind: Path to ``behaviors.tsv[.xz]`` or the exploded table.
        base: Simulator configuration used to translate the CTR into a click bias.
    """
    fitted: dict[str, float] = {}
    if globo is not None:
        table = globo if isinstance(globo, pa.Table) else read_globo_clicks(globo)
        fitted.update(calibrate_globo(table))
    if mind is not None:
        table = mind if isinstance(mind, pa.Table) else read_mind_behaviors(mind)
        fitted.update(calibrate_mind(table))
    if "ctr" in fitted:
        cfg = base or SimConfig()
        for k in ("freshness_tau", "quality_std"):
            if k in fitted:
                cfg = cfg.replace(**{k: fitted[k]})
        fitted["bias"] = fit_bias(cfg, fitted["ctr"])
    log.info("calibration: %s", {k: round(v, 4) for k, v in fitted.items()})
    return Calibration(**fitted)
