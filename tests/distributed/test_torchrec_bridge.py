"""The recforge <-> TorchRec boundary, checked in pure torch (TorchRec is not needed)."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F

from recforge.distributed.torchrec_bridge import (
    TorchRecEmbedding,
    batch_to_kjt_parts,
    embedding_configs,
    fuse_tables,
    load_feature_embedding,
    split_feature_embedding,
    split_fused,
    to_torchrec_configs,
)
from recforge.features import CategoricalField, NumericField, Schema, SequenceField, random_batch
from recforge.layers.embedding import FeatureEmbedding, LinearPart, masked_mean


def mixed_schema() -> Schema:
    """Own-vocabulary and shared sequences, a bucketed numeric and a field of another dim."""
    return Schema(
        fields=(
            CategoricalField("user_id", group="user", vocab_size=23),
            CategoricalField("item_id", group="item", vocab_size=31),
            CategoricalField("brand", group="item", vocab_size=6, embedding_dim=4),
            NumericField("price", group="item"),
            NumericField("hour", buckets=5),
            SequenceField("hist_items", max_len=7, share_embedding_with="item_id"),
            SequenceField("hist_queries", max_len=5, vocab_size=11),
            SequenceField("hist_brands", max_len=3, share_embedding_with="brand"),
        ),
        embedding_dim=8,
    )


def test_configs_cover_every_field_with_its_rows_and_dim() -> None:
    schema = mixed_schema()
    specs = embedding_configs(schema)
    by_name = {s.name: s for s in specs}
    assert [s.name for s in specs] == ["user_id", "item_id", "brand", "hour", "hist_queries"]
    assert {n: s.num_embeddings for n, s in by_name.items()} == {
        "user_id": 23,
        "item_id": 31,
        "brand": 6,
        "hour": 6,  # 5 buckets + the reserved row 0
        "hist_queries": 11,
    }
    assert {n: s.embedding_dim for n, s in by_name.items()} == {
        "user_id": 8,
        "item_id": 8,
        "brand": 4,
        "hour": 8,
        "hist_queries": 8,
    }
    assert by_name["item_id"].feature_names == ("item_id", "hist_items")
    assert by_name["brand"].feature_names == ("brand", "hist_brands")
    features = [n for s in specs for n in s.feature_names]
    expected = [f.name for f in schema.sparse_fields] + [s.name for s in schema.sequence_fields]
    assert sorted(features) == sorted(expected)  # every id feature, exactly once
    # a dimension override applies to every table
    assert {s.embedding_dim for s in embedding_configs(schema, dim=16)} == {16}


def test_configs_need_a_fitted_schema() -> None:
    schema = Schema(fields=(CategoricalField("a"),))
    with pytest.raises(ValueError, match="fitted"):
        embedding_configs(schema)


def brute_force_kjt(batch, schema, padded):  # noqa: ANN001, ANN202
    keys, values, lengths = [], [], []
    B = len(batch)
    for i, f in enumerate(schema.sparse_fields):
        keys.append(f.name)
        for b in range(B):
            values.append(int(batch.sparse[b, i]))
            lengths.append(1)
    for s in schema.sequence_fields:
        keys.append(s.name)
        seq = batch.sequences[s.name]
        for b in range(B):
            n = seq.shape[1] if padded else int(batch.lengths[s.name][b])
            values.extend(int(seq[b, p]) for p in range(n))
            lengths.append(n)
    return tuple(keys), values, lengths


@pytest.mark.parametrize("padded", [False, True])
def test_batch_to_kjt_parts_matches_brute_force(padded: bool) -> None:
    schema = mixed_schema()
    batch = random_batch(schema, 13, torch.Generator().manual_seed(3))
    batch.lengths["hist_items"][0] = 0  # an empty history
    batch.sequences["hist_items"][0] = 0
    parts = batch_to_kjt_parts(batch, schema, padded_sequences=padded)
    keys, values, lengths = brute_force_kjt(batch, schema, padded)
    assert parts.keys == keys
    assert parts.values.dtype == torch.int64 and parts.lengths.dtype == torch.int32
    assert parts.values.tolist() == values
    assert parts.lengths.tolist() == lengths


def test_split_and_fuse_round_trip_exactly() -> None:
    schema = mixed_schema()
    torch.manual_seed(0)
    trained = FeatureEmbedding(schema)
    specs = embedding_configs(schema)
    tables = split_feature_embedding(trained, specs)
    assert {k: tuple(v.shape) for k, v in tables.items()} == {
        s.name: (s.num_embeddings, s.embedding_dim) for s in specs
    }
    torch.manual_seed(1)
    fresh = FeatureEmbedding(schema)
    assert not torch.equal(fresh.tables["8"].weight, trained.tables["8"].weight)
    load_feature_embedding(fresh, tables, specs)
    for key in trained.tables:
        assert torch.equal(fresh.tables[key].weight, trained.tables[key].weight)
    # the split tables are copies: changing them leaves the model alone
    tables["item_id"].add_(1.0)
    assert not torch.equal(tables["item_id"], trained.table_of("item_id").field_rows(1))


def test_split_fused_and_fuse_tables_on_a_linear_part() -> None:
    schema = mixed_schema()
    linear = LinearPart(schema)
    fused = linear.weights
    with torch.no_grad():
        fused.weight.copy_(torch.randn_like(fused.weight))
    parts = split_fused(fused)
    assert [p.shape[0] for p in parts] == [f.vocab_size for f in schema.sparse_fields]
    original = fused.weight.detach().clone()
    with torch.no_grad():
        fused.weight.zero_()
    fuse_tables(parts, fused)
    assert torch.equal(fused.weight, original)
    with pytest.raises(ValueError, match="shape"):
        fuse_tables([p[:-1] for p in parts], fused)


def _kjt_mean_bags(parts, tables, B):  # noqa: ANN001, ANN202
    """What an EmbeddingBagCollection with mean pooling returns: feature -> (B, D)."""
    lengths = parts.lengths.view(len(parts.keys), B).long()
    starts = torch.cat([torch.zeros(1, dtype=torch.long), lengths.flatten().cumsum(0)])
    pooled = {}
    for k, name in enumerate(parts.keys):
        vals = parts.values[starts[k * B] : starts[(k + 1) * B]]
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths[k].cumsum(0)[:-1]])
        pooled[name] = F.embedding_bag(vals, tables[name], offsets, mode="mean")
    return pooled


def test_split_tables_fed_by_the_kjt_reproduce_feature_embedding_lookups() -> None:
    """Per-field tables + KJT inputs, pooled as an EmbeddingBagCollection would (mean bags),
    equal FeatureEmbedding's lookups: the contract TorchRecEmbedding relies on."""
    schema = mixed_schema()
    torch.manual_seed(0)
    emb = FeatureEmbedding(schema)
    specs = embedding_configs(schema)
    tables = split_feature_embedding(emb, specs)
    table_of = {n: tables[s.name] for s in specs for n in s.feature_names}
    batch = random_batch(schema, 17, torch.Generator().manual_seed(5))
    batch.lengths["hist_queries"][2] = 0  # an empty history pools to zeros
    batch.sequences["hist_queries"][2] = 0
    pooled = _kjt_mean_bags(batch_to_kjt_parts(batch, schema), table_of, len(batch))

    for i, f in enumerate(schema.sparse_fields):
        assert torch.equal(pooled[f.name], emb.field(batch, f.name))
        assert torch.equal(table_of[f.name][batch.sparse[:, i]], emb.field(batch, f.name))
    for s in schema.sequence_fields:
        unpooled = table_of[s.name][batch.sequences[s.name]]  # padded form, (B, L, D)
        assert torch.equal(unpooled, emb.sequence(batch, s.name))
        want = masked_mean(emb.sequence(batch, s.name), batch.lengths[s.name])
        torch.testing.assert_close(pooled[s.name], want)
    assert torch.equal(pooled["hist_queries"][2], torch.zeros(8))


