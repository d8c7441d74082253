"""High-level entry points used by the CLI and by users: train from a config, run the demo.

These functions compose the library (data pipeline, registry, Trainer, bundle); they hold no
model or training logic of their own.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from recforge import metrics
from recforge.config import RunConfig, TrainConfig, save_run_config, to_dict
from recforge.data.encode.preprocess import Preprocessor
from recforge.data.pipeline import EncodedRun, encode_run, reads_per_rank, use_streaming
from recforge.distributed import ddp as distributed
from recforge.io import atomic_write_text, replace_folder
from recforge.models import registry
from recforge.models.base import PretrainStage, RecModel
from recforge.serve.bundle import save_bundle
from recforge.train import Trainer, seed_everything
from recforge.train.tracking import Tracker, open_tracker
from recforge.train.trainer import CHECKPOINT, TrainerCallback

log = logging.getLogger(__name__)

DEMO_FAMILIES = ("baseline", "ctr", "sequence")
# make_click_log options of the demo's log, on top of its defaults: a stronger, more frequent
# interest term gives attention over the behaviours room to show. Measured (100k rows, 3
# epochs, seeds 0/1/2, test AUC DIN - Base): +0.0006 / +0.0071 / +0.0133 with the generator's
# defaults (boost 1.8, share 0.35), +0.0201 / +0.0091 / +0.0246 with these; DIEN stayed below
# DIN in both (benchmarks/results/demo_i20.md).
DEMO_LOG: dict[str, Any] = {"interest_boost": 3.0, "interest_share": 0.5}


@dataclass
class TrainResult:
    """What one training run produced."""

    model: str
    test_metrics: dict[str, float]
    history: list[dict[str, float]]
    train_seconds: float
    parameters: int
    output_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def count_parameters(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def train_model(
    model_name: str,
    params: dict[str, Any],
    run: EncodedRun,
    train_cfg: TrainConfig,
    output_dir: Path | None = None,
    resume: bool = False,
    pretrained: dict[str, Any] | None = None,
    callbacks: Sequence[TrainerCallback] = (),
    evaluate_test: bool = True,
) -> tuple[TrainResult, Trainer]:
    """Build ``model_name`` for the run's schema, train it, evaluate on the test split.

    ``callbacks`` follow the main model's :meth:`Trainer.fit` (experiment tracking, tuning's
    pruning); ``evaluate_test=False`` leaves the test split alone (a tuning trial is selected
    on validation only).

    The stages a model declares with :meth:`RecModel.pretraining` (FNN: an FM; NeuMF: GMF and
    MLP) are trained first on the same data, with the run's options plus the stage's overrides,
    or loaded from the bundle a stage names; the model is then initialised from them.
    ``pretrained`` maps model names to models already trained on this run (``compare`` passes
    its FM) so a stage is not trained twice.
    """
    seed_everything(train_cfg.seed)
    model = registry.build(model_name, run.schema, params)
    start = time.perf_counter()
    extra: dict[str, Any] = {}
    stages = model.pretraining() if not resume else []
    if stages:
        trained, record = {}, {}
        for stage in stages:
            trained[stage.key], record[stage.key] = _run_stage(stage, run, train_cfg, pretrained)
        model.init_from_pretrained(trained)
        extra["pretraining"] = record
    trainer = Trainer(model, train_cfg, output_dir=output_dir, callbacks=callbacks)
    history = trainer.fit(run.train, run.valid, resume=resume)
    seconds = time.perf_counter() - start
    test = trainer.evaluate(run.test) if evaluate_test and len(run.test) else {}
    result = TrainResult(
        model=model_name,
        test_metrics=test,
        history=history,
        train_seconds=seconds,
        parameters=count_parameters(model),
        output_dir=output_dir,
        extra={**extra, "params": params, "best_epoch": trainer.best_epoch},
    )
    return result, trainer


def _run_stage(
    stage: PretrainStage,
    run: EncodedRun,
    train_cfg: TrainConfig,
    pretrained: dict[str, Any] | None,
) -> tuple[RecModel, dict[str, Any]]:
    """One pretraining stage: reuse, load from a bundle, or train; returns model and record."""
    reuse = (pretrained or {}).get(stage.model)
    if reuse is not None and _same_shapes(reuse, registry.build(stage.model, run.schema,
                                                                 stage.params)):  # fmt: skip
        return reuse, {"model": stage.model, "reused": True}
    if stage.path is not None:
        from recforge.serve.bundle import load_bundle

        bundle = load_bundle(stage.path)
        if bundle.model_name != stage.model:
            raise ValueError(f"{stage.path}: holds a {bundle.model_name}, not a {stage.model}")
        if bundle.preprocessor.fingerprint() != run.preprocessor.fingerprint():
            raise ValueError(f"{stage.path}: was trained on other data (its encoding differs)")
        log.info("stage %s: loaded %s from %s", stage.key, stage.model, stage.path)
        return bundle.model, {"model": stage.model, "path": str(stage.path)}
    stage_cfg = replace(train_cfg, **stage.train) if stage.train else train_cfg
    log.info("stage %s: training %s", stage.key, stage.model)
    first, first_trainer = train_model(stage.model, stage.params, run, stage_cfg)
    return first_trainer.model, {
        "model": stage.model,
        "test": first.test_metrics,
        "best_epoch": first_trainer.best_epoch,
    }


def _same_shapes(a: RecModel, b: RecModel) -> bool:
    """True when two models have the same parameters and shapes (a reusable stage)."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape for k in sa)


