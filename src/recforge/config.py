"""Run configuration: YAML <-> typed dataclasses, dotted command-line overrides.

Every key maps onto a dataclass field; an unknown key is an error naming where it appeared.
Values are type-checked and converted (``"3e-4"`` -> float) and range-checked by the
dataclasses themselves (``train.epochs: must be at least 1, got 0``). Nothing is ``eval``-ed:
override values are parsed with ``yaml.safe_load``.

This module knows no model: ``model.params`` is checked against the model's own config class
by the command layer (:func:`recforge.commands.core.validate_model_section`).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value or key is invalid."""


class FieldValueError(ConfigError):
    """One field's value is out of range, raised by a config dataclass's ``__post_init__``.

    The message reads ``SECTION.KEY: DETAIL``; :func:`from_dict` re-raises it as
    ``WHERE.KEY: DETAIL`` so it names the file (or override) the value came from.
    """

    def __init__(self, section: str, key: str, detail: str) -> None:
        self.key = key
        self.detail = detail
        super().__init__(f"{section}.{key}: {detail}")


def _at_least(section: str, obj: Any, key: str, low: int) -> None:
    value = getattr(obj, key)
    if not value >= low:
        raise FieldValueError(section, key, f"must be at least {low}, got {value!r}")


def _positive(section: str, obj: Any, key: str) -> None:
    value = getattr(obj, key)
    if not (value > 0 and math.isfinite(value)):
        raise FieldValueError(section, key, f"must be a positive number, got {value!r}")


def _non_negative(section: str, obj: Any, key: str) -> None:
    value = getattr(obj, key)
    if not (value >= 0 and math.isfinite(value)):
        raise FieldValueError(section, key, f"must be a non-negative number, got {value!r}")


def _open_unit(section: str, obj: Any, key: str) -> None:
    value = getattr(obj, key)
    if not 0 < value < 1:
        raise FieldValueError(section, key, f"must be strictly between 0 and 1, got {value!r}")


@dataclass
class DataConfig:
    """Where the data comes from and how it is split.

    Args:
        dataset: A catalogue name (``synthetic``, ``movielens-100k``, ``frappe`` ...) or ``files``.
        path: Local copy of the dataset (a file or folder); ``None`` uses the cache or download.
        train: Training file when ``dataset: files`` (CSV, TSV, Parquet or libfm).
        valid: Validation file; when absent it is split off the training data.
        test: Test file; when absent it is split off the training data.
        schema: A schema JSON file when ``dataset: files``.
        split: ``random``, ``time`` or ``leave_last`` (per user) when splits are derived.
        valid_ratio: Share of rows for validation when derived.
        test_ratio: Share of rows for test when derived.
        options: Keyword options of the dataset's ``prepare`` (e.g. ``rows`` and ``seed`` for
            ``synthetic``, ``implicit`` for MovieLens).
        cache_dir: Where encoded arrays are cached; ``None`` uses the user cache directory.
        streaming: ``auto`` preprocesses ``dataset: files`` inputs (CSV/TSV/Parquet) in chunks
            when they are too large for ``memory_budget_mb`` (see
            :func:`recforge.data.pipeline.use_streaming`); ``always`` forces it, ``never``
            reads whole tables.
        memory_budget_mb: Memory the data pipeline may use, in MiB; decides ``auto`` (the
            streaming path's own peak does not grow with the data but has a fixed part, about
            270 MiB measured with the default chunks).
        chunk_rows: Rows per chunk when streaming.

    Raises:
        FieldValueError: ``valid_ratio`` or ``test_ratio`` outside (0, 1) or summing to 1 or
            more (no training rows left; a dataset whose own files give both splits ignores
            them, a dataset giving one split uses only the other ratio), ``chunk_rows < 1``,
            ``memory_budget_mb <= 0``.
    """

    dataset: str = "synthetic"
    path: str | None = None
    train: str | None = None
    valid: str | None = None
    test: str | None = None
    schema: str | None = None
    split: Literal["random", "time", "leave_last"] = "random"
    valid_ratio: float = 0.1
    test_ratio: float = 0.1
    options: dict[str, Any] = field(default_factory=dict)
    cache_dir: str | None = None
    streaming: Literal["auto", "always", "never"] = "auto"
    memory_budget_mb: float = 2048.0
    chunk_rows: int = 50_000

    def __post_init__(self) -> None:
        if self.streaming not in ("auto", "always", "never"):  # also when built in Python
            raise FieldValueError(
                "data", "streaming", f"must be auto, always or never, got {self.streaming!r}"
            )
        _open_unit("data", self, "valid_ratio")
        _open_unit("data", self, "test_ratio")
        if not self.valid_ratio + self.test_ratio < 1:
            raise FieldValueError(
                "data",
                "test_ratio",
                f"valid_ratio + test_ratio must be below 1 (rows are left for training), "
                f"got {self.valid_ratio!r} + {self.test_ratio!r}",
            )
        _positive("data", self, "memory_budget_mb")
        _at_least("data", self, "chunk_rows", 1)


