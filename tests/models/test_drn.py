import torch
from torch import nn

from recforge.drn.model import DRN, DRNConfig, DuelingQ
from recforge.features import CategoricalField, NumericField, Schema, SequenceField, random_batch
from recforge.models import registry


def _schema() -> Schema:
    return Schema(
        fields=(
            CategoricalField("user", group="user", vocab_size=12),
            CategoricalField("item", group="item", vocab_size=30),
            CategoricalField("topic", group="item", vocab_size=6),
            NumericField("hour", group="context"),
            NumericField("age", group="item"),
            SequenceField("clicked", group="user", max_len=5, share_embedding_with="item"),
        ),
        user_key="user",
        item_key="item",
        embedding_dim=4,
    )


def test_dueling_decomposition_and_gradients() -> None:
    torch.manual_seed(0)
    q = DuelingQ(6, 5)
    state, action = torch.randn(8, 6), torch.randn(8, 7, 5)
    v, a = q.streams(state, action)
    out = q(state, action)
    assert out.shape == (8, 7)
    assert torch.allclose(out, v + a)  # Q = V + A, V broadcast over candidates
    # V depends on the state only: changing the actions moves Q by the change of A alone
    out2 = q(state, action + 1.0)
    v2, a2 = q.streams(state, action + 1.0)
    assert torch.allclose(v, v2) and torch.allclose(out2 - out, a2 - a)
    out.sum().backward()
    for stream in (q.value, q.advantage, q.state_net):
        grads = [p.grad for p in stream.parameters()]
        assert all(g is not None and g.abs().sum() > 0 for g in grads)
    single = q(state, action[:, 0])
    assert torch.allclose(single, out[:, 0])


def test_registry_model_splits_state_and_action_by_group() -> None:
    schema = _schema()
    torch.manual_seed(0)
    model = registry.build("drn", schema, {"state_hidden": [8], "advantage_hidden": [8]})
    assert isinstance(model, DRN) and registry.get("drn").family == "rl"
    # state: user(4) + hour(4) + clicked(4); action: item(4) + topic(4) + age(4)
    assert model.state_idx.numel() == 12 and model.action_idx.numel() == 12
    batch = random_batch(schema, 16, torch.Generator().manual_seed(0))
    logits = model(batch)
    assert logits.shape == (16,) and torch.isfinite(logits).all()
    state, action = model.state_action(batch)
    v, _ = model.q.streams(state, action.unsqueeze(1))
    # changing the item ids leaves V(s) unchanged
    other = batch.with_sparse_column(schema.sparse_index("item"), (batch.sparse[:, 1] + 1) % 30)
    s2, a2 = model.state_action(other)
    v2, _ = model.q.streams(s2, a2.unsqueeze(1))
    assert torch.allclose(v, v2)
    loss = nn.functional.binary_cross_entropy_with_logits(logits, batch.label)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_item_only_schema_builds() -> None:
    schema = Schema(fields=(CategoricalField("item", group="item", vocab_size=9),), embedding_dim=4)
    model = DRN(schema, DRNConfig())
    batch = random_batch(schema, 5, torch.Generator().manual_seed(1))
    assert model(batch).shape == (5,)
