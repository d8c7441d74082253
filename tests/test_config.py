"""Config: YAML onto typed dataclasses, unknown keys are errors, overrides, every YAML validates."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from recforge.config import ConfigError, RunConfig, apply_overrides, from_dict, load_run_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))


def test_defaults_and_overrides():
    cfg = load_run_config(
        None,
        [
            "train.lr=3e-4",
            "train.epochs=2",
            "model.name=lr",
            "data.options.rows=500",
            "train.bf16=true",
        ],
    )
    assert isinstance(cfg, RunConfig)
    assert cfg.train.lr == pytest.approx(3e-4) and cfg.train.epochs == 2
    assert cfg.model.name == "lr" and cfg.data.options == {"rows": 500} and cfg.train.bf16


def test_yaml_file_with_model_params(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        yaml.safe_dump(
            {"model": {"name": "fm", "params": {"embedding_dim": 4}}, "train": {"batch_size": 128}}
        )
    )
    cfg = load_run_config(path, ["train.batch_size=64"])
    assert cfg.model.params == {"embedding_dim": 4} and cfg.train.batch_size == 64


@pytest.mark.parametrize(
    "data, message",
    [
        ({"trian": {}}, "unknown key"),
        ({"train": {"lr": "fast"}}, "expected a number"),
        ({"train": {"epochs": 2.5}}, "expected an integer"),
        ({"train": {"optimizer": "lbfgs"}}, "not one of"),
        ({"train": {"bf16": "yes"}}, "true/false"),
        ({"model": {"name": "fm", "params": {"hidden": [1]}}}, "unknown key"),
        ({"model": {"name": "nope"}}, "unknown model"),
    ],
)
def test_invalid_configs_are_refused(tmp_path, data, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises((ConfigError, KeyError), match=message):
        load_run_config(path)


def test_override_syntax_errors():
    with pytest.raises(ConfigError, match="key.sub=value"):
        apply_overrides({}, ["train.lr"])
    assert apply_overrides({"a": {"b": 1}}, ["a.c=[1, 2]"]) == {"a": {"b": 1, "c": [1, 2]}}


def test_from_dict_converts_lists_to_tuples():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class C:
        hidden: tuple[int, ...] = (1,)

    assert from_dict(C, {"hidden": [3, 4]}).hidden == (3, 4)


def test_repository_has_configs():
    assert CONFIGS, "configs/ should hold example run configs"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_validates(path):
    load_run_config(path)
