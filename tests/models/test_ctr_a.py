"""Deep Crossing, PNN (IPNN/OPNN/PNN*), DCN, DCN-V2 and Wide&Deep: contract, learning, crosses."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from recforge.config import from_dict
from recforge.features import Batch, CategoricalField, NumericField, Schema, random_batch
from recforge.layers.crossproduct import (
    HASH_MULTIPLIER,
    HASH_OFFSET,
    HASH_PRIME,
    cross_ids,
    cross_rows,
)
from recforge.models import registry
from recforge.models.base import ModelConfig, RecModel
from recforge.models.lr import LogisticRegression
from recforge.models.wide_deep import WideDeep, WideDeepConfig
from recforge.train.ftrl import FTRL

SCHEMA = Schema(
    fields=(
        CategoricalField("user", group="user", vocab_size=7),
        CategoricalField("item", group="item", vocab_size=9),
        CategoricalField("segment", group="user", vocab_size=4),
        CategoricalField("category", group="item", vocab_size=5),
        NumericField("price"),
        NumericField("age", group="user"),
    ),
    embedding_dim=4,
)


@pytest.fixture(autouse=True, scope="module")
def _single_thread() -> Iterator[None]:
    """Tiny models: one intra-op thread avoids oversubscription on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# (registry name, params): every option of every model is exercised at least once
CASES: list[tuple[str, dict[str, Any]]] = [
    ("deep_crossing", {"residual_hidden": (8, 8)}),
    ("deep_crossing", {"residual_hidden": (8,), "embedding_relu": True, "dropout": 0.1}),
    ("deep_crossing", {"residual_hidden": (8, 8), "batch_norm": True}),
    ("ipnn", {"hidden": (16, 8)}),
    ("ipnn", {"hidden": (16, 8), "inner_rank": 2, "batch_norm": True}),
    ("opnn", {"hidden": (16,)}),
    ("opnn", {"hidden": (16,), "outer_mode": "pairwise"}),
    ("pnn_star", {"hidden": (16, 8), "dropout": 0.1}),
    ("pnn_star", {"hidden": (16,), "inner_rank": 1}),
    ("dcn", {"cross_layers": 2, "hidden": (16,)}),
    ("dcn", {"cross_layers": 2, "hidden": ()}),
    ("dcn_v2", {"cross_layers": 2, "hidden": (16,)}),
    ("dcn_v2", {"cross_layers": 2, "hidden": (16,), "rank": 3, "structure": "stacked"}),
    ("wide_deep", {"hidden": (16,), "crosses": ("segment&category", ("user", "item", "segment"))}),
    ("wide_deep", {"hidden": (16,), "crosses": ("user&item",), "cross_buckets": 10}),
]
IDS = [f"{name}-{i}" for i, (name, _) in enumerate(CASES)]


def _batch(schema: Schema = SCHEMA, n: int = 64, seed: int = 0) -> Batch:
    return random_batch(schema, n, generator=torch.Generator().manual_seed(seed))


def _build(name: str, params: dict[str, Any], schema: Schema = SCHEMA) -> RecModel:
    torch.manual_seed(0)
    return registry.build(name, schema, params)


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_logits_shape_and_gradients(name: str, params: dict[str, Any]) -> None:
    model = _build(name, params)
    batch = _batch()
    logits = model(batch)
    assert logits.shape == (64,) and torch.isfinite(logits).all()
    nn.functional.binary_cross_entropy_with_logits(logits, batch.label).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: no gradient for {pname}"
        assert p.grad.abs().sum() > 0, f"{name}: zero gradient for {pname}"


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_adam_steps_lower_loss_on_one_batch(name: str, params: dict[str, Any]) -> None:
    model = _build(name, params)
    batch = _batch()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(model(batch), batch.label)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    model.eval()
    with torch.no_grad():
        final = float(nn.functional.binary_cross_entropy_with_logits(model(batch), batch.label))
    assert final < losses[0] - 0.05


