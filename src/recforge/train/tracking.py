"""Experiment tracking: TensorBoard and MLflow logging of a training run, off by default.

``train.track: [tensorboard]`` (and/or ``mlflow``) makes every run through the engine
(``recforge train``, each model of ``recforge compare``, each trial of ``recforge tune``) log:

* ``train/loss`` per optimizer step (the step's mean loss);
* ``epoch/<key>`` per epoch: ``train_loss``, ``train_samples_per_s``, ``train_seconds``, every
  ``valid_*`` metric and ``lr``;
* ``test/<metric>`` once, after the test evaluation;
* the resolved run config (TensorBoard: a text summary; MLflow: flattened params and
  ``config.yaml``) and, with MLflow, the saved bundle as the ``bundle`` artefact.

A :class:`Tracker` is a :class:`~recforge.train.trainer.TrainerCallback`; the caller opens one
with :func:`open_tracker`, passes it to the Trainer and closes it (it is a context manager).
With ``track`` empty it does nothing. A tracker asked for but not installed is a one-line error
naming the extra to install.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from recforge.config import TrainConfig
from recforge.train.trainer import Trainer, TrainerCallback

log = logging.getLogger(__name__)

MISSING = {
    "tensorboard": "train.track: tensorboard is not installed (pip install 'recforge[tracking]')",
    "mlflow": "train.track: mlflow is not installed (pip install 'recforge[mlflow]')",
}


def flatten(config: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``{"train": {"lr": 1e-3}}`` -> ``("train.lr", 1e-3)``; lists are kept as values."""
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from flatten(value, f"{name}.")
        else:
            yield name, value


class Tracker(TrainerCallback):
    """Logs one run to the trackers a :class:`TrainConfig` asks for.

    Args:
        cfg: The run's training options (``track``, ``track_dir``, ``track_experiment``).
        log_dir: TensorBoard folder when ``cfg.track_dir`` is not set.
        run_name: The run's name in MLflow (and a subfolder of ``cfg.track_dir``).
        config: The resolved run config, logged once.

    Raises:
        ValueError: A tracker in ``cfg.track`` whose package is not installed.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        log_dir: Path | None,
        run_name: str,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.kinds = list(dict.fromkeys(cfg.track))
        self.run_name = run_name
        self._tb: Any = None
        self._mlflow: Any = None
        self._steps: list[tuple[int, float, int]] = []  # mlflow: buffered (step, loss, ms)
        self.log_dir: Path | None = None
        if "tensorboard" in self.kinds:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ValueError(MISSING["tensorboard"]) from None
            folder = Path(cfg.track_dir) / run_name if cfg.track_dir else log_dir
            if folder is None:
                folder = Path("runs") / "tensorboard" / run_name
            self.log_dir = folder
            self._tb = SummaryWriter(log_dir=str(folder))
            log.info("tracking: TensorBoard events in %s", folder)
        if "mlflow" in self.kinds:
            try:
                import mlflow
            except ImportError:
                raise ValueError(MISSING["mlflow"]) from None
            self._mlflow = mlflow
            mlflow.set_experiment(cfg.track_experiment)
            # inside a caller's active run (a notebook, a sweep) this run nests under it
            self._mlflow_run = mlflow.start_run(
                run_name=run_name, nested=mlflow.active_run() is not None
            )
            log.info("tracking: MLflow run %s", self._mlflow_run.info.run_id)
        if config is not None:
            self.log_config(config)

    @property
    def active(self) -> bool:
        """True when at least one tracker logs."""
        return self._tb is not None or self._mlflow is not None

    # ---- what the run logs ---------------------------------------------------------------
    def log_config(self, config: Mapping[str, Any]) -> None:
        """The resolved run config: a text summary / flattened params and ``config.yaml``."""
        text = yaml.safe_dump(dict(config), sort_keys=False)
        if self._tb is not None:
            self._tb.add_text("config", "```\n" + text + "```", 0)
        if self._mlflow is not None:
            params = {k: str(v)[:500] for k, v in flatten(config)}
            self._mlflow.log_params(params)
            self._mlflow.log_text(text, "config.yaml")

    def on_step_end(self, trainer: Trainer, step: int, loss: float, rows: int) -> None:
        if self._tb is not None:
            self._tb.add_scalar("train/loss", loss, step)
        if self._mlflow is not None:
            self._steps.append((step, loss, int(time.time() * 1000)))

    def on_epoch_end(self, trainer: Trainer, record: dict[str, float]) -> None:
        epoch = int(record.get("epoch", len(trainer.history)))
        values = {f"epoch/{k}": float(v) for k, v in record.items() if k != "epoch"}
        if self._tb is not None:
            for key, value in values.items():
                self._tb.add_scalar(key, value, epoch)
            self._tb.flush()
        if self._mlflow is not None:
            self._flush_steps()
            self._mlflow.log_metrics({_mlflow_key(k): v for k, v in values.items()}, step=epoch)

    def log_test(self, test_metrics: Mapping[str, float], step: int = 0) -> None:
        """The test metrics of the finished run."""
        values = {f"test/{k}": float(v) for k, v in test_metrics.items()}
        if self._tb is not None:
            for key, value in values.items():
                self._tb.add_scalar(key, value, step)
        if self._mlflow is not None:
            self._mlflow.log_metrics({_mlflow_key(k): v for k, v in values.items()}, step=step)

    def log_bundle(self, bundle_dir: Path) -> None:
        """The saved bundle as the MLflow artefact ``bundle`` (TensorBoard keeps no files)."""
        if self._mlflow is not None:
            self._mlflow.log_artifacts(str(bundle_dir), artifact_path="bundle")

    def _flush_steps(self) -> None:
        if not self._steps:
            return
        from mlflow.entities import Metric

        metrics = [Metric("train/loss", loss, ms, step) for step, loss, ms in self._steps]
        self._mlflow.tracking.MlflowClient().log_batch(
            self._mlflow_run.info.run_id, metrics=metrics
        )
        self._steps.clear()

    # ---- lifetime ------------------------------------------------------------------------
    def close(self, failed: bool = False) -> None:
        """Flush and close every tracker (the MLflow run ends ``FAILED`` when ``failed``)."""
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._mlflow is not None:
            self._flush_steps()
            self._mlflow.end_run(status="FAILED" if failed else "FINISHED")
            self._mlflow = None

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close(failed=exc_type is not None)


def _mlflow_key(key: str) -> str:
    """MLflow metric names allow ``@`` nowhere: ``valid_hr@10`` -> ``valid_hr_at_10``."""
    return key.replace("@", "_at_")


def open_tracker(
    cfg: TrainConfig,
    log_dir: Path | None,
    run_name: str,
    config: Mapping[str, Any] | None = None,
) -> Tracker:
    """A :class:`Tracker` for ``cfg.track`` (inactive when it is empty); see the class."""
    return Tracker(cfg, log_dir, run_name, config)
