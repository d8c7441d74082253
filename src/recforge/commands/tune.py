"""``recforge tune``: hyper-parameter search with Optuna over ``recforge train`` runs.

``recforge tune -c base.yaml --space space.yaml --trials N`` runs a study in which every trial
is the base run config with the trial's values set, trained by the engine's own path
(:func:`recforge.run.train_from_config`) into ``OUTPUT/trials/NNNN``. Trials are selected on
the validation metric only (the run's ``train.metric``, the one early stopping follows); the
test split is not touched until the best trial's config is retrained once into
``OUTPUT/best`` and tested there.

* Samplers: ``tpe`` (default), ``grid`` (every combination of categorical choices, BARS style)
  and ``random``.
* Pruning: each trial reports its validation metric after every epoch (a
  :class:`~recforge.train.trainer.TrainerCallback`); the median pruner stops a trial whose
  value is worse than the median of earlier trials at the same epoch (``--pruner none``
  disables it).
* Storage: SQLite in the output folder (or ``--storage URL``). Running the same command again
  continues the study (an interrupted one, or a finished one with a larger ``--trials``): N is
  the total number of finished trials the study should hold; a trial cut off by an interrupt
  is marked failed and run again. ``--restart`` starts over.
* ``--jobs J`` runs J worker processes sharing the storage.

Outputs, written to ``.OUTPUT.partial`` and published by one rename when the study has
finished: ``trials.csv`` / ``trials.md`` (the study table), ``best.yaml`` (runnable by
``recforge train -c``), ``importance.json`` (Optuna's fANOVA importance of each parameter),
``history.png`` (the optimisation history), ``summary.json`` / ``summary.md``, ``study.db``,
``trials/`` and ``best/`` (the retrained best run, with its bundle).

Search-space YAML: one entry per dotted config key::

    train.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
    train.embedding_l2: {type: categorical, choices: [0.0, 1.0e-5, 1.0e-4]}
    model.embedding_dim: {type: categorical, choices: [8, 16]}   # = model.params.embedding_dim
    model.params.hidden: {type: categorical, choices: [[400, 400], [400, 400, 400]]}
    model.params.dropout: {type: float, low: 0.0, high: 0.5, step: 0.1}
    train.batch_size: {type: int, low: 1024, high: 8192, log: true}

``type`` is ``float`` / ``int`` (``low``, ``high``, optional ``log`` or ``step``) or
``categorical`` (``choices``: scalars or lists). Keys are ``train.*``, ``data.*``,
``model.name`` and ``model.params.*`` (``model.KEY`` is short for ``model.params.KEY``).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import io
import json
import logging
import math
import multiprocessing
import shlex
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from recforge.config import ConfigError, RunConfig, from_dict, to_dict
from recforge.train.trainer import Trainer, TrainerCallback

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

SAMPLERS = ("tpe", "grid", "random")
PRUNERS = ("median", "none")
SECTIONS = ("train", "data", "model")
REPORT_FILES = (
    "trials.csv", "trials.md", "best.yaml", "importance.json", "history.png", "summary.json",
    "summary.md",
)  # fmt: skip


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune", help="search hyper-parameters with Optuna (validation only; best tested once)"
    )
    p.add_argument("-c", "--config", required=True, help="base YAML run config")
    p.add_argument("--space", required=True, help="search-space YAML (see recforge.commands.tune)")
    p.add_argument(
        "--trials",
        type=int,
        help="finished trials the study should hold (a rerun adds only the missing ones); "
        "default for --sampler grid: the grid size",
    )
    p.add_argument("--sampler", choices=SAMPLERS, default="tpe", help="default: tpe")
    p.add_argument("--jobs", type=int, default=1, help="parallel worker processes")
    p.add_argument("--output", help="study folder (default runs/tune/<space file stem>)")
    p.add_argument("--storage", help="Optuna storage URL (default: SQLite in the output folder)")
    p.add_argument("--study-name", help="default: the output folder's name")
    p.add_argument(
        "--restart", action="store_true", help="discard an existing study and start over"
    )
    p.add_argument("--pruner", choices=PRUNERS, default="median", help="default: median")
    p.add_argument(
        "--prune-startup", type=int, default=2, help="trials that finish before pruning starts"
    )
    p.add_argument(
        "--prune-warmup",
        type=int,
        default=3,
        help="epochs a trial runs before it can be pruned (default 3)",
    )
    p.add_argument("--seed", type=int, default=0, help="sampler seed")
    p.add_argument(
        "--no-retrain", action="store_true", help="skip retraining/testing the best config"
    )
    p.add_argument("overrides", nargs="*", help="overrides of the base config, e.g. train.epochs=5")
    p.set_defaults(handler=cmd_tune)


# ---- the search space --------------------------------------------------------------------------


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


@dataclass(frozen=True)
class Param:
    """One searched config key.

    Attributes:
        name: The key as written in the space file (Optuna's parameter name).
        path: Where it goes in the run config, e.g. ``("model", "params", "dropout")``.
        type: ``float``, ``int`` or ``categorical``.
        low: Lower bound (float/int).
        high: Upper bound (float/int).
        log: Log-uniform sampling (float/int).
        step: Step (float/int); ``None`` is continuous (float) or 1 (int).
        choices: The values of a categorical parameter.
        labels: What Optuna sees for each choice: the choice itself when every choice is a
            scalar, else its YAML flow text (lists such as tower sizes).
    """

    name: str
    path: tuple[str, ...]
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    labels: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        """The trial's value for this key (the config value, not the label)."""
        if self.type == "categorical":
            label = trial.suggest_categorical(self.name, list(self.labels))
            return self.choices[self.labels.index(label)]
        if self.type == "int":
            step = int(self.step) if self.step else 1
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=step,
                                     log=self.log)  # fmt: skip
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def value_of(self, label: Any) -> Any:
        """A stored Optuna value (label) as the config value."""
        if self.type == "categorical":
            return self.choices[self.labels.index(label)]
        return label

    def example(self) -> Any:
        """A valid value, used to check the key against the config."""
        if self.type == "categorical":
            return self.choices[0]
        return int(self.low) if self.type == "int" else float(self.low)