def partial_folder(out: Path) -> Path:
    """Where a run into ``out`` writes until it finishes (then renamed to ``out``)."""
    return out.parent / f".{out.name}.partial"


def train_from_config(
    cfg: RunConfig,
    resume: bool = False,
    use_cache: bool = True,
    callbacks: Sequence[TrainerCallback] = (),
    evaluate_test: bool = True,
) -> TrainResult:
    """The ``recforge train`` job: data -> model -> trainer -> test metrics -> bundle.

    Outputs (config, checkpoints, history, bundle, ``metrics.json``) are written to a fresh
    folder next to ``cfg.output_dir`` (:func:`partial_folder`) and published by one rename
    when the run has finished, so ``output_dir`` never mixes two runs and a finished bundle is
    replaced only by another finished one. ``resume`` continues from the checkpoint of an
    interrupted run (its partial folder) or of the finished one.

    Inside a distributed process group every rank runs this; rank 0 alone writes the config,
    the data cache, checkpoints, the bundle and ``metrics.json``.

    ``cfg.train.track`` logs the run to TensorBoard (``tensorboard/`` in the output folder)
    and/or MLflow (:mod:`recforge.train.tracking`). ``callbacks`` and ``evaluate_test`` are
    passed to :func:`train_model` (``recforge tune`` runs each trial through here).
    """
    world = distributed.current_world()
    out = Path(cfg.output_dir)
    stage = partial_folder(out)
    if world.is_main:
        _prepare_partial(out, stage, resume)
        save_run_config(cfg, stage / "config.yaml")
    distributed.barrier()
    if world.distributed and reads_per_rank(cfg.data, world.size):
        # each rank reads its own files / row groups; the ranks exchange counts and rows
        exchange = distributed.RankExchange()
        run = encode_run(cfg.data, seed=cfg.train.seed, use_cache=use_cache, exchange=exchange)
    elif world.distributed and (use_cache or use_streaming(cfg.data)):
        # rank 0 encodes and writes the cache; the others then memory-map it (streaming always
        # writes its arrays to the cache folder, so ranks must not stream into it at once)
        if world.is_main:
            run = encode_run(cfg.data, seed=cfg.train.seed, use_cache=use_cache)
        distributed.barrier()
        if not world.is_main:
            run = encode_run(cfg.data, seed=cfg.train.seed, use_cache=True)
    else:
        run = encode_run(cfg.data, seed=cfg.train.seed, use_cache=use_cache)
    track = cfg.train.track if world.is_main else []
    tracker = open_tracker(replace(cfg.train, track=track), stage / "tensorboard", out.name,
                           to_dict(cfg))  # fmt: skip
    with tracker:
        result, trainer = train_model(
            cfg.model.name, cfg.model.params, run, cfg.train, output_dir=stage, resume=resume,
            callbacks=[*callbacks, tracker] if tracker.active else callbacks,
            evaluate_test=evaluate_test,
        )  # fmt: skip
        result.output_dir = out
        if world.is_main:
            tracker.log_test(result.test_metrics, step=trainer.best_epoch)
            _publish(cfg, stage, result, trainer, run, world.size, tracker)
    if world.is_main:
        replace_folder(stage, out)
    distributed.barrier()
    return result


