"""The fused embedding equals per-field lookups; sparse gradients touch only used rows."""

from __future__ import annotations

import dataclasses

import torch

from recforge.features import random_batch
from recforge.layers.embedding import (
    FeatureEmbedding,
    FusedEmbedding,
    LinearPart,
    StackedInput,
    length_mask,
    masked_mean,
    masked_sum,
)


def test_fused_table_equals_separate_tables():
    sizes = [3, 5, 2]
    fused = FusedEmbedding(sizes, 4)
    tables = [fused.field_rows(i) for i in range(3)]  # each field's own slice
    ids = torch.tensor([[0, 4, 1], [2, 0, 0], [1, 3, 1]])
    expected = torch.stack([tables[f][ids[:, f]] for f in range(3)], dim=1)
    torch.testing.assert_close(fused(ids), expected)
    assert fused.offsets.tolist() == [0, 3, 8]
    assert "offsets" in dict(fused.named_buffers())


def test_fused_lookup_is_one_gather():
    fused = FusedEmbedding([10, 10, 10], 4)
    calls = []
    fused.embedding.register_forward_hook(lambda m, i, o: calls.append(o.shape))
    fused(torch.zeros(8, 3, dtype=torch.long))
    assert calls == [torch.Size([8, 3, 4])]


def test_sparse_gradients_touch_only_batch_rows():
    fused = FusedEmbedding([1000, 1000], 4, sparse=True)
    ids = torch.tensor([[1, 2], [1, 7]])
    fused(ids).sum().backward()
    grad = fused.weight.grad
    assert grad.is_sparse
    rows = set(grad.coalesce().indices()[0].tolist())
    assert rows == {1, 1000 + 2, 1000 + 7}


def test_feature_embedding_matches_manual_composition(tiny_schema, tiny_batch):
    emb = FeatureEmbedding(tiny_schema)
    out = emb(tiny_batch)
    n_sparse, n_dense = len(tiny_schema.sparse_fields), len(tiny_schema.dense_fields)
    assert out.shape == (len(tiny_batch), n_sparse + n_dense + 2, 8)
    (table,) = emb.tables.values()
    for j, _f in enumerate(tiny_schema.sparse_fields):
        torch.testing.assert_close(out[:, j], table.field_rows(j)[tiny_batch.sparse[:, j]])
    (w,) = emb.dense_weight.values()
    torch.testing.assert_close(out[:, n_sparse], tiny_batch.dense[:, :1] * w[0])
    # the item-history sequence reads the item-id rows and is mean-pooled over its length
    item_rows = table.field_rows(tiny_schema.sparse_index("item_id"))
    seq = item_rows[tiny_batch.sequences["hist_item_ids"]]
    pooled = masked_mean(seq, tiny_batch.lengths["hist_item_ids"])
    torch.testing.assert_close(out[:, n_sparse + n_dense], pooled)


def test_masked_mean_ignores_padding_and_empty_rows():
    values = torch.tensor([[[1.0], [3.0], [100.0]], [[5.0], [7.0], [9.0]]])
    torch.testing.assert_close(
        masked_mean(values, torch.tensor([2, 0])), torch.tensor([[2.0], [0.0]])
    )


def test_per_field_dimensions(tiny_schema):
    fields = tuple(
        dataclasses.replace(f, embedding_dim=4) if f.name == "device" else f
        for f in tiny_schema.fields
    )
    schema = dataclasses.replace(tiny_schema, fields=fields)
    batch = random_batch(schema, 5, torch.Generator().manual_seed(0))
    emb = FeatureEmbedding(schema)
    assert set(emb.tables) == {"4", "8"}
    assert emb.flat(batch).shape == (5, emb.output_dim)
    assert emb.output_dim == 8 * (emb.num_fields - 1) + 4
    device_col = schema.sparse_index("device")
    flat = emb.flat(batch)
    start = 8 * device_col
    torch.testing.assert_close(
        flat[:, start : start + 4], emb.tables["4"](batch.sparse[:, [device_col]])[:, 0]
    )


def test_linear_part_is_sum_of_weights(tiny_schema, tiny_batch):
    lin = LinearPart(tiny_schema)
    with torch.no_grad():
        lin.weights.embedding.weight.normal_()
        lin.dense.weight.normal_()
        lin.bias.fill_(0.5)
    w = lin.weights.embedding.weight[:, 0]
    expected = 0.5 + (tiny_batch.dense @ lin.dense.weight[0])
    for j in range(tiny_batch.sparse.shape[1]):
        expected = expected + w[lin.weights.offsets[j] + tiny_batch.sparse[:, j]]
    torch.testing.assert_close(lin(tiny_batch), expected)


def test_sequence_with_own_vocabulary_does_not_shift_sparse_fields(tiny_schema):
    # a sequence that owns rows sits in the same fused table after the sparse fields; the
    # sparse lookup must add only the sparse fields' offsets
    own = dataclasses.replace(
        tiny_schema.fields[-1], name="hist_tags", share_embedding_with=None, vocab_size=9
    )
    schema = dataclasses.replace(tiny_schema, fields=(*tiny_schema.fields, own))
    batch = random_batch(schema, 16, torch.Generator().manual_seed(3))
    emb = FeatureEmbedding(schema)
    out = emb(batch)
    (table,) = emb.tables.values()
    assert len(table.vocab_sizes) == len(schema.sparse_fields) + 1
    for j in range(len(schema.sparse_fields)):
        torch.testing.assert_close(out[:, j], table.field_rows(j)[batch.sparse[:, j]])
    tags = table.field_rows(len(schema.sparse_fields))[batch.sequences["hist_tags"]]
    torch.testing.assert_close(out[:, -1], masked_mean(tags, batch.lengths["hist_tags"]))


def test_masked_sum_and_length_mask():
    values = torch.arange(12, dtype=torch.float32).reshape(2, 3, 2)
    lengths = torch.tensor([2, 0])
    assert length_mask(lengths, 3).tolist() == [[True, True, False], [False, False, False]]
    torch.testing.assert_close(masked_sum(values, lengths), torch.tensor([[2.0, 4.0], [0, 0]]))
    torch.testing.assert_close(masked_mean(values, lengths), torch.tensor([[1.0, 2.0], [0, 0]]))


def test_field_names_follow_the_stacked_vectors(tiny_schema):
    full = FeatureEmbedding(tiny_schema)
    names = [f.name for f in tiny_schema.sparse_fields]
    assert full.field_names == (
        *names,
        *(f.name for f in tiny_schema.dense_fields),
        *(f.name for f in tiny_schema.sequence_fields),
    )
    assert len(full.field_names) == len(full.output_dims) == full.num_fields
    bare = FeatureEmbedding(tiny_schema, include_dense=False, pool_sequences=False)
    assert bare.field_names == tuple(names)


def test_stacked_input_is_embeddings_then_raw_numerics(tiny_schema, tiny_batch):
    torch.manual_seed(0)
    block = StackedInput(tiny_schema, dim=4)
    torch.manual_seed(0)
    plain = FeatureEmbedding(tiny_schema, dim=4, include_dense=False)
    assert block.state_dict().keys() == plain.state_dict().keys()  # a FeatureEmbedding
    x0 = block.stack(tiny_batch)
    expected = torch.cat([plain.flat(tiny_batch), tiny_batch.dense], dim=1)
    torch.testing.assert_close(x0, expected)
    assert x0.shape[1] == block.stacked_dim == plain.output_dim + len(tiny_schema.dense_fields)
    moved = block.flat(tiny_batch) + 1.0
    torch.testing.assert_close(block.stack(tiny_batch, moved)[:, : plain.output_dim], moved)
