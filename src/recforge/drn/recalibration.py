"""The news simulator recalibrated from real logs: click model from MIND, return model from Globo.

:func:`recalibrate` fits the parts of :class:`~recforge.drn.simulator.SimConfig` that the logs
inform and checks the fitted simulator against them (:func:`check_recalibration`):

* **Click model (MIND impressions).** Every shown item carries a click label; the item's index in
  its impression is read as its position. A position-based model ``P(click at k) = exam_k * L``
  with ``exam_k = (k + 1) ** -eta`` is fitted by maximum likelihood to every labelled item, so
  one curve explains both the fall of CTR with position and with the candidate-set size (a
  longer impression reaches deeper, less examined positions). The simulator's base logit
  ``bias`` is then set so that its mean attractiveness equals the fitted ``L``, and its item
  quality spread ``quality_std`` so that the spread of per-item CTRs (between-item coefficient
  of variation, binomial noise removed, items with at least ``min_impressions``) matches the
  log when the simulator's click model replays MIND's own impressions.
* **Return model (Globo sessions).** The gamma-frailty return hazard of
  :mod:`recforge.drn.survival`, fitted on the first ``fit_days`` days, gives the base hazards:
  ``rate = a / b`` and ``rate_shape = a``. The simulator then uses ``return_model="quality"``:
  a user's hazard is the base hazard times ``(m_u / c_ref) ** kappa``, ``m_u`` the expected
  clicks of the lists they received (an exponential memory over sessions, ``rho``) and
  ``c_ref`` the expected clicks of a random list, so a user served random lists returns at the
  fitted rate and better lists bring them back sooner. ``kappa`` and ``rho`` are **assumed**:
  the log cannot identify the effect of what was shown on returns (the portal's lists are not
  logged); the within-user association between a session's depth and the next gap is stored as
  a diagnostic.

Held-out check: the simulated return-time distribution is compared with the gaps between
sessions that start after the fitting days.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
from scipy.optimize import minimize

from recforge.data.read.readers import DataError
from recforge.drn.globo import read_globo_columns
from recforge.drn.logged import MIND_COLUMNS, _read_text_table
from recforge.drn.simulator import NewsSimulator, SimConfig
from recforge.drn.survival import ReturnModel, exposure_counts

log = logging.getLogger(__name__)

GAP_POINTS = (1.0, 2.0, 3.0, 6.0, 12.0, 24.0, 48.0, 72.0)
SIZE_BINS = (1, 5, 10, 20, 40, 80, 10_000)


# ---- reading the logs ----------------------------------------------------------------------
@dataclass(frozen=True)
class MindTokens:
    """MIND's shown items, one entry per item of every impression (file order).

    Attributes:
        position: ``(N,)`` 0-based index of the item in its impression.
        size: ``(N,)`` number of items in that impression.
        item: ``(N,)`` dense news index.
        label: ``(N,)`` 1 = clicked.
    """

    position: np.ndarray
    size: np.ndarray
    item: np.ndarray
    label: np.ndarray


def read_mind_tokens(path: str | Path) -> MindTokens:
    """Positions, impression sizes, news and labels of a MIND ``behaviors.tsv[.xz]``.

    Raises:
        DataError: Unreadable file, a malformed impression token (file, line, column), or no
            impression with candidates.
    """
    path = Path(path)
    table = _read_text_table(path, MIND_COLUMNS, "\t", header=False)
    text = pc.utf8_trim_whitespace(pc.fill_null(table["impressions"], ""))
    empty = pc.utf8_length(text).to_numpy(zero_copy_only=False) == 0
    tokens = pc.split_pattern(text, " ")
    parent = pc.list_parent_indices(tokens).to_numpy()
    flat = pc.list_flatten(tokens).to_numpy(zero_copy_only=False).astype(str)
    news, dash, label = np.char.rpartition(flat, "-").T
    ok = (dash == "-") & np.isin(label, ["0", "1"]) & (np.char.str_len(news) > 0)
    bad = np.flatnonzero(~ok & ~empty[parent])
    if bad.size:
        raise DataError(
            path,
            f"impression token {str(flat[bad[0]])!r} is not NEWSID-0 or NEWSID-1",
            line=int(parent[bad[0]]) + 1,
            column="impressions",
            column_number=5,
        )
    keep = ~empty[parent]
    parent, news, label = parent[keep], news[keep], label[keep]
    if parent.size == 0:
        raise DataError(path, "no impression with candidates")
    first = np.searchsorted(parent, parent)  # tokens are grouped by impression, in order
    size = np.bincount(parent)[parent]
    _, item = np.unique(news, return_inverse=True)
    return MindTokens(np.arange(parent.size) - first, size, item, label == "1")


def read_globo_sessions(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique sessions of a Globo ``clicks.csv[.xz]``: user, start (hours since the first
    midnight) and clicks in the session, sorted by user then start.

    Raises:
        DataError: Unreadable file, missing column or non-integer value (file, line, column).
    """
    cols = read_globo_columns(Path(path), ("user_id", "session_start", "click_timestamp"))
    day0 = cols["click_timestamp"].min() // 86_400_000 * 86_400_000
    start = (cols["session_start"] - day0) / 3.6e6
    user = cols["user_id"]
    order = np.lexsort((start, user))
    u, s = user[order], start[order]
    new = np.r_[True, (u[1:] != u[:-1]) | (s[1:] != s[:-1])]
    clicks = np.diff(np.r_[np.flatnonzero(new), u.size])
    return u[new], s[new], clicks


