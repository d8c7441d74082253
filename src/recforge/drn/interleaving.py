"""Interleaved comparison of two rankers from clicks, vectorised over users.

DRN's minor update (Zheng et al., WWW 2018, Section 4.5) merges the lists of the current and the
explore network by interleaving and credits each network with the clicks on its items.

* **Team-draft interleaving** (Radlinski, Kurup & Joachims, CIKM 2008): in each round a coin
  decides which team picks first; each team then adds its highest-ranked item not yet in the
  merged list. A click credits the team that contributed the item.
* **Probabilistic interleaving** (Hofmann, Whiteson & de Rijke, CIKM 2011): each ranker is a
  softmax over ranks, ``P_x(d) ∝ r_x(d) ** -tau``; at each position a ranker is drawn uniformly
  and an item is sampled from its distribution renormalised over the items not yet placed.
  Clicks credit the ranker that placed the item.

Rankings are ``(B, C)`` arrays of candidate positions ``0..C-1``, best first. The Python loop
runs over list positions only (``length`` iterations); all users are processed at once.
"""

from __future__ import annotations

import numpy as np

TEAM_A, TEAM_B = 0, 1


def team_draft_teams(batch: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """Team-draft pick order ``(B, length)``: in each round of two picks a coin decides which
    team goes first (the order never depends on the items, so it can be drawn up front)."""
    first_b = rng.random((batch, (length + 1) // 2)) < 0.5  # (B, rounds)
    rounds = np.stack([first_b, ~first_b], axis=2).reshape(batch, -1)  # (B, 2 * rounds)
    return rounds[:, :length].astype(np.int64)


def merge(rank_a: np.ndarray, rank_b: np.ndarray, team: np.ndarray) -> np.ndarray:
    """Merge two rankings following a pick order: position ``k`` takes the best item of ranker
    ``team[:, k]`` that is not yet in the list.

    Args:
        rank_a: ``(B, Ca)`` candidate positions ranked by A (``Ca >= length``).
        rank_b: ``(B, Cb)`` ranked by B.
        team: ``(B, length)`` ``TEAM_A`` / ``TEAM_B`` per position.

    Returns:
        ``(B, length)`` merged candidate positions (no repeats).
    """
    b, length = team.shape
    n = int(max(rank_a.max(), rank_b.max())) + 1
    rows = np.arange(b)
    used = np.zeros((b, n), dtype=bool)
    merged = np.empty((b, length), dtype=np.int64)
    for pos in range(length):
        first_a = rank_a[rows, np.argmax(~used[rows[:, None], rank_a], axis=1)]
        first_b = rank_b[rows, np.argmax(~used[rows[:, None], rank_b], axis=1)]
        item = np.where(team[:, pos] == TEAM_A, first_a, first_b)
        merged[:, pos] = item
        used[rows, item] = True
    return merged


def team_draft_interleave(
    rank_a: np.ndarray, rank_b: np.ndarray, length: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Merge two rankings by team draft.

    Args:
        rank_a: ``(B, Ca)`` candidate positions ranked by ranker A (``Ca >= length``).
        rank_b: ``(B, Cb)`` the same for ranker B.
        length: Length of the merged list.
        rng: Random generator for the per-round coin.

    Returns:
        ``merged (B, length)`` candidate positions and ``team (B, length)`` with ``TEAM_A`` or
        ``TEAM_B`` for the ranker that contributed each item.
    """
    team = team_draft_teams(rank_a.shape[0], length, rng)
    return merge(rank_a, rank_b, team), team


def probabilistic_interleave(
    rank_a: np.ndarray,
    rank_b: np.ndarray,
    length: int,
    rng: np.random.Generator,
    tau: float = 3.0,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Merge two full rankings by probabilistic interleaving.

    Args:
        rank_a: ``(B, C)`` a permutation of ``0..C-1`` per row, best first.
        rank_b: ``(B, C)`` the same for ranker B.
        length: Length of the merged list (``<= C``).
        rng: Random generator.
        tau: Softmax sharpness over ranks, ``P(d) ∝ rank(d) ** -tau``.
        mask: ``(B, C)`` real candidates (padding is placed only after every real one).

    Returns:
        ``merged (B, length)`` and ``team (B, length)`` as in :func:`team_draft_interleave`.
    """
    b, c = rank_a.shape
    rows = np.arange(b)
    weights = np.empty((2, b, c))
    for x, rank in enumerate((rank_a, rank_b)):
        # weight of candidate d under ranker x: (1 + position of d) ** -tau
        pos_of = np.empty((b, c), dtype=np.int64)
        pos_of[rows[:, None], rank] = np.arange(c)
        weights[x] = (pos_of + 1.0) ** -tau
    used = np.zeros((b, c), dtype=bool)
    merged = np.empty((b, length), dtype=np.int64)
    team = rng.integers(0, 2, (b, length))
    for pos in range(length):
        w = np.where(used, 0.0, weights[team[:, pos], rows])  # (B, C)
        if mask is not None:  # real candidates first; padding once they are all placed
            real = np.where(mask, w, 0.0)
            w = np.where(real.sum(axis=1, keepdims=True) > 0, real, w)
        cdf = np.cumsum(w, axis=1)
        u = rng.random(b) * cdf[:, -1]
        item = np.minimum((cdf < u[:, None]).sum(axis=1), c - 1)
        merged[:, pos] = item
        used[rows, item] = True
    return merged, team


def credit(team: np.ndarray, clicks: np.ndarray) -> np.ndarray:
    """Clicks credited to each team: ``(B, 2)`` counts for ``TEAM_A`` and ``TEAM_B``."""
    clicks = np.asarray(clicks, dtype=np.float64)
    return np.stack(
        [(clicks * (team == TEAM_A)).sum(axis=1), (clicks * (team == TEAM_B)).sum(axis=1)], axis=1
    )


def outcome(team: np.ndarray, clicks: np.ndarray) -> np.ndarray:
    """Per-user comparison: ``+1`` when ranker B wins, ``-1`` when A wins, ``0`` on a tie."""
    c = credit(team, clicks)
    return np.sign(c[:, 1] - c[:, 0]).astype(np.int64)
