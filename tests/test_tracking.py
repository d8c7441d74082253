"""Experiment tracking from the engine: TensorBoard event files hold the per-step loss, the
per-epoch metrics, learning rate and samples/s, the test metrics and the config; MLflow gets
the same plus the bundle as an artefact; a tracker that is not installed is one clear line."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import yaml

from recforge.cli import main
from recforge.config import load_run_config

pytest.importorskip("tensorboard")


def _config(tmp_path: Path, track: list[str]) -> Path:
    cfg = {
        "data": {
            "dataset": "synthetic",
            "options": {"rows": 2000, "seed": 3},
            "cache_dir": str(tmp_path / "cache"),
        },
        "model": {"name": "fm"},
        "train": {
            "epochs": 2,
            "batch_size": 256,
            "threads": 1,
            "progress": False,
            "track": track,
        },  # fmt: skip
        "output_dir": str(tmp_path / "run"),
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = folder.glob("events.out.tfevents.*")
    acc = EventAccumulator(str(events))
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def test_tensorboard_events_hold_the_run(tmp_path):
    from recforge.run import train_from_config

    cfg = load_run_config(_config(tmp_path, ["tensorboard"]))
    result = train_from_config(cfg)
    folder = tmp_path / "run" / "tensorboard"  # published with the run
    scalars = _scalars(folder)
    from recforge.data.pipeline import encode_run

    rows = len(encode_run(cfg.data, seed=cfg.train.seed).train)
    steps = -(-rows // 256)
    assert len(scalars["train/loss"]) == 2 * steps
    assert [s for s, _ in scalars["train/loss"]] == list(range(2 * steps))
    for key in ("valid_auc", "valid_logloss", "lr", "train_loss", "train_samples_per_s"):
        assert [s for s, _ in scalars[f"epoch/{key}"]] == [0, 1], key
    assert scalars["epoch/valid_auc"][1][1] == pytest.approx(result.history[1]["valid_auc"])
    assert scalars["epoch/lr"][0][1] == pytest.approx(1e-3)
    assert scalars["test/auc"][0][1] == pytest.approx(result.test_metrics["auc"])


def test_tracking_is_off_by_default(tmp_path):
    from recforge.run import train_from_config

    train_from_config(load_run_config(_config(tmp_path, [])))
    assert not (tmp_path / "run" / "tensorboard").exists()


class _FakeMlflow(types.ModuleType):
    """Records what recforge sends to MLflow."""

    def __init__(self) -> None:
        super().__init__("mlflow")
        self.calls: list[tuple[str, object]] = []
        self.tracking = types.SimpleNamespace(MlflowClient=lambda: self)
        run_info = types.SimpleNamespace(info=types.SimpleNamespace(run_id="r1"))
        self.start_run = lambda run_name, nested: self._rec("start_run", run_name, run_info)
        self.active_run = lambda: None
        self.set_experiment = lambda name: self._rec("set_experiment", name)
        self.log_params = lambda params: self._rec("log_params", params)
        self.log_text = lambda text, name: self._rec("log_text", name)
        self.log_metrics = lambda metrics, step: self._rec("log_metrics", (step, metrics))
        self.log_artifacts = lambda path, artifact_path: self._rec(
            "log_artifacts", (sorted(p.name for p in Path(path).iterdir()), artifact_path)
        )
        self.log_batch = lambda run_id, metrics: self._rec("log_batch", metrics)
        self.end_run = lambda status: self._rec("end_run", status)

    def _rec(self, name: str, value: object, out: object = None) -> object:
        self.calls.append((name, value))
        return out

    def of(self, name: str) -> list[object]:
        return [v for n, v in self.calls if n == name]


def test_mlflow_gets_params_metrics_and_the_bundle(tmp_path, monkeypatch):
    from recforge.run import train_from_config

    fake = _FakeMlflow()
    entities = types.ModuleType("mlflow.entities")
    entities.Metric = lambda key, value, timestamp, step: (key, value, step)
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    monkeypatch.setitem(sys.modules, "mlflow.entities", entities)
    train_from_config(load_run_config(_config(tmp_path, ["mlflow"])))
    assert fake.of("set_experiment") == ["recforge"] and fake.of("start_run") == ["run"]
    (params,) = fake.of("log_params")
    assert params["model.name"] == "fm" and params["train.lr"] == "0.001"
    epochs = [step for step, m in fake.of("log_metrics") if "epoch/valid_auc" in m]
    assert epochs == [0, 1]
    assert any("test/auc" in m for _, m in fake.of("log_metrics"))
    losses = [m for batch in fake.of("log_batch") for m in batch]
    assert losses and all(key == "train/loss" for key, _, _ in losses)
    ((files, where),) = fake.of("log_artifacts")
    assert where == "bundle" and {"model.pt", "meta.json"} <= set(files), files
    assert fake.of("end_run") == ["FINISHED"]


def test_a_missing_tracker_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    code = main(["train", "-c", str(_config(tmp_path, ["mlflow"]))])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "mlflow is not installed (pip install 'recforge[mlflow]')" in err


def test_compare_tracks_each_model(tmp_path):
    from recforge.commands.compare import compare_models
    from recforge.data.pipeline import encode_run

    cfg = load_run_config(_config(tmp_path, ["tensorboard"]))
    run = encode_run(cfg.data, seed=0, use_cache=False)
    compare_models(["lr", "fm"], run, cfg.train, output_dir=tmp_path / "cmp")
    for name in ("lr", "fm"):
        scalars = _scalars(tmp_path / "cmp" / name / "tensorboard")
        assert "train/loss" in scalars and "test/auc" in scalars, name


def test_a_resumed_run_continues_the_step_numbers(tmp_path):
    from recforge.config import TrainConfig
    from recforge.data.pipeline import encode_run
    from recforge.run import train_model
    from recforge.train.trainer import TrainerCallback

    class Steps(TrainerCallback):
        def __init__(self) -> None:
            self.steps: list[int] = []

        def on_step_end(self, trainer, step, loss, rows) -> None:  # noqa: ANN001
            self.steps.append(step)

    cfg = load_run_config(_config(tmp_path, []))
    run = encode_run(cfg.data, seed=0, use_cache=False)
    first, second = Steps(), Steps()
    one = TrainConfig(epochs=1, batch_size=256, progress=False, threads=1)
    train_model("lr", {}, run, one, output_dir=tmp_path / "r", callbacks=[first])
    two = TrainConfig(epochs=2, batch_size=256, progress=False, threads=1)
    train_model("lr", {}, run, two, output_dir=tmp_path / "r", resume=True, callbacks=[second])
    per_epoch = len(first.steps)
    assert second.steps == list(range(per_epoch, 2 * per_epoch))