@dataclass
class ModelSection:
    """Which model, and its options (validated against the model's own config class)."""

    name: str = "fm"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    """Training options (see :class:`recforge.train.Trainer`).

    Args:
        epochs: Maximum number of epochs.
        batch_size: Rows per batch.
        lr: Learning rate.
        optimizer: ``adam``, ``adagrad`` or ``sgd`` (sparse-aware when embeddings are sparse).
        embedding_l2: L2 strength on embeddings.
        embedding_l2_scope: ``batch`` adds ``embedding_l2 * sum(rows used)^2 / B`` (scales with
            the batch; works with sparse gradients); ``table`` adds
            ``embedding_l2 / 2 * ||E||^2`` over whole tables each step, FuxiCTR's
            ``embedding_regularizer`` that the BARS benchmark tunes (dense gradients only).
        dense_l2: L2 penalty (weight decay) on dense weights.
        loss: ``auto`` (by task), ``bce``, ``mse`` or ``bpr`` (ranking).
        negatives: Sampled negatives per positive for the ranking task (drawn from the items
            the user has no training positive with).
        top_k: Cut-off K of the ranking metrics (``hr@K``, ``ndcg@K``).
        eval_negatives: Sampled candidates each held-out positive is ranked against when the
            data carries none of its own (NCF: 99).
        metric: Validation metric for early stopping and learning-rate reduction (``auc``,
            ``logloss``, ``rmse``, ``mae``, ``hr@K``, ``ndcg@K``); ``auto`` is AUC for binary,
            RMSE for regression and NDCG@top_k for ranking.
        patience: Epochs without improvement before stopping; 0 disables early stopping.
        lr_patience: Epochs without improvement before the learning rate is reduced; 0 disables.
        lr_factor: Factor of each learning-rate reduction.
        grad_clip_norm: Before each step, scale every gradient down so that their joint L2
            norm is at most this value (``torch.nn.utils.clip_grad_norm_``'s rule; FuxiCTR's
            ``max_gradient_norm``, 10 there); 0 (the default) never clips. A sparse embedding
            gradient counts as the dense gradient it stands for (duplicate rows summed). Not
            with the ``torchrec`` engine's fused tables, whose gradients never materialise.
        seed: Random seed (data order, initialisation, dropout, negative sampling).
        bf16: Run forward passes under bfloat16 autocast.
        device: ``cpu``, ``cuda`` or ``auto``.
        threads: torch intra-op threads; 0 leaves torch's default.
        progress: Show a progress bar.
        eval_batch_size: Rows per batch at evaluation.
        shuffle_window: 0 shuffles the training rows with a full permutation each epoch; a
            positive value uses a block shuffle with windows of this many rows (for
            memory-mapped data larger than memory: reads stay local and nearly sequential;
            see :func:`recforge.data.loader.block_permutation`). Several batches per window,
            e.g. 64 x batch_size, keep batches well mixed.
        wide_optimizer: ``ftrl`` trains the parameters a model lists under
            ``optimizer_groups()["wide"]`` with FTRL-Proximal (Wide&Deep); ``same`` uses
            ``optimizer`` for everything.
        wide_lr: FTRL learning rate (alpha). The loss is a batch mean, so gradients are small
            and alpha is larger than in per-example FTRL (2.0 measured best on the synthetic log).
        wide_beta: FTRL beta.
        wide_l1: FTRL L1 strength.
        wide_l2: FTRL L2 strength.
        track: Experiment trackers the run logs to, any of ``tensorboard`` and ``mlflow``
            (none by default; the ``tracking`` and ``mlflow`` extras install them): per-step
            loss, per-epoch metrics, learning rate and samples/s, the resolved config, the test
            metrics and (MLflow) the bundle as an artefact (:mod:`recforge.train.tracking`).
        track_dir: TensorBoard log folder; ``None`` writes ``tensorboard/`` inside the run's
            output folder.
        track_experiment: MLflow experiment name (the tracking URI comes from
            ``MLFLOW_TRACKING_URI``, else MLflow's default ``./mlruns``).
        engine: ``ddp`` (every rank holds the whole model; DistributedDataParallel when
            there are several) or ``torchrec`` (the embedding tables sharded across the ranks
            by TorchRec's planner and trained by FBGEMM's fused optimizers, the rest by DDP;
            needs ``pip install recforge[torchrec]``; see
            :mod:`recforge.distributed.torchrec_engine` and docs/SCALING.md section 3).
        sharding: ``torchrec`` engine: table (field) name -> sharding type the planner must
            use (``table_wise``, ``row_wise``, ``column_wise``, ``table_row_wise``,
            ``data_parallel``); ``"*"`` sets it for every table not named. Tables not
            constrained are left to the planner.
        fused_optimizer: ``torchrec`` engine: FBGEMM optimizer of the sharded tables
            (``adagrad``, ``rowwise_adagrad``, ``sgd``, ``adam``; ``adam`` needs CUDA);
            ``auto`` is ``optimizer`` where FBGEMM has it on the device, else
            ``rowwise_adagrad``.

    Raises:
        FieldValueError: ``epochs``, ``batch_size``, ``eval_batch_size`` or ``negatives`` below
            1; ``lr`` or ``wide_lr`` not positive; ``patience``, ``lr_patience``, ``threads``,
            ``shuffle_window``, ``embedding_l2``, ``dense_l2``, ``wide_beta``, ``wide_l1`` or
            ``wide_l2`` negative; ``lr_factor`` outside (0, 1).
    """

    epochs: int = 10
    batch_size: int = 4096
    lr: float = 1e-3
    optimizer: Literal["adam", "adagrad", "sgd"] = "adam"
    embedding_l2: float = 0.0
    embedding_l2_scope: Literal["batch", "table"] = "batch"
    dense_l2: float = 0.0
    loss: Literal["auto", "bce", "mse", "bpr"] = "auto"
    negatives: int = 1
    top_k: int = 10
    eval_negatives: int = 99
    metric: str = "auto"
    patience: int = 2
    lr_patience: int = 1
    lr_factor: float = 0.1
    grad_clip_norm: float = 0.0
    seed: int = 2026
    bf16: bool = False
    device: str = "auto"
    threads: int = 0
    progress: bool = True
    eval_batch_size: int = 16384
    shuffle_window: int = 0
    wide_optimizer: Literal["same", "ftrl"] = "same"
    wide_lr: float = 2.0
    wide_beta: float = 1.0
    wide_l1: float = 1.0
    wide_l2: float = 1.0
    track: list[Literal["tensorboard", "mlflow"]] = field(default_factory=list)
    track_dir: str | None = None
    track_experiment: str = "recforge"
    engine: Literal["ddp", "torchrec"] = "ddp"
    sharding: dict[str, str] = field(default_factory=dict)
    fused_optimizer: Literal["auto", "adagrad", "rowwise_adagrad", "sgd", "adam"] = "auto"

    def __post_init__(self) -> None:
        for key in ("epochs", "batch_size", "eval_batch_size", "negatives"):
            _at_least("train", self, key, 1)
        for key in ("patience", "lr_patience", "threads", "shuffle_window"):
            _at_least("train", self, key, 0)
        for key in ("lr", "wide_lr"):
            _positive("train", self, key)
        for key in ("embedding_l2", "dense_l2", "wide_beta", "wide_l1", "wide_l2"):
            _non_negative("train", self, key)
        _non_negative("train", self, "grad_clip_norm")
        _open_unit("train", self, "lr_factor")