# ---- the click model -----------------------------------------------------------------------
def fit_position_model(tokens: MindTokens) -> tuple[float, float]:
    """Maximum-likelihood ``(L, eta)`` of ``P(click) = L * (position + 1) ** -eta``."""
    pos = np.bincount(tokens.position)  # sufficient statistics per position
    clicks = np.bincount(tokens.position, tokens.label.astype(np.float64))
    k = np.arange(pos.size, dtype=np.float64)

    def nll(theta: np.ndarray) -> float:
        level = 1.0 / (1.0 + np.exp(-theta[0]))
        p = np.clip(level * (k + 1.0) ** -theta[1], 1e-12, 1 - 1e-12)
        return -float((clicks * np.log(p) + (pos - clicks) * np.log1p(-p)).sum())

    ctr = float(tokens.label.mean())
    res = minimize(nll, np.array([np.log(ctr / (1 - ctr)), 0.5]), method="Nelder-Mead",
                   options={"xatol": 1e-7, "fatol": 1e-7, "maxiter": 4000})  # fmt: skip
    return float(1.0 / (1.0 + np.exp(-res.x[0]))), float(res.x[1])


def item_ctr_spread(item: np.ndarray, label: np.ndarray, min_impressions: int) -> float:
    """Between-item coefficient of variation of CTR (binomial noise removed)."""
    n = np.bincount(item)
    c = np.bincount(item, label.astype(np.float64), minlength=n.size)
    keep = n >= min_impressions
    if keep.sum() < 2:
        return float("nan")
    r = c[keep] / n[keep]
    between = r.var() - np.mean(r * (1 - r) / n[keep])
    return float(np.sqrt(max(between, 0.0)) / max(r.mean(), 1e-12))


