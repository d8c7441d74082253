"""DNN, DeepFM, NFM, AFM and FNN: shapes, gradients, faithfulness checks and learning."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from recforge.features import Batch, CategoricalField, NumericField, Schema, random_batch
from recforge.metrics import auc
from recforge.models.afm import AFM, AFMConfig
from recforge.models.base import ModelConfig
from recforge.models.deepfm import DeepFM, DeepFMConfig
from recforge.models.dnn import DNN, DNNConfig
from recforge.models.fm import FM, FMConfig
from recforge.models.fnn import FNN, FNNConfig
from recforge.models.lr import LogisticRegression
from recforge.models.nfm import NFM, NFMConfig

SMALL = (32, 16)


def _schema(dense: bool = True) -> Schema:
    fields: list = [
        CategoricalField("user", group="user", vocab_size=11),
        CategoricalField("item", group="item", vocab_size=13),
        CategoricalField("hour", vocab_size=5),
        CategoricalField("device", vocab_size=5),
    ]
    if dense:
        fields += [NumericField("price"), NumericField("age", group="user")]
    return Schema(fields=tuple(fields), embedding_dim=8)


MODELS = {
    "dnn": lambda s: DNN(s, DNNConfig(hidden=SMALL, dropout=0.1, batch_norm=True)),
    "deepfm": lambda s: DeepFM(s, DeepFMConfig(hidden=SMALL, dropout=0.1)),
    "nfm": lambda s: NFM(s, NFMConfig(hidden=(16,))),
    "nfm0": lambda s: NFM(s, NFMConfig(hidden=())),
    "afm": lambda s: AFM(s, AFMConfig(attention_dim=6, dropout=0.1)),
    "fnn": lambda s: FNN(s, FNNConfig(hidden=SMALL)),
}


def _batch(schema: Schema, B: int = 64, seed: int = 0) -> Batch:
    return random_batch(schema, B, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_logits_shape_and_finite(name: str) -> None:
    torch.manual_seed(0)
    schema = _schema()
    model = MODELS[name](schema)
    model.eval()
    out = model(_batch(schema, 17))
    assert out.shape == (17,)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_parameter_gets_a_gradient(name: str) -> None:
    torch.manual_seed(0)
    schema = _schema()
    model = MODELS[name](schema)
    batch = _batch(schema)
    if name == "afm":  # p = 1 and h start symmetric; nudge so every path carries signal
        nn.init.normal_(model.p.weight)
    nn.functional.binary_cross_entropy_with_logits(model(batch), batch.label).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_few_steps_lower_the_loss(name: str) -> None:
    torch.manual_seed(0)
    schema = _schema()
    model = MODELS[name](schema)
    batch = _batch(schema, 128)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = nn.BCEWithLogitsLoss()
    model.eval()  # compare without dropout noise
    with torch.no_grad():
        before = loss_fn(model(batch), batch.label).item()
    model.train()
    for _ in range(30):
        opt.zero_grad()
        loss_fn(model(batch), batch.label).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        after = loss_fn(model(batch), batch.label).item()
    assert after < before - 0.05, (before, after)


def test_deepfm_fm_part_equals_fm_baseline() -> None:
    torch.manual_seed(0)
    schema = _schema()
    fm = FM(schema, FMConfig())
    with torch.no_grad():  # non-trivial first-order weights and bias
        for p in fm.linear.parameters():
            p.normal_()
    deepfm = DeepFM(schema, DeepFMConfig(hidden=SMALL))
    deepfm.embedding.load_state_dict(fm.embedding.state_dict())
    deepfm.linear.load_state_dict(fm.linear.state_dict())
    deepfm.eval()
    batch = _batch(schema)
    torch.testing.assert_close(deepfm.fm_logit(batch), fm(batch))
    # and the logit is FM + DNN over the very same embedding vectors
    y_dnn = deepfm.dnn(deepfm.embedding(batch).flatten(1)).squeeze(-1)
    torch.testing.assert_close(deepfm(batch), fm(batch) + y_dnn)
    assert deepfm.dnn.net[0].in_features == 6 * 8  # one embedding, shared


def _trained_looking_fm(schema: Schema) -> FM:
    fm = FM(schema, FMConfig())
    with torch.no_grad():
        for p in fm.parameters():
            p.normal_()
    return fm


def test_fnn_from_fm_copies_vectors_and_first_order_weights() -> None:
    torch.manual_seed(0)
    schema = _schema()
    fm = _trained_looking_fm(schema)
    fnn = FNN.from_fm(fm, FNNConfig(hidden=SMALL))
    for key, value in fm.embedding.state_dict().items():
        torch.testing.assert_close(fnn.embedding.state_dict()[key], value)
    for key, value in fm.linear.state_dict().items():
        torch.testing.assert_close(fnn.linear.state_dict()[key], value)
    # z = (w0, w_i x_i, v_i x_i): FM's first-order term is the sum of z's first-order part
    batch = _batch(schema)
    z = fnn.dense_input(batch)
    n_first = 1 + 4 + 2
    torch.testing.assert_close(z[:, :n_first].sum(1), fm.linear(batch))
    torch.testing.assert_close(z[:, n_first:], fm.embedding.flat(batch))
    # an FNN with a random init differs
    other = FNN(schema, FNNConfig(hidden=SMALL))
    assert not torch.allclose(other.embedding.flat(batch), fm.embedding.flat(batch))


def test_fnn_from_fm_rejects_other_dimension() -> None:
    schema = _schema()
    fm = FM(schema, FMConfig(embedding_dim=4))
    fnn = FNN(schema, FNNConfig(hidden=SMALL, embedding_dim=8))
    with pytest.raises(ValueError):
        fnn.init_from_fm(fm)
    assert FNN.from_fm(fm).embedding.dims == (4,)


def test_afm_attention_weights_and_pair_names() -> None:
    torch.manual_seed(0)
    schema = _schema()
    model = AFM(schema, AFMConfig())
    batch = _batch(schema, 9)
    a = model.attention_weights(batch)
    assert a.shape == (9, 15)
    torch.testing.assert_close(a.sum(1), torch.ones(9))
    names = model.pair_names
    assert len(names) == 15 and names[0] == ("user", "item") and names[-1] == ("price", "age")


def test_afm_with_uniform_attention_and_unit_p_is_fm() -> None:
    """With h = 0 (uniform a_ij = 1/P) and p = P, AFM's pairwise term is FM's."""
    torch.manual_seed(0)
    schema = _schema()
    afm = AFM(schema, AFMConfig())
    fm = _trained_looking_fm(schema)
    afm.embedding.load_state_dict(fm.embedding.state_dict())
    afm.linear.load_state_dict(fm.linear.state_dict())
    with torch.no_grad():
        afm.attention.h.weight.zero_()
        afm.p.weight.fill_(15.0)
    batch = _batch(schema)
    torch.testing.assert_close(afm(batch), fm(batch), rtol=1e-4, atol=1e-4)


def test_nfm_zero_hidden_with_identity_head_is_bi_interaction() -> None:
    torch.manual_seed(0)
    schema = _schema()
    nfm = NFM(schema, NFMConfig(hidden=(), batch_norm=False, bi_dropout=0.0))
    fm = _trained_looking_fm(schema)
    nfm.embedding.load_state_dict(fm.embedding.state_dict())
    nfm.linear.load_state_dict(fm.linear.state_dict())
    with torch.no_grad():  # h = 1, no bias: f(x) = sum_k f_BI(x)_k, i.e. NFM-0 = FM
        last = nfm.mlp.net[-1]
        last.weight.fill_(1.0)
        last.bias.zero_()
    batch = _batch(schema)
    torch.testing.assert_close(nfm(batch), fm(batch), rtol=1e-4, atol=1e-4)


# ---- learning: every model beats LR on planted pairwise interactions -------------------------


def _planted_pairs(n: int, seed: int) -> tuple[Schema, Batch]:
    """Labels driven only by two pairwise interactions (user x item, hour x device).

    Each id has a sign (+1 even, -1 odd) and ids are drawn from ``1..vocab-1`` (an even count), so
    every single field is independent of the label: only pairs carry signal.
    """
    g = torch.Generator().manual_seed(seed)
    schema = _schema(dense=False)
    sparse = torch.stack(
        [torch.randint(1, f.vocab_size, (n,), generator=g) for f in schema.sparse_fields], dim=1
    )
    s = (1 - 2 * (sparse % 2)).float()  # (n, 4) signs
    logit = 2.5 * s[:, 0] * s[:, 1] + 1.5 * s[:, 2] * s[:, 3]
    label = (torch.rand(n, generator=g) < torch.sigmoid(logit)).float()
    return schema, Batch(sparse=sparse, dense=torch.zeros(n, 0), label=label)


def _fit_and_auc(model: nn.Module, train: Batch, test: Batch, epochs: int = 8) -> float:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = nn.BCEWithLogitsLoss()
    n = len(train)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(n).split(256):
            sub = train.select(idx)
            opt.zero_grad()
            loss_fn(model(sub), sub.label).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        scores = model(test).numpy()
    return auc(test.label.numpy(), scores)


LEARNERS = {
    "dnn": lambda s: DNN(s, DNNConfig(hidden=SMALL)),
    "deepfm": lambda s: DeepFM(s, DeepFMConfig(hidden=SMALL)),
    "nfm": lambda s: NFM(s, NFMConfig(hidden=(16,), bi_dropout=0.1, dropout=0.0)),
    "afm": lambda s: AFM(s, AFMConfig(attention_dim=8)),
    "fnn": lambda s: FNN(s, FNNConfig(hidden=SMALL, activation="relu")),
}


@pytest.fixture(scope="module")
def planted() -> tuple[Schema, Batch, Batch, float]:
    schema, train = _planted_pairs(3000, seed=1)
    _, test = _planted_pairs(2000, seed=2)
    torch.manual_seed(0)
    lr_auc = _fit_and_auc(LogisticRegression(schema, ModelConfig()), train, test)
    return schema, train, test, lr_auc


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_model_beats_lr_on_planted_interactions(name: str, planted) -> None:
    schema, train, test, lr_auc = planted
    torch.manual_seed(0)
    model_auc = _fit_and_auc(LEARNERS[name](schema), train, test)
    assert lr_auc < 0.6, lr_auc  # no first-order signal was planted
    assert model_auc > 0.85 and model_auc > lr_auc + 0.25, (model_auc, lr_auc)
    assert np.isfinite(model_auc)


# ---- recforge compare ---------------------------------------------------------------------------


def test_compare_resolves_all_and_orders_fm_before_fnn() -> None:
    from recforge.commands.compare import resolve_models
    from recforge.models import registry

    names = resolve_models(["all"])
    assert names[:2] == ["lr", "fm"] and set(registry.names("ctr")) <= set(names)
    assert resolve_models(["fnn,dnn", "fm"]) == ["fm", "fnn", "dnn"]
    with pytest.raises(KeyError):
        resolve_models(["no_such_model"])


def test_compare_model_params_star_and_errors() -> None:
    from recforge.commands.compare import parse_model_params

    params = parse_model_params(["*.dropout=0.3", "dnn.hidden=[8, 4]"], ["lr", "dnn", "afm"])
    assert params == {"lr": {}, "dnn": {"dropout": 0.3, "hidden": [8, 4]}, "afm": {"dropout": 0.3}}
    with pytest.raises(ValueError):
        parse_model_params(["dnn.no_such_key=1"], ["dnn"])
    with pytest.raises(ValueError):
        parse_model_params(["fm.dropout=0.1"], ["dnn"])


def test_compare_command_writes_leaderboard(tmp_path, monkeypatch) -> None:
    import json

    from recforge.cli import main

    monkeypatch.setenv("RECFORGE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "board"
    code = main(
        [
            "compare", "--models", "lr", "fm", "fnn", "--dataset", "synthetic",
            "--output", str(out), "--set", "fnn.hidden=[16]", "--no-cache",
            "data.options.rows=3000", "train.epochs=1", "train.batch_size=512",
            "train.progress=false",
        ]
    )  # fmt: skip
    assert code == 0
    board = json.loads((out / "leaderboard.json").read_text())
    rows = {r["model"]: r for r in board["results"]}
    assert set(rows) == {"lr", "fm", "fnn"}
    assert all(0.0 <= r["auc"] <= 1.0 for r in rows.values())
    assert rows["fnn"]["init"] == "fm (this comparison)"
    assert (out / "leaderboard.png").stat().st_size > 1000
    assert "| fnn |" in (out / "leaderboard.md").read_text()