def _publish(
    cfg: RunConfig,
    stage: Path,
    result: TrainResult,
    trainer: Trainer,
    run: EncodedRun,
    processes: int,
    tracker: Tracker,
) -> None:
    """Write the finished run's bundle and ``metrics.json`` into its partial folder."""
    summary = {
        "model": result.model,
        "test": result.test_metrics,
        "train_seconds": result.train_seconds,
        "parameters": result.parameters,
        "best_epoch": trainer.best_epoch,
        "processes": processes,
    }
    if "pretraining" in result.extra:
        summary["pretraining"] = result.extra["pretraining"]
    if run.shares:  # what each rank read (per-rank reading of a folder / row groups)
        summary["data_per_rank"] = run.shares
    # the bundle carries its own training record, so a served copy can report it
    metrics = {"summary": summary, "history": list(trainer.history)}
    save_bundle(
        stage / "bundle", cfg.model.name, trainer.model, run.preprocessor, cfg,
        extra_meta={"metrics": metrics},
    )  # fmt: skip
    atomic_write_text(stage / "metrics.json", json.dumps(summary, indent=1, default=float))
    tracker.log_bundle(stage / "bundle")


def _prepare_partial(out: Path, stage: Path, resume: bool) -> None:
    """A fresh partial folder; on resume it starts from the newest checkpoint there is."""
    if stage.exists() and not (resume and (stage / CHECKPOINT).exists()):
        shutil.rmtree(stage)
    stage.mkdir(parents=True, exist_ok=True)
    if resume and not (stage / CHECKPOINT).exists() and (out / CHECKPOINT).exists():
        for name in (CHECKPOINT, "history.json"):
            if (out / name).exists():
                shutil.copy2(out / name, stage / name)


def train_job(
    cfg: RunConfig,
    nproc: int = 1,
    resume: bool = False,
    use_cache: bool = True,
    timeout_s: float = distributed.DEFAULT_TIMEOUT_S,
    nnodes: int = 1,
    rdzv_endpoint: str | None = None,
    rdzv_id: str | None = None,
) -> TrainResult | None:
    """Run :func:`train_from_config` in one process, ``nproc`` spawned ones, or under torchrun.

    Args:
        cfg: The run.
        nproc: Local processes to spawn for distributed data parallel (gloo on CPU, NCCL on
            CUDA); 1 trains in this process, or joins the group ``torchrun`` describes.
        resume: Continue from the checkpoint in ``cfg.output_dir``.
        use_cache: Read/write the encoded-data cache.
        timeout_s: How long a rank waits on a peer before failing.
        nnodes: Machines in the job (each runs this with the same ``rdzv_endpoint``).
        rdzv_endpoint: ``host:port`` where the machines' agents meet (``nnodes > 1``).
        rdzv_id: The job's name at the rendezvous.

    Returns:
        The result on rank 0 (and in a single process); ``None`` on the other torchrun ranks.
    """
    if nproc < 1:
        raise ValueError(f"--nproc must be at least 1, got {nproc}")
    env = distributed.env_world()
    if nproc > 1 or nnodes > 1:
        if env is not None and env.size > 1:
            raise ValueError(
                "--nproc/--nnodes start processes themselves; do not combine them with torchrun"
            )
        return distributed.launch(
            train_from_config,
            nproc,
            cfg,
            resume,
            use_cache,
            device=cfg.train.device,
            timeout_s=timeout_s,
            threads=cfg.train.threads,
            nnodes=nnodes,
            rdzv_endpoint=rdzv_endpoint,
            rdzv_id=rdzv_id,
        )
    with distributed.process_group_from_env(cfg.train.device, timeout_s) as world:
        if not world.is_main:
            logging.getLogger().setLevel(logging.WARNING)
        result = train_from_config(cfg, resume=resume, use_cache=use_cache)
    return result if world.is_main else None


