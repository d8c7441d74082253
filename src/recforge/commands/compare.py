"""``recforge compare``: train many models on one dataset with one protocol, write a leaderboard.

``recforge compare --models all --dataset frappe --path DIR train.epochs=50`` trains the LR and
FM baselines and every registered ``ctr``-family model on the same encoded splits with the same
:class:`recforge.config.TrainConfig`, then writes ``leaderboard.md``, ``leaderboard.json`` and
``leaderboard.png`` (test AUC and logloss per model) into ``--output``. Per-model options are
given as ``--set MODEL.KEY=VALUE`` (``*.KEY=VALUE`` sets KEY for every model that has it).
When FM is in the comparison, FNN is initialised from the trained FM (its two-stage protocol);
``--no-fnn-pretrain`` trains FNN from a random initialisation instead.

The functions here (:func:`compare_models`, :func:`write_leaderboard`) are also what
``benchmarks/repro_ctr.py`` calls.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from recforge.config import TrainConfig
from recforge.train.tracking import Tracker, open_tracker

log = logging.getLogger(__name__)

BASELINES = ("lr", "fm")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare", help="train several models with one protocol and write a leaderboard"
    )
    p.add_argument(
        "--models",
        nargs="+",
        default=["all"],
        help="model names, or 'all' (lr, fm and every 'ctr'-family model)",
    )
    p.add_argument("--dataset", required=True, help="catalogue dataset name (frappe, criteo ...)")
    p.add_argument("--path", help="local copy of the dataset")
    p.add_argument("--output", default="runs/compare", help="folder for the leaderboard")
    p.add_argument(
        "--set",
        dest="model_params",
        action="append",
        default=[],
        metavar="MODEL.KEY=VALUE",
        help="a model option (repeatable); '*.KEY=VALUE' for every model having KEY",
    )
    p.add_argument(
        "--no-fnn-pretrain",
        action="store_true",
        help="train FNN from a random initialisation instead of the compared FM",
    )
    p.add_argument("--no-cache", action="store_true", help="do not read or write the data cache")
    p.add_argument("overrides", nargs="*", help="run-config overrides, e.g. train.epochs=5")
    p.set_defaults(handler=cmd_compare)


# ---- library functions -------------------------------------------------------------------------


def resolve_models(requested: Sequence[str]) -> list[str]:
    """Expand ``all``; order baselines first so FNN can reuse the trained FM."""
    from recforge.models import registry

    names: list[str] = []
    for item in requested:
        for name in item.split(","):
            name = name.strip()
            if not name:
                continue
            expanded = [*BASELINES, *registry.names("ctr")] if name == "all" else [name]
            for n in expanded:
                registry.get(n)  # unknown names fail early, listing the registry
                if n not in names:
                    names.append(n)
    if "fm" in names and "fnn" in names and names.index("fnn") < names.index("fm"):
        names.remove("fm")
        names.insert(names.index("fnn"), "fm")
    return names


def parse_model_params(items: Sequence[str], models: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``MODEL.KEY=VALUE`` strings to per-model parameter dicts (values parsed as YAML).

    ``*.KEY=VALUE`` applies to every model whose config class has a field ``KEY``.
    """
    from recforge.models import registry

    out: dict[str, dict[str, Any]] = {m: {} for m in models}
    for item in items:
        key, sep, raw = item.partition("=")
        model, dot, field = key.strip().partition(".")
        if not sep or not dot or not field:
            raise ValueError(f"--set {item!r} must look like MODEL.KEY=VALUE")
        value = yaml.safe_load(raw) if raw != "" else ""
        targets = models if model == "*" else [model]
        for name in targets:
            if name not in out:
                raise ValueError(f"--set {item!r}: {name!r} is not among the compared models")
            fields = {f.name for f in dataclasses.fields(registry.get(name).config)}
            if model == "*" and field not in fields:
                continue
            out[name][field] = value
    for name, params in out.items():
        registry.make_config(name, params)  # unknown keys and bad values fail before training
    return out


def train_one(
    name: str,
    params: dict[str, Any],
    run: Any,
    train_cfg: TrainConfig,
    output_dir: Path | None,
    init_fm: Any = None,
    callbacks: Sequence[Any] = (),
) -> tuple[Any, Any]:
    """Train and test one model (``run.train_model``), reusing an FM trained in this comparison
    as FNN's stage one; returns ``(TrainResult, Trainer)``."""
    from recforge.run import train_model

    pretrained = {"fm": init_fm} if init_fm is not None else None
    result, trainer = train_model(
        name, params, run, train_cfg, output_dir, pretrained=pretrained, callbacks=callbacks
    )
    stages = result.extra.get("pretraining")
    if not stages:
        init = "random"
    else:
        init = ", ".join(
            f"{s['model']}:{s['path']}" if "path" in s
            else f"{s['model']} (this comparison)" if s.get("reused")
            else f"{s['model']} (trained first)"
            for s in stages.values()
        )  # fmt: skip
    result.extra["init"] = init
    return result, trainer


