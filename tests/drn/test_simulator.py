import numpy as np

from recforge.drn.features import FeatureBuilder
from recforge.drn.simulator import NewsSimulator, SimConfig

SMALL = SimConfig(n_users=400, rate=0.05, seed=3)


def _run(cfg: SimConfig, steps: int, policy: str) -> tuple[list[np.ndarray], NewsSimulator]:
    env = NewsSimulator(cfg)
    rng = np.random.default_rng(0)
    clicks = []
    for _ in range(steps):
        req = env.request
        items = np.broadcast_to(req.candidates, (req.users.size, req.candidates.size))
        attract = env.attractiveness(req.users, items)
        if policy == "best":
            ranking = np.argsort(-attract, axis=1)[:, : cfg.list_len]
        elif policy == "worst":
            ranking = np.argsort(attract, axis=1)[:, : cfg.list_len]
        else:
            ranking = np.argsort(rng.random(attract.shape), axis=1)[:, : cfg.list_len]
        fb, _ = env.step(ranking)
        clicks.append(fb.clicks)
    return clicks, env


def test_deterministic_under_seed() -> None:
    a, env_a = _run(SMALL, 30, "random")
    b, env_b = _run(SMALL, 30, "random")
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert np.array_equal(env_a.next_return, env_b.next_return)
    c, _ = _run(SMALL.replace(seed=4), 30, "random")
    assert not all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_click_rates_respond_to_relevance_and_position() -> None:
    best, env_best = _run(SMALL, 60, "best")
    worst, env_worst = _run(SMALL, 60, "worst")
    ctr_best = np.concatenate(best).mean()
    ctr_worst = np.concatenate(worst).mean()
    assert ctr_best > 2 * ctr_worst, (ctr_best, ctr_worst)
    per_rank = np.concatenate(best).mean(axis=0)
    assert per_rank[0] > per_rank[4] > per_rank[9]  # position bias
    # pleasing recommendations raise activeness (users return sooner)
    assert env_best.activeness.mean() > env_worst.activeness.mean() + 0.05


def test_interests_several_drift_and_shift() -> None:
    cfg = SMALL.replace(shift_step=5, drift_std=0.0)
    env = NewsSimulator(cfg)
    p0 = env.interests
    top2 = np.sort(p0, axis=1)[:, -2:].sum(axis=1)
    assert np.median(top2) > 0.6 and np.median(np.sort(p0, axis=1)[:, -2]) > 0.15
    while env.request.step < 5:
        req = env.request
        env.step(np.tile(np.arange(cfg.list_len), (req.users.size, 1)))
    p1 = env.interests
    assert np.abs(p1 - p0).sum(axis=1).mean() > 0.5  # interests moved at the shift
    assert np.allclose(np.sort(p1, axis=1), np.sort(p0, axis=1))  # a permutation of topics


def test_features_shapes_and_history() -> None:
    env = NewsSimulator(SMALL)
    feats = FeatureBuilder(SMALL.n_users, SMALL.n_topics)
    req = env.request
    s, a = feats.state(req), feats.action(req)
    assert s.shape == (req.users.size, feats.state_dim)
    assert a.shape == (req.users.size, SMALL.n_candidates, feats.action_dim)
    ranking = np.tile(np.arange(SMALL.list_len), (req.users.size, 1))
    fb, _ = env.step(ranking)
    feats.observe(req, ranking, fb)
    clicked_topics = np.zeros((req.users.size, SMALL.n_topics))
    for r in range(req.users.size):
        for k in range(SMALL.list_len):
            clicked_topics[r, req.topics[k]] += fb.clicks[r, k]
    assert np.allclose(feats.short[req.users], clicked_topics)
    assert np.allclose(feats.item_imps[req.candidates[: SMALL.list_len]], req.users.size)