def test_registry_names_and_config_from_yaml_lists() -> None:
    for name in ("deep_crossing", "ipnn", "opnn", "pnn_star", "dcn", "dcn_v2", "wide_deep"):
        assert registry.get(name).family == "ctr"
    assert registry.make_config("opnn").product == "outer"  # type: ignore[attr-defined]
    assert registry.make_config("pnn_star").product == "both"  # type: ignore[attr-defined]
    cfg = from_dict(WideDeepConfig, {"crosses": ["segment&category", ["user", "item"]]})
    assert cfg.crosses == ("segment&category", ("user", "item"))
    assert WideDeep(SCHEMA, cfg).crosses == (("segment", "category"), ("user", "item"))


# ---- Wide & Deep cross products ------------------------------------------------------------


def test_exact_cross_is_and_of_values() -> None:
    sizes = (4, 5)  # known ids 1..3 and 1..4
    pairs = torch.tensor(list(itertools.product(range(4), range(5))))  # every combination
    ids = cross_ids(pairs, sizes, buckets=100)
    assert int(ids.max()) < cross_rows(sizes, 100) == 1 + 3 * 4
    for (r, (a, b)), (s, (c, d)) in itertools.product(enumerate(pairs.tolist()), repeat=2):
        if min(a, b, c, d) == 0:
            continue
        # AND(a=x, b=y): two rows share the cross id iff they share both values
        assert (ids[r] == ids[s]) == (a == c and b == d)
    oov = (pairs == 0).any(dim=1)
    assert (ids[oov] == 0).all() and (ids[~oov] > 0).all()


def test_hashed_cross_matches_documented_hash() -> None:
    sizes, buckets = (50, 40, 30), 97
    g = torch.Generator().manual_seed(0)
    ids = torch.stack([torch.randint(0, v, (500,), generator=g) for v in sizes], dim=1)
    out = cross_ids(ids, sizes, buckets)
    assert cross_rows(sizes, buckets) == 98
    for row, got in zip(ids.tolist(), out.tolist(), strict=True):
        if 0 in row:
            assert got == 0
            continue
        key = 0
        for v, a in zip(sizes, row, strict=True):
            key = (key * v + a) % HASH_PRIME
        assert got == 1 + ((key * HASH_MULTIPLIER + HASH_OFFSET) % HASH_PRIME) % buckets
    # equal value tuples share an id; hashed ids spread over the buckets
    assert torch.equal(cross_ids(ids[:10], sizes, buckets), out[:10])
    assert len(set(out.tolist())) > 60


def test_wide_part_sums_cross_weights_of_the_row() -> None:
    cfg = WideDeepConfig(hidden=(4,), crosses=("segment&category",))
    model = WideDeep(SCHEMA, cfg)
    batch = _batch(n=32)
    with torch.no_grad():
        model.cross_weights.weight.copy_(torch.arange(model.cross_weights.weight.shape[0])[:, None])
    seg, cat = batch.sparse[:, 2], batch.sparse[:, 3]
    expected = torch.where((seg > 0) & (cat > 0), 1 + (seg - 1) * 4 + (cat - 1), 0)
    assert torch.equal(model.cross_features(batch)[:, 0], expected)
    with torch.no_grad():
        base = model(batch) - expected.float()
        model.cross_weights.weight.zero_()
        torch.testing.assert_close(model(batch), base)


def test_optimizer_groups_partition_and_ftrl_on_wide() -> None:
    model = WideDeep(SCHEMA, WideDeepConfig(hidden=(8,), crosses=("user&item",)))
    groups = model.optimizer_groups()
    wide_ids, deep_ids = {id(p) for p in groups["wide"]}, {id(p) for p in groups["deep"]}
    assert not wide_ids & deep_ids
    assert wide_ids | deep_ids == {id(p) for p in model.parameters()}
    assert id(model.cross_weights.weight) in wide_ids and id(model.linear.bias) in wide_ids
    batch = _batch(n=128)
    ftrl = FTRL(groups["wide"], lr=0.1, l1=0.01)
    adagrad = torch.optim.Adagrad(groups["deep"], lr=0.05)
    first = None
    for _ in range(20):
        ftrl.zero_grad()
        adagrad.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(model(batch), batch.label)
        loss.backward()
        ftrl.step()
        adagrad.step()
        first = float(loss.detach()) if first is None else first
    assert float(loss.detach()) < first - 0.05


def test_unknown_cross_field_is_an_error() -> None:
    with pytest.raises(KeyError):
        WideDeep(SCHEMA, WideDeepConfig(crosses=("segment&nope",)))
    with pytest.raises(ValueError):
        WideDeep(SCHEMA, WideDeepConfig(crosses=("segment",)))


