"""Config: YAML onto typed dataclasses, unknown keys and out-of-range values are errors,
overrides, the model section checked by the command layer, every shipped YAML validates."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from recforge.commands.core import validate_model_section
from recforge.config import (
    ConfigError,
    DataConfig,
    RunConfig,
    TrainConfig,
    apply_overrides,
    from_dict,
    load_run_config,
)

# run configs; configs/tune/*.space.yaml are search spaces (tests/test_tune.py checks them)
CONFIGS = sorted(
    p
    for p in (Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml")
    if not p.name.endswith(".space.yaml")
)


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
        ({"train": {"epochs": 0}}, r"bad\.yaml\.train\.epochs: must be at least 1, got 0$"),
        ({"data": {"test_ratio": 1.0}}, r"bad\.yaml\.data\.test_ratio: .*between 0 and 1"),
    ],
)
def test_invalid_configs_are_refused(tmp_path, data, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=message):
        load_run_config(path)


@pytest.mark.parametrize(
    "model, message",
    [
        ({"name": "fm", "params": {"hidden": [1]}}, r"model\.params \(fm\): unknown key"),
        ({"name": "fm", "params": {"embedding_dim": "wide"}}, r"embedding_dim: .wide. does not"),
        ({"name": "fm", "params": {"embedding_dim": 0}}, r"embedding_dim: must be at least 1"),
        ({"name": "nope"}, r"model\.name: unknown model 'nope'"),
    ],
)
def test_model_section_is_checked_by_the_command_layer(tmp_path, model, message):
    # recforge.config knows no model: load_run_config accepts any model section, and the
    # commands check it against the registry before any work
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"model": model}))
    cfg = load_run_config(path)
    with pytest.raises(ConfigError, match=message) as info:
        validate_model_section(cfg, str(path))
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)


def test_train_refuses_a_bad_model_section_before_any_work(tmp_path, capsys, monkeypatch):
    from recforge import cli, run

    def boom(*args, **kwargs):
        raise AssertionError("train_job must not start")

    monkeypatch.setattr(run, "train_job", boom)
    code = cli.main(["train", "model.name=fm", "model.params.nope=1", "train.epochs=1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("recforge: error: model.params (fm): unknown key")
    assert "\n" not in err


def test_config_module_imports_no_model():
    import subprocess
    import sys

    code = (
        "import sys, recforge.config; "
        "print(sorted(m for m in sys.modules if m.startswith('recforge.models')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "cls, key, value, message",
    [
        (TrainConfig, "epochs", 0, "train.epochs: must be at least 1, got 0"),
        (TrainConfig, "epochs", -3, "train.epochs: must be at least 1, got -3"),
        (TrainConfig, "batch_size", 0, "train.batch_size: must be at least 1, got 0"),
        (TrainConfig, "eval_batch_size", 0, "train.eval_batch_size: must be at least 1, got 0"),
        (TrainConfig, "negatives", 0, "train.negatives: must be at least 1, got 0"),
        (TrainConfig, "lr", 0.0, "train.lr: must be a positive number, got 0.0"),
        (TrainConfig, "lr", -1e-3, "train.lr: must be a positive number, got -0.001"),
        (TrainConfig, "lr", float("nan"), "train.lr: must be a positive number, got nan"),
        (TrainConfig, "wide_lr", 0.0, "train.wide_lr: must be a positive number, got 0.0"),
        (TrainConfig, "patience", -1, "train.patience: must be at least 0, got -1"),
        (TrainConfig, "lr_patience", -1, "train.lr_patience: must be at least 0, got -1"),
        (TrainConfig, "threads", -1, "train.threads: must be at least 0, got -1"),
        (TrainConfig, "shuffle_window", -1, "train.shuffle_window: must be at least 0, got -1"),
        (TrainConfig, "embedding_l2", -0.1, "train.embedding_l2: must be a non-negative"),
        (TrainConfig, "dense_l2", -0.1, "train.dense_l2: must be a non-negative"),
        (TrainConfig, "wide_l1", -1.0, "train.wide_l1: must be a non-negative"),
        (TrainConfig, "lr_factor", 0.0, "train.lr_factor: must be strictly between 0 and 1"),
        (TrainConfig, "lr_factor", 1.0, "train.lr_factor: must be strictly between 0 and 1"),
        (DataConfig, "valid_ratio", 0.0, "data.valid_ratio: must be strictly between 0 and 1"),
        (DataConfig, "test_ratio", 1.0, "data.test_ratio: must be strictly between 0 and 1"),
        (DataConfig, "test_ratio", 0.9, "data.test_ratio: valid_ratio \\+ test_ratio must be"),
        (DataConfig, "chunk_rows", 0, "data.chunk_rows: must be at least 1, got 0"),
        (DataConfig, "memory_budget_mb", 0.0, "data.memory_budget_mb: must be a positive"),
    ],
)
def test_out_of_range_values_are_config_errors(cls, key, value, message):
    with pytest.raises(ConfigError, match=message) as info:
        cls(**{key: value})
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)
    # through from_dict / overrides the message names where the value came from
    section = "train" if cls is TrainConfig else "data"
    with pytest.raises(ConfigError, match=f"^config\\.{section}\\.{key}: "):
        load_run_config(None, [f"{section}.{key}={value}"])


def test_boundary_values_are_accepted():
    TrainConfig(epochs=1, patience=0, lr_patience=0, threads=0, shuffle_window=0, lr_factor=0.5)
    TrainConfig(embedding_l2=0.0, dense_l2=0.0, batch_size=1, eval_batch_size=1, negatives=1)
    DataConfig(valid_ratio=0.45, test_ratio=0.45, chunk_rows=1, memory_budget_mb=0.01)


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
    from recforge.commands.core import validate_model_section

    validate_model_section(load_run_config(path))  # the run and the model's own options


def test_malformed_yaml_is_one_line_with_line_and_column(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  epochs: [1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:3:1: expected") as info:
        load_run_config(path)
    assert "\n" not in str(info.value)


def test_cli_errors_are_one_clean_line(capsys):
    from recforge import cli

    assert cli.main(["datasets", "prepare", "no-such-set", "--path", "."]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("recforge: error: unknown dataset 'no-such-set'") and '"' not in err
    with pytest.raises(SystemExit) as info:
        cli.main(["models", "--family", "bogus"])
    assert info.value.code == 2 and "invalid choice: 'bogus'" in capsys.readouterr().err