def config_path(name: str) -> tuple[str, ...]:
    """``model.KEY`` -> ``("model", "params", "KEY")``; other keys split on dots."""
    parts = tuple(name.split("."))
    if parts[0] == "model" and len(parts) >= 2 and parts[1] not in ("name", "params"):
        return ("model", "params", *parts[1:])
    return parts


def _param(where: str, name: Any, spec: Any) -> Param:
    def bad(detail: str) -> ConfigError:
        return ConfigError(f"{where}: {name}: {detail}")

    if not isinstance(name, str) or not name or any(not p for p in name.split(".")):
        raise ConfigError(f"{where}: {name!r}: a key must be a dotted config key like train.lr")
    path = config_path(name)
    if path[0] not in SECTIONS or len(path) < 2:
        raise bad(f"must start with one of {list(SECTIONS)} (e.g. train.lr, model.dropout)")
    if not isinstance(spec, dict):
        raise bad("expected a mapping like {type: float, low: 1e-4, high: 1e-2, log: true}")
    kind = spec.get("type")
    allowed = {
        "float": {"type", "low", "high", "log", "step"},
        "int": {"type", "low", "high", "log", "step"},
        "categorical": {"type", "choices"},
    }
    if kind not in allowed:
        raise bad(f"type must be one of {sorted(allowed)}, got {kind!r}")
    unknown = sorted(set(spec) - allowed[kind])
    if unknown:
        raise bad(f"unknown field(s) {unknown} for type {kind}; valid: {sorted(allowed[kind])}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise bad("categorical needs a non-empty list 'choices'")
        if all(_is_scalar(c) for c in choices):
            labels = tuple(choices)
        else:
            labels = tuple(yaml.safe_dump(c, default_flow_style=True).strip() for c in choices)
        if len(set(map(str, labels))) != len(labels):
            raise bad("choices repeat a value")
        return Param(name, path, kind, choices=tuple(choices), labels=labels)
    numbers = {}
    for key in ("low", "high"):
        value = spec.get(key)
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise bad(f"{key} must be a number, got {value!r}") from None
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise bad(f"{kind} needs a number '{key}', got {value!r}")
        if kind == "int" and not float(value).is_integer():
            raise bad(f"{key} must be an integer, got {value!r}")
        numbers[key] = float(value)
    if not numbers["low"] < numbers["high"]:
        raise bad(f"low must be below high, got {numbers['low']} and {numbers['high']}")
    log_scale = spec.get("log", False)
    if not isinstance(log_scale, bool):
        raise bad(f"log must be true or false, got {log_scale!r}")
    if log_scale and numbers["low"] <= 0:
        raise bad(f"log needs low > 0, got {numbers['low']}")
    step = spec.get("step")
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0:
            raise bad(f"step must be a positive number, got {step!r}")
        if log_scale:
            raise bad("step and log cannot be combined")
    return Param(name, path, kind, numbers["low"], numbers["high"], log_scale,
                 None if step is None else float(step))  # fmt: skip


def load_space(path: str | Path) -> list[Param]:
    """Read and check a search-space YAML file (format in the module docstring).

    Raises:
        ConfigError: One line naming the file and the key that is wrong.
        FileNotFoundError: No such file.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: {getattr(exc, 'problem', None) or 'not valid YAML'}") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{path}: a search space is a non-empty mapping of config keys")
    params = [_param(str(path), name, spec) for name, spec in data.items()]
    paths = [p.path for p in params]
    if len(set(paths)) != len(paths):
        raise ConfigError(f"{path}: two keys name the same config entry")
    return params


def set_values(base: dict[str, Any], values: dict[tuple[str, ...], Any]) -> dict[str, Any]:
    """A copy of the config mapping ``base`` with each ``path -> value`` set."""
    out = copy.deepcopy(base)
    for path, value in values.items():
        node = out
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"{'.'.join(path)}: {part!r} is not a section")
            node = child
        node[path[-1]] = copy.deepcopy(value)
    return out


def build_config(data: dict[str, Any], where: str) -> RunConfig:
    """A checked :class:`RunConfig` (model section included) from a config mapping."""
    from recforge.commands.core import validate_model_section

    cfg = from_dict(RunConfig, data, where=where)
    validate_model_section(cfg, None)
    return cfg


def check_space(space: list[Param], base: dict[str, Any], where: str) -> None:
    """Every key of the space exists in the config and accepts its example value.

    Raises:
        ConfigError: ``SPACE: KEY: what is wrong``.
    """
    for param in space:
        try:
            build_config(set_values(base, {param.path: param.example()}), "config")
        except ConfigError as exc:
            raise ConfigError(f"{where}: {param.name}: {exc}") from None


# ---- the study ---------------------------------------------------------------------------------


class PruningReport(TrainerCallback):
    """Reports each epoch's validation metric to an Optuna trial; raises ``TrialPruned`` when
    the pruner says so (the Trainer's ``fit`` ends with it)."""

    def __init__(self, trial: optuna.Trial, monitor: str) -> None:
        self.trial = trial
        self.key = f"valid_{monitor}"

    def on_epoch_end(self, trainer: Trainer, record: dict[str, float]) -> None:
        import optuna

        value = record.get(self.key)
        if value is None or not math.isfinite(value):
            return
        epoch = int(record["epoch"])
        self.trial.report(float(value), epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch} ({self.key}={value:.5g})")


@dataclass
class StudySetup:
    """Everything a worker needs to run trials (picklable for ``--jobs``)."""

    base: dict[str, Any]
    space: list[Param]
    work: Path
    storage: str
    study_name: str
    monitor: str
    sampler: str
    seed: int
    pruner: str
    prune_startup: int
    prune_warmup: int
    threads: int = 0


@dataclass
class TuneResult:
    """What :func:`tune` produced."""

    output: Path
    study_name: str
    monitor: str
    direction: str
    new_trials: int
    states: dict[str, int]
    best_trial: int
    best_value: float
    best_params: dict[str, Any]
    test_metrics: dict[str, float] = field(default_factory=dict)
    importance: dict[str, float] = field(default_factory=dict)


def make_sampler(
    kind: str, space: list[Param], seed: int, trials: int
) -> optuna.samplers.BaseSampler:
    """The Optuna sampler for ``kind`` (grid needs categorical choices for every key)."""
    import optuna

    if kind == "grid":
        grid = {}
        for p in space:
            if p.type != "categorical":
                raise ConfigError(f"{p.name}: --sampler grid needs 'type: categorical' choices")
            grid[p.name] = list(p.labels)
        return optuna.samplers.GridSampler(grid, seed=seed)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    startup = max(1, min(10, trials // 3))  # a small study still leaves TPE some trials
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)


def make_pruner(kind: str, startup: int, warmup: int) -> optuna.pruners.BasePruner:
    import optuna

    if kind == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=warmup)


def trial_config(setup: StudySetup, values: dict[str, Any], output_dir: Path) -> RunConfig:
    """The run config of a trial: base config, the trial's values, its own output folder."""
    data = set_values(setup.base, {p.path: values[p.name] for p in setup.space})
    data["output_dir"] = str(output_dir)
    data.setdefault("train", {})["progress"] = False
    if setup.threads:
        data["train"]["threads"] = setup.threads
    return build_config(data, "trial config")


def run_trial(setup: StudySetup, trial: optuna.Trial) -> float:
    """Optuna objective: one ``recforge train`` run of the trial's config, validation only."""
    import optuna

    from recforge import metrics
    from recforge.run import partial_folder, train_from_config

    values = {p.name: p.suggest(trial) for p in setup.space}
    out = setup.work / "trials" / f"{trial.number:04d}"
    cfg = trial_config(setup, values, out)
    log.info("trial %d: %s", trial.number, {k: v for k, v in values.items()})
    start = time.perf_counter()
    try:
        result = train_from_config(
            cfg, callbacks=[PruningReport(trial, setup.monitor)], evaluate_test=False
        )
    except optuna.TrialPruned:
        shutil.rmtree(partial_folder(out), ignore_errors=True)  # nothing to keep
        trial.set_user_attr("seconds", round(time.perf_counter() - start, 2))
        raise
    except KeyboardInterrupt:  # Optuna records it as failed: mark it to be run again
        trial.set_user_attr("interrupted", True)
        raise
    key = f"valid_{setup.monitor}"
    scores = [r[key] for r in result.history if key in r and math.isfinite(r[key])]
    if not scores:
        raise RuntimeError(f"trial {trial.number}: no finite {key} was recorded")
    best = max(scores) if metrics.higher_is_better(setup.monitor) else min(scores)
    trial.set_user_attr("best_epoch", int(result.extra.get("best_epoch", -1)))
    trial.set_user_attr("epochs", len(result.history))
    trial.set_user_attr("seconds", round(time.perf_counter() - start, 2))
    return float(best)


def _optimize(setup: StudySetup, n_trials: int, seed: int, trials_total: int) -> None:
    """Run ``n_trials`` trials of the stored study in this process."""
    import optuna

    sampler = make_sampler(setup.sampler, setup.space, seed, trials_total)
    study = optuna.load_study(
        study_name=setup.study_name,
        storage=setup.storage,
        sampler=sampler,
        pruner=make_pruner(setup.pruner, setup.prune_startup, setup.prune_warmup),
    )
    study.optimize(
        lambda trial: run_trial(setup, trial),
        n_trials=n_trials,
        catch=(FloatingPointError, RuntimeError, ValueError),
        gc_after_trial=True,
    )


def _worker(setup: StudySetup, n_trials: int, seed: int, trials_total: int) -> None:
    """A ``--jobs`` worker process (spawned: it sets up logging as the CLI does)."""
    import optuna

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _optimize(setup, n_trials, seed, trials_total)


def _counted(trial: optuna.trial.FrozenTrial) -> bool:
    """A finished trial that counts towards --trials (an interrupted one does not)."""
    from optuna.trial import TrialState

    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and not trial.user_attrs.get("interrupted")


def _prepare_work(out: Path, work: Path, restart: bool) -> str:
    """The study's working folder: fresh, the interrupted one, or a copy of the finished one."""
    if restart:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        return "new"
    if work.exists():
        return "interrupted"
    if (out / "study.db").exists():
        shutil.copytree(out, work, ignore=shutil.ignore_patterns(*REPORT_FILES, "best"))
        return "finished"
    work.mkdir(parents=True)
    return "new"


def tune(
    config: str | Path | None,
    space_path: str | Path,
    output: str | Path | None = None,
    trials: int | None = None,
    overrides: list[str] | None = None,
    sampler: str = "tpe",
    jobs: int = 1,
    storage: str | None = None,
    study_name: str | None = None,
    restart: bool = False,
    pruner: str = "median",
    prune_startup: int = 2,
    prune_warmup: int = 3,
    seed: int = 0,
    retrain: bool = True,
    enqueue: list[dict[str, Any]] | None = None,
    command: str | None = None,
) -> TuneResult:
    """Run (or continue) a study; write its reports; retrain and test the best config once.

    Args:
        config: Base YAML run config (``None``: defaults).
        space_path: Search-space YAML.
        output: Study folder (default ``runs/tune/<space stem>``).
        trials: Finished trials the study should hold in total (grid: default the grid size).
        overrides: Dotted overrides of the base config.
        sampler: ``tpe``, ``grid`` or ``random``.
        jobs: Worker processes (each with ``cpu_count // jobs`` torch threads unless
            ``train.threads`` is set).
        storage: Optuna storage URL; default SQLite ``OUTPUT/study.db``.
        study_name: Default: the output folder's name.
        restart: Discard the study in the output folder and start a new one.
        pruner: ``median`` or ``none``.
        prune_startup: Trials that finish before the median pruner prunes.
        prune_warmup: Epochs a trial runs before it can be pruned.
        seed: Sampler seed (worker ``i`` uses ``seed + i``).
        retrain: Retrain the best config into ``OUTPUT/best`` and test it.
        enqueue: Parameter sets (space key -> config value) to run first.
        command: The command line, recorded in the summary.

    Returns:
        The study's outcome.

    Raises:
        ConfigError: A bad space file, base config or option, in one line.
    """
    import optuna
    from optuna.trial import TrialState

    from recforge import metrics
    from recforge.commands.core import validate_model_section
    from recforge.config import load_run_config
    from recforge.data.pipeline import encode_run
    from recforge.io import atomic_write, atomic_write_text, replace_folder
    from recforge.run import partial_folder, train_from_config
    from recforge.train.trainer import monitor_metric

    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}")
    space = load_space(space_path)
    base_cfg = load_run_config(config, overrides)
    validate_model_section(base_cfg, str(config) if config else None)
    base = to_dict(base_cfg)
    check_space(space, base, str(space_path))
    make_sampler(sampler, space, seed, trials or 1)  # a grid over non-categorical keys fails
    grid_size = math.prod(len(p.choices) for p in space) if sampler == "grid" else None
    if trials is None:
        if grid_size is None:
            raise ConfigError("--trials is needed (only --sampler grid defaults to its grid size)")
        trials = grid_size
    if trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {trials}")

    # the data once, here: checks the path, warms the cache for the trials, gives the task
    run = encode_run(base_cfg.data, seed=base_cfg.train.seed, use_cache=True)
    if not len(run.valid):
        raise ConfigError("tune selects on validation, but the run has no validation split")
    monitor = monitor_metric(base_cfg.train.metric, run.schema.task, base_cfg.train.top_k)
    direction = "maximize" if metrics.higher_is_better(monitor) else "minimize"
    del run

    out = Path(output or Path("runs") / "tune" / Path(space_path).stem)
    work = partial_folder(out)
    how = _prepare_work(out, work, restart)
    storage_url = storage or f"sqlite:///{(work / 'study.db').resolve()}"
    name = study_name or out.name
    if restart and storage:
        with contextlib.suppress(KeyError):  # KeyError: no such study yet
            optuna.delete_study(study_name=name, storage=storage_url)
    study = optuna.create_study(
        study_name=name, storage=storage_url, direction=direction, load_if_exists=True
    )
    space_record = {p.name: list(p.labels) if p.type == "categorical" else
                    [p.type, p.low, p.high, p.log, p.step] for p in space}  # fmt: skip
    identity = _study_identity(base)
    if study.user_attrs:
        if (
            study.user_attrs.get("space") != space_record
            or study.user_attrs.get("base") != identity
        ):
            raise ConfigError(
                f"{out}: holds a study of another base config or search space; "
                "use --restart or another --output"
            )
    else:
        study.set_user_attr("space", space_record)
        study.set_user_attr("base", identity)
        study.set_user_attr("monitor", monitor)
    _recover_interrupted(study)
    for values in enqueue or []:
        labels = {}
        for p in space:
            if p.name in values:
                v = values[p.name]
                labels[p.name] = p.labels[p.choices.index(v)] if p.type == "categorical" else v
        study.enqueue_trial(labels, skip_if_exists=True)
    done = sum(_counted(t) for t in study.get_trials(deepcopy=False))
    todo = max(trials - done, 0)
    log.info("tune: study %s (%s): %d finished trial(s), %d to run", name, how, done, todo)

    setup = StudySetup(
        base=base, space=space, work=work, storage=storage_url, study_name=name,
        monitor=monitor, sampler=sampler, seed=seed, pruner=pruner,
        prune_startup=prune_startup, prune_warmup=prune_warmup,
    )  # fmt: skip
    if todo and jobs == 1:
        try:
            _optimize(setup, todo, seed, trials)
        except KeyboardInterrupt:
            log.warning("tune: interrupted; run the same command again to continue the study")
            raise
    elif todo:
        if not base_cfg.train.threads:
            setup.threads = max(1, (multiprocessing.cpu_count() or 1) // jobs)
        ctx = multiprocessing.get_context("spawn")
        shares = [todo // jobs + (i < todo % jobs) for i in range(jobs)]
        procs = [
            ctx.Process(target=_worker, args=(setup, n, seed + i, trials))
            for i, n in enumerate(shares)
            if n
        ]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
        failed = [p.exitcode for p in procs if p.exitcode]
        if failed:
            raise RuntimeError(f"tune: {len(failed)} worker(s) failed (exit codes {failed})")

    study = optuna.load_study(study_name=name, storage=storage_url)
    all_trials = study.get_trials(deepcopy=False)
    complete = [t for t in all_trials if t.state == TrialState.COMPLETE]
    if not complete:
        raise RuntimeError(f"tune: no trial of study {name} completed (see the log)")
    best = study.best_trial
    best_values = {p.name: p.value_of(best.params[p.name]) for p in space if p.name in best.params}
    best_data = set_values(
        base, {p.path: best_values[p.name] for p in space if p.name in best_values}
    )
    test: dict[str, float] = {}
    retrained: dict[str, Any] = {}
    if retrain:
        run_data = set_values(best_data, {("output_dir",): str(work / "best"),
                                          ("train", "progress"): False})  # fmt: skip
        cfg = build_config(run_data, "best config")
        log.info("tune: retraining the best config (trial %d) and testing it", best.number)
        result = train_from_config(cfg)
        test = result.test_metrics
        key = f"valid_{monitor}"
        scores = [r[key] for r in result.history if key in r]
        retrained = {"valid": (max if direction == "maximize" else min)(scores) if scores else None,
                     "best_epoch": result.extra.get("best_epoch"),
                     "train_seconds": round(result.train_seconds, 2)}  # fmt: skip
    importance, importance_note = _importance(study, len(complete))
    states = {s.name: sum(t.state == s for t in all_trials) for s in TrialState}
    states = {k: v for k, v in states.items() if v}
    new_trials = todo
    best_yaml = {**best_data, "output_dir": str(out / "best")}
    summary = {
        "study": name,
        "storage": storage if storage else "study.db",
        "sampler": sampler,
        "pruner": pruner,
        "monitor": f"valid {monitor}",
        "direction": direction,
        "trials": len(all_trials),
        "states": states,
        "best": {"trial": best.number, "valid": best.value, "params": best_values},
        "retrained": retrained,
        "test": test,
        "importance": importance,
        "importance_note": importance_note,
        "command": command,
    }
    rows = _trial_rows(all_trials, space)
    atomic_write_text(work / "trials.csv", _csv(rows))
    atomic_write_text(work / "trials.md", _markdown_table(rows))
    atomic_write_text(work / "best.yaml", _best_yaml(best_yaml, best, monitor, command))
    atomic_write_text(work / "importance.json", json.dumps(
        {"importance": importance, "note": importance_note}, indent=1))  # fmt: skip
    atomic_write_text(work / "summary.json", json.dumps(summary, indent=1, default=str))
    atomic_write_text(work / "summary.md", summary_markdown(summary, rows))
    atomic_write(work / "history.png",
                 lambda tmp: plot_history(all_trials, direction, monitor, tmp))  # fmt: skip
    replace_folder(work, out)
    return TuneResult(
        output=out, study_name=name, monitor=monitor, direction=direction,
        new_trials=new_trials, states=states, best_trial=best.number,
        best_value=float(best.value), best_params=best_values, test_metrics=test,
        importance=importance,
    )  # fmt: skip


# base-config keys that do not change a trial's result: a rerun may change them
VOLATILE = {
    ("output_dir",), ("train", "threads"), ("train", "progress"), ("train", "track"),
    ("train", "track_dir"), ("train", "track_experiment"), ("data", "cache_dir"),
}  # fmt: skip


def _study_identity(base: dict[str, Any]) -> Any:
    """The base config as the study stores it (JSON), without :data:`VOLATILE` keys."""
    data = json.loads(json.dumps(base, default=str))
    for path in VOLATILE:
        node = data
        for part in path[:-1]:
            node = node.get(part, {})
        node.pop(path[-1], None)
    return data


def _recover_interrupted(study: optuna.Study) -> None:
    """Trials an interrupt cut off (left RUNNING by a killed process, or failed by Ctrl-C):
    mark them interrupted (not counted) and queue their parameters again, once. Only call
    this while no worker of the study runs."""
    from optuna.trial import TrialState

    storage = study._storage
    requeued = list(study.user_attrs.get("requeued", []))  # finished trials are read-only
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.RUNNING:
            storage.set_trial_user_attr(t._trial_id, "interrupted", True)
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        elif not (t.state == TrialState.FAIL and t.user_attrs.get("interrupted")):
            continue
        if t.number in requeued:
            continue
        requeued.append(t.number)
        if t.params:
            study.enqueue_trial(dict(t.params))
        log.info("tune: trial %d was interrupted; its parameters run again", t.number)
    if requeued:
        study.set_user_attr("requeued", requeued)


def _importance(study: optuna.Study, complete: int) -> tuple[dict[str, float], str]:
    """Optuna's (fANOVA) importance per parameter, or an empty dict and why."""
    import optuna

    if complete < 2:
        return {}, f"needs at least 2 completed trials, the study has {complete}"
    try:
        values = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError) as exc:
        return {}, f"not computable: {exc}"
    if not values:
        return {}, "no parameter varied across the completed trials"
    return {k: round(float(v), 4) for k, v in values.items()}, "fANOVA (optuna)"


def _trial_rows(trials: list[Any], space: list[Param]) -> list[dict[str, Any]]:
    rows = []
    for t in trials:
        row: dict[str, Any] = {"trial": t.number, "state": t.state.name}
        if t.user_attrs.get("interrupted"):
            row["state"] = "INTERRUPTED"
        row["value"] = t.value
        if t.state.name == "PRUNED" and t.intermediate_values:
            last = max(t.intermediate_values)
            row["value"] = t.intermediate_values[last]
        for p in space:
            row[p.name] = t.params.get(p.name)
        row["best_epoch"] = t.user_attrs.get("best_epoch")
        row["epochs"] = t.user_attrs.get("epochs", len(t.intermediate_values) or None)
        row["seconds"] = t.user_attrs.get("seconds")
        rows.append(row)
    return rows


def _csv(rows: list[dict[str, Any]]) -> str:
    sink = io.StringIO()
    if rows:
        writer = csv.DictWriter(sink, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return sink.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if value and abs(value) < 1e-3:
            return f"{value:.5g}"
        return f"{value:.5f}".rstrip("0").rstrip(".") or "0"
    return str(value)


def _markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no trials)\n"
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_cell(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _best_yaml(data: dict[str, Any], best: Any, monitor: str, command: str | None) -> str:
    head = (
        f"# best trial {best.number}: valid {monitor} {best.value:.6g}\n"
        f"# recforge train -c best.yaml   (written by: {command or 'recforge tune'})\n"
    )
    return head + yaml.safe_dump(data, sort_keys=False)


def summary_markdown(summary: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The study in Markdown: best config, its test metrics, importance, the trial table."""
    best = summary["best"]
    states = ", ".join(f"{k} {v}" for k, v in summary["states"].items())
    lines = [
        f"# Study {summary['study']}",
        "",
        f"- selection: {summary['monitor']} ({summary['direction']}), sampler "
        f"{summary['sampler']}, pruner {summary['pruner']}",
        f"- trials: {summary['trials']} ({states})",
        f"- best: trial {best['trial']}, valid {best['valid']:.5f}, "
        + ", ".join(f"{k}={v}" for k, v in best["params"].items()),
    ]
    if summary["test"]:
        test = ", ".join(f"{k} {v:.4f}" for k, v in summary["test"].items())
        lines.append(f"- best config retrained once and tested: {test}")
    if summary["importance"]:
        imp = ", ".join(f"{k} {v:.2f}" for k, v in summary["importance"].items())
        lines.append(f"- importance (fANOVA): {imp}")
    else:
        lines.append(f"- importance: {summary['importance_note']}")
    if summary.get("command"):
        lines.append(f"- command: `{summary['command']}`")
    return "\n".join(lines) + "\n\n" + _markdown_table(rows)


def plot_history(trials: list[Any], direction: str, monitor: str, path: Path) -> None:
    """Each trial's validation value (pruned: its last report) and the best so far, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    better = max if direction == "maximize" else min
    best, xs, ys = None, [], []
    for state, color in (("COMPLETE", "#4878a8"), ("PRUNED", "#c8c8c8")):
        pts = [(t.number, t.value if state == "COMPLETE" else
                t.intermediate_values[max(t.intermediate_values)])
               for t in trials if t.state.name == state
               and (t.value is not None or t.intermediate_values)]  # fmt: skip
        if pts:
            ax.scatter(*zip(*pts, strict=True), color=color, label=state.lower(), zorder=3)
    for t in sorted(trials, key=lambda t: t.number):
        if t.state.name == "COMPLETE" and t.value is not None:
            best = t.value if best is None else better(best, t.value)
            xs.append(t.number)
            ys.append(best)
    if xs:
        ax.step(xs, ys, where="post", color="#c44e52", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"valid {monitor}")
    ax.set_title("optimisation history")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)


# ---- command -----------------------------------------------------------------------------------


def cmd_tune(args: argparse.Namespace) -> int:
    try:
        import optuna
    except ImportError:
        raise ValueError("tune: optuna is not installed (pip install 'recforge[tune]')") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    command = shlex.join(
        ["recforge", "tune", "-c", args.config, "--space", args.space]
        + (["--trials", str(args.trials)] if args.trials else [])
        + (["--sampler", args.sampler] if args.sampler != "tpe" else [])
        + (["--jobs", str(args.jobs)] if args.jobs != 1 else [])
        + (["--output", args.output] if args.output else [])
        + (["--no-retrain"] if args.no_retrain else [])
        + (["--pruner", args.pruner] if args.pruner != "median" else [])
        + (["--prune-startup", str(args.prune_startup)] if args.prune_startup != 2 else [])
        + (["--prune-warmup", str(args.prune_warmup)] if args.prune_warmup != 3 else [])
        + (["--seed", str(args.seed)] if args.seed else [])
        + (["--storage", args.storage] if args.storage else [])
        + (["--study-name", args.study_name] if args.study_name else [])
        + list(args.overrides)
    )
    result = tune(
        args.config, args.space, output=args.output, trials=args.trials,
        overrides=args.overrides, sampler=args.sampler, jobs=args.jobs, storage=args.storage,
        study_name=args.study_name, restart=args.restart, pruner=args.pruner,
        prune_startup=args.prune_startup, prune_warmup=args.prune_warmup, seed=args.seed,
        retrain=not args.no_retrain, command=command,
    )  # fmt: skip
    print((result.output / "summary.md").read_text())
    print(f"wrote {result.output} (best.yaml, trials.csv, trials.md, history.png, summary.json)")
    return 0