def test_split_tables_rebuild_the_whole_flat_output(tiny_schema: Schema) -> None:
    """Sparse fields, dense x_j * v_j and pooled sequences in FeatureEmbedding.flat's order."""
    schema = tiny_schema
    torch.manual_seed(0)
    emb = FeatureEmbedding(schema)
    specs = embedding_configs(schema)
    tables = split_feature_embedding(emb, specs)
    table_of = {n: tables[s.name] for s in specs for n in s.feature_names}
    batch = random_batch(schema, 19, torch.Generator().manual_seed(7))
    pooled = _kjt_mean_bags(batch_to_kjt_parts(batch, schema), table_of, len(batch))
    (dense_w,) = emb.dense_weight.values()
    blocks = (
        [pooled[f.name] for f in schema.sparse_fields]
        + [batch.dense[:, j, None] * dense_w[j] for j in range(len(schema.dense_fields))]
        + [pooled[s.name] for s in schema.sequence_fields]
    )
    torch.testing.assert_close(torch.cat(blocks, dim=1), emb.flat(batch))


def test_torchrec_parts_explain_how_to_install_when_missing(monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setitem(sys.modules, "torchrec", None)  # import torchrec -> ImportError
    schema = mixed_schema()
    with pytest.raises(ImportError, match=r"recforge\[torchrec\]"):
        TorchRecEmbedding(schema)
    with pytest.raises(ImportError, match=r"recforge\[torchrec\]"):
        to_torchrec_configs(embedding_configs(schema))
