"""Deep Interest Evolution Network (DIEN).

Zhou, Mou, Fan, Pi, Bian, Zhou, Zhu and Gai, "Deep Interest Evolution Network for
Click-Through Rate Prediction", AAAI 2019.

Interests are latent and drift over time. The *interest extractor* GRU reads the behaviour
embeddings ``e_t`` into hidden states ``h_t``; an auxiliary loss makes each ``h_t`` predictive
of the next real behaviour against a sampled negative (Eq. 5):
``L_aux = -1/N sum_i sum_t [log s(h_t, e_{t+1}) + log(1 - s(h_t, e'_{t+1}))]`` with
``s(x, y) = sigmoid(<x, y>)``. The *interest evolving* layer runs an attentional GRU over the
``h_t``, with attention ``a_t`` between each ``h_t`` and the candidate (a DIN-style unit with a
softmax over the history, as in the released code; ``attention: bilinear`` is the paper's
``softmax_t(h_t W e_a)``); AUGRU scales the update gate by ``a_t`` (Eq. 6-7), AGRU and AIGRU
are the paper's variants. Its final state joins the other features in the MLP.

Negative behaviours for the auxiliary loss come from a declared negative-sequence field
(``negative_behaviours``), or are sampled inside :meth:`DIEN.forward_train`: ``in_batch`` (the
default) draws whole real behaviours of the batch (popularity-weighted, each item with its own
category); ``uniform`` draws every field uniformly from its table rows 1..vocab-1 (independently,
so an item may get another item's category). The authors' released code (mouna99/dien,
``script/data_iterator.py``) draws each negative from the list of all reviews, so popular items
more often, with the item's own category: the ``in_batch`` kind. Where the click task's negative
candidates are uniformly drawn items (the DIN papers' Amazon protocol), uniform auxiliary
negatives are solved by popularity and teach the extractor little.

Defaults chosen on validation (``benchmarks/results/seq_dien_defaults_s9.md``): ``in_batch``
negatives and ``mean`` pooling. On Amazon Beauty (5 seeds) validation AUC 0.8138 (uniform, sum) ->
0.8230 (in-batch, sum) -> 0.8275 (in-batch, mean), level with DIN's 0.8271; test AUC 0.8044 ±
0.0012 against DIN's 0.8012 ± 0.0018, higher than DIN's on every seed (the paired difference
+0.0031, just under twice its standard deviation, 0.0033). On MovieLens-100K in-batch negatives
lift validation AUC 0.7214 -> 0.7278 (3 seeds) and DIEN has the best test AUC of the three. On the
peer harness's synthetic log, whose behaviours are independent draws, ``in_batch`` loses 0.020 test
AUC (``dien_negatives_harness_s7.md``); that harness declares its own negative sequences, and mean
pooling lifts its DIEN 0.6553 -> 0.6617.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn.functional import binary_cross_entropy_with_logits as bce

from recforge.features import Batch, Schema
from recforge.layers.din import ActivationUnit
from recforge.layers.embedding import length_mask, masked_mean, masked_sum
from recforge.layers.mlp import MLP, Tower
from recforge.layers.sequence import MaskedGRU, init_tables, sample_behaviours
from recforge.models.behaviour import AttentionConfig, BehaviourModel
from recforge.models.registry import ModelSpec


@dataclass(frozen=True)
class DIENConfig(AttentionConfig):
    """The options of :class:`~recforge.models.behaviour.AttentionConfig` (MLP, behaviours,
    attention unit; ``behaviours: None`` leaves the negative sequences out) and those of the
    interest extractor and evolution:

    Args:
        gru_hidden: Hidden width of both GRUs; ``None`` is the behaviour width (the official
            code: 36 = 2 x 18), which lets the auxiliary score be an inner product.
        evolution: ``augru`` (the paper's), ``agru``, ``aigru``, ``gru`` (no attention) or
            ``augru_released`` (the released code's AUGRU, which scales the keep gate by
            ``1 - a_t`` instead of the update gate by ``a_t``;
            :mod:`recforge.layers.sequence`).
        alpha: Weight of the auxiliary loss; 0 turns it off (the BARS configuration).
        aux_net: ``inner`` (Eq. 5) or ``mlp`` (the official code's 100-50 sigmoid network).
        negatives: ``in_batch`` (the default: whole real behaviours of the batch, as the
            released code draws them) or ``uniform`` sampling of negative behaviours.
        negative_behaviours: Sequence fields holding the negative behaviours, one per
            behaviour pair, aligned with the history (overrides ``negatives``).
        pooling: How the raw behaviours are summarised next to the evolved interest: ``mean``
            over the real behaviours (the default, like the base model's; chosen on validation,
            see above), ``sum`` (the official code's ``item_his_eb_sum``), or
            ``none`` (the paper's text: the MLP sees ``h'(T)`` and the other features only, as
            in DeepCTR-Torch and torch-rechub; needs ``candidate_product: false``).
        candidate_product: Also feed the MLP the candidate times that summary, element-wise
            (the official code's ``item_eb * item_his_eb_sum``; not in the paper's text). On by
            default: without this explicit match term DIEN falls below DIN (Amazon Beauty,
            validation AUC 0.809 vs DIN's 0.825; the demo log, 3 seeds, 0.009-0.015 below),
            with it DIEN beats DIN on the demo log by 0.012-0.021 test AUC
            (``benchmarks/results/seq_beauty.md``, ``demo_i20.md``).
        embedding_init_std: Standard deviation of the embeddings' normal initialisation;
            ``None`` keeps the tables' 0.01 (the peers draw from ``N(0, 1e-4)``).
        attention: ``mlp``, a DIN activation unit with a softmax over the history (the
            released code's ``din_fcn_attention``), or ``bilinear``, the paper's attention
            function (Sec. 4.3) ``a_t = softmax_t(h_t W e_a)`` (torch-rechub's). On the peer
            harness's log neither beats the other (one seed: 0.6586 vs 0.6553 test AUC,
            ``benchmarks/results/dien_harness_gap_s8.md``).
        linear_init: ``torch`` for DIEN (Base and DIN default to ``glorot``, the released
            code's draw): on Amazon Beauty's validation split Glorot leaves DIEN level, with
            the current defaults (seeds 1 and 2: 0.8283 / 0.8272 against 0.8284 / 0.8280;
            ``benchmarks/results/seq_dien_defaults_s9.md``) as with the earlier ones (0.8095 /
            0.8156 against 0.8123 / 0.8129; ``seq_beauty_s8.md``), so PyTorch's draw stays.
            With the peers' contract MLP (ReLU, one epoch) Glorot helps: the peer harness's
            log 0.655 -> 0.684 test AUC, recforge's Beauty split at batch 256 0.760 -> 0.774
            (``seq_peers_real_s9.md``).
    """

    linear_init: Literal["torch", "glorot"] = "torch"
    gru_hidden: int | None = None
    evolution: Literal["augru", "agru", "aigru", "gru", "augru_released"] = "augru"
    alpha: float = 1.0
    aux_net: Literal["inner", "mlp"] = "inner"
    negatives: Literal["uniform", "in_batch"] = "in_batch"
    negative_behaviours: tuple[str, ...] | None = None
    pooling: Literal["sum", "mean", "none"] = "mean"
    candidate_product: bool = True
    embedding_init_std: float | None = None
    attention: Literal["mlp", "bilinear"] = "mlp"


class BilinearAttention(nn.Module):
    """The paper's attention function (Sec. 4.3): ``a_t = exp(h_t W e_a) / sum_j exp(h_j W e_a)``
    over the real steps.

    Shape:
        states ``(B, L, H)``, query ``(B, Dk)``, lengths ``(B,)`` -> weights ``(B, L)``, 0 on
        padding.
    """

    def __init__(self, hidden_dim: int, query_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(query_dim, hidden_dim, bias=False)  # W e_a, once per sample

    def forward(
        self, states: torch.Tensor, query: torch.Tensor, lengths: torch.Tensor
    ) -> torch.Tensor:
        scores = torch.einsum("blh,bh->bl", states, self.proj(query))  # (B, L)
        mask = length_mask(lengths, states.shape[1])
        weights = torch.softmax(scores.masked_fill(~mask, -1e9), dim=-1)
        return weights * mask.to(weights.dtype)


class DIEN(BehaviourModel):
    """Interest extractor GRU (+ auxiliary loss) -> attentional interest evolution -> MLP."""

    config_class = DIENConfig

    def __init__(self, schema: Schema, cfg: DIENConfig) -> None:
        negs = tuple(cfg.negative_behaviours or ())
        super().__init__(schema, cfg, exclude=negs)
        init_tables(self.embedding, cfg.embedding_init_std)
        if cfg.pooling not in ("sum", "mean", "none"):
            raise ValueError(f"pooling must be 'sum', 'mean' or 'none', got {cfg.pooling!r}")
        if cfg.pooling == "none" and cfg.candidate_product:
            raise ValueError("candidate_product needs a pooled history (pooling 'sum' or 'mean')")
        if cfg.attention not in ("mlp", "bilinear"):
            raise ValueError(f"attention must be 'mlp' or 'bilinear', got {cfg.attention!r}")
        if negs and len(negs) != len(self.behaviours):
            raise ValueError("negative_behaviours needs one sequence field per behaviour pair")
        for neg, (_, target) in zip(negs, self.behaviours, strict=False):
            if getattr(schema.field(neg), "share_embedding_with", None) != target:
                raise ValueError(f"negative sequence {neg!r} must share the rows of {target!r}")
        dk = self.behaviour_dim
        h = cfg.gru_hidden or dk
        self.extractor = MaskedGRU(dk, h, "gru")
        self.evolution = MaskedGRU(h, h, "gru" if cfg.evolution == "gru" else cfg.evolution)
        unit_proj = h != dk and cfg.attention == "mlp"  # the bilinear W maps e_a itself
        self.query_proj = nn.Linear(dk, h, bias=False) if unit_proj else nn.Identity()
        if cfg.attention == "bilinear":
            self.attention = BilinearAttention(h, dk)
        else:
            self.attention = ActivationUnit(h, cfg.attention_tower, softmax=True)
        if cfg.aux_net == "mlp":
            self.aux = MLP(h + dk, Tower((100, 50), "sigmoid"), output_dim=1)
        else:
            self.aux_proj = nn.Linear(h, dk, bias=False) if h != dk else nn.Identity()
        pooled = 0 if cfg.pooling == "none" else dk
        self.mlp = self.build_mlp(h + pooled + (dk if cfg.candidate_product else 0))

    def _interests(self, batch: Batch) -> dict[str, torch.Tensor]:
        keys, query, lengths = self.embed_behaviours(batch)
        states, _ = self.extractor(keys, lengths)  # (B, L, H): interest extractor
        if self.cfg.attention == "bilinear":
            att = self.attention(states, query, lengths)  # (B, L), softmax of h_t W e_a
        else:
            att = self.attention(states, self.query_proj(query), lengths)  # (B, L), softmax
        _, final = self.evolution(states, lengths, attention=att)  # (B, H): h'(T)
        parts = [final]
        history = None
        if self.cfg.pooling != "none":
            pool = masked_mean if self.cfg.pooling == "mean" else masked_sum
            history = pool(keys, lengths)  # (B, Dk) pooled behaviours
            parts.append(history)
        if history is not None and self.cfg.candidate_product:
            parts.append(query * history)  # (B, Dk)
        out: dict[str, torch.Tensor] = {
            "summary": torch.cat(parts, dim=1),  # what joins the other features in the MLP
            "keys": keys,
            "lengths": lengths,
            "states": states,
            "att": att,
            "final": final,
        }
        if history is not None:
            out["history"] = history
        return out

    def attention_weights(self, batch: Batch) -> torch.Tensor:
        """The attention ``a_t`` of each time step on the candidate: ``(B, L)``, 0 on padding."""
        return self._interests(batch)["att"]

    def forward(self, batch: Batch) -> torch.Tensor:
        parts = self._interests(batch)
        return self.score(batch, parts["summary"])  # (B,)

    def forward_train(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        parts = self._interests(batch)
        logits = self.score(batch, parts["summary"])
        if self.cfg.alpha == 0:
            return logits, None
        return logits, self.cfg.alpha * self.auxiliary_loss(batch, parts)

    def _negatives(self, batch: Batch, keys: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Negative behaviours ``(B, L-1, Dk)`` aligned with the next behaviours."""
        B, L, _ = keys.shape
        if self.cfg.negative_behaviours:
            neg = torch.cat(
                [self.embedding.sequence(batch, n) for n in self.cfg.negative_behaviours], dim=-1
            )
            return neg[:, 1 : keys.shape[1]]  # aligned with the (trimmed) history
        if self.cfg.negatives == "in_batch":
            real = keys[length_mask(lengths, L)]  # (R, Dk) every real behaviour of the batch
            if real.shape[0] == 0:
                return keys[:, 1:]
            pick = torch.randint(0, real.shape[0], (B, L - 1), device=keys.device)
            return real[pick]
        return sample_behaviours(self.embedding, self.behaviours, (B, L - 1), keys.device)

    def auxiliary_scores(
        self, batch: Batch, parts: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The auxiliary network's logits for the next real and the negative behaviour.

        Shape:
            -> ``s(h_t, e_{t+1})`` and ``s(h_t, e'_{t+1})`` ``(B, L-1)``, and the mask of the
            real pairs ``(B, L-1)`` (1 where step ``t+1`` is a real behaviour).
        """
        keys, lengths, states = parts["keys"], parts["lengths"], parts["states"]
        L = keys.shape[1]
        mask = length_mask(lengths, L)[:, 1:].to(keys.dtype)  # step t+1 is a real behaviour
        h = states[:, :-1]  # (B, L-1, H)
        pos, neg = keys[:, 1:], self._negatives(batch, keys, lengths)
        if self.cfg.aux_net == "mlp":
            s_pos = self.aux(torch.cat([h, pos], dim=-1)).squeeze(-1)
            s_neg = self.aux(torch.cat([h, neg], dim=-1)).squeeze(-1)
        else:
            hp = self.aux_proj(h)
            s_pos, s_neg = (hp * pos).sum(-1), (hp * neg).sum(-1)  # <h_t, e_{t+1}>
        return s_pos, s_neg, mask

    def auxiliary_loss(self, batch: Batch, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        """Eq. 5 averaged over the real (t, t+1) pairs of the batch (a scalar)."""
        keys = parts["keys"]
        if keys.shape[1] < 2:
            return keys.new_zeros(())
        s_pos, s_neg, mask = self.auxiliary_scores(batch, parts)
        loss = bce(s_pos, torch.ones_like(s_pos), reduction="none") + bce(
            s_neg, torch.zeros_like(s_neg), reduction="none"
        )
        return (loss * mask).sum() / mask.sum().clamp(min=1.0)


SPEC = ModelSpec(
    name="dien",
    model=DIEN,
    paper="Zhou et al., Deep Interest Evolution Network for Click-Through Rate Prediction, "
    "AAAI 2019",
    family="sequence",
)