@dataclass
class DemoRun:
    """What :func:`demo` measured.

    Attributes:
        results: One result per model, in training order.
        oracle_auc: Test AUC of the generator's own click probabilities: the ceiling no model
            can beat on this log (the labels are Bernoulli draws).
        test_rows: Rows in the test split.
    """

    results: list[TrainResult]
    oracle_auc: float
    test_rows: int


def demo(
    rows: int = 100_000,
    models: list[str] | None = None,
    epochs: int = 3,
    seed: int = 0,
    output_dir: Path | None = None,
    progress: bool = False,
    log_options: dict[str, Any] | None = None,
) -> DemoRun:
    """Train the registered models on the embedded synthetic click log; return results.

    No network and no files are needed: the log comes from
    :func:`recforge.data.sources.synthetic.make_click_log` (Zipf ids, heavy-tailed numerics with
    missing values, behaviour sequences, planted interactions and interest drift), with
    ``log_options`` (default :data:`DEMO_LOG`) over its defaults. The test split's oracle AUC
    (the generator's own probabilities) comes with the results.
    """
    from recforge.data.encode.split import split_table
    from recforge.data.sources.synthetic import make_click_log

    # ~50 impressions per user and ~25 per item, so a short run can learn the planted signal
    options = {"n_users": max(rows // 50, 10), "n_items": max(rows // 25, 20)}
    options.update(DEMO_LOG if log_options is None else log_options)
    table, schema, truth = make_click_log(rows=rows, seed=seed, return_truth=True, **options)
    table = table.append_column("_oracle", pa.array(truth["prob"]))
    train_t, valid_t, test_t = split_table(
        table, "time", ratios=(0.8, 0.1, 0.1), time_column=schema.time_column or "ts"
    )
    oracle = metrics.auc(
        np.asarray(test_t.column(schema.label)), np.asarray(test_t.column("_oracle"))
    )
    train_t, valid_t, test_t = (t.drop_columns(["_oracle"]) for t in (train_t, valid_t, test_t))
    pre = Preprocessor(schema).fit(train_t)
    run = EncodedRun(pre, pre.transform(train_t), pre.transform(valid_t), pre.transform(test_t))
    names = models or [n for n in registry.names() if registry.get(n).family in DEMO_FAMILIES]
    train_cfg = TrainConfig(
        epochs=epochs, batch_size=2048, lr=5e-3, patience=1, seed=seed, progress=progress
    )
    results = []
    for k, name in enumerate(names, 1):
        log.info("demo: model %d/%d: %s", k, len(names), name)
        sub = output_dir / name if output_dir else None
        result, trainer = train_model(name, {}, run, replace(train_cfg), output_dir=sub)
        if sub is not None:
            save_bundle(sub / "bundle", name, trainer.model, pre)
        results.append(result)
    return DemoRun(results, float(oracle), test_t.num_rows)


def leaderboard(results: list[TrainResult], metric: str = "auc") -> str:
    """A markdown table of results sorted by ``metric`` (descending)."""
    rows = sorted(results, key=lambda r: -r.test_metrics.get(metric, float("-inf")))
    lines = [
        "| rank | model | AUC | logloss | GAUC | train s | params |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for i, r in enumerate(rows, 1):
        m = r.test_metrics
        lines.append(
            f"| {i} | {r.model} | {m.get('auc', float('nan')):.4f} | "
            f"{m.get('logloss', float('nan')):.4f} | {m.get('gauc', float('nan')):.4f} | "
            f"{r.train_seconds:.1f} | {r.parameters:,} |"
        )
    return "\n".join(lines)
