"""Replay evaluation on tiny logs written here: loaders, metrics, policy ordering, bad input."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import recforge
from recforge.data.read.readers import DataError
from recforge.drn.agent import AgentConfig, DRNAgent
from recforge.drn.globo import load_globo
from recforge.drn.logged import load_mind
from recforge.drn.offline import _logged_steps, replay, replay_policy, request_metrics
from recforge.drn.policies import Policy, RandomPolicy


def _mind_file(tmp_path: Path, days: int = 3, per_day: int = 24, bad: str | None = None) -> Path:
    """One impression an hour; the popular news NPOP is in every impression and always clicked,
    the seven other candidates are fresh and never clicked."""
    rng = np.random.default_rng(0)
    start = dt.datetime(2019, 11, 9, 0, 30, 0)
    lines = []
    for i in range(days * per_day):
        when = (start + dt.timedelta(hours=i)).strftime("%m/%d/%Y %I:%M:%S %p").lstrip("0")
        cands = [f"N{1000 + 8 * i + j}-0" for j in range(7)] + ["NPOP-1"]
        cands = [cands[j] for j in rng.permutation(8)]
        lines.append(f"{i}\tU{i % 5}\t{when}\tN1 N2\t{' '.join(cands)}")
    if bad is not None:
        lines[5] = bad
    path = tmp_path / "behaviors.tsv"
    path.write_text("\n".join(lines) + "\n")
    return path


class Oracle(Policy):
    """Cheats: ranks by the logged labels (the known best policy)."""

    name = "oracle"

    def __init__(self, labels: list[np.ndarray]) -> None:
        self.labels = iter(labels)

    def rank(self, state, action, length, mask=None):  # type: ignore[no-untyped-def]
        lab = next(self.labels) + 1e-3 * np.arange(action.shape[1])[::-1]
        return np.argsort(-np.where(mask, lab, -np.inf), axis=1)[:, :length]


def test_request_metrics_closed_form() -> None:
    labels = np.array([[1, 0, 0, 1, 0, 0]], np.float32)
    mask = np.array([[True] * 5 + [False]])
    ranking = np.array([[1, 0, 2, 3, 4, 5]])  # positives at ranks 2 and 4
    m = request_metrics(ranking, labels, mask, k=3)
    assert np.isclose(m["ctr@k"][0], 1 / 3) and m["hit@k"][0] == 1.0
    ideal = 1 + 1 / np.log2(3)
    assert np.isclose(m["ndcg@k"][0], (1 / np.log2(3)) / ideal)
    # 2 positives x 3 negatives: the first beats 2 negatives, the second beats 1
    assert np.isclose(m["auc"][0], 3 / 6)
    assert np.isnan(request_metrics(ranking, np.zeros_like(labels), mask, 3)["auc"][0])


def test_mind_replay_ranks_the_known_best_policy_first(tmp_path: Path) -> None:
    data = load_mind(_mind_file(tmp_path), k=2, days=(1, 1, 1))
    assert [len(data.period(p)) for p in ("pretrain", "validation", "evaluation")] == [24] * 3
    assert data.rounds[0].labels.sum() == 1 and data.rounds[0].mask.all()
    online = [r.labels for r in data.rounds if r.period != "pretrain"]
    got = {
        "oracle": replay_policy(Oracle(online), data, k=2, pretrain=False).summary(),
        "random": replay_policy(RandomPolicy(0), data, k=2).summary(),
    }
    got.update({n: h.summary() for n, h in replay(["linucb"], data, k=2).items()})
    assert got["oracle"]["ctr@k"] == 0.5 and got["oracle"]["auc"] == 1.0
    order = sorted(got, key=lambda n: -got[n]["ctr@k"])
    assert order[0] == "oracle" and order[-1] == "random", got
    assert got["linucb"]["hit@k"] > 0.9  # learnt that the item everyone clicks gets clicked


def test_mind_bad_input_names_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"behaviors.tsv, line 6, column 'time'.*'yesterday'"):
        load_mind(_mind_file(tmp_path, bad="5\tU1\tyesterday\t\tN1-1 N2-0"))
    with pytest.raises(DataError, match=r"line 6, column 'impressions'.*'N2-x'"):
        load_mind(_mind_file(tmp_path, bad="5\tU1\t11/9/2019 5:00:00 AM\t\tN1-1 N2-x"))
    data = load_mind(_mind_file(tmp_path, bad="5\tU1\t11/9/2019 5:00:00 AM\t\t"), k=2)
    assert data.skipped["impressions without candidates"] == 1


def _globo_file(tmp_path: Path, bad_row: int | None = None) -> Path:
    """12 days of clicks: 30 articles, users with regular sessions (every ~8 h)."""
    rng = np.random.default_rng(1)
    header = "user_id,session_id,session_start,session_size,click_article_id,click_timestamp\n"
    day0 = 1_506_816_000_000  # 2017-10-01 00:00 UTC in ms
    rows = []
    for user in range(40):
        t = rng.uniform(0, 8)
        while t < 24 * 12:
            start = day0 + int(t * 3.6e6)
            for j in range(2):
                art = int(rng.integers(0, 60))
                rows.append(f"{user},{start},{start},2,{art},{start + j * 60_000}")
            t += rng.exponential(8.0)
    if bad_row is not None:
        parts = rows[bad_row].split(",")
        rows[bad_row] = ",".join([*parts[:5], "12:30pm"])
    path = tmp_path / "clicks.csv"
    path.write_text(header + "\n".join(rows) + "\n")
    return path


def test_globo_requests_planted_rate_and_calibration(tmp_path: Path) -> None:
    data = load_globo(
        _globo_file(tmp_path), k=3, candidates=10, user_fraction=1.0, days=(6, 1, 2, 4)
    )
    r = data.period("evaluation")[0]
    assert r.action.shape[1:] == (10, data.action_dim) and r.mask.all()
    assert np.all(r.labels.sum(axis=1) == 1)  # the clicked article, once
    rate = data.info["return_model"]["mean_rate_per_h"]
    assert 1 / 8 * 0.7 < rate < 1 / 8 * 1.3  # planted: a session every 8 h on average
    cal = data.info["calibration"][0]
    assert cal["users"] == 40 and 0 <= cal["brier"] <= 1
    hist = replay(["greedy", "random"], data, k=3, agent=AgentConfig(pretrain_updates=20))
    assert hist["random"].summary()["requests"] == sum(
        x.state.shape[0] for x in data.period("evaluation")
    )
    assert 0.0 < hist["random"].summary()["activeness"] <= 1.0


def test_globo_bad_timestamp_and_empty_period(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"clicks.csv, line 5, column 'click_timestamp'.*12:30pm"):
        load_globo(_globo_file(tmp_path, bad_row=3))
    with pytest.raises(DataError, match="empty period"):
        load_globo(_globo_file(tmp_path), user_fraction=1.0, candidates=10, days=(12, 1, 2, 3))


def test_dbgd_with_alpha_zero_never_changes_the_weights(tmp_path: Path) -> None:
    data = load_mind(_mind_file(tmp_path), k=2, days=(1, 1, 1))
    cfg = AgentConfig(alpha=0.0, minor_every=1, major_updates=0, pretrain_updates=100, seed=3)
    agent = DRNAgent(data.state_dim, data.action_dim, cfg)
    agent.pretrain(_logged_steps(data.period("pretrain"), k=2, seed=0))  # learns to click NPOP
    before = [p.detach().clone() for p in agent.q.parameters()]
    assert replay_policy(agent, data, k=2, pretrain=False).summary()["hit@k"] > 0.5
    assert agent.dbgd.trials > 0 and agent.dbgd.wins > 0  # duels were won, and adopted
    for p, q in zip(before, agent.q.parameters(), strict=True):
        assert np.array_equal(p.numpy(), q.detach().numpy())


def test_replay_cli_writes_folder_and_reports_bad_input(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(Path(recforge.__file__).parents[1]), OMP_NUM_THREADS="1")
    log = _mind_file(tmp_path)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "recforge.cli", "online", "--replay", "mind", "--path", str(log)]
    cmd += ["--k", "2", "--seeds", "0,1", "--policies", "linucb,random", "--output", str(out)]
    for _ in range(2):  # a second run replaces the published folder
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    report = json.loads((out / "metrics.json").read_text())
    assert set(report["summary"]) == {"0", "1"}
    assert set(report["summary"]["0"]["evaluation"]) == {"linucb", "random"}
    assert (out / "metrics.png").read_bytes()[:4] == b"\x89PNG"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers
    _mind_file(tmp_path, bad="5\tU1\tyesterday\t\tN1-1 N2-0")  # the same path, now broken
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "behaviors.tsv, line 6" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert json.loads((out / "metrics.json").read_text()) == report  # the old output survives


def test_static_daily_retrains_once_a_day_of_rounds(tmp_path: Path) -> None:
    from recforge.drn.loop import make_policy

    data = load_mind(_mind_file(tmp_path), k=2, days=(1, 1, 1))
    pol = make_policy("static-daily", data.state_dim, data.action_dim, seed=0)
    first = pol.model
    hist = replay_policy(pol, data, k=2)
    assert pol.retrainings == 2 and pol.model is not first  # 48 online hourly rounds
    assert len(pol._seen) == 72  # the pretraining day + every served list
    assert hist.summary()["hit@k"] > 0.9  # the model learnt that NPOP is clicked