@dataclass
class _Replayer:
    """The simulator's click model replaying MIND's impressions (common random numbers)."""

    cfg: SimConfig
    tokens: MindTokens
    seed: int = 0
    rest: np.ndarray = field(init=False)  # (N,) logit terms other than bias and quality
    z: np.ndarray = field(init=False)  # (items,) standard-normal item qualities
    u: np.ndarray = field(init=False)  # (N,) click uniforms

    def __post_init__(self) -> None:
        cfg, tok = self.cfg, self.tokens
        rng = np.random.default_rng(self.seed)
        env = NewsSimulator(cfg.replace(return_model="clicks", rate_shape=0.0))
        n_items = int(tok.item.max()) + 1
        topic = rng.integers(0, cfg.n_topics, n_items)[tok.item]
        users = rng.integers(0, cfg.n_users, tok.item.size)
        rel = env.interests[users, topic] * cfg.n_topics
        fresh = np.exp(-rng.integers(0, cfg.lifetime, tok.item.size) / cfg.freshness_tau)
        hour = np.sin(2 * np.pi * rng.integers(0, 24, tok.item.size) / 24)
        self.rest = cfg.a_int * rel + cfg.a_f * fresh + cfg.a_h * hour
        self.z = rng.standard_normal(n_items)
        self.u = rng.random(tok.item.size)

    def attract(self, bias: float, quality_std: float) -> np.ndarray:
        logit = bias + self.rest + self.cfg.a_q * quality_std * self.z[self.tokens.item]
        return 1.0 / (1.0 + np.exp(-logit))

    def bias_for(self, level: float, quality_std: float) -> float:
        """Bias whose mean attractiveness is ``level`` (bisection; increasing in bias)."""
        lo, hi = -15.0, 8.0
        for _ in range(40):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if self.attract(mid, quality_std).mean() < level else (lo, mid)
        return (lo + hi) / 2

    def clicks(self, bias: float, quality_std: float, eta: float) -> np.ndarray:
        exam = (self.tokens.position + 1.0) ** -eta
        return self.u < exam * self.attract(bias, quality_std)


def fit_click_model(
    tokens: MindTokens, base: SimConfig, min_impressions: int = 20
) -> dict[str, float]:
    """``eta``, ``bias`` and ``quality_std`` of the simulator fitted to MIND's labelled items."""
    level, eta = fit_position_model(tokens)
    target = item_ctr_spread(tokens.item, tokens.label, min_impressions)
    rep = _Replayer(base, tokens, base.seed)
    lo, hi = 0.0, 4.0
    if np.isnan(target):  # too few items with enough impressions: keep the default spread
        lo = hi = base.quality_std
    for _ in range(25):  # the simulated spread increases with the quality spread
        mid = (lo + hi) / 2
        bias = rep.bias_for(level, mid)
        spread = item_ctr_spread(tokens.item, rep.clicks(bias, mid, eta), min_impressions)
        lo, hi = (mid, hi) if spread < target else (lo, mid)
    quality_std = (lo + hi) / 2
    return {
        "level": level,
        "eta": eta,
        "quality_std": quality_std,
        "bias": rep.bias_for(level, quality_std),
        "ctr": float(tokens.label.mean()),
        "item_ctr_cv": target,
        "min_impressions": float(min_impressions),
    }


def random_list_quality(cfg: SimConfig, samples: int = 50_000) -> float:
    """Expected clicks of a uniformly random list in the simulator (Monte Carlo)."""
    rng = np.random.default_rng(cfg.seed + 1)
    env = NewsSimulator(cfg.replace(return_model="clicks", rate_shape=0.0))
    users = rng.integers(0, cfg.n_users, samples)
    topics = rng.integers(0, cfg.n_topics, samples)
    logit = (
        cfg.bias
        + cfg.a_int * env.interests[users, topics] * cfg.n_topics
        + cfg.a_q * rng.normal(0, cfg.quality_std, samples)
        + cfg.a_f * np.exp(-rng.integers(0, cfg.lifetime, samples) / cfg.freshness_tau)
        + cfg.a_h * np.sin(2 * np.pi * rng.integers(0, 24, samples) / 24)
    )
    return float(np.mean(1.0 / (1.0 + np.exp(-logit))) * env.examination().sum())


# ---- the return model ----------------------------------------------------------------------
def fit_return_model(
    user: np.ndarray, start: np.ndarray, clicks: np.ndarray, fit_days: int = 7
) -> dict[str, float]:
    """Gamma-frailty return hazard on the first ``fit_days`` days, and a diagnostic.

    The diagnostic ``within_user_slope`` regresses ``log`` of the gap to the next session on
    ``log`` of the session's clicks, within users with at least 3 such gaps (negative = deeper
    sessions are followed by sooner returns).
    """
    _, n, t = exposure_counts(user, start, 0.0, 24.0 * fit_days)
    model = ReturnModel.fit(n, t)
    same = user[1:] == user[:-1]
    gap = np.maximum((start[1:] - start[:-1])[same], 1 / 60)
    x, y, g = np.log(clicks[:-1][same]), np.log(gap), user[:-1][same]
    slope = float("nan")
    if g.size:
        _, inv, cnt = np.unique(g, return_inverse=True, return_counts=True)
        keep = cnt[inv] >= 3
        xd = (x - (np.bincount(inv, x) / cnt)[inv])[keep]
        yd = (y - (np.bincount(inv, y) / cnt)[inv])[keep]
        if (xd * xd).sum() > 0:
            slope = float((xd * yd).sum() / (xd * xd).sum())
    return {
        "a": model.a,
        "b": model.b,
        "rate": model.mean_rate,
        "rate_shape": model.a,
        "fit_days": float(fit_days),
        "within_user_slope": slope,
    }


