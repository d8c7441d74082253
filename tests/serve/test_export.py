"""Exported TorchScript/ONNX graphs score like the eager models, for the whole registry.

Every registered model is either exported to both formats and compared with its eager forward
on batches whose size differs from the traced one (a frozen batch size fails), or named in
``NOT_EXPORTABLE`` and refused with that reason. ONNX parity over the whole registry uses the
fast TorchScript-based exporter; the torch.export-based one (the CLI default, ~15x slower to
run) is checked on a CTR model, an attention model and the recurrent DIEN.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pyarrow as pa
import pytest
import torch

from recforge.config import TrainConfig
from recforge.data.encode.preprocess import Preprocessor
from recforge.data.sources.synthetic import make_click_log
from recforge.features import Batch, CategoricalField, NumericField, Schema, random_batch
from recforge.layers.sequence import MODES, MaskedGRU
from recforge.models import registry
from recforge.models.base import ModelConfig, RecModel
from recforge.serve.bundle import load_bundle, save_bundle
from recforge.serve.export import (
    NOT_EXPORTABLE,
    TRACE_BATCH,
    ExportError,
    batch_inputs,
    export_bundle,
    export_model,
    input_specs,
    load_artefact,
    load_exported,
)
from recforge.train import Trainer, seed_everything

EXPORTABLE = [n for n in registry.names() if n not in NOT_EXPORTABLE]
CASES = [(n, "torchscript", "legacy") for n in EXPORTABLE] + [
    (n, "onnx", "legacy") for n in EXPORTABLE
]
CASES += [(n, "onnx", "dynamo") for n in ("deepfm", "din", "dien")]


def _short_histories(schema: Schema, batch_size: int) -> Batch:
    """Histories of at most 2 behaviours: eager sequence models cut to the longest one."""
    batch = random_batch(schema, batch_size, torch.Generator().manual_seed(11))
    for s in schema.sequence_fields:
        lengths = batch.lengths[s.name].clamp(max=2)
        lengths[0] = 2
        keep = torch.arange(s.max_len)[None, :] < lengths[:, None]
        batch.lengths[s.name] = lengths
        batch.sequences[s.name] = batch.sequences[s.name] * keep
    return batch


def test_every_ctr_and_sequence_model_is_exportable():
    assert set(NOT_EXPORTABLE) <= set(registry.names())
    for family in ("ctr", "sequence"):
        assert not set(registry.names(family)) & set(NOT_EXPORTABLE)
    assert {"lr", "fm", "mf", "gmf", "ncf_mlp", "neumf"} <= set(EXPORTABLE)


@pytest.mark.parametrize(("name", "fmt", "exporter"), CASES)
def test_exported_logits_match_eager(name, fmt, exporter, tiny_schema, tmp_path, randomise):
    seed_everything(0)
    model = randomise(registry.build(name, tiny_schema, {}), 0).eval()
    path = tmp_path / f"model.{fmt}"
    specs = export_model(
        model, tiny_schema, path, fmt, model_name=name, verify=False, onnx_exporter=exporter
    )
    run = load_artefact(path, fmt, [s.name for s in specs])
    batches = [
        random_batch(tiny_schema, 17, torch.Generator().manual_seed(5)),
        random_batch(tiny_schema, 1, torch.Generator().manual_seed(6)),
        _short_histories(tiny_schema, 6),
    ]
    for batch in batches:
        assert len(batch) != TRACE_BATCH
        with torch.no_grad():
            expected = model(batch).numpy()
        if len(batch) > 1:  # the comparison must depend on the inputs
            assert np.ptp(expected) > 1e-6, f"{name}: constant output"
        tensors = batch_inputs(batch, tiny_schema)
        inputs = {s.name: x.numpy() for s, x in zip(specs, tensors, strict=True)}
        out = run(inputs)
        assert out["logits"].shape == expected.shape == (len(batch),)
        diff = np.abs(out["logits"] - expected).max()
        assert diff < 1e-5, f"{name} {fmt}/{exporter}: max abs diff {diff:.3g}"
        np.testing.assert_allclose(out["scores"], 1 / (1 + np.exp(-expected)), atol=1e-6)


def _item_only_schema() -> Schema:
    return Schema(
        fields=(
            CategoricalField("item_id", group="item", vocab_size=20),
            NumericField("price", group="item"),
        ),
        item_key="item_id",
        embedding_dim=4,
    )


def _dense_only_schema() -> Schema:
    return Schema(fields=(NumericField("a"), NumericField("b")), embedding_dim=4)


@pytest.mark.parametrize(
    ("name", "params", "schema_fn"),
    [
        ("wide_deep", {"crosses": ["user_segment&item_category", "device&hour"]}, None),
        ("dien", {"evolution": "aigru", "gru_hidden": 8}, None),
        ("dien", {"evolution": "agru"}, None),
        ("din", {"softmax": True}, None),
        ("drn", {}, _item_only_schema),  # no state field: the value stream reads a constant
        ("dnn", {}, _dense_only_schema),  # no sparse input at all
    ],
)
def test_other_configurations_export_with_parity(name, params, schema_fn, tiny_schema, tmp_path):
    schema = schema_fn() if schema_fn else tiny_schema
    seed_everything(0)
    model = registry.build(name, schema, params).eval()
    for fmt in ("torchscript", "onnx"):
        path = tmp_path / f"m.{fmt}"
        specs = export_model(model, schema, path, fmt, verify=False, onnx_exporter="legacy")
        run = load_artefact(path, fmt, [s.name for s in specs])
        batch = random_batch(schema, 9, torch.Generator().manual_seed(2))
        with torch.no_grad():
            expected = model(batch).numpy()
        tensors = batch_inputs(batch, schema)
        got = run({s.name: x.numpy() for s, x in zip(specs, tensors, strict=True)})["logits"]
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() < 1e-5, (name, params, fmt)


def test_regression_scores_are_the_raw_predictions(tiny_schema, tmp_path):
    seed_everything(0)
    model = registry.build("fm", tiny_schema, {}).eval()
    specs = export_model(model, tiny_schema, tmp_path / "m.pt", "torchscript", task="regression")
    run = load_artefact(tmp_path / "m.pt", "torchscript", [s.name for s in specs])
    batch = random_batch(tiny_schema, 5, torch.Generator().manual_seed(4))
    out = run(
        {s.name: x.numpy() for s, x in zip(specs, batch_inputs(batch, tiny_schema), strict=True)}
    )
    with torch.no_grad():
        np.testing.assert_allclose(out["scores"], model(batch).numpy(), atol=1e-6)
    np.testing.assert_array_equal(out["scores"], out["logits"])


def test_unexportable_models_are_refused_with_the_reason(tiny_schema, tmp_path, monkeypatch):
    # every registered model exports today; the refusal path still has to hold for a listed one
    assert NOT_EXPORTABLE == {}
    monkeypatch.setitem(NOT_EXPORTABLE, "fm", "a stated reason")
    model = registry.build("fm", tiny_schema, {})
    for fmt in ("torchscript", "onnx"):
        with pytest.raises(ExportError, match="cannot be exported") as info:
            export_model(model, tiny_schema, tmp_path / "m", fmt, model_name="fm")
        assert "a stated reason" in str(info.value)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("item_based", [True, False])
def test_fitted_autorec_exports_with_its_rating_matrix(item_based, tiny_schema, tmp_path):
    seed_everything(0)
    model = registry.build("autorec", tiny_schema, {"hidden": 8, "item_based": item_based})
    rng = np.random.default_rng(0)
    n_users = tiny_schema.field("user_id").vocab_size
    n_items = tiny_schema.field("item_id").vocab_size
    # ratings for users 1..19 and items 1..29 only: the rest are unknown rows/columns
    users = rng.integers(1, 20, 200)
    items = rng.integers(1, 30, 200)
    model.set_ratings(users, items, rng.integers(1, 6, 200).astype(np.float32))
    model.eval()
    batch = random_batch(tiny_schema, 64, torch.Generator().manual_seed(8))
    batch.sparse[:4, tiny_schema.sparse_index("user_id")] = torch.tensor([0, 25, 1, 2])
    batch.sparse[:4, tiny_schema.sparse_index("item_id")] = torch.tensor([3, 3, 0, 35])
    with torch.no_grad():
        expected = model(batch).numpy()
    assert n_users > 20 and n_items > 30
    assert len(np.unique(expected[:4])) == 1  # the four unknown pairs get the fallback
    np.testing.assert_allclose(expected[:4], float(model.mean_rating), rtol=1e-6)
    for fmt in ("torchscript", "onnx"):
        path = tmp_path / f"autorec.{fmt}"
        specs = export_model(model, tiny_schema, path, fmt, task="regression",
                             model_name="autorec", onnx_exporter="legacy")  # fmt: skip
        run = load_artefact(path, fmt, [s.name for s in specs])
        tensors = batch_inputs(batch, tiny_schema)
        got = run({s.name: x.numpy() for s, x in zip(specs, tensors, strict=True)})
        assert np.abs(got["logits"] - expected).max() < 1e-5, fmt
        np.testing.assert_array_equal(got["scores"], got["logits"])


class _FrozenBatchSize(RecModel):
    """Reads the batch size on the host: a trace freezes it (the export check must notice)."""

    config_class = ModelConfig

    def forward(self, batch: Batch) -> torch.Tensor:
        rows = torch.arange(len(batch), dtype=torch.float32)
        return batch.dense[:, 0] + rows.mean()


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_check_refuses_a_graph_that_froze_the_batch_size(fmt, tiny_schema, tmp_path):
    model = _FrozenBatchSize(tiny_schema, ModelConfig())
    with pytest.raises(ExportError, match="differ|fails"):
        export_model(model, tiny_schema, tmp_path / "m", fmt, onnx_exporter="legacy")


class _GRUCall(torch.nn.Module):
    def __init__(self, gru: MaskedGRU) -> None:
        super().__init__()
        self.gru = gru

    def forward(self, x, lengths, att):
        return self.gru(x, lengths, attention=att if self.gru.mode != "gru" else None)


@pytest.mark.parametrize("mode", MODES)
def test_traced_gru_matches_the_active_prefix_loop(mode):
    """The masked graph path of every GRU mode equals the eager loop, for any batch/lengths."""
    torch.manual_seed(0)
    run = _GRUCall(MaskedGRU(5, 4, mode)).eval()

    def inputs(b):
        g = torch.Generator().manual_seed(b)
        lengths = torch.randint(0, 7, (b,), generator=g)
        return torch.randn(b, 6, 5, generator=g), lengths, torch.rand(b, 6, generator=g)

    with torch.no_grad():
        traced = torch.jit.trace(run, inputs(3), check_trace=False)
        for b in (1, 9):
            x, lengths, att = inputs(b)
            want_out, want_h = run(x, lengths, att)
            got_out, got_h = traced(x, lengths, att)
            torch.testing.assert_close(got_out, want_out, atol=1e-6, rtol=0)
            torch.testing.assert_close(got_h, want_h, atol=1e-6, rtol=0)


def test_input_specs_follow_the_batch_layout(tiny_schema):
    specs = input_specs(tiny_schema)
    assert [s.name for s in specs] == [
        "sparse",
        "dense",
        "hist_item_ids_ids",
        "hist_item_ids_lengths",
        "hist_cats_ids",
        "hist_cats_lengths",
    ]
    assert specs[0].shape == ("batch", len(tiny_schema.sparse_fields))
    assert specs[2].shape == ("batch", 6) and specs[2].dtype == "int64"


# ---- bundles: raw records through the saved preprocessor and the artefact -------------------
@pytest.fixture(scope="module")
def din_bundle(tmp_path_factory):
    """A DIN trained for one epoch on a tiny synthetic log (sequences go through the
    preprocessor), saved as a bundle; and raw records to score."""
    table, schema = make_click_log(rows=1200, seed=3, n_users=80, n_items=150, max_history=8)
    train, test = table.slice(0, 1000), table.slice(1000)
    pre = Preprocessor(schema).fit(train)
    seed_everything(0)
    model = registry.build("din", pre.schema, {"hidden": [16], "attention_hidden": [8]})
    Trainer(model, TrainConfig(epochs=1, batch_size=256, progress=False)).fit(pre.transform(train))
    path = save_bundle(tmp_path_factory.mktemp("b") / "din", "din", model, pre)
    records = test.drop_columns([schema.label]).to_pylist()
    records[0]["item_id"] = "never-seen-item"  # unknown categories go to OOV
    records[1]["hist_item_ids"] = records[1]["hist_cats"] = []  # an empty (aligned) history
    return path, records


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_exported_bundle_scores_raw_records_like_the_bundle(din_bundle, fmt, tmp_path):
    path, records = din_bundle
    out = export_bundle(path, tmp_path / "exported", fmt, onnx_exporter="legacy")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "manifest.json",
            "schema.json",
            "preprocessor",
            f"model.{'pt' if fmt == 'torchscript' else 'onnx'}",
        ]
    )
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["artefact_format"] == fmt and manifest["model"] == "din"
    assert manifest["source_meta"]["model"] == "din" and manifest["recforge_version"]
    assert [o["name"] for o in manifest["outputs"]] == ["logits", "scores"]
    assert Schema.from_json((out / "schema.json").read_text()).fields

    expected = load_bundle(path).predict_records(records)
    exported = load_exported(out)
    got = exported.predict_records(records)
    assert got.shape == expected.shape == (len(records),)
    assert np.abs(got - expected).max() < 1e-5
    # chunked scoring gives the same numbers
    np.testing.assert_allclose(
        exported.predict_table(pa.Table.from_pylist(records), batch_size=7),
        got,
        atol=1e-6,
    )


def test_cli_export_writes_the_default_folder(din_bundle, capsys):
    from recforge.commands.export import register

    path, records = din_bundle
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["export", str(path), "--format", "torchscript"])
    assert args.handler(args) == 0
    out = path.with_name(f"{path.name}-torchscript")
    assert f"exported din (torchscript) to {out}" in capsys.readouterr().out
    expected = load_bundle(path).predict_records(records[:20])
    np.testing.assert_allclose(
        load_exported(out).predict_records(records[:20]), expected, atol=1e-5
    )


def test_loading_a_folder_that_is_not_an_export_fails(tmp_path):
    with pytest.raises(ExportError, match="not a recforge export"):
        load_exported(tmp_path)