def compare_models(
    models: Sequence[str],
    run: Any,
    train_cfg: TrainConfig,
    params: dict[str, dict[str, Any]] | None = None,
    output_dir: Path | None = None,
    fnn_from_fm: bool = True,
) -> list[Any]:
    """Train ``models`` on one :class:`~recforge.data.pipeline.EncodedRun` with one protocol.

    Args:
        models: Registry names (FM before FNN when FNN should reuse the trained FM).
        run: The encoded train/valid/test splits.
        train_cfg: The protocol (optimizer, batch size, early stopping ...), shared by all.
        params: Per-model config options.
        output_dir: When given, each model's checkpoint and curves go to ``output_dir/NAME``.
        fnn_from_fm: Initialise FNN from the FM trained earlier in this comparison.

    Returns:
        One :class:`recforge.run.TrainResult` per model that trained; a model that fails is
        logged and reported with ``extra["error"]`` and empty metrics.
    """
    from recforge.models import registry
    from recforge.run import TrainResult

    params = params or {}
    results = []
    trained_fm = None
    for name in models:
        log.info("compare: training %s", name)
        sub = output_dir / name if output_dir else None
        try:
            model_params = dict(params.get(name, {}))
            if not fnn_from_fm and "pretrain_fm" in {
                f.name for f in dataclasses.fields(registry.get(name).config)
            }:
                model_params.setdefault("pretrain_fm", False)  # random initialisation
            # each model is tracked like a `recforge train` run (train.track)
            config = {"model": {"name": name, "params": model_params},
                      "train": dataclasses.asdict(train_cfg)}  # fmt: skip
            tracker = open_tracker(train_cfg, sub / "tensorboard" if sub else None, name, config)
            with tracker:
                result, trainer = train_one(
                    name,
                    model_params,
                    run,
                    dataclasses.replace(train_cfg),
                    sub,
                    init_fm=trained_fm if fnn_from_fm else None,
                    callbacks=[tracker] if tracker.active else (),
                )
                tracker.log_test(result.test_metrics, step=trainer.best_epoch)
                _save_compared_bundle(name, result, trainer, run, sub, tracker)
        except (RuntimeError, ValueError, FloatingPointError) as exc:
            log.error("compare: %s failed: %s", name, exc)
            results.append(TrainResult(name, {}, [], 0.0, 0, sub, {"error": str(exc)}))
            continue
        if name == "fm":
            trained_fm = trainer.model
        results.append(result)
        log.info("compare: %s test %s", name, result.test_metrics)
    return results


def _save_compared_bundle(
    name: str, result: Any, trainer: Any, run: Any, sub: Path | None, tracker: Tracker
) -> None:
    """The bundle of a compared model, so the winner is served or exported without retraining
    (and logged as the MLflow artefact when tracking)."""
    if sub is None:
        return
    from recforge.serve.bundle import save_bundle

    summary = {"model": name, "test": result.test_metrics, "best_epoch": trainer.best_epoch}
    record = {"summary": summary, "history": result.history}
    save_bundle(
        sub / "bundle", name, trainer.model, run.preprocessor, extra_meta={"metrics": record}
    )
    result.extra["bundle"] = str(sub / "bundle")
    tracker.log_bundle(sub / "bundle")


def _num(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.4f}"


def leaderboard_rows(
    results: Sequence[Any], reference: dict[str, dict[str, float]] | None = None
) -> list[dict[str, Any]]:
    """Results as JSON-ready rows sorted by test AUC (failed runs last)."""
    reference = reference or {}
    rows = []
    for r in results:
        m = r.test_metrics
        best = r.extra.get("best_epoch")
        rows.append(
            {
                "model": r.model,
                "auc": m.get("auc"),
                "logloss": m.get("logloss"),
                "gauc": m.get("gauc"),
                "reference_auc": reference.get(r.model, {}).get("auc"),
                "reference_logloss": reference.get(r.model, {}).get("logloss"),
                "best_epoch": best,
                "epochs": len(r.history),
                "train_seconds": round(r.train_seconds, 2),
                "parameters": r.parameters,
                "params": r.extra.get("params", {}),
                "init": r.extra.get("init"),
                "bundle": r.extra.get("bundle"),
                "error": r.extra.get("error"),
                "history": r.history,
            }
        )
    return sorted(rows, key=lambda row: -(row["auc"] if row["auc"] is not None else -1.0))