def logged_gaps(
    user: np.ndarray, start: np.ndarray, t0: float, horizon: float
) -> tuple[np.ndarray, int]:
    """Gaps (hours) to the next session of sessions starting in ``[t0, end - horizon)`` that
    return within ``horizon`` hours, and the number of such sessions (uncensored by design)."""
    end = float(start.max())
    base = (start >= t0) & (start < end - horizon)
    same = np.r_[user[1:] == user[:-1], False]
    gap = np.r_[start[1:] - start[:-1], np.inf]
    gap = np.where(same, gap, np.inf)
    return gap[base & (gap <= horizon)], int(base.sum())


# ---- the recalibrated configuration --------------------------------------------------------
@dataclass(frozen=True)
class Recalibration:
    """What the logs fitted (``None`` where no log was given) and the assumed return terms.

    Attributes:
        click: :func:`fit_click_model`'s values (from MIND).
        returns: :func:`fit_return_model`'s values (from Globo).
        kappa: Assumed elasticity of the hazard in the received quality.
        rho: Assumed persistence of the quality memory per session.
        c_ref: Expected clicks of a random list in the recalibrated simulator.
    """

    click: dict[str, float] | None = None
    returns: dict[str, float] | None = None
    kappa: float = 1.0
    rho: float = 0.5
    c_ref: float | None = None

    def apply(self, cfg: SimConfig) -> SimConfig:
        """``cfg`` with the fitted click and return models (quality-driven returns)."""
        changes: dict[str, object] = {"return_model": "quality", "kappa": self.kappa}
        changes["rho"] = self.rho
        if self.click is not None:
            changes.update({k: self.click[k] for k in ("bias", "eta", "quality_std")})
        if self.returns is not None:
            changes.update(rate=self.returns["rate"], rate_shape=self.returns["rate_shape"])
        if self.c_ref is not None:
            changes["c_ref"] = self.c_ref
        return cfg.replace(**changes)

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def recalibrate(
    mind: str | Path | None = None,
    globo: str | Path | None = None,
    base: SimConfig | None = None,
    kappa: float = 1.0,
    rho: float = 0.5,
    fit_days: int = 7,
) -> tuple[Recalibration, dict[str, object]]:
    """Fit the simulator to MIND (click model) and/or Globo (return model).

    Args:
        mind: MIND ``behaviors.tsv[.xz]``.
        globo: Globo ``clicks.csv[.xz]``.
        base: The configuration to recalibrate (its other parameters stay).
        kappa: Assumed elasticity of the return hazard in the received quality.
        rho: Assumed persistence of the quality memory.
        fit_days: Globo days the return model is fitted on (later days check it).

    Returns:
        The recalibration and the logged statistics :func:`check_recalibration` compares with.

    Raises:
        ValueError: Neither log given.
        DataError: A log that cannot be read (file, line, column).
    """
    if mind is None and globo is None:
        raise ValueError("recalibration needs --mind and/or --globo (the logs to fit)")
    base = base or SimConfig()
    logged: dict[str, object] = {}
    click = returns = None
    if mind is not None:
        tokens = read_mind_tokens(mind)
        click = fit_click_model(tokens, base)
        logged["mind"] = tokens
    if globo is not None:
        user, start, clicks = read_globo_sessions(globo)
        returns = fit_return_model(user, start, clicks, fit_days)
        logged["globo"] = (user, start)
    cal = Recalibration(click, returns, kappa, rho)
    c_ref = random_list_quality(cal.apply(base.replace(c_ref=1.0)))
    cal = dataclasses.replace(cal, c_ref=c_ref)
    log.info("recalibration: click %s, returns %s, c_ref %.4f", click, returns, c_ref)
    return cal, logged