# ---- learning: planted pairwise interaction that LR cannot represent ------------------------

PAIR_SCHEMA = Schema(
    fields=(
        CategoricalField("a", vocab_size=9),
        CategoricalField("b", vocab_size=9),
        CategoricalField("noise", vocab_size=6),
        NumericField("x"),
    ),
    embedding_dim=8,
)


def _planted(n: int, seed: int) -> Batch:
    """Labels from ``sigmoid(4 s_a s_b)`` with random signs per value: an XOR-like pair."""
    batch = random_batch(PAIR_SCHEMA, n, generator=torch.Generator().manual_seed(seed))
    signs = torch.tensor([1.0, 1, -1, 1, -1, -1, 1, -1, 1])
    signs_b = torch.tensor([1.0, -1, 1, 1, -1, 1, -1, -1, 1])
    logit = 4.0 * signs[batch.sparse[:, 0]] * signs_b[batch.sparse[:, 1]]
    g = torch.Generator().manual_seed(seed + 1)
    batch.label = (torch.rand(n, generator=g) < torch.sigmoid(logit)).float()
    return batch


def _fit_auc(model: nn.Module, steps: int = 150) -> float:
    train, test = _planted(4096, 0), _planted(2048, 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(2)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(train), (512,), generator=g)
        part = train.select(idx)
        opt.zero_grad()
        nn.functional.binary_cross_entropy_with_logits(model(part), part.label).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        return float(roc_auc_score(test.label.numpy(), model(test).numpy()))


LEARNERS: list[tuple[str, dict[str, Any]]] = [
    ("deep_crossing", {"residual_hidden": (32, 32)}),
    ("ipnn", {"hidden": (32, 16)}),
    ("ipnn", {"hidden": (32, 16), "inner_rank": 2}),
    ("opnn", {"hidden": (32, 16)}),
    ("pnn_star", {"hidden": (32, 16)}),
    ("dcn", {"cross_layers": 2, "hidden": (32, 16)}),
    ("dcn_v2", {"cross_layers": 2, "hidden": (32, 16)}),
    ("wide_deep", {"hidden": (32, 16), "crosses": ("a&b",)}),
]


def test_lr_cannot_fit_planted_pair() -> None:
    torch.manual_seed(0)
    assert _fit_auc(LogisticRegression(PAIR_SCHEMA, ModelConfig())) < 0.65


@pytest.mark.parametrize(
    ("name", "params"), LEARNERS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(LEARNERS)]
)
def test_beats_lr_on_planted_pairwise_interaction(name: str, params: dict[str, Any]) -> None:
    auc = _fit_auc(_build(name, params, PAIR_SCHEMA))
    assert auc > 0.9, f"{name} reached test AUC {auc:.3f}"


def test_linear_wide_deep_needs_the_declared_cross() -> None:
    # hidden=() makes the deep part linear in the embeddings: only phi(x) can model the pair
    without = _fit_auc(_build("wide_deep", {"hidden": ()}, PAIR_SCHEMA))
    with_cross = _fit_auc(_build("wide_deep", {"hidden": (), "crosses": ("a&b",)}, PAIR_SCHEMA))
    assert without < 0.65 < 0.9 < with_cross


# ---- end to end: synthetic click log, Preprocessor and Trainer ------------------------------


def _click_log() -> tuple[Schema, Any, Any, Any]:
    """The synthetic log reduced to fields whose signal is mostly pairwise.

    Segment x category and device x hour tables are planted strongly; ids, sites, factors and
    sequences are dropped, so first-order models cannot reach the planted signal.
    """
    from recforge.data.encode.preprocess import Preprocessor
    from recforge.data.sources.synthetic import make_click_log

    table, schema = make_click_log(
        rows=24_000,
        seed=0,
        n_users=300,
        n_items=600,
        segment_category_std=1.5,
        device_hour_std=1.5,
        user_bias_std=0.1,
        item_bias_std=0.1,
        factor_scale=0.0,
        triple_std=0.0,
        interest_boost=0.0,
        site_bias_std=0.0,
    )
    keep = {"user_segment", "item_category", "device", "hour", "price", "account_age_days"}
    schema = dataclasses.replace(
        schema,
        fields=tuple(f for f in schema.fields if f.name in keep),
        user_key=None,
        item_key=None,
    )
    train, valid, test = table.slice(0, 16_000), table.slice(16_000, 4_000), table.slice(20_000)
    pre = Preprocessor(schema).fit(train)
    return pre.schema, pre.transform(train), pre.transform(valid), pre.transform(test)


