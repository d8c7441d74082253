"""Schema declaration, validation and JSON round trip; Batch helpers."""

from __future__ import annotations

import pytest
import torch

from recforge.features import (
    CategoricalField,
    FieldBase,
    NumericField,
    Schema,
    SequenceField,
    VocabularyField,
)


def test_schema_json_round_trip(tiny_schema):
    again = Schema.from_json(tiny_schema.to_json())
    assert again == tiny_schema
    assert hash(again) == hash(tiny_schema)  # frozen and hashable


def test_views_order_and_groups(tiny_schema):
    assert [f.name for f in tiny_schema.sparse_fields] == [
        "user_id",
        "user_segment",
        "item_id",
        "item_category",
        "device",
        "hour",
    ]
    assert [f.name for f in tiny_schema.dense_fields] == ["price", "age"]
    assert tiny_schema.sparse_index("hour") == 5
    assert {f.name for f in tiny_schema.fields_in_group("user")} >= {"user_id", "age"}
    assert tiny_schema.vocab_of(tiny_schema.field("hist_item_ids")) == 40


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: Schema(fields=(CategoricalField("a"), CategoricalField("a"))), "duplicate"),
        (lambda: Schema(fields=(CategoricalField("a"),), user_key="b"), "categorical"),
        (lambda: Schema(fields=(SequenceField("s", share_embedding_with="x"),)), "unknown field"),
        (lambda: CategoricalField("a", group="planet"), "group"),
        (lambda: NumericField("a", transform="sqrt"), "transform"),
        (lambda: Schema(fields=(), task="clustering"), "task"),
    ],
)
def test_invalid_declarations_are_refused(build, message):
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize("cls", [CategoricalField, NumericField, SequenceField])
def test_every_field_kind_shares_the_base_declaration(cls):
    field = cls("a", column="raw_a", embedding_dim=4)
    assert isinstance(field, FieldBase) and field.source == "raw_a" and field.embedding_dim == 4
    assert cls("a").source == "a"
    with pytest.raises(ValueError, match="group"):
        cls("a", group="planet")
    assert isinstance(field, VocabularyField) == (cls is not NumericField)


def test_schema_is_immutable(tiny_schema):
    with pytest.raises(AttributeError):
        tiny_schema.label = "y"  # type: ignore[misc]


def test_batch_select_and_replace_column(tiny_batch):
    sub = tiny_batch.select(torch.tensor([3, 1]))
    assert len(sub) == 2
    assert torch.equal(sub.sparse[0], tiny_batch.sparse[3])
    changed = tiny_batch.with_sparse_column(2, torch.zeros(len(tiny_batch), dtype=torch.long))
    assert (changed.sparse[:, 2] == 0).all()
    assert not (tiny_batch.sparse[:, 2] == 0).all()  # the original is untouched