# ---- the check: simulated vs logged -------------------------------------------------------
def simulate_random(cfg: SimConfig, steps: int) -> dict[str, np.ndarray]:
    """The simulator served by uniformly random lists: clicks by position and return gaps."""
    env = NewsSimulator(cfg)
    rng = np.random.default_rng(cfg.seed + 7)
    clicks = np.zeros(cfg.list_len)
    shown = 0
    gaps = []
    for _ in range(steps):
        req = env.request
        ranking = np.argsort(rng.random((req.users.size, req.candidates.size)), axis=1)
        fb, _ = env.step(ranking[:, : cfg.list_len])
        clicks += fb.clicks.sum(axis=0)
        shown += fb.clicks.shape[0]
        gaps.append(fb.gap)
    return {"ctr_by_position": clicks / max(shown, 1), "gaps": np.concatenate(gaps)}


def gap_cdf(gaps: np.ndarray, horizon: float) -> list[float]:
    """``P(gap <= x | gap <= horizon)`` at :data:`GAP_POINTS` up to ``horizon``."""
    g = gaps[gaps <= horizon]
    return [float((g <= x).mean()) if g.size else float("nan") for x in GAP_POINTS if x <= horizon]


def check_recalibration(
    cal: Recalibration,
    logged: dict[str, object],
    cfg: SimConfig,
    steps: int = 400,
    horizon: float = 72.0,
    positions: int = 20,
) -> dict[str, object]:
    """Simulated vs logged: CTR by position and by impression size, per-item CTR spread,
    return-time distribution and return rate.

    ``model`` columns are the simulator's click model replaying MIND's impressions (same
    positions, sizes and news); ``simulator`` columns come from running the simulator with
    random lists of its own length for ``steps`` steps; return gaps of the log are those of
    sessions starting after the fitting days (held out).
    """
    out: dict[str, object] = {"horizon": horizon, "steps": steps}
    sim = simulate_random(cfg, steps)
    if "mind" in logged and cal.click is not None:
        tok: MindTokens = logged["mind"]  # type: ignore[assignment]
        rep = _Replayer(cfg, tok, cfg.seed + 3)
        c = cal.click
        model = rep.clicks(c["bias"], c["quality_std"], c["eta"])
        rows = []
        for k in range(positions):
            at = tok.position == k
            rows.append({
                "position": k + 1,
                "impressions": int(at.sum()),
                "logged": float(tok.label[at].mean()),
                "model": float(model[at].mean()),
                "fitted": c["level"] * (k + 1.0) ** -c["eta"],
                "simulator": float(sim["ctr_by_position"][k]) if k < cfg.list_len else None,
            })  # fmt: skip
        out["ctr_by_position"] = rows
        sizes = []
        for lo, hi in zip(SIZE_BINS[:-1], SIZE_BINS[1:], strict=True):
            at = (tok.size >= lo) & (tok.size < hi)
            if at.any():
                sizes.append({"size": f"{lo}-{hi - 1}" if hi < 10_000 else f">={lo}",
                              "items": int(at.sum()), "logged": float(tok.label[at].mean()),
                              "model": float(model[at].mean())})  # fmt: skip
        out["ctr_by_size"] = sizes
        n = np.bincount(tok.item)
        keep = n >= c["min_impressions"]
        q = (0.1, 0.25, 0.5, 0.75, 0.9)
        for name, lab in (("logged", tok.label), ("model", model)):
            r = np.bincount(tok.item, lab.astype(np.float64), n.size)[keep] / n[keep]
            out[f"item_ctr_quantiles_{name}"] = np.quantile(r, q).tolist()
            out[f"item_ctr_cv_{name}"] = item_ctr_spread(tok.item, lab, int(c["min_impressions"]))
        out["item_ctr_items"] = int(keep.sum())
    if "globo" in logged and cal.returns is not None:
        user, start = logged["globo"]  # type: ignore[misc]
        lg, base = logged_gaps(user, start, 24.0 * cal.returns["fit_days"], horizon)
        sg = sim["gaps"]
        out["gap_points"] = [x for x in GAP_POINTS if x <= horizon]
        out["gap_cdf_logged"] = gap_cdf(lg, horizon)
        out["gap_cdf_simulator"] = gap_cdf(sg.astype(np.float64), horizon)
        out["return_within_horizon_logged"] = lg.size / max(base, 1)
        out["return_within_horizon_simulator"] = float((sg <= horizon).mean())
        out["gap_median_logged"] = float(np.median(lg)) if lg.size else float("nan")
        out["gap_median_simulator"] = float(np.median(sg[sg <= horizon]))
        out["logged_sessions"] = base
        out["simulated_sessions"] = int(sg.size)
        out["logged_gaps_hist"] = np.histogram(lg, bins=int(horizon), range=(0, horizon))[0]
        # a simulated gap of k steps is a return time in (k - 1, k]: centre it in that hour
        shifted = np.histogram(sg - 0.5, bins=int(horizon), range=(0, horizon))
        out["simulated_gaps_hist"] = shifted[0]
        out["logged_gaps_hist"] = out["logged_gaps_hist"].tolist()  # type: ignore[union-attr]
        out["simulated_gaps_hist"] = out["simulated_gaps_hist"].tolist()  # type: ignore[union-attr]
    return out


