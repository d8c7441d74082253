"""Baseline ranking policies for the online news simulator.

Every policy sees the DRN features of a request (``state (B, Ds)``, ``action (B, C, Da)``) and
returns ``(B, L)`` candidate positions, best first; after the environment answers it receives a
:class:`Step` to learn from. The Q-network policies (greedy, epsilon-greedy and DRN itself) live
in :mod:`recforge.drn.agent`.

* :class:`RandomPolicy` logs uniformly random lists (used to collect the pretraining log).
* :class:`LinUCBPolicy` is the shared-parameter LinUCB of Li, Chu, Langford & Schapire
  ("A Contextual-Bandit Approach to Personalized News Article Recommendation", WWW 2010):
  ``theta = A^-1 b``, score ``theta^T x + alpha * sqrt(x^T A^-1 x)`` with ``x = [s, a, 1]``,
  ``A += x x^T`` and ``b += click * x`` for every shown item.
* :class:`StaticCTRPolicy` trains a CTR model from the model registry (DeepFM when registered)
  once on the pretraining log and never updates it.
* :class:`DailyCTRPolicy` retrains that model from scratch every day of steps on everything
  observed so far (the "static model retrained daily" baseline of DRN's Section 5).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from recforge.config import TrainConfig
from recforge.features import Batch, EncodedData, NumericField, Schema
from recforge.train import Trainer

log = logging.getLogger(__name__)


@dataclass
class Step:
    """One served request as a learner sees it.

    Attributes:
        t: Step index.
        state: ``(B, Ds)`` state features.
        action: ``(B, C, Da)`` action features of every candidate.
        ranking: ``(B, L)`` served candidate positions.
        clicks: ``(B, L)`` clicks by rank.
        activeness: ``(B,)`` users' activeness after the session.
        next_state: ``(B, Ds)`` the same users' state at the next step (``None`` if not built).
        next_action: ``(B, C', Da)`` their action features over the next step's candidates.
        done: ``(B,)`` True where the user makes no further request (no future reward).
    """

    t: int
    state: np.ndarray
    action: np.ndarray
    ranking: np.ndarray
    clicks: np.ndarray
    activeness: np.ndarray
    next_state: np.ndarray | None = None
    next_action: np.ndarray | None = None
    done: np.ndarray | None = None

    @property
    def shown(self) -> np.ndarray:
        """``(B, L, Da)`` action features of the served items."""
        return np.take_along_axis(self.action, self.ranking[:, :, None], axis=1)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """``(B, k)`` positions of the ``k`` highest scores per row, best first."""
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


class Policy(ABC):
    """Interface: ``rank`` a request, ``learn`` from its feedback, ``pretrain`` on a log."""

    name = "policy"
    needs_next = False  # whether learn() uses next_state / next_action

    @abstractmethod
    def rank(
        self, state: np.ndarray, action: np.ndarray, length: int, mask: np.ndarray | None = None
    ) -> np.ndarray:
        """``(B, length)`` candidate positions to serve, best first.

        ``mask (B, C)`` marks the real candidates of a padded request: masked-out positions
        rank after every real one."""

    def learn(self, step: Step) -> None:  # noqa: B027 - a non-learning policy keeps this
        """Online feedback (default: none)."""

    def pretrain(self, steps: list[Step]) -> None:
        """Offline training on a logged history (default: replay it through ``learn``)."""
        for s in steps:
            self.learn(s)


class RandomPolicy(Policy):
    """Uniformly random lists (the logging policy)."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def rank(
        self, state: np.ndarray, action: np.ndarray, length: int, mask: np.ndarray | None = None
    ) -> np.ndarray:
        b, c = action.shape[:2]
        u = self.rng.random((b, c))
        return np.argsort(u if mask is None else np.where(mask, u, 2.0), axis=1)[:, :length]


class LinUCBPolicy(Policy):
    """Shared-parameter LinUCB over ``x = [state, action, 1]``.

    Args:
        dim: ``Ds + Da``.
        alpha: Width of the confidence bonus.
        ridge: Initial ``A = ridge * I``.
    """

    name = "linucb"

    def __init__(self, dim: int, alpha: float = 0.5, ridge: float = 1.0) -> None:
        self.alpha = alpha
        self.a = ridge * np.eye(dim + 1)
        self.b = np.zeros(dim + 1)
        self._a_inv = np.linalg.inv(self.a)

    @staticmethod
    def _x(state: np.ndarray, action: np.ndarray) -> np.ndarray:
        b, c = action.shape[:2]
        s = np.broadcast_to(state[:, None, :], (b, c, state.shape[1]))
        return np.concatenate([s, action, np.ones((b, c, 1), action.dtype)], axis=-1)

    def rank(
        self, state: np.ndarray, action: np.ndarray, length: int, mask: np.ndarray | None = None
    ) -> np.ndarray:
        x = self._x(state, action).astype(np.float64)  # (B, C, d)
        theta = self._a_inv @ self.b
        width = np.sqrt(((x @ self._a_inv) * x).sum(axis=-1).clip(min=0))
        score = x @ theta + self.alpha * width
        return top_k(score if mask is None else np.where(mask, score, -np.inf), length)

    def learn(self, step: Step) -> None:
        x = self._x(step.state, step.shown).reshape(-1, self.b.size).astype(np.float64)
        # einsum, not BLAS: multithreaded GEMM on a (400, d) block costs more than it saves
        self.a += np.einsum("ni,nj->ij", x, x)
        self.b += x.T @ step.clicks.reshape(-1)
        self._a_inv = np.linalg.inv(self.a)