@dataclass
class RunConfig:
    """A whole run: data, model, training and where outputs go."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelSection = field(default_factory=ModelSection)
    train: TrainConfig = field(default_factory=TrainConfig)
    output_dir: str = "runs/latest"


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: {value!r} does not match {tp}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{where}: {value!r} is not one of {list(choices)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (inner, *rest) = typing.get_args(tp) or (Any,)
        items = [_convert(inner, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            as_float = float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
        if not as_float.is_integer():
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(as_float)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys are {sorted(known)}")
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except FieldValueError as exc:  # name the file or override the value came from
        raise ConfigError(f"{where}.{exc.key}: {exc.detail}") from None
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass as plain YAML/JSON-friendly values."""
    return dataclasses.asdict(obj)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML scalars) to a nested dict."""
    out = yaml.safe_load(yaml.safe_dump(data)) or {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw != "" else ""
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = value
    return out


def load_run_config(
    path: str | Path | None = None, overrides: list[str] | None = None
) -> RunConfig:
    """Read a YAML run config (or defaults), apply overrides, validate into :class:`RunConfig`.

    ``model.params`` is only checked to be a mapping here; the command layer checks it against
    the model's config class (:func:`recforge.commands.core.validate_model_section`).
    """
    data: dict[str, Any] = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: byte {exc.object[exc.start]:#04x} at offset {exc.start} "
                              "is not UTF-8 text") from None  # fmt: skip
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
            problem = getattr(exc, "problem", None) or "not valid YAML"
            raise ConfigError(f"{where}: {problem}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
    data = apply_overrides(data, overrides or [])
    return from_dict(RunConfig, data, where=str(path) if path else "config")


def save_run_config(cfg: RunConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    from recforge.io import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(to_dict(cfg), sort_keys=False))
