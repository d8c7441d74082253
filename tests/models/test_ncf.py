"""NeuralCF: tower shapes, NeuMF = alpha GMF + (1 - alpha) MLP after pretraining, planted
preferences recovered far better than popularity by GMF, MLP, NeuMF and biased MF."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recforge.cf.evaluate import full_ranking
from recforge.cf.scoring import pair_batch
from recforge.config import TrainConfig
from recforge.features import CategoricalField, EncodedData, Schema
from recforge.interactions import InteractionMatrix
from recforge.models import registry
from recforge.models.base import ModelConfig
from recforge.models.ncf import GMF, NCFMLP, GMFConfig, NCFMLPConfig, NeuMF, NeuMFConfig
from recforge.models.popularity import ItemPopularity
from recforge.train import Trainer


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread (and do not contend on a shared machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _schema(n_users: int, n_items: int) -> Schema:
    return Schema(
        fields=(
            CategoricalField("user", group="user", vocab_size=n_users + 1),
            CategoricalField("ctx", group="context", vocab_size=3),
            CategoricalField("item", group="item", vocab_size=n_items + 1),
        ),
        task="ranking",
        user_key="user",
        item_key="item",
    )


def test_registered_with_specs() -> None:
    for name in ("gmf", "ncf_mlp", "neumf", "popularity", "autorec"):
        spec = registry.get(name)
        assert spec.pairwise and "WWW" in spec.paper or name == "popularity"


def test_mlp_tower_halves_down_to_the_predictive_factors() -> None:
    model = NCFMLP(_schema(5, 5), NCFMLPConfig(factors=8, num_layers=3))
    widths = [(m.in_features, m.out_features) for m in model.mlp.tower.modules()
              if isinstance(m, torch.nn.Linear)]  # fmt: skip
    assert widths == [(64, 32), (32, 16), (16, 8)]
    assert model.mlp.embedding.dim == 32


@pytest.mark.parametrize("alpha", [0.5, 0.3])
def test_neumf_with_pretrained_parts_equals_their_weighted_logits(alpha: float) -> None:
    schema = _schema(20, 30)
    torch.manual_seed(0)
    gmf = GMF(schema, GMFConfig(factors=4))
    mlp = NCFMLP(schema, NCFMLPConfig(factors=4, num_layers=2))
    with torch.no_grad():  # make the parts differ from their initialisation
        for p in list(gmf.parameters()) + list(mlp.parameters()):
            p.add_(torch.randn_like(p) * 0.3)
    neumf = NeuMF(schema, NeuMFConfig(factors=4, num_layers=2, alpha=alpha))
    neumf.init_from_pretrained({"gmf": gmf, "mlp": mlp})
    gen = torch.Generator().manual_seed(1)
    batch = pair_batch(neumf, torch.randint(0, 21, (64,), generator=gen),
                       torch.randint(0, 31, (64,), generator=gen))  # fmt: skip
    with torch.no_grad():
        expected = alpha * gmf(batch) + (1 - alpha) * mlp(batch)
        torch.testing.assert_close(neumf(batch), expected)
        # the fused layer sees exactly the concatenation [phi_GMF; phi_MLP]
        ids = neumf.ids(batch)
        phi = torch.cat([gmf.gmf(ids), mlp.mlp(ids)], dim=-1)
        torch.testing.assert_close(neumf.predict(phi).squeeze(-1), neumf(batch))
    torch.testing.assert_close(neumf.gmf.embedding.weight, gmf.gmf.embedding.weight)


def _planted(seed: int = 0):
    """Users interact only with items of their own cluster (8 of its 10); one held-out
    positive per user. Items are equally popular in expectation, so popularity is ~random."""
    rng = np.random.default_rng(seed)
    n_clusters, per, users_per, n_pos = 4, 10, 30, 8
    n_users, n_items = n_clusters * users_per, n_clusters * per
    user_c = np.arange(n_users) % n_clusters
    picks = np.argsort(rng.random((n_users, per)), axis=1)[:, :n_pos]  # (U, n_pos) distinct
    items = (user_c[:, None] * per + picks).ravel()
    users = np.arange(n_users).repeat(n_pos)
    test = np.arange(n_users) * n_pos + n_pos - 1  # each user's last pick is the test item
    train = np.ones(len(users), dtype=bool)
    train[test] = False
    return users[train] + 1, items[train] + 1, users[test] + 1, items[test] + 1, n_users, n_items


def _positives(users: np.ndarray, items: np.ndarray) -> EncodedData:
    """Encoded positives (user, ctx = OOV, item), label 1, as the pipeline writes them."""
    return EncodedData(
        sparse=np.column_stack([users, np.zeros_like(users), items]).astype(np.int32),
        dense=np.zeros((len(users), 0), dtype=np.float32),
        label=np.ones(len(users), dtype=np.float32),
    )


def test_engine_negatives_are_never_a_users_training_positive() -> None:
    tr_u, tr_i, *_ = _planted()
    schema = _schema(int(tr_u.max()), int(tr_i.max()))
    seen = {(int(u), int(i)) for u, i in zip(tr_u, tr_i, strict=True)}
    drawn = []
    model = registry.build("gmf", schema, {"factors": 4})
    cfg = TrainConfig(epochs=1, batch_size=64, negatives=4, patience=0, progress=False)
    trainer = Trainer(model, cfg)
    original = model.forward

    def spy(batch):  # noqa: ANN001, ANN202
        drawn.append(batch.sparse[:, [0, 2]].clone())
        return original(batch)

    model.forward = spy  # type: ignore[method-assign]
    trainer.fit(_positives(tr_u, tr_i))
    # each step scores its positives, then their 4 negatives each
    negatives = torch.cat(drawn[1::2])
    assert [len(b) for b in drawn[1::2]] == [4 * len(b) for b in drawn[::2]]
    hits = sum((int(u), int(i)) in seen for u, i in negatives.tolist())
    assert len(negatives) == 4 * len(tr_u) and hits == 0


def test_sampled_ranking_evaluation_matches_brute_force() -> None:
    """The engine's HR/NDCG ranks each positive among the candidates the data carries."""
    schema = _schema(6, 12)
    torch.manual_seed(0)
    model = registry.build("gmf", schema, {"factors": 4})
    trainer = Trainer(model, TrainConfig(epochs=1, top_k=3, progress=False))
    users = np.array([1, 2, 3, 4, 5, 6])
    items = np.array([1, 3, 5, 7, 9, 11])
    data = _positives(users, items)
    cand = np.random.default_rng(0).integers(1, 13, size=(6, 7))
    data.extras["candidates"] = cand
    got = trainer.evaluate(data)
    with torch.no_grad():
        all_items = np.concatenate([items[:, None], cand], axis=1)
        scores = np.stack([
            model(pair_batch(model, torch.from_numpy(users), torch.from_numpy(all_items[:, j])))
            .numpy() for j in range(8)
        ], axis=1)  # fmt: skip
    ranks = (scores >= scores[:, :1]).sum(1) - 1
    expected_hr = float(np.mean(ranks < 3))
    expected_ndcg = float(np.mean(np.where(ranks < 3, 1 / np.log2(ranks + 2), 0.0)))
    assert got == pytest.approx({"hr@3": expected_hr, "ndcg@3": expected_ndcg})


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("gmf", {"factors": 8}),
        ("ncf_mlp", {"factors": 8, "num_layers": 2}),
        ("neumf", {"factors": 8, "num_layers": 2, "pretrain": False}),
        ("mf", {"embedding_dim": 8}),
    ],
)
def test_recovers_planted_preferences_far_better_than_popularity(name: str, params: dict) -> None:
    tr_u, tr_i, te_u, te_i, n_users, n_items = _planted()
    schema = _schema(n_users, n_items)
    torch.manual_seed(0)
    model = registry.build(name, schema, params)
    cfg = TrainConfig(epochs=20, batch_size=64, lr=0.01, negatives=4, patience=0, progress=False)
    Trainer(model, cfg).fit(_positives(tr_u, tr_i))
    seen = InteractionMatrix.from_coo(tr_u, tr_i, shape=(n_users + 1, n_items + 1))
    pop = ItemPopularity(schema, ModelConfig())
    pop.set_counts(tr_i)
    ours = full_ranking(model, te_u, te_i, seen, ks=(5,))
    base = full_ranking(pop, te_u, te_i, seen, ks=(5,))
    assert ours["hr@5"] > 0.8 and ours["hr@5"] > base["hr@5"] + 0.4, (ours, base)


def test_neumf_pretraining_runs_gmf_and_mlp_stages_in_the_engine() -> None:
    from recforge.data.encode.preprocess import Preprocessor
    from recforge.data.pipeline import EncodedRun
    from recforge.run import train_model

    tr_u, tr_i, te_u, te_i, n_users, n_items = _planted()
    schema = _schema(n_users, n_items)
    run = EncodedRun(Preprocessor(schema), _positives(tr_u, tr_i), _positives(te_u, te_i),
                     _positives(te_u, te_i))  # fmt: skip
    cfg = TrainConfig(epochs=15, batch_size=64, lr=0.01, negatives=4, patience=0, lr_patience=0,
                      progress=False, optimizer="sgd")  # fmt: skip
    params = {"factors": 8, "num_layers": 2, "pretrain_lr": 0.01}
    result, trainer = train_model("neumf", params, run, cfg)
    stages = result.extra["pretraining"]
    assert stages["gmf"]["model"] == "gmf" and stages["mlp"]["model"] == "ncf_mlp"
    # stage one learnt the planted clusters; NeuMF keeps it after SGD fine-tuning
    assert stages["gmf"]["test"]["hr@10"] > 0.8, stages
    assert result.test_metrics["hr@10"] > 0.8, result.test_metrics
