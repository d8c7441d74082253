"""``recforge tune``: the best trial is found, a study resumes, pruning stops a bad trial,
best.yaml trains through the normal path, a bad space file is one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

optuna = pytest.importorskip("optuna")

from recforge.cli import main  # noqa: E402
from recforge.commands.tune import load_space, tune  # noqa: E402
from recforge.config import ConfigError  # noqa: E402

GOOD_LR, BAD_LR = 0.05, 1.0e-6  # written as YAML floats below


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """LR on a tiny synthetic log: 3 epochs, no early stopping, well under a second a trial."""
    cfg = {
        "data": {
            "dataset": "synthetic",
            "options": {"rows": 3000, "seed": 1},
            "cache_dir": str(tmp_path / "cache"),
        },
        "model": {"name": "lr"},
        "train": {
            "epochs": 3, "batch_size": 256, "threads": 1, "patience": 0, "lr_patience": 0,
            "progress": False,
        },
        "output_dir": str(tmp_path / "run"),
    }  # fmt: skip
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _lr_choices(*values: float) -> str:
    return yaml.safe_dump({"train.lr": {"type": "categorical", "choices": list(values)}})


def _space(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_grid_finds_the_good_learning_rate_and_best_yaml_trains(tmp_path, base, capsys):
    space = _space(tmp_path, _lr_choices(BAD_LR, GOOD_LR))
    out = tmp_path / "study"
    result = tune(base, space, out, sampler="grid", pruner="none")
    assert result.best_params == {"train.lr": GOOD_LR}
    assert result.states == {"COMPLETE": 2} and result.new_trials == 2
    assert {"auc", "logloss"} <= set(result.test_metrics)  # the best config tested once
    for name in ("trials.csv", "trials.md", "best.yaml", "history.png", "importance.json"):
        assert (out / name).stat().st_size > 0, name
    assert not (out.parent / ".study.partial").exists()
    # trials never touch the test split; the retrained best run does
    trial_metrics = [json.loads(p.read_text()) for p in out.glob("trials/*/metrics.json")]
    assert len(trial_metrics) == 2 and all(m["test"] == {} for m in trial_metrics)
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["train"]["lr"] == GOOD_LR and best["output_dir"] == str(out / "best")
    # best.yaml is a plain run config: `recforge train -c best.yaml` trains it
    rerun = tmp_path / "rerun"
    assert main(["train", "-c", str(out / "best.yaml"), f"output_dir={rerun}"]) == 0
    printed = json.loads(capsys.readouterr().out.split("# Study")[0])
    assert printed["test"]["auc"] == pytest.approx(result.test_metrics["auc"], abs=1e-6)
    importance = json.loads((out / "importance.json").read_text())
    assert set(importance["importance"]) == {"train.lr"}


def test_a_study_resumes_with_only_the_missing_trials(tmp_path, base):
    space = _space(tmp_path, "train.lr: {type: float, low: 1.0e-3, high: 0.1, log: true}\n")
    out = tmp_path / "study"
    first = tune(base, space, out, trials=2, pruner="none", retrain=False)
    assert first.new_trials == 2 and sum(first.states.values()) == 2
    second = tune(base, space, out, trials=4, pruner="none", retrain=False)
    assert second.new_trials == 2  # two more, not four
    assert second.states == {"COMPLETE": 4}
    assert len(list((out / "trials").iterdir())) == 4
    # asking again for 4 runs nothing
    assert tune(base, space, out, trials=4, pruner="none", retrain=False).new_trials == 0


def test_an_interrupted_trial_is_run_again(tmp_path, base):
    space = _space(tmp_path, "train.lr: {type: float, low: 1.0e-3, high: 0.1, log: true}\n")
    out = tmp_path / "study"
    tune(base, space, out, trials=1, pruner="none", retrain=False)
    # simulate a kill in the middle of trial 1: a RUNNING trial left in the storage
    work = tmp_path / ".study.partial"
    import shutil

    shutil.copytree(out, work)
    study = optuna.load_study(study_name="study", storage=f"sqlite:///{work / 'study.db'}")
    study.ask({"train.lr": optuna.distributions.FloatDistribution(1e-3, 0.1, log=True)})
    result = tune(base, space, out, trials=2, pruner="none", retrain=False)
    assert result.new_trials == 1
    states = [row.split(",")[1] for row in (out / "trials.csv").read_text().splitlines()[1:]]
    assert states == ["COMPLETE", "INTERRUPTED", "COMPLETE"]


def test_pruning_stops_a_bad_trial(tmp_path, base):
    space = _space(tmp_path, _lr_choices(GOOD_LR, BAD_LR))
    out = tmp_path / "study"
    result = tune(
        base, space, out, trials=2, pruner="median", prune_startup=1, prune_warmup=0,
        retrain=False, enqueue=[{"train.lr": GOOD_LR}, {"train.lr": BAD_LR}],
    )  # fmt: skip
    study = optuna.load_study(study_name="study", storage=f"sqlite:///{out / 'study.db'}")
    states = {t.params["train.lr"]: t.state.name for t in study.trials}
    assert states == {GOOD_LR: "COMPLETE", BAD_LR: "PRUNED"}
    pruned = next(t for t in study.trials if t.state.name == "PRUNED")
    assert len(pruned.intermediate_values) < 3  # stopped before its last epoch
    assert result.best_params == {"train.lr": GOOD_LR}
    assert result.importance == {}  # one completed trial: no importance, and no crash


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("train.lrr: {type: float, low: 0.1, high: 1}\n", "space.yaml: train.lrr: "),
        ("train.lr: {type: float, low: 1, high: 0.1}\n", "train.lr: low must be below high"),
        ("train.lr: {type: uniform, low: 0.1, high: 1}\n", "train.lr: type must be one of"),
        ("model.dropot: {type: categorical, choices: [0.1]}\n", "space.yaml: model.dropot: "),
        ("train.lr: {type: float, low: 0, high: 1, log: true}\n", "train.lr: log needs low > 0"),
        ("weights: {type: categorical, choices: [1]}\n", "weights: must start with one of"),
    ],
)
def test_a_bad_space_is_one_line_naming_file_and_key(tmp_path, base, capsys, text, expected):
    space = _space(tmp_path, text)
    code = main(["tune", "-c", str(base), "--space", str(space), "--trials", "1",
                 "--output", str(tmp_path / "s")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and expected in err and len(err.splitlines()) == 1, err
    assert str(space) in err


def test_grid_needs_categorical_choices(tmp_path, base):
    space = _space(tmp_path, "train.lr: {type: float, low: 1.0e-3, high: 0.1}\n")
    with pytest.raises(ConfigError, match="grid needs"):
        tune(base, space, tmp_path / "s", sampler="grid")


def test_list_choices_and_model_shorthand(tmp_path):
    space = _space(
        tmp_path,
        "model.embedding_dim: {type: categorical, choices: [8, 16]}\n"
        "model.params.hidden: {type: categorical, choices: [[64, 32], [128]]}\n",
    )
    params = {p.name: p for p in load_space(space)}
    assert params["model.embedding_dim"].path == ("model", "params", "embedding_dim")
    hidden = params["model.params.hidden"]
    assert hidden.labels == ("[64, 32]", "[128]") and hidden.value_of("[128]") == [128]


ROOT = Path(__file__).resolve().parents[1]
SPACES = sorted((ROOT / "configs" / "tune").glob("*.space.yaml"))


@pytest.mark.parametrize("space", SPACES, ids=lambda p: p.name)
def test_shipped_spaces_fit_their_base_configs(space):
    """Each space names keys its base config has (configs/tune, configs/bars or
    configs/models by stem) and values they accept."""
    from recforge.commands.tune import check_space
    from recforge.config import load_run_config, to_dict

    stem = space.name.removesuffix(".space.yaml")
    candidates = [ROOT / "configs" / d / f"{stem}.yaml" for d in ("tune", "bars", "models")]
    base = next(p for p in candidates if p.exists())
    check_space(load_space(space), to_dict(load_run_config(base)), str(space))


def test_parallel_workers_share_the_study(tmp_path, base):
    space = _space(tmp_path, "train.lr: {type: float, low: 1.0e-3, high: 0.1, log: true}\n")
    out = tmp_path / "study"
    result = tune(base, space, out, trials=2, jobs=2, pruner="none", retrain=False)
    assert result.states == {"COMPLETE": 2} and result.new_trials == 2
    assert sorted(p.name for p in (out / "trials").iterdir()) == ["0000", "0001"]


def test_a_ctrl_c_trial_is_run_again_and_volatile_options_may_change(tmp_path, base, monkeypatch):
    import recforge.run

    space = _space(tmp_path, "train.lr: {type: float, low: 1.0e-3, high: 0.1, log: true}\n")
    out = tmp_path / "study"
    original = recforge.run.train_from_config
    calls = []

    def interrupt_second(cfg, **kwargs):
        calls.append(cfg.train.lr)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(cfg, **kwargs)

    monkeypatch.setattr(recforge.run, "train_from_config", interrupt_second)
    with pytest.raises(KeyboardInterrupt):
        tune(base, space, out, trials=3, pruner="none", retrain=False)
    assert (tmp_path / ".study.partial" / "study.db").exists() and not out.exists()
    monkeypatch.setattr(recforge.run, "train_from_config", original)
    # same study, another thread count (a volatile option): it continues
    result = tune(base, space, out, trials=3, pruner="none", retrain=False,
                  overrides=["train.threads=2"])  # fmt: skip
    assert result.new_trials == 2 and result.states == {"COMPLETE": 3, "FAIL": 1}
    study = optuna.load_study(study_name="study", storage=f"sqlite:///{out / 'study.db'}")
    interrupted = next(t for t in study.trials if t.state.name == "FAIL")
    rerun = [t for t in study.trials if t.number > interrupted.number]
    assert rerun[0].params == interrupted.params  # the cut-off parameters ran again
    with pytest.raises(ConfigError, match="another base config or search space"):
        tune(base, space, out, trials=4, overrides=["train.epochs=2"])


def test_every_trainable_registered_model_has_a_space():
    from recforge.models import registry

    have = {p.name.removesuffix(".space.yaml") for p in SPACES}
    # popularity learns nothing by gradient; DRN trains online (recforge online), not here
    assert set(registry.names()) - have == {"popularity", "drn"}