def calibration_markdown(cal: Recalibration, check: dict[str, object]) -> str:
    """The check as Markdown tables."""
    lines = ["## Fitted values", ""]
    if cal.click:
        c = cal.click
        lines.append(
            f"Click model (MIND): P(click at position k) = {c['level']:.4f} * k^-{c['eta']:.3f} "
            f"(k = 1, 2, ...); simulator bias {c['bias']:.3f}, eta {c['eta']:.3f}, quality_std "
            f"{c['quality_std']:.3f} (item CTR spread, CV over items with >= "
            f"{c['min_impressions']:.0f} impressions: logged {c['item_ctr_cv']:.3f})."
        )
    if cal.returns:
        r = cal.returns
        lines.append(
            f"Return model (Globo, days 1-{r['fit_days']:.0f}): gamma frailty a = {r['a']:.3f}, "
            f"b = {r['b']:.1f} h, mean hazard {r['rate']:.4f}/h. Assumed: hazard x (m/c_ref)^"
            f"{cal.kappa}, memory rho = {cal.rho}, c_ref = {cal.c_ref:.4f} expected clicks of a "
            f"random list. Diagnostic (not used): within-user slope of log(next gap) on "
            f"log(session clicks) = {r['within_user_slope']:+.3f} (the log shows no sooner "
            "return after deeper sessions; the effect of quality on returns is an assumption)."
        )
    if "ctr_by_position" in check:
        lines += ["", "## CTR by position: MIND logged vs simulator", "",
                  "| position | impressions | logged | fitted PBM | sim. click model on MIND "
                  "impressions | simulator, random lists |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for r in check["ctr_by_position"]:  # type: ignore[attr-defined]
            sim = "" if r["simulator"] is None else f"{r['simulator']:.4f}"
            lines.append(f"| {r['position']} | {r['impressions']} | {r['logged']:.4f} | "
                         f"{r['fitted']:.4f} | {r['model']:.4f} | {sim} |")  # fmt: skip
        lines += ["", "## CTR by impression size", "",
                  "| candidates | items | logged | simulated |", "|---|---|---|---|"]  # fmt: skip
        for r in check["ctr_by_size"]:  # type: ignore[attr-defined]
            lines.append(f"| {r['size']} | {r['items']} | {r['logged']:.4f} | {r['model']:.4f} |")
        ql, qm = check["item_ctr_quantiles_logged"], check["item_ctr_quantiles_model"]
        lines += ["", f"## Per-item CTR ({check['item_ctr_items']} news with >= "
                  f"{cal.click['min_impressions']:.0f} impressions)", "",  # type: ignore[index]
                  "| | q10 | q25 | median | q75 | q90 | between-item CV |",
                  "|---|---|---|---|---|---|---|",
                  "| logged | " + " | ".join(f"{v:.4f}" for v in ql)  # type: ignore[attr-defined]
                  + f" | {check['item_ctr_cv_logged']:.3f} |",
                  "| simulated | " + " | ".join(f"{v:.4f}" for v in qm)  # type: ignore[attr-defined]
                  + f" | {check['item_ctr_cv_model']:.3f} |"]  # fmt: skip
    if "gap_points" in check:
        h = check["horizon"]
        lines += ["", f"## Return times (gaps between a user's sessions, <= {h:.0f} h)", "",
                  f"Logged: {check['logged_sessions']} Globo sessions starting after the fitting "
                  f"days (held out); simulated: {check['simulated_sessions']} sessions of "
                  f"{check['steps']} steps with random lists.", "",
                  "| | " + " | ".join(f"P(gap <= {x:.0f} h)" for x in check["gap_points"])  # type: ignore[attr-defined]
                  + f" | median gap | P(return within {h:.0f} h) |",
                  "|---" * (len(check["gap_points"]) + 3) + "|"]  # type: ignore[arg-type]  # fmt: skip
        for name in ("logged", "simulator"):
            cdf = check[f"gap_cdf_{name}"]
            lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in cdf)  # type: ignore[attr-defined]
                         + f" | {check[f'gap_median_{name}']:.1f} h | "
                         f"{check[f'return_within_horizon_{name}']:.3f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def plot_recalibration(check: dict[str, object], path: Path) -> None:
    """CTR by position and by size, and the return-time histogram, logged vs simulated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from recforge.io import atomic_write

    panels = [k for k in ("ctr_by_position", "ctr_by_size", "gap_points") if k in check]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4), squeeze=False)
    for ax, key in zip(axes[0], panels, strict=True):
        if key == "ctr_by_position":
            rows = check[key]
            x = [r["position"] for r in rows]  # type: ignore[attr-defined,index]
            ax.plot(x, [r["logged"] for r in rows], "ko-", ms=3, label="MIND logged")  # type: ignore[attr-defined,index]
            ax.plot(x, [r["model"] for r in rows], "s--", ms=3, label="sim. click model on MIND")  # type: ignore[attr-defined,index]
            sx = [r["position"] for r in rows if r["simulator"] is not None]  # type: ignore[attr-defined,index]
            sy = [r["simulator"] for r in rows if r["simulator"] is not None]  # type: ignore[attr-defined,index]
            ax.plot(sx, sy, "^:", ms=3, label="simulator, random lists")
            ax.set_xlabel("position")
            ax.set_ylabel("CTR")
            ax.set_title("CTR by position")
        elif key == "ctr_by_size":
            rows = check[key]
            x = np.arange(len(rows))  # type: ignore[arg-type]
            ax.bar(x - 0.2, [r["logged"] for r in rows], 0.4, label="MIND logged")  # type: ignore[attr-defined,index]
            ax.bar(x + 0.2, [r["model"] for r in rows], 0.4, label="simulated")  # type: ignore[attr-defined,index]
            ax.set_xticks(x, [r["size"] for r in rows], fontsize=8)  # type: ignore[attr-defined,index]
            ax.set_xlabel("candidates in the impression")
            ax.set_title("CTR by impression size")
        else:
            h = float(check["horizon"])  # type: ignore[arg-type]
            lg = np.asarray(check["logged_gaps_hist"], dtype=np.float64)
            sg = np.asarray(check["simulated_gaps_hist"], dtype=np.float64)
            edges = np.arange(lg.size) + 0.5
            ax.step(edges, lg / lg.sum(), where="mid", color="k", label="Globo logged (held out)")
            ax.step(edges, sg / sg.sum(), where="mid", label="simulator, random lists")
            ax.set_xlabel(f"hours to the next session (<= {h:.0f} h)")
            ax.set_ylabel("fraction of returns")
            ax.set_yscale("log")
            ax.set_title("Return-time distribution")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
