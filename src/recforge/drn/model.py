"""DRN: the dueling deep Q-network of a deep reinforcement learning news recommender.

Zheng, Zhang, Zheng, Xiang, Yuan, Xie & Li, "DRN: A Deep Reinforcement Learning Framework for
News Recommendation", WWW 2018. The Q-network scores a (state, action) pair, where the state is
the user and context features and the action the user-news cross and news features. Following
the dueling architecture (Wang et al., ICML 2016) used in DRN's Figure 4, it splits into a value
stream that reads only the state and an advantage stream that reads state and action:

    Q(s, a) = V(s) + A(s, a)                                            (DRN, Section 4.2)

Both streams share a state encoder. The network is trained on the double-DQN target
``y = r + gamma * Q(s', argmax_a' Q(s', a'); W')`` with ``r = r_click + beta * r_active`` by the
online agent (:mod:`recforge.drn.agent`); ranking uses ``Q``. As a registry model it builds its
state from the schema's ``user`` and ``context`` fields and its action from the ``item`` fields,
and ``forward(batch)`` returns ``Q`` as the logit of each row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from recforge.features import Batch, Schema
from recforge.layers import MLP, FeatureEmbedding, Tower
from recforge.models.base import ModelConfig, RecModel
from recforge.models.registry import ModelSpec


@dataclass(frozen=True)
class DRNConfig(ModelConfig):
    """Args:
    state_hidden: Widths of the state encoder shared by both streams.
    value_hidden: Hidden widths of the value stream ``V(s)``.
    advantage_hidden: Hidden widths of the advantage stream ``A(s, a)``.
    activation: Hidden activation.
    """

    state_hidden: tuple[int, ...] = (64,)
    value_hidden: tuple[int, ...] = (32,)
    advantage_hidden: tuple[int, ...] = (64, 32)
    activation: str = "relu"


class DuelingQ(nn.Module):
    """``Q(s, a) = V(s) + A(s, a)`` over dense state and action features.

    Args:
        state_dim: Width of the state features.
        action_dim: Width of the action features.
        state_hidden: Shared state encoder widths.
        value_hidden: Value stream widths.
        advantage_hidden: Advantage stream widths.
        activation: Hidden activation.

    Shape:
        ``state (B, Ds)``, ``action (B, C, Da)`` -> ``(B, C)``; an action ``(B, Da)`` -> ``(B,)``.
    """

    def __init__(
        self,
        state_dim: int,
        action_dim: int,
        state_hidden: Sequence[int] = (64,),
        value_hidden: Sequence[int] = (32,),
        advantage_hidden: Sequence[int] = (64, 32),
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.state_net = MLP(state_dim, Tower(tuple(state_hidden), activation))
        width = self.state_net.output_dim
        self.value = MLP(width, Tower(tuple(value_hidden), activation), output_dim=1)
        self.advantage = MLP(
            width + action_dim, Tower(tuple(advantage_hidden), activation), output_dim=1
        )

    def streams(
        self, state: torch.Tensor, action: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``V (B, 1)`` and ``A (B, C)`` for ``action (B, C, Da)``."""
        h = self.state_net(state)  # (B, H)
        v = self.value(h)  # (B, 1)
        h_rep = h.unsqueeze(1).expand(-1, action.shape[1], -1)  # (B, C, H)
        a = self.advantage(torch.cat([h_rep, action], dim=-1)).squeeze(-1)  # (B, C)
        return v, a

    def forward(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        single = action.dim() == 2
        if single:
            action = action.unsqueeze(1)
        v, a = self.streams(state, action)
        q = v + a  # Q(s, a) = V(s) + A(s, a)
        return q.squeeze(1) if single else q


class DRN(RecModel):
    """The DRN Q-network over a schema: state = user + context fields, action = item fields."""

    config_class = DRNConfig

    def __init__(self, schema: Schema, cfg: DRNConfig) -> None:
        super().__init__(schema, cfg)
        self.embedding = FeatureEmbedding(schema, dim=cfg.embedding_dim, sparse=cfg.sparse_tables)
        is_action = torch.cat(
            [
                torch.full((d,), schema.field(name).group == "item")
                for name, d in zip(
                    self.embedding.field_names, self.embedding.output_dims, strict=True
                )
            ]
        )
        self.register_buffer("state_idx", torch.nonzero(~is_action).flatten(), persistent=False)
        self.register_buffer("action_idx", torch.nonzero(is_action).flatten(), persistent=False)
        # no user/context field: the value stream reads a constant input
        state_dim = max(int(self.state_idx.numel()), 1)
        self.q = DuelingQ(
            state_dim,
            int(self.action_idx.numel()),
            cfg.state_hidden,
            cfg.value_hidden,
            cfg.advantage_hidden,
            cfg.activation,
        )

    def state_action(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """``state (B, Ds)`` and ``action (B, Da)`` embeddings of a batch."""
        x = self.embedding.flat(batch)  # (B, sum of field dims)
        # x.shape[0], not len(batch): an exported graph keeps the batch size dynamic
        state = x[:, self.state_idx] if self.state_idx.numel() else x.new_ones(x.shape[0], 1)
        return state, x[:, self.action_idx]

    def forward(self, batch: Batch) -> torch.Tensor:
        state, action = self.state_action(batch)
        return self.q(state, action)  # (B,)


SPEC = ModelSpec(
    name="drn",
    model=DRN,
    paper=(
        "Zheng, Zhang, Zheng, Xiang, Yuan, Xie & Li, DRN: A Deep Reinforcement Learning "
        "Framework for News Recommendation, WWW 2018"
    ),
    family="rl",
    pairwise=True,
)
