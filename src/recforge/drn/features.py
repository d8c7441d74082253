"""DRN's feature sets for the simulator: state = user + context, action = user-news cross + news.

Zheng et al., WWW 2018, Section 4.1 describe four groups: **news features** (topic, freshness,
click counts in recent windows), **user features** (what the user clicked in recent windows),
**user-news features** (how often the news' topic appears in the user's history) and **context
features** (time of the request, freshness of the news). DRN feeds user + context features to the
value stream as the state ``s`` and user-news + news features to the advantage stream as the
action ``a``. :class:`FeatureBuilder` maintains the observable statistics (from served lists and
their clicks only, never from the simulator's hidden state) with time-decayed counters, updated
by vectorised scatter-adds.
"""

from __future__ import annotations

import numpy as np

from recforge.drn.simulator import Feedback, Request


class FeatureBuilder:
    """Observable user/news statistics and the DRN state/action feature tensors.

    Args:
        n_users: Number of users.
        n_topics: Number of topics ``K``.
        short_tau: Decay time (steps) of the short-term click history (the paper's 1h-24h).
        long_tau: Decay time of the long-term history (the paper's week/year windows).

    Shape:
        :meth:`state` -> ``(B, 2K + 5)``; :meth:`action` -> ``(B, C, K + 6)``.
    """

    def __init__(
        self, n_users: int, n_topics: int, short_tau: float = 24.0, long_tau: float = 240.0
    ) -> None:
        self.k = n_topics
        self.short_tau, self.long_tau = short_tau, long_tau
        self.short = np.zeros((n_users, n_topics))
        self.long = np.zeros((n_users, n_topics))
        self.last = np.zeros(n_users)
        self.active = np.zeros(n_users)
        self.item_imps = np.zeros(0)
        self.item_clicks = np.zeros(0)

    @property
    def state_dim(self) -> int:
        return 2 * self.k + 5

    @property
    def action_dim(self) -> int:
        return self.k + 6

    def _decay(self, users: np.ndarray, t: int) -> None:
        dt = (t - self.last[users])[:, None]
        self.short[users] *= np.exp(-dt / self.short_tau)
        self.long[users] *= np.exp(-dt / self.long_tau)
        self.last[users] = t

    def _grow(self, n_items: int) -> None:
        if n_items > self.item_imps.size:
            extra = max(n_items - self.item_imps.size, 1024)
            self.item_imps = np.concatenate([self.item_imps, np.zeros(extra)])
            self.item_clicks = np.concatenate([self.item_clicks, np.zeros(extra)])

    def _profiles(self, users: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
        self._decay(users, t)
        short, long = self.short[users], self.long[users]
        return short, long

    def state(self, req: Request) -> np.ndarray:
        """User features (short/long topic histories, activity, last activeness) + context."""
        short, long = self._profiles(req.users, req.step)
        s_tot, l_tot = short.sum(1, keepdims=True), long.sum(1, keepdims=True)
        angle = 2 * np.pi * req.step / 24
        ctx = np.broadcast_to([np.sin(angle), np.cos(angle)], (req.users.size, 2))
        return np.concatenate(
            [
                short / (s_tot + 1.0),
                long / (l_tot + 1.0),
                np.log1p(s_tot),
                np.log1p(l_tot),
                self.active[req.users, None],
                ctx,
            ],
            axis=1,
        ).astype(np.float32)

    def action(self, req: Request) -> np.ndarray:
        """User-news cross features + news features for every (user, candidate) pair."""
        self._grow(int(req.candidates.max()) + 1)
        short, long = self._profiles(req.users, req.step)
        b, c = req.users.size, req.candidates.size
        onehot = np.eye(self.k)[req.topics]  # (C, K)
        imps, clicks = self.item_imps[req.candidates], self.item_clicks[req.candidates]
        news = np.concatenate(
            [
                onehot,
                (req.age / 10.0)[:, None],
                np.exp(-req.age / 4.0)[:, None],
                np.log1p(imps)[:, None] / 5.0,
                (10.0 * (clicks + 0.5) / (imps + 10.0))[:, None],
            ],
            axis=1,
        )  # (C, K + 4)
        cross = np.stack(
            [
                (short / (short.sum(1, keepdims=True) + 1.0))[:, req.topics],
                (long / (long.sum(1, keepdims=True) + 1.0))[:, req.topics],
            ],
            axis=-1,
        )  # (B, C, 2)
        return np.concatenate(
            [cross, np.broadcast_to(news, (b, c, news.shape[1]))], axis=-1
        ).astype(np.float32)

    def observe(self, req: Request, ranking: np.ndarray, feedback: Feedback) -> None:
        """Fold a served request's clicks into the user histories and news counters."""
        items = req.candidates[ranking]  # (B, L)
        self._grow(int(req.candidates.max()) + 1)
        np.add.at(self.item_imps, items.ravel(), 1.0)
        np.add.at(self.item_clicks, items.ravel(), feedback.clicks.ravel())
        self._decay(req.users, req.step)
        hist = np.zeros((req.users.size, self.k))
        rows = np.broadcast_to(np.arange(req.users.size)[:, None], ranking.shape)
        np.add.at(hist, (rows.ravel(), req.topics[ranking].ravel()), feedback.clicks.ravel())
        self.short[req.users] += hist
        self.long[req.users] += hist
        self.active[req.users] = feedback.activeness