def dense_schema(state_dim: int, action_dim: int) -> Schema:
    """A fitted schema of dense numerics: ``s*`` (user group) then ``a*`` (item group)."""
    fields = [NumericField(f"s{i}", group="user") for i in range(state_dim)]
    fields += [NumericField(f"a{j}", group="item") for j in range(action_dim)]
    return Schema(fields=tuple(fields), label="click")


def dense_batch(state: np.ndarray, action: np.ndarray) -> Batch:
    """Rows ``[state, action]`` for every (user, candidate) of ``action (B, C, Da)``."""
    b, c = action.shape[:2]
    s = np.broadcast_to(state[:, None, :], (b, c, state.shape[1]))
    dense = torch.from_numpy(np.concatenate([s, action], axis=-1).reshape(b * c, -1).copy())
    return Batch(sparse=torch.zeros(b * c, 0, dtype=torch.long), dense=dense)


class StaticCTRPolicy(Policy):
    """A registry CTR model trained once on the pretraining log, then frozen.

    Args:
        state_dim: ``Ds``.
        action_dim: ``Da``.
        model: Registry name (``deepfm`` when registered, else ``fm``).
        epochs: Passes over the log.
        lr: Adam learning rate.
        seed: Seed of initialisation and shuffling.

    The pretraining runs the engine (:class:`recforge.train.Trainer`) on the logged
    impressions, as ``recforge train`` would.
    """

    name = "static"

    def __init__(
        self,
        state_dim: int,
        action_dim: int,
        model: str | None = None,
        epochs: int = 5,
        lr: float = 1e-2,
        seed: int = 0,
    ) -> None:
        from recforge.models import registry

        if model is None:
            model = "deepfm" if "deepfm" in registry.names() else "fm"
        self.model_name, self.epochs, self.lr, self.seed = model, epochs, lr, seed
        self.dims = (state_dim, action_dim)
        self.model: nn.Module = self.fresh_model()

    def fresh_model(self) -> nn.Module:
        """A newly initialised model (the same initial weights for the same seed)."""
        from recforge.models import registry

        params = {"hidden": [64, 32]} if self.model_name == "deepfm" else {}
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            return registry.build(self.model_name, dense_schema(*self.dims), params)

    def rank(
        self, state: np.ndarray, action: np.ndarray, length: int, mask: np.ndarray | None = None
    ) -> np.ndarray:
        self.model.eval()
        with torch.no_grad():
            scores = self.model(dense_batch(state, action)).view(action.shape[0], -1).numpy()
        return top_k(scores if mask is None else np.where(mask, scores, -np.inf), length)

    def pretrain(self, steps: list[Step]) -> None:
        if not steps:
            return
        x = np.concatenate(
            [
                np.concatenate(
                    [
                        np.broadcast_to(s.state[:, None], (*s.ranking.shape, s.state.shape[1])),
                        s.shown,
                    ],
                    axis=-1,
                ).reshape(-1, s.state.shape[1] + s.shown.shape[2])
                for s in steps
            ]
        )
        y = np.concatenate([s.clicks.reshape(-1) for s in steps]).astype(np.float32)
        data = EncodedData(
            sparse=np.zeros((len(y), 0), dtype=np.int32),
            dense=np.ascontiguousarray(x, dtype=np.float32),
            label=y,
        )
        cfg = TrainConfig(epochs=self.epochs, batch_size=256, lr=self.lr, patience=0,
                          lr_patience=0, seed=self.seed, device="cpu", progress=False)  # fmt: skip
        Trainer(self.model, cfg, task="binary").fit(data)  # the one training loop
        log.info("static %s trained on %d logged impressions", self.model_name, len(y))


class DailyCTRPolicy(StaticCTRPolicy):
    """The static CTR model retrained from scratch every ``every`` steps (a day of hourly
    steps) on the pretraining log plus every served top-k list and its clicks so far.

    Args:
        state_dim: ``Ds``.
        action_dim: ``Da``.
        every: Steps between retrainings.
        **kwargs: Options of :class:`StaticCTRPolicy`.
    """

    name = "static-daily"

    def __init__(self, state_dim: int, action_dim: int, every: int = 24, **kwargs: object) -> None:
        super().__init__(state_dim, action_dim, **kwargs)  # type: ignore[arg-type]
        self.every, self.retrainings = every, 0
        self._seen: list[Step] = []
        self._steps = 0

    @staticmethod
    def _compact(step: Step) -> Step:
        """Only what training reads: the state and the served items' features and clicks."""
        b, k = step.ranking.shape
        ranking = np.broadcast_to(np.arange(k), (b, k))
        return Step(step.t, step.state, step.shown, ranking, step.clicks, step.activeness)

    def pretrain(self, steps: list[Step]) -> None:
        self._seen = [self._compact(s) for s in steps]
        super().pretrain(self._seen)

    def learn(self, step: Step) -> None:
        self._seen.append(self._compact(step))
        self._steps += 1
        if self._steps % self.every == 0:
            self.model = self.fresh_model()
            super().pretrain(self._seen)
            self.retrainings += 1
