"""The building blocks the model files share: the tower config (flat YAML keys, the config is
the MLP's Tower) and the base of the behaviour-sequence models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from recforge.features import random_batch
from recforge.layers.mlp import MLP, BatchNorm, Tower
from recforge.models import registry
from recforge.models.behaviour import BehaviourModel
from recforge.models.tower import TowerConfig

TOWER_MODELS = [
    "dnn",
    "deepfm",
    "nfm",
    "fnn",
    "wide_deep",
    "dcn",
    "dcn_v2",
    "ipnn",
    "opnn",
    "pnn_star",
    "base_seq",
    "din",
    "dien",
]
FLAT = {"hidden": [6, 5], "activation": "tanh", "dropout": 0.25, "batch_norm": True}


@pytest.mark.parametrize("name", TOWER_MODELS)
def test_tower_options_are_flat_model_params(name, tiny_schema, tiny_batch):
    cfg = registry.make_config(name, FLAT)
    assert isinstance(cfg, TowerConfig) and isinstance(cfg, Tower)
    assert (cfg.hidden, cfg.activation, cfg.dropout, cfg.batch_norm) == ((6, 5), "tanh", 0.25, True)
    model = registry.build(name, tiny_schema, cfg)
    # the model's main tower follows the options: Linear, BatchNorm, Tanh, Dropout per layer
    towers = [m for m in model.modules() if isinstance(m, MLP) and len(m.net) >= 8]
    assert towers, f"{name}: no MLP built from the config"
    kinds = [type(m) for m in towers[-1].net[:8]]
    block = [BatchNorm, nn.Tanh, nn.Dropout]
    assert kinds == [nn.Linear, *block, nn.Linear, *block]
    assert model.eval()(tiny_batch).shape == (len(tiny_batch),)


def test_the_config_is_the_tower(tiny_schema):
    cfg = registry.make_config("dnn", FLAT)
    torch.manual_seed(3)
    from_cfg = MLP(10, cfg, output_dim=1)
    torch.manual_seed(3)
    from_tower = MLP(10, Tower((6, 5), "tanh", 0.25, True), output_dim=1)
    for a, b in zip(from_cfg.state_dict().values(), from_tower.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", ["base_seq", "din", "dien"])
def test_sequence_models_share_one_base(name, tiny_schema):
    model = registry.build(name, tiny_schema, {"skip_fields": ["user_id", "price"]})
    assert isinstance(model, BehaviourModel)
    assert model.behaviours == (("hist_item_ids", "item_id"), ("hist_cats", "item_category"))
    batch = random_batch(tiny_schema, 8, torch.Generator().manual_seed(0))
    full = registry.build(name, tiny_schema, {})
    dim = tiny_schema.embedding_dim
    width = full.other_features(batch).shape[1]
    assert model.other_features(batch).shape == (8, width - 2 * dim)  # two fields skipped
    assert model.behaviour_dim == 2 * dim
    first = model.mlp.net[0]
    # DIEN: final interest (H = Dk) + pooled history (Dk) + candidate * pooled history (Dk)
    summary = {"base_seq": 2 * dim, "din": 2 * dim, "dien": 6 * dim}[name]
    assert first.in_features == width - 2 * dim + summary
