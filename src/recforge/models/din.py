"""Deep Interest Network (DIN).

Zhou, Zhu, Song, Fan, Zhu, Ma, Yan, Jin, Li and Gai, "Deep Interest Network for Click-Through
Rate Prediction", KDD 2018.

A user's interests are diverse, and only the part relevant to the candidate matters for one
prediction. Instead of pooling the behaviour history into one candidate-blind vector (the base
model), DIN weighs every behaviour by a local activation unit that looks at the behaviour and
the candidate together, ``v_U(A) = sum_i a(e_i, v_A) e_i`` (Eq. 3). The paper leaves the
weights unnormalised so the sum keeps the strength of the interest; recforge's default
normalises them with a softmax over the real behaviours, as the authors' released code does
(zhougr1993/DeepInterestNetwork), because the unnormalised sum grows with the history length:
on Amazon Beauty's validation split the softmax gives 0.825 AUC against 0.803 (3 seeds), and
without it DIN falls below the mean-pooled base model (``benchmarks/results/seq_beauty.md``).
``softmax=False`` is the paper's Eq. 3. Behaviours and the candidate share the item and
category embedding tables. The MLP uses Dice (or PReLU). Mini-batch aware regularisation
(Sec. 4.3.1) is the trainer's ``embedding_l2`` on the rows a batch touches. The fully connected
layers start from Glorot-uniform draws with zero biases (``linear_init: glorot``), TensorFlow's
default in the released code: on Beauty it lifts validation AUC from 0.824 to 0.827 (5 seeds),
on the peer harness's log the one-epoch test AUC from 0.695 to 0.711.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recforge.features import Batch, Schema
from recforge.layers.din import ActivationUnit, AttentionPooling
from recforge.layers.embedding import FeatureEmbedding
from recforge.layers.sequence import embed_real_behaviours, init_tables, static_graph
from recforge.models.behaviour import AttentionConfig, BehaviourModel
from recforge.models.registry import ModelSpec


@dataclass(frozen=True)
class DINConfig(AttentionConfig):
    """The options of :class:`~recforge.models.behaviour.AttentionConfig` (MLP, behaviours,
    activation unit) and the weights' normalisation:

    Args:
        softmax: Normalise attention weights over the history with a softmax (the released
            code; the default); ``False`` is the paper's unnormalised Eq. 3.
        embedding_init_std: Standard deviation of the embeddings' normal initialisation;
            ``None`` keeps the tables' 0.01 (the peers draw from ``N(0, 1e-4)``).
    """

    softmax: bool = True
    embedding_init_std: float | None = None


class DIN(BehaviourModel):
    """Attention-pooled behaviours plus the other features, through an MLP."""

    config_class = DINConfig

    def __init__(self, schema: Schema, cfg: DINConfig) -> None:
        super().__init__(schema, cfg)
        init_tables(self.embedding, cfg.embedding_init_std)
        unit = ActivationUnit(self.behaviour_dim, cfg.attention_tower, cfg.softmax)
        self.attention = AttentionPooling(unit)
        self.mlp = self.build_mlp(self.behaviour_dim)

    def attention_weights(self, batch: Batch) -> torch.Tensor:
        """The activation weight ``a(e_i, v_A)`` of each behaviour: ``(B, L)``, 0 on padding."""
        return self.attention.unit(*self.embed_behaviours(batch))

    def forward(self, batch: Batch) -> torch.Tensor:
        if static_graph() or not isinstance(self.embedding, FeatureEmbedding):
            # a recorded graph (export) or TorchRec's tables: the padded (B, L, Dk) path
            user_interest, _ = self.attention(*self.embed_behaviours(batch))  # (B, Dk), Eq. 3
        else:
            user_interest = self.attend_real(batch)
        return self.score(batch, user_interest)  # (B,)

    def attend_real(self, batch: Batch) -> torch.Tensor:
        """Eq. 3 computed on the real behaviours only: ``(B, Dk)``.

        The real behaviours come from :func:`~recforge.layers.sequence.embed_real_behaviours`
        (padding is never looked up: half the positions of the peer benchmark's histories),
        their weights from :meth:`ActivationUnit.real_weights`, and the weighted sum is one
        ``index_add``. Equal to ``self.attention(*self.embed_behaviours(batch))[0]`` up to the
        order of the sums.
        """
        keys, query, rows, mask = embed_real_behaviours(self.embedding, self.behaviours, batch)
        weights = self.attention.unit.real_weights(keys, query, rows, mask)  # (R,)
        pooled = keys.new_zeros(mask.shape[0], keys.shape[-1])
        return pooled.index_add_(0, rows, weights.unsqueeze(-1).to(keys.dtype) * keys)


SPEC = ModelSpec(
    name="din",
    model=DIN,
    paper="Zhou et al., Deep Interest Network for Click-Through Rate Prediction, KDD 2018",
    family="sequence",
)