@pytest.fixture(scope="module")
def click_log() -> tuple[Schema, Any, Any, Any]:
    return _click_log()


def _trainer_auc(name: str, params: dict[str, Any], click_log: Any, **train: Any) -> float:
    from recforge.config import TrainConfig
    from recforge.train.trainer import Trainer, seed_everything

    schema, train_data, valid_data, test_data = click_log
    cfg = TrainConfig(
        epochs=8, batch_size=256, lr=1e-2, patience=2, lr_patience=0, progress=False,
        device="cpu", threads=1, **train,
    )  # fmt: skip
    seed_everything(0)
    trainer = Trainer(registry.build(name, schema, {"embedding_dim": 8, **params}), cfg)
    trainer.fit(train_data, valid_data)
    return trainer.evaluate(test_data)["auc"]


@pytest.fixture(scope="module")
def lr_auc(click_log: Any) -> float:
    return _trainer_auc("lr", {}, click_log)


@pytest.mark.parametrize(
    ("name", "params", "train"),
    [
        ("ipnn", {"hidden": (32, 16)}, {}),
        ("dcn_v2", {"hidden": (32, 16)}, {}),
        (
            "wide_deep",
            {"hidden": (32, 16), "crosses": ("user_segment&item_category", "device&hour")},
            {"wide_optimizer": "ftrl", "wide_lr": 2.0, "wide_l1": 1e-4, "wide_l2": 1e-4},
        ),
    ],
    ids=["ipnn", "dcn_v2", "wide_deep-ftrl"],
)
def test_trainer_beats_lr_on_synthetic_log(
    name: str, params: dict[str, Any], train: dict[str, Any], click_log: Any, lr_auc: float
) -> None:
    auc = _trainer_auc(name, params, click_log, **train)
    assert lr_auc < 0.75
    assert auc > lr_auc + 0.06, (name, auc, lr_auc)


def test_trainer_optimizers_put_wide_part_under_ftrl() -> None:
    from recforge.config import TrainConfig
    from recforge.train.optim import build_optimizers

    model = WideDeep(SCHEMA, WideDeepConfig(hidden=(8,), crosses=("user&item",)))
    optimizers = build_optimizers(model, TrainConfig(wide_optimizer="ftrl"))
    (ftrl,) = [o for o in optimizers if isinstance(o, FTRL)]
    in_ftrl = {id(p) for g in ftrl.param_groups for p in g["params"]}
    assert in_ftrl == {id(p) for p in model.optimizer_groups()["wide"]}
    covered = [id(p) for o in optimizers for g in o.param_groups for p in g["params"]]
    assert sorted(covered) == sorted(id(p) for p in model.parameters())  # each exactly once


@pytest.mark.parametrize(
    "name", ["deep_crossing", "ipnn", "opnn", "pnn_star", "dcn", "dcn_v2", "wide_deep"]
)
def test_sparse_embeddings_train_with_sparse_optimizers(name: str) -> None:
    from recforge.config import TrainConfig
    from recforge.train.optim import build_optimizers

    params: dict[str, Any] = {"sparse": True, "hidden": (16,)}
    if name == "deep_crossing":
        params = {"sparse": True, "residual_hidden": (16,)}
    if name == "wide_deep":
        params["crosses"] = ("user&item",)
    model = _build(name, params)
    wide = "ftrl" if name == "wide_deep" else "same"
    optimizers = build_optimizers(model, TrainConfig(lr=1e-2, wide_optimizer=wide, wide_lr=1.0))
    batch = _batch()
    losses = []
    for _ in range(20):
        for opt in optimizers:
            opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(model(batch), batch.label)
        loss.backward()
        for opt in optimizers:
            opt.step()
        losses.append(float(loss.detach()))
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert any(g.is_sparse for g in grads)
    assert losses[-1] < losses[0] - 0.05