def leaderboard_markdown(rows: Sequence[dict[str, Any]], title: str) -> str:
    """A markdown table: rank, model, AUC, logloss, reference figures, epochs, time, size."""
    has_ref = any(r["reference_auc"] is not None for r in rows)
    has_gauc = any(r["gauc"] is not None for r in rows)
    head = "| rank | model | AUC | logloss |" + (" GAUC |" if has_gauc else "")
    rule = "|---:|---|---:|---:|" + ("---:|" if has_gauc else "")
    if has_ref:
        head += " reference AUC | reference logloss | ΔAUC |"
        rule += "---:|---:|---:|"
    head += " best epoch | train s | params |"
    rule += "---:|---:|---:|"
    lines = [f"## {title}", "", head, rule]
    for i, r in enumerate(rows, 1):
        line = f"| {i} | {r['model']} | {_num(r['auc'])} | {_num(r['logloss'])} |"
        if has_gauc:
            line += f" {_num(r['gauc'])} |"
        if has_ref:
            ref = r["reference_auc"]
            delta = "–" if ref is None or r["auc"] is None else f"{r['auc'] - ref:+.4f}"
            line += f" {_num(ref)} | {_num(r['reference_logloss'])} | {delta} |"
        best = r["best_epoch"] if r["best_epoch"] is not None else "–"
        line += f" {best} | {r['train_seconds']:.0f} | {r['parameters']:,} |"
        if r["error"]:
            line += f" failed: {r['error'][:80]}"
        lines.append(line)
    return "\n".join(lines) + "\n"


# Each panel's axis starts at a stated baseline, so a bar's length is the gain over it and a
# 0.007 gap looks like 0.007, not like a factor of two.
AXIS_BASELINES = {
    "auc": (0.5, "0.5, a random ranker"),
    "gauc": (0.5, "0.5, a random ranker"),
    "logloss": (0.0, "0"),
}


def plot_leaderboard(rows: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    """Write :func:`leaderboard_figure` as a PNG."""
    import matplotlib.pyplot as plt

    fig = leaderboard_figure(rows, title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def leaderboard_figure(rows: Sequence[dict[str, Any]], title: str) -> Any:
    """Horizontal bars of test AUC, logloss and (where computed) GAUC per model.

    Axes start at :data:`AXIS_BASELINES` (AUC and GAUC at 0.5, logloss at 0), named under each
    panel; reference values are drawn as markers.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r["auc"] is not None]
    names = [r["model"] for r in ok][::-1]
    keys = ["auc", "logloss"] + (["gauc"] if any(r["gauc"] is not None for r in ok) else [])
    fig, axes = plt.subplots(
        1, len(keys), figsize=(5.5 * len(keys), 0.45 * len(ok) + 1.8), sharey=True, squeeze=False
    )
    for ax, key in zip(axes[0], keys, strict=True):
        base, said = AXIS_BASELINES[key]
        values = [r[key] if r[key] is not None else base for r in ok][::-1]
        ax.barh(names, [v - base for v in values], left=base, color="#4878a8")
        refs = [(i, r.get(f"reference_{key}")) for i, r in enumerate(ok[::-1])]
        refs = [(i, v) for i, v in refs if v is not None]
        if refs:
            ax.scatter(
                [v for _, v in refs], [i for i, _ in refs], color="#c44e52", zorder=3,
                marker="|", s=300, label="reference",
            )  # fmt: skip
            ax.legend(loc="lower right", fontsize=8)
        hi = max(values + [v for _, v in refs])
        ax.set_xlim(base, hi + (hi - base) * 0.05 + 1e-3)
        ax.set_xlabel(f"test {key} (axis starts at {said})")
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def write_leaderboard(
    results: Sequence[Any],
    output_dir: Path,
    title: str,
    reference: dict[str, dict[str, float]] | None = None,
    meta: dict[str, Any] | None = None,
    stem: str = "leaderboard",
) -> dict[str, Path]:
    """Write ``STEM.md``, ``STEM.json`` and ``STEM.png``; returns their paths."""
    from recforge.io import atomic_write, atomic_write_text

    output_dir = Path(output_dir)
    rows = leaderboard_rows(results, reference)
    paths = {
        "md": output_dir / f"{stem}.md",
        "json": output_dir / f"{stem}.json",
        "png": output_dir / f"{stem}.png",
    }
    atomic_write_text(paths["md"], leaderboard_markdown(rows, title))
    payload = {"title": title, **(meta or {}), "results": rows}
    atomic_write_text(paths["json"], json.dumps(payload, indent=1, default=str))
    atomic_write(paths["png"], lambda tmp: plot_leaderboard(rows, tmp, title))
    return paths


# ---- command -----------------------------------------------------------------------------------


def cmd_compare(args: argparse.Namespace) -> int:
    from recforge.commands.core import validate_model_section
    from recforge.config import load_run_config, to_dict
    from recforge.data.pipeline import encode_run

    overrides = [f"data.dataset={args.dataset}", *args.overrides]
    if args.path:
        overrides.append(f"data.path={args.path}")
    cfg = load_run_config(None, overrides)
    validate_model_section(cfg)
    models = resolve_models(args.models)
    params = parse_model_params(args.model_params, models)
    run = encode_run(cfg.data, seed=cfg.train.seed, use_cache=not args.no_cache)
    output = Path(args.output)
    results = compare_models(
        models, run, cfg.train, params, output, fnn_from_fm=not args.no_fnn_pretrain
    )
    meta = {"dataset": args.dataset, "data": to_dict(cfg.data), "train": to_dict(cfg.train)}
    paths = write_leaderboard(results, output, f"{args.dataset}: test metrics", meta=meta)
    print(paths["md"].read_text())
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0 if all("error" not in r.extra for r in results) else 1
