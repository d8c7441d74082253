"""Base, DIN and DIEN: padding invariance, DIEN's auxiliary loss, and a planted-interest task."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from recforge.features import Batch, CategoricalField, Schema, SequenceField, random_batch
from recforge.metrics import auc
from recforge.models import registry
from recforge.models.base import RecModel

N_CATS, PER_CAT, MAX_LEN = 40, 4, 16


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # tiny batches: intra-op threads only add contention on a shared machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _schema(with_negatives: bool = False) -> Schema:
    fields = [
        CategoricalField("user_id", group="user", vocab_size=30),
        CategoricalField("item_id", group="item", vocab_size=N_CATS * PER_CAT + 1),
        CategoricalField("item_category", group="item", vocab_size=N_CATS + 1),
        SequenceField("hist_item_ids", max_len=MAX_LEN, share_embedding_with="item_id"),
        SequenceField("hist_cats", max_len=MAX_LEN, share_embedding_with="item_category"),
    ]
    if with_negatives:
        fields += [
            SequenceField("neg_item_ids", max_len=MAX_LEN, share_embedding_with="item_id"),
            SequenceField("neg_cats", max_len=MAX_LEN, share_embedding_with="item_category"),
        ]
    return Schema(fields=tuple(fields), user_key="user_id", item_key="item_id", embedding_dim=8)


def _planted(n: int, seed: int) -> tuple[Batch, torch.Tensor]:
    """Histories of distinct categories; a click iff the candidate's category is in the history.

    A positive candidate shares the category of exactly one behaviour (the planted one); a
    negative candidate's category is absent from the history. Returns the batch and the
    planted position (-1 for negatives).
    """
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(4, MAX_LEN + 1, (n,), generator=g)
    cats = torch.argsort(torch.rand(n, N_CATS, generator=g), dim=1) + 1  # distinct categories
    hist_cats = cats[:, :MAX_LEN]
    hist_items = hist_cats + N_CATS * torch.randint(0, PER_CAT, (n, MAX_LEN), generator=g)
    mask = torch.arange(MAX_LEN)[None, :] < lengths[:, None]
    hist_cats, hist_items = hist_cats * mask, hist_items * mask
    label = (torch.rand(n, generator=g) < 0.5).float()
    planted = (torch.rand(n, generator=g) * lengths).long()
    cand_cat = torch.where(
        label.bool(),
        hist_cats[torch.arange(n), planted],
        cats[:, MAX_LEN],  # unseen category
    )
    cand_item = cand_cat + N_CATS * torch.randint(0, PER_CAT, (n,), generator=g)
    user = torch.randint(1, 30, (n,), generator=g)
    batch = Batch(
        sparse=torch.stack([user, cand_item, cand_cat], dim=1),
        dense=torch.zeros(n, 0),
        sequences={"hist_item_ids": hist_items, "hist_cats": hist_cats},
        lengths={"hist_item_ids": lengths, "hist_cats": lengths},
        label=label,
    )
    return batch, torch.where(label.bool(), planted, -1)


def _train(model: RecModel, batch: Batch, epochs: int, lr: float = 1e-2) -> RecModel:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = len(batch)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(n).split(128):
            sub = batch.select(idx)
            logits, extra = model.forward_train(sub)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, sub.label)
            if extra is not None:
                loss = loss + extra
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def _pad_more(batch: Batch, extra: int) -> Batch:
    """The same rows with ``extra`` more padded positions holding garbage ids."""
    seqs = {}
    for name, ids in batch.sequences.items():
        garbage = torch.randint(1, 5, (ids.shape[0], extra))
        longer = torch.cat([ids, garbage], dim=1)
        mask = torch.arange(longer.shape[1])[None, :] < batch.lengths[name][:, None]
        seqs[name] = longer * mask + torch.randint(1, 5, longer.shape) * ~mask
    return dataclasses.replace(batch, sequences=seqs)


@pytest.mark.parametrize("name", ["base_seq", "din", "dien"])
def test_padding_never_changes_logits(name: str) -> None:
    torch.manual_seed(0)
    schema = _schema()
    model = registry.build(name, schema, {})
    batch, _ = _planted(64, seed=1)
    _train(model, batch, epochs=1)  # moves Dice running statistics away from their init
    with torch.no_grad():
        before = model(batch)
        after = model(_pad_more(batch, 7))
    torch.testing.assert_close(before, after)


def test_din_train_mode_padding_invariance() -> None:
    torch.manual_seed(0)
    model = registry.build("din", _schema(), {}).train()
    batch, _ = _planted(64, seed=2)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    before = model(batch)
    model.load_state_dict(state)
    torch.testing.assert_close(before, model(_pad_more(batch, 5)))


def test_din_attention_is_zero_on_padding() -> None:
    model = registry.build("din", _schema(), {"softmax": True}).eval()
    batch, _ = _planted(32, seed=3)
    weights = model.attention_weights(batch)
    mask = torch.arange(weights.shape[1])[None, :] < batch.lengths["hist_item_ids"][:, None]
    assert torch.all(weights[~mask] == 0)
    torch.testing.assert_close(weights.sum(1), torch.ones(32))


def test_dien_aux_loss_zero_weighted_when_alpha_is_zero() -> None:
    torch.manual_seed(0)
    schema = _schema()
    batch, _ = _planted(32, seed=4)
    off = registry.build("dien", schema, {"alpha": 0.0})
    logits, extra = off.forward_train(batch)
    assert extra is None or float(extra) == 0.0
    on = registry.build("dien", schema, {"alpha": 0.5})
    on.load_state_dict(off.state_dict())
    logits_on, extra_on = on.forward_train(batch)
    assert extra_on is not None and float(extra_on.detach()) > 0
    torch.testing.assert_close(logits, logits_on)  # the aux loss never changes the prediction
    torch.testing.assert_close(
        extra_on, 0.5 * on.auxiliary_loss(batch, on._interests(batch)), atol=0.2, rtol=0.5
    )


@pytest.mark.parametrize("negatives", ["uniform", "in_batch"])
def test_dien_auxiliary_scores_give_the_auxiliary_loss(negatives: str) -> None:
    """``auxiliary_scores`` are Eq. 5's logits: with the same negative draw, their masked
    mean binary cross-entropy is ``auxiliary_loss``; the positives are ``<h_t, e_{t+1}>``."""
    schema = _schema()
    batch, _ = _planted(24, seed=6)
    model = registry.build("dien", schema, {"negatives": negatives}).eval()
    parts = model._interests(batch)
    torch.manual_seed(1)
    s_pos, s_neg, mask = model.auxiliary_scores(batch, parts)
    torch.manual_seed(1)
    loss = model.auxiliary_loss(batch, parts)
    per_pair = torch.nn.functional.softplus(-s_pos) + torch.nn.functional.softplus(s_neg)
    torch.testing.assert_close(loss, (per_pair * mask).sum() / mask.sum())
    torch.testing.assert_close(s_pos, (parts["states"][:, :-1] * parts["keys"][:, 1:]).sum(-1))
    lengths = batch.lengths["hist_item_ids"]
    expected = torch.arange(1, parts["keys"].shape[1])[None, :] < lengths[:, None]
    assert torch.equal(mask.bool(), expected)


@pytest.mark.parametrize("pooling", ["sum", "mean"])
def test_dien_mlp_input_is_final_state_history_and_candidate_product(pooling: str) -> None:
    schema = _schema()
    batch, _ = _planted(16, seed=5)
    model = registry.build("dien", schema, {"pooling": pooling}).eval()
    parts = model._interests(batch)
    keys, query, lengths = model.embed_behaviours(batch)
    mask = (torch.arange(keys.shape[1])[None, :] < lengths[:, None]).unsqueeze(-1)
    history = (keys * mask).sum(1)
    if pooling == "mean":
        history = history / lengths.clamp(min=1).unsqueeze(-1)
    expected = torch.cat([parts["final"], history, query * history], dim=1)
    torch.testing.assert_close(parts["summary"], expected)
    plain = registry.build("dien", schema, {"pooling": pooling, "candidate_product": False})
    assert plain.mlp.net[0].in_features == model.mlp.net[0].in_features - keys.shape[-1]
    with pytest.raises(ValueError, match="pooling"):
        registry.build("dien", schema, {"pooling": "max"})


def test_dien_aux_loss_with_declared_negative_sequences() -> None:
    torch.manual_seed(0)
    schema = _schema(with_negatives=True)
    params = {"negative_behaviours": ["neg_item_ids", "neg_cats"], "alpha": 1.0}
    model = registry.build("dien", schema, params)
    assert model.behaviours == (("hist_item_ids", "item_id"), ("hist_cats", "item_category"))
    batch = random_batch(schema, 16, torch.Generator().manual_seed(0))
    for name in ("hist_cats", "neg_item_ids", "neg_cats"):
        batch.lengths[name] = batch.lengths["hist_item_ids"]
    # negatives equal to the positives make the loss exactly 2 * softplus-symmetric: s(x)+s(-x)
    twin = dataclasses.replace(
        batch,
        sequences={
            **batch.sequences,
            "neg_item_ids": batch.sequences["hist_item_ids"],
            "neg_cats": batch.sequences["hist_cats"],
        },
    )
    parts = model._interests(twin)
    loss = model.auxiliary_loss(twin, parts)
    h, pos = parts["states"][:, :-1], parts["keys"][:, 1:]
    s = (h * pos).sum(-1)
    steps = torch.arange(parts["keys"].shape[1] - 1)[None] + 1
    mask = (steps < twin.lengths["hist_item_ids"][:, None]).float()
    expected = ((torch.nn.functional.softplus(-s) + torch.nn.functional.softplus(s)) * mask).sum()
    torch.testing.assert_close(loss, expected / mask.sum().clamp(min=1))


@pytest.mark.parametrize("evolution", ["augru", "agru", "aigru", "augru_released"])
def test_dien_variants_give_finite_gradients(evolution: str) -> None:
    torch.manual_seed(0)
    model = registry.build("dien", _schema(), {"evolution": evolution, "negatives": "in_batch"})
    batch, _ = _planted(32, seed=5)
    logits, extra = model.forward_train(batch)
    (logits.sum() + extra).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_din_beats_base_and_attends_to_the_planted_behaviour() -> None:
    train, _ = _planted(3000, seed=10)
    test, planted = _planted(1000, seed=11)
    schema = _schema()
    torch.manual_seed(0)
    base = registry.build("base_seq", schema, {"hidden": [32]})
    _train(base, train, epochs=15, lr=2e-2)
    torch.manual_seed(0)
    # the paper's DIN: Dice, no softmax (weights may be negative: rank them by magnitude)
    din = registry.build("din", schema, {"hidden": [32], "attention_hidden": [16]})
    _train(din, train, epochs=15, lr=2e-2)
    with torch.no_grad():
        auc_base = auc(test.label.numpy(), base(test).numpy())
        auc_din = auc(test.label.numpy(), din(test).numpy())
        weights = din.attention_weights(test)
    assert auc_din > 0.95, auc_din
    assert auc_din > auc_base + 0.03, (auc_din, auc_base)
    pos = planted >= 0
    hit = (weights[pos].abs().argmax(dim=1) == planted[pos]).float().mean()
    assert hit > 0.9, float(hit)
    assert np.isfinite(auc_base)


def test_explain_din_and_dien_rows(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from recforge.explain import explain_batch

    batch, _ = _planted(8, seed=6)
    for name in ("din", "dien"):
        model = registry.build(name, _schema(), {}).eval()
        expl = explain_batch(model, batch, row=3, model_name=name)
        n = int(batch.lengths["hist_item_ids"][3])
        assert len(expl.labels) == len(expl.weights) == n
        expected = model.attention_weights(batch.select(torch.tensor([3])))[0, :n]
        np.testing.assert_allclose(expl.weights, expected.detach().numpy(), rtol=1e-5)
        assert expl.labels[0] == f"#{int(batch.sequences['hist_item_ids'][3, 0])} / " + (
            f"#{int(batch.sequences['hist_cats'][3, 0])}"
        )
        assert len(expl.table().splitlines()) == n + 2
        png = expl.save_heat_strip(tmp_path / f"{name}.png")
        assert png.read_bytes()[:4] == b"\x89PNG"


def test_explain_command_on_a_saved_bundle(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    import pyarrow as pa
    import pyarrow.parquet as pq

    from recforge.cli import main
    from recforge.data.encode.preprocess import Preprocessor
    from recforge.serve.bundle import save_bundle

    schema = dataclasses.replace(_schema(), embedding_dim=4)
    schema = Schema(
        fields=tuple(dataclasses.replace(f, vocab_size=0) for f in schema.fields),
        user_key="user_id",
        item_key="item_id",
    )
    table = pa.table(
        {
            "user_id": ["u1", "u2", "u3"],
            "item_id": ["i1", "i2", "i3"],
            "item_category": ["c1", "c2", "c1"],
            "hist_item_ids": [["i2", "i3"], ["i1"], ["i1", "i2", "i9"]],
            "hist_cats": [["c2", "c1"], ["c1"], ["c1", "c2", "c9"]],
            "label": [1, 0, 1],
        }
    )
    pre = Preprocessor(schema).fit(table)
    model = registry.build("din", pre.schema, {"hidden": [8]})
    bundle = save_bundle(tmp_path / "bundle", "din", model, pre)
    pq.write_table(table, tmp_path / "rows.parquet")
    png = tmp_path / "strip.png"
    code = main(
        ["explain", str(bundle), str(tmp_path / "rows.parquet"), "--row", "2", "--png", str(png)]
    )
    assert code == 0 and png.exists()
    out = capsys.readouterr().out
    assert "i9 / c9" in out and "i1 / c1" in out  # raw ids label the behaviours


@pytest.mark.parametrize("name", ["din", "dien"])
def test_embedding_init_std_redraws_only_the_tables(name: str) -> None:
    schema = _schema()
    torch.manual_seed(0)
    default = registry.build(name, schema, {})
    torch.manual_seed(0)
    small = registry.build(name, schema, {"embedding_init_std": 1e-4})
    for key, table in small.embedding.tables.items():
        assert float(table.weight.std()) == pytest.approx(1e-4, rel=0.2)
        assert float(default.embedding.tables[key].weight.std()) == pytest.approx(1e-2, rel=0.2)
    # None (the default) leaves the build exactly as before; the option touches nothing else
    torch.manual_seed(0)
    again = registry.build(name, schema, {"embedding_init_std": None})
    for (k, a), (_, b), (_, c) in zip(
        default.state_dict().items(),
        again.state_dict().items(),
        small.state_dict().items(),
        strict=True,
    ):
        assert torch.equal(a, b)
        if not k.startswith("embedding.tables."):
            assert torch.equal(a, c), k


@pytest.mark.parametrize("name", ["base_seq", "din", "dien"])
def test_glorot_linear_init_redraws_every_linear_layer(name: str) -> None:
    """``linear_init: glorot`` (Base's and DIN's default, as the released TF code): every
    Linear of the MLP and of the activation unit is U(-a, a) with a = sqrt(6 / (fan_in +
    fan_out)) and has zero bias; the embedding tables are untouched."""
    from recforge.config import ConfigError

    schema = _schema(with_negatives=name == "dien")
    torch.manual_seed(0)
    default = registry.build(name, schema, {"hidden": [64, 32], "linear_init": "torch"})
    torch.manual_seed(0)
    glorot = registry.build(name, schema, {"hidden": [64, 32], "linear_init": "glorot"})
    torch.manual_seed(0)
    shipped = registry.build(name, schema, {"hidden": [64, 32]})
    like = default if name == "dien" else glorot  # DIEN's default is torch's (chosen on Beauty)
    for a, b in zip(shipped.state_dict().values(), like.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    linears = [m for m in glorot.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) >= 3
    for m in linears:
        fan_out, fan_in = m.weight.shape
        bound = (6 / (fan_in + fan_out)) ** 0.5
        assert float(m.weight.abs().max()) <= bound
        assert m.bias is None or not m.bias.any()
        if m.weight.numel() >= 1000:  # uniform on [-a, a] has std a / sqrt(3)
            assert float(m.weight.std()) == pytest.approx(bound / 3**0.5, rel=0.1)
    first = default.mlp.net[0]
    assert float(first.weight.abs().max()) <= first.in_features**-0.5  # torch's default bound
    for key, table in glorot.embedding.tables.items():
        assert torch.equal(table.weight, default.embedding.tables[key].weight)
    with pytest.raises(ConfigError, match=r"linear_init: .he. is not one of \[.torch., .glorot.\]"):
        registry.build(name, schema, {"linear_init": "he"})
