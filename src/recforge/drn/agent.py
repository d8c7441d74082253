"""The DRN agent: dueling Q-network, replay memory, minor (DBGD) and major (DQN) updates.

Zheng et al., "DRN: A Deep Reinforcement Learning Framework for News Recommendation", WWW 2018,
Section 4 and Figure 3. The agent pushes the top of ``Q(s, a)``; it stores every session in a
replay memory with the reward ``r = r_click + beta * r_active`` (Section 4.3) and

* every ``T1`` steps makes a **minor update** by dueling bandit gradient descent: an explore
  network ``W~ = W + alpha * rand(-1, 1) * W`` serves interleaved lists together with the
  current network, and if its items win the clicks the current network moves to it;
* every ``T2`` steps makes a **major update**: gradient steps on replayed sessions towards the
  double-DQN target ``y = r + gamma * Q(s', argmax_a' Q(s', a'; W); W')`` (Section 4.2, Eq. 4:
  the current network picks, the target network ``W'`` values), the target network being
  synchronised with ``W`` at the start of each major update.

The same class with ``explore="none"`` is the greedy baseline (major updates only) and with
``explore="egreedy"`` the epsilon-greedy one, so the three differ only in exploration.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from recforge.config import TrainConfig
from recforge.drn.dbgd import DuelingBanditGD
from recforge.drn.interleaving import (
    credit,
    merge,
    probabilistic_interleave,
    team_draft_interleave,
)
from recforge.drn.model import DuelingQ
from recforge.drn.policies import Policy, Step, top_k
from recforge.drn.replay import ReplayMemory
from recforge.train.optim import build_optimizers

log = logging.getLogger(__name__)

Explore = Literal["none", "egreedy", "dbgd"]


@dataclass(frozen=True)
class AgentConfig:
    """Args:
    explore: ``dbgd`` (DRN), ``egreedy`` or ``none`` (greedy).
    epsilon: Per-position probability of a random item under epsilon-greedy.
    alpha: DBGD explore coefficient in ``W~ = W + alpha * rand(-1, 1) * W``.
    eta: DBGD step towards a winning explore network (1 keeps the winner).
    interleaving: ``team_draft`` or ``probabilistic`` for the DBGD comparison.
    minor_every: ``T1``, steps between minor updates (DBGD resolutions).
    major_every: ``T2``, steps between major updates.
    major_updates: Gradient steps per major update (0: no major updates online).
    pretrain_updates: Gradient steps of offline pretraining on the log.
    batch_size: Replayed sessions per gradient step.
    lr: Adam learning rate.
    gamma: Discount of future reward.
    beta: Weight of user activeness in the reward.
    replay_capacity: Sessions kept in the replay memory.
    state_hidden: Shared state-encoder widths.
    value_hidden: Value-stream widths.
    advantage_hidden: Advantage-stream widths.
    seed: Seed of initialisation, replay sampling and exploration.
    """

    explore: Explore = "dbgd"
    epsilon: float = 0.1
    alpha: float = 0.1
    eta: float = 1.0
    interleaving: Literal["team_draft", "probabilistic"] = "team_draft"
    minor_every: int = 2
    major_every: int = 10
    major_updates: int = 20
    pretrain_updates: int = 200
    batch_size: int = 32
    lr: float = 1e-3
    gamma: float = 0.4
    beta: float = 0.05
    replay_capacity: int = 4000
    state_hidden: tuple[int, ...] = (64,)
    value_hidden: tuple[int, ...] = (32,)
    advantage_hidden: tuple[int, ...] = (64, 32)
    seed: int = 0


class DRNAgent(Policy):
    """Q-network ranking policy with replay, target network and optional DBGD exploration.

    Args:
        state_dim: ``Ds``.
        action_dim: ``Da``.
        cfg: Agent options.
        name: Label used in reports.
    """

    needs_next = True

    def __init__(
        self, state_dim: int, action_dim: int, cfg: AgentConfig, name: str = "drn"
    ) -> None:
        self.cfg, self.name = cfg, name
        with torch.random.fork_rng():
            torch.manual_seed(cfg.seed)
            self.q = DuelingQ(
                state_dim, action_dim, cfg.state_hidden, cfg.value_hidden, cfg.advantage_hidden
            )
        self.target = copy.deepcopy(self.q)
        # the engine's optimizer factory (Adam), for the Q-network's own TD updates
        (self.opt,) = build_optimizers(self.q, TrainConfig(lr=cfg.lr, optimizer="adam"))
        self.replay = ReplayMemory(cfg.replay_capacity, seed=cfg.seed)
        self.rng = np.random.default_rng(cfg.seed + 1)
        self.dbgd = DuelingBanditGD(cfg.alpha, cfg.eta, seed=cfg.seed + 2)
        self.explore_net: nn.Module | None = None
        self._credit = np.zeros(2)  # clicks of (current, explore) in this T1 window
        self._team: np.ndarray | None = None
        self._steps = 0
        self.losses: list[float] = []

    # ---- acting ------------------------------------------------------------------------------
    @torch.no_grad()
    def scores(
        self, state: np.ndarray, action: np.ndarray, net: nn.Module | None = None
    ) -> np.ndarray:
        """``(B, C)`` Q-values of every candidate."""
        net = net or self.q
        return net(torch.from_numpy(state), torch.from_numpy(action)).numpy()

    def rank(
        self, state: np.ndarray, action: np.ndarray, length: int, mask: np.ndarray | None = None
    ) -> np.ndarray:
        b, c = action.shape[:2]
        q = masked(self.scores(state, action), mask)  # (B, C)
        greedy = top_k(q, length)
        self._team = None
        if self.cfg.explore == "egreedy":
            # each position independently takes a random unshown candidate with prob epsilon
            team = (self.rng.random((b, length)) < self.cfg.epsilon).astype(np.int64)
            random_rank = np.argsort(masked(self.rng.random((b, c)), mask), axis=1)[:, ::-1]
            return merge(greedy, random_rank, team)
        if self.cfg.explore == "dbgd":
            if self.explore_net is None:
                self.explore_net = self.dbgd.propose(self.q)
            q_explore = masked(self.scores(state, action, self.explore_net), mask)
            if self.cfg.interleaving == "probabilistic":
                rank_a = np.argsort(-q, axis=1, kind="stable")
                rank_b = np.argsort(-q_explore, axis=1, kind="stable")
                merged, self._team = probabilistic_interleave(
                    rank_a, rank_b, length, self.rng, mask=mask
                )
            else:
                merged, self._team = team_draft_interleave(
                    greedy, top_k(q_explore, length), length, self.rng
                )
            return merged
        return greedy

    # ---- learning ----------------------------------------------------------------------------
    def learn(self, step: Step) -> None:
        cfg = self.cfg
        reward = step.clicks + cfg.beta * step.activeness[:, None]  # r = r_click + beta r_active
        self.replay.add(**_transition(step, reward))
        self._steps += 1
        if self._team is not None:
            # team A is the current network, team B the explore network; only the served top
            # of a longer interleaved ranking can earn clicks
            team = self._team[:, : step.clicks.shape[1]]
            self._credit += credit(team, step.clicks).sum(axis=0)
            self._team = None
        if (
            cfg.explore == "dbgd"
            and self._steps % cfg.minor_every == 0
            and self.explore_net is not None
        ):
            self.minor_update()
        if cfg.major_updates > 0 and self._steps % cfg.major_every == 0:
            self.major_update(cfg.major_updates)

    def minor_update(self) -> bool:
        """Resolve the DBGD duel of this window and draw a new explore network."""
        assert self.explore_net is not None
        won = self.dbgd.resolve(self.q, self.explore_net, self._credit[1], self._credit[0])
        self._credit[:] = 0
        self.explore_net = self.dbgd.propose(self.q)
        return won

    def major_update(self, updates: int) -> None:
        """``updates`` gradient steps towards the double-DQN target (:meth:`td_target`).

        The one gradient step of recforge outside the Trainer, by design: DRN's TD update acts
        on the live agent between served requests, on transitions from its replay memory (not
        on a dataset the engine could iterate), with a target network; its optimizer still
        comes from the engine's factory (:func:`recforge.train.optim.build_optimizers`).
        """
        if len(self.replay) == 0:
            return
        cfg = self.cfg
        self.target.load_state_dict(self.q.state_dict())
        for _ in range(updates):
            b = {k: torch.from_numpy(v) for k, v in self.replay.sample(cfg.batch_size).items()}
            y = self.td_target(b)  # (N, L)
            loss = nn.functional.mse_loss(self.q(b["state"], b["shown"]), y)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            self.losses.append(float(loss.detach()))
        if self.cfg.explore == "dbgd":  # the old explore network was drawn around stale weights
            self.explore_net = self.dbgd.propose(self.q)
            self._credit[:] = 0

    @torch.no_grad()
    def td_target(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        """Double-DQN target ``y = r + gamma * Q(s', argmax_a' Q(s', a'; W); W')`` (DRN, Eq. 4).

        The current network ``W`` picks the next action, the target network ``W'`` values it;
        there is no future after a user's last request (``done``).
        """
        pick = self.q(b["next_state"], b["next_action"]).argmax(dim=1, keepdim=True)  # (N, 1)
        future = self.target(b["next_state"], b["next_action"]).gather(1, pick)[:, 0]  # (N,)
        alive = 1.0 - b["done"]  # (N,)
        return b["reward"] + self.cfg.gamma * (alive * future)[:, None]  # (N, L)

    def pretrain(self, steps: list[Step]) -> None:
        """Offline pretraining: fill the replay memory from the log and fit on it."""
        for s in steps:
            self.replay.add(**_transition(s, s.clicks + self.cfg.beta * s.activeness[:, None]))
        self.major_update(self.cfg.pretrain_updates)


def masked(scores: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """``scores`` with ``-inf`` where ``mask`` is False (padding candidates rank last)."""
    return scores if mask is None else np.where(mask, scores, -np.inf)


def _transition(step: Step, reward: np.ndarray) -> dict[str, np.ndarray]:
    """The replay-memory record of a served request (``s, shown a, r, s', A', done``)."""
    b = step.state.shape[0]
    return {
        "state": step.state,
        "shown": step.shown,
        "reward": np.asarray(reward, dtype=np.float32),
        "next_state": step.next_state if step.next_state is not None else step.state,
        "next_action": step.next_action if step.next_action is not None else step.action,
        "done": np.zeros(b, np.float32) if step.done is None else step.done.astype(np.float32),
    }
