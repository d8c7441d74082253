"""The simulator recalibrated from logs: planted click and return models are reproduced."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import recforge
from recforge.data.read.readers import DataError
from recforge.drn.recalibration import (
    check_recalibration,
    read_mind_tokens,
    recalibrate,
    simulate_random,
)
from recforge.drn.simulator import NewsSimulator, SimConfig

LEVEL, ETA = 0.25, 0.7  # planted: P(click at position k) = LEVEL * k ** -ETA


def _mind(path: Path, impressions: int = 3000) -> Path:
    """Impressions of 5-30 items whose clicks follow the planted position curve."""
    rng = np.random.default_rng(0)
    lines = []
    for i in range(impressions):
        size = int(rng.integers(5, 31))
        news = rng.integers(0, 400, size)
        click = rng.random(size) < LEVEL * (np.arange(size) + 1.0) ** -ETA
        toks = " ".join(f"N{n}-{int(c)}" for n, c in zip(news, click, strict=True))
        lines.append(f"{i}\tU{i % 50}\t11/9/2019 {1 + i % 12}:00:00 AM\tN1\t{toks}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _globo(path: Path, users: int = 300, days: int = 14, a: float = 2.0, rate: float = 0.1):
    """Sessions of users returning as Poisson processes with gamma(a, mean ``rate``) rates."""
    rng = np.random.default_rng(1)
    day0 = 1_506_816_000_000
    rows = ["user_id,session_id,session_start,session_size,click_article_id,click_timestamp"]
    for u, lam in enumerate(rng.gamma(a, rate / a, users)):
        t = rng.exponential(1 / lam)
        while t < 24 * days:
            ms = day0 + int(t * 3.6e6)
            rows.append(f"{u},{ms},{ms},1,{int(rng.integers(0, 50))},{ms}")
            t += rng.exponential(1 / lam)
    path.write_text("\n".join(rows) + "\n")
    return path


def test_planted_ctr_by_position_is_reproduced(tmp_path: Path) -> None:
    base = SimConfig(n_users=300, rate=0.05)
    cal, logged = recalibrate(mind=_mind(tmp_path / "behaviors.tsv"), base=base)
    assert abs(cal.click["eta"] - ETA) < 0.1 and abs(cal.click["level"] - LEVEL) < 0.03
    cfg = cal.apply(base)
    check = check_recalibration(cal, logged, cfg, steps=300)
    for row in check["ctr_by_position"][:10]:
        planted = LEVEL * row["position"] ** -ETA
        assert abs(row["model"] - row["logged"]) < 0.03, row  # the click model on the log
        assert abs(row["simulator"] - planted) < 0.04, row  # the simulator's own lists


def test_planted_return_rate_is_reproduced(tmp_path: Path) -> None:
    base = SimConfig(n_users=400)
    cal, logged = recalibrate(globo=_globo(tmp_path / "clicks.csv"), base=base)
    assert abs(cal.returns["rate"] - 0.1) < 0.02 and 1.0 < cal.returns["rate_shape"] < 4.0
    cfg = cal.apply(base)
    assert cfg.return_model == "quality" and cfg.rate_shape == cal.returns["rate_shape"]
    check = check_recalibration(cal, logged, cfg, steps=300, horizon=24.0)
    assert abs(check["gap_median_simulator"] - check["gap_median_logged"]) < 2.0
    logged_p, sim_p = (
        check["return_within_horizon_logged"],
        check["return_within_horizon_simulator"],
    )
    assert abs(logged_p - sim_p) < 0.08
    # the return-time distribution (gaps <= 24 h), point by point
    assert np.allclose(check["gap_cdf_simulator"], check["gap_cdf_logged"], atol=0.08)
    assert simulate_random(cfg.replace(seed=3), 100)["gaps"].size > 500


def _serve_once(cfg: SimConfig, best: bool) -> NewsSimulator:
    env = NewsSimulator(cfg)
    req = env.request
    att = env.attractiveness(req.users, np.tile(req.candidates, (req.users.size, 1)))
    order = np.argsort(-att if best else att, axis=1)[:, : cfg.list_len]
    env.step(order)
    return env


def test_returns_follow_the_quality_received_not_the_clicks() -> None:
    cfg = SimConfig(n_users=300, rate=0.05, return_model="quality", c_ref=0.4, rho=0.5)
    good, bad = _serve_once(cfg, True), _serve_once(cfg, False)
    users = NewsSimulator(cfg).request.users  # the users served by the first request
    assert np.all(good.h[users] > bad.h[users])
    # h is the quality memory's log ratio, whatever the clicks were
    q = good.memory[users]
    assert np.allclose(good.h[users], np.clip(cfg.kappa * np.log(q / cfg.c_ref), -2, 2))
    flat = cfg.replace(kappa=0.0)
    assert np.all(_serve_once(flat, True).h == 0) and np.all(_serve_once(flat, False).h == 0)
    # users served the best lists come back more: higher activeness over the population
    assert good.activeness.mean() > bad.activeness.mean()


def test_bad_mind_token_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "behaviors.tsv"
    path.write_text("1\tU1\t11/9/2019 1:00:00 AM\tN1\tN2-1 N3-0\n2\tU2\t11/9/2019\t\tN4-x\n")
    with pytest.raises(DataError, match=r"behaviors.tsv, line 2, column 'impressions'.*'N4-x'"):
        read_mind_tokens(path)
    with pytest.raises(ValueError, match="needs --mind and/or --globo"):
        recalibrate()


def test_cli_recalibrate_writes_the_calibration(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(Path(recforge.__file__).parents[1]), OMP_NUM_THREADS="1")
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "recforge.cli", "online", "--recalibrate",
           "--mind", str(_mind(tmp_path / "behaviors.tsv", 400)),
           "--globo", str(_globo(tmp_path / "clicks.csv", users=100)),
           "--steps", "4", "--log-steps", "2", "--users", "100",
           "--policies", "linucb,random", "--output", str(out)]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "metrics.json").read_text())
    assert report["simulator"]["return_model"] == "quality"
    assert report["recalibration"]["click"]["eta"] > 0
    assert "CTR by position" in (out / "calibration.md").read_text()
    assert (out / "calibration.png").read_bytes()[:4] == b"\x89PNG"
