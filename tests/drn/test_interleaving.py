import numpy as np

from recforge.drn.interleaving import (
    TEAM_A,
    TEAM_B,
    credit,
    outcome,
    probabilistic_interleave,
    team_draft_interleave,
)


def _perms(rng: np.random.Generator, b: int, c: int) -> np.ndarray:
    return np.argsort(rng.random((b, c)), axis=1)


def test_team_draft_items_come_from_their_team() -> None:
    rng = np.random.default_rng(0)
    rank_a, rank_b = _perms(rng, 200, 12), _perms(rng, 200, 12)
    merged, team = team_draft_interleave(rank_a, rank_b, 8, rng)
    for row in range(200):  # brute force: each pick is its team's best item not yet placed
        placed: list[int] = []
        for pos in range(8):
            ranking = rank_a[row] if team[row, pos] == TEAM_A else rank_b[row]
            best = next(int(d) for d in ranking if d not in placed)
            assert merged[row, pos] == best
            placed.append(best)
        assert len(set(placed)) == 8
    counts = (team == TEAM_A).sum(axis=1)
    assert np.all(np.abs(2 * counts - 8) == 0)  # rounds of two: 4 picks each
    # each round's first pick is a fair coin
    assert abs((team[:, 0] == TEAM_A).mean() - 0.5) < 0.15


def test_team_draft_random_clicks_no_winner_beyond_chance() -> None:
    rng = np.random.default_rng(1)
    n, c, length = 20_000, 20, 10
    rank_a, rank_b = _perms(rng, n, c), _perms(rng, n, c)
    merged, team = team_draft_interleave(rank_a, rank_b, length, rng)
    # clicks at random, independent of the items, with a position bias
    clicks = rng.random((n, length)) < 0.3 / (np.arange(length) + 1.0)
    out = outcome(team, clicks)
    wins_b, decided = int((out > 0).sum()), int((out != 0).sum())
    z = (wins_b - decided / 2) / np.sqrt(decided / 4)
    assert abs(z) < 4.0, z  # a binomial test with a tolerant bound


def test_team_draft_detects_a_better_ranker() -> None:
    rng = np.random.default_rng(2)
    n, c = 5000, 20
    good = np.tile(np.arange(c), (n, 1))  # item d has relevance decreasing in d
    bad = _perms(rng, n, c)
    merged, team = team_draft_interleave(bad, good, 10, rng)
    clicks = rng.random(merged.shape) < np.exp(-merged / 3.0)
    assert (outcome(team, clicks) > 0).mean() > 2 * (outcome(team, clicks) < 0).mean()


def test_probabilistic_interleaving_is_fair_and_valid() -> None:
    rng = np.random.default_rng(3)
    n, c, length = 20_000, 15, 10
    rank_a, rank_b = _perms(rng, n, c), _perms(rng, n, c)
    merged, team = probabilistic_interleave(rank_a, rank_b, length, rng)
    assert np.all(np.sort(merged, axis=1)[:, 1:] != np.sort(merged, axis=1)[:, :-1])
    assert set(np.unique(team)) == {TEAM_A, TEAM_B}
    clicks = rng.random((n, length)) < 0.2
    c_ab = credit(team, clicks)
    assert np.allclose(c_ab.sum(axis=1), clicks.sum(axis=1))
    out = outcome(team, clicks)
    decided = int((out != 0).sum())
    z = ((out > 0).sum() - decided / 2) / np.sqrt(decided / 4)
    assert abs(z) < 4.0, z
    # the first pick follows its ranker's softmax: top item most likely
    first_top = merged[:, 0] == np.where(team[:, 0] == TEAM_A, rank_a[:, 0], rank_b[:, 0])
    p_top = 1.0 / np.sum((np.arange(c) + 1.0) ** -3.0)
    assert abs(first_top.mean() - p_top) < 0.02


def test_probabilistic_interleaving_places_padding_last() -> None:
    rng = np.random.default_rng(4)
    n, c = 2000, 8
    rank_a, rank_b = _perms(rng, n, c), _perms(rng, n, c)
    mask = np.arange(c)[None, :] < rng.integers(1, c + 1, n)[:, None]  # (B, C) ragged requests
    merged, _ = probabilistic_interleave(rank_a, rank_b, c, rng, mask=mask)
    placed_real = np.take_along_axis(mask, merged, axis=1)
    assert np.array_equal(placed_real, np.sort(placed_real, axis=1)[:, ::-1])  # real, then padding
    assert np.all(np.sort(merged, axis=1) == np.arange(c))  # still a permutation
