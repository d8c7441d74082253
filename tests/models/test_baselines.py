"""LR, FM and biased MF against their closed forms; the user-item base of the id models."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch

from recforge.layers.interaction import FMInteraction
from recforge.models import registry
from recforge.models.user_item import UserItemModel


def test_fm_linear_time_form_equals_pairwise_sum():
    v = torch.randn(6, 5, 3, dtype=torch.float64)
    brute = torch.zeros(6, dtype=torch.float64)
    for i, j in itertools.combinations(range(5), 2):
        brute += (v[:, i] * v[:, j]).sum(-1)
    torch.testing.assert_close(FMInteraction()(v), brute)


def test_fm_model_is_linear_plus_pairwise(tiny_schema, tiny_batch):
    model = registry.build("fm", tiny_schema, {})
    v = model.embedding(tiny_batch)
    brute = model.linear(tiny_batch).clone()
    for i, j in itertools.combinations(range(v.shape[1]), 2):
        brute += (v[:, i] * v[:, j]).sum(-1)
    torch.testing.assert_close(model(tiny_batch), brute, atol=1e-5, rtol=1e-5)


def test_biased_mf_closed_form(tiny_schema, tiny_batch):
    model = registry.build("mf", tiny_schema, {"global_bias": 3.5})
    u = tiny_batch.sparse[:, tiny_schema.sparse_index("user_id")]
    i = tiny_batch.sparse[:, tiny_schema.sparse_index("item_id")]
    P, Q = model.factors.field_rows(0), model.factors.field_rows(1)
    bu, bi = model.biases.field_rows(0)[:, 0], model.biases.field_rows(1)[:, 0]
    expected = 3.5 + bu[u] + bi[i] + (P[u] * Q[i]).sum(-1)
    torch.testing.assert_close(model(tiny_batch), expected)


@pytest.mark.parametrize("name", ["mf", "gmf", "ncf_mlp", "neumf", "autorec"])
def test_user_item_models_read_the_two_key_columns(name, tiny_schema, tiny_batch):
    model = registry.build(name, tiny_schema, {})
    assert isinstance(model, UserItemModel)
    users = tiny_batch.sparse[:, tiny_schema.sparse_index("user_id")]
    items = tiny_batch.sparse[:, tiny_schema.sparse_index("item_id")]
    torch.testing.assert_close(model.ids(tiny_batch), torch.stack([users, items], dim=1))
    assert model.sizes == (30, 40)
    for missing in ("user_key", "item_key"):
        schema = dataclasses.replace(tiny_schema, **{missing: None})
        with pytest.raises(ValueError, match=r"needs schema\.user_key and schema\.item_key"):
            registry.build(name, schema, {})
