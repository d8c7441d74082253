"""DIEN's paper-side options: the bilinear attention (Eq. 6) and the paper's MLP input without
the pooled history (``pooling: none``)."""

from __future__ import annotations

import pytest
import torch

from recforge.features import random_batch
from recforge.layers.embedding import length_mask
from recforge.models import registry
from recforge.models.dien import BilinearAttention


def _batch(schema, n: int = 24, seed: int = 0):
    return random_batch(schema, n, torch.Generator().manual_seed(seed))


def test_bilinear_attention_is_the_softmax_of_h_w_e_over_the_real_steps() -> None:
    torch.manual_seed(0)
    att = BilinearAttention(hidden_dim=5, query_dim=3)
    states, query = torch.randn(4, 6, 5), torch.randn(4, 3)
    lengths = torch.tensor([6, 3, 1, 0])
    weights = att(states, query, lengths)
    w = att.proj.weight  # (H, Dk): W e_a = w @ e_a
    for b, n in enumerate(lengths.tolist()):
        if n == 0:
            assert torch.equal(weights[b], torch.zeros(6))
            continue
        scores = torch.stack([states[b, t] @ (w @ query[b]) for t in range(n)])  # h_t W e_a
        torch.testing.assert_close(weights[b, :n], torch.softmax(scores, dim=0))
        assert torch.equal(weights[b, n:], torch.zeros(6 - n))  # padding gets exactly 0


def test_dien_bilinear_attention_weights_are_zero_on_padding_and_sum_to_one(tiny_schema) -> None:
    schema = tiny_schema
    batch = _batch(schema)
    model = registry.build("dien", schema, {"attention": "bilinear"}).eval()
    weights = model.attention_weights(batch)
    lengths = batch.lengths["hist_item_ids"]
    mask = length_mask(lengths, weights.shape[1])
    assert torch.equal(weights[~mask], torch.zeros_like(weights[~mask]))
    real = lengths > 0
    torch.testing.assert_close(weights[real].sum(1), torch.ones(int(real.sum())))
    with pytest.raises(ValueError, match="attention"):
        registry.build("dien", schema, {"attention": "dot"})


def test_pooling_none_feeds_the_mlp_the_final_state_only(tiny_schema) -> None:
    schema = tiny_schema
    batch = _batch(schema, seed=1)
    model = registry.build("dien", schema, {"pooling": "none", "candidate_product": False}).eval()
    parts = model._interests(batch)
    torch.testing.assert_close(parts["summary"], parts["final"])
    assert "history" not in parts
    full = registry.build("dien", schema, {})
    dk = model.behaviour_dim
    assert model.mlp.net[0].in_features == full.mlp.net[0].in_features - 2 * dk
    with pytest.raises(ValueError, match="candidate_product"):
        registry.build("dien", schema, {"pooling": "none"})
