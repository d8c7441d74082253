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
from dataclasses import dataclass
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
    p.add_argument("--dataset", help="catalogue dataset name (frappe, criteo ...)")
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
    p.add_argument(
        "--chart",
        choices=["lineage"],
        help="also draw the chapter's model lineage (lineage.png) with each model's test "
        "metric and train time; edges green where the successor beat its predecessor",
    )
    p.add_argument(
        "--from-results",
        nargs="+",
        metavar="JSON",
        help="draw the chart from saved results (leaderboard.json, benchmarks/repro.py "
        "tables) instead of training; later files replace earlier ones' models",
    )
    p.add_argument("--metric", default="auc", help="metric of the chart (default auc)")
    p.add_argument("--title", help="chart title (default: the dataset)")
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


# ---- the lineage chart ---------------------------------------------------------------------------

# The chapter's lines of evolution (lineage-chapter.zh.md, section 1), each model under the line
# it is filed under first, in drawing order (top to bottom).
LINEAGE_LINES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("1 deeper networks", ("autorec", "deep_crossing", "dnn")),
    ("2 new crossing operations", ("mf", "gmf", "ncf_mlp", "neumf", "ipnn", "opnn", "pnn_star")),
    ("3 combined models", ("wide_deep", "dcn", "dcn_v2")),
    ("4 FM goes deep", ("lr", "fm", "fnn", "deepfm", "nfm", "afm")),
    ("5 attention", ("base_seq", "din")),
    ("6 sequence models", ("dien",)),
    ("7 reinforcement learning", ("drn",)),
)

# (predecessor, successor): "derived from", as the chapter tells it
LINEAGE_EDGES: tuple[tuple[str, str], ...] = (
    ("autorec", "deep_crossing"),
    ("deep_crossing", "dnn"),
    ("deep_crossing", "ipnn"),
    ("deep_crossing", "opnn"),
    ("deep_crossing", "pnn_star"),
    ("mf", "gmf"),
    ("gmf", "neumf"),
    ("ncf_mlp", "neumf"),
    ("dnn", "ncf_mlp"),
    ("lr", "wide_deep"),
    ("dnn", "wide_deep"),
    ("wide_deep", "dcn"),
    ("dcn", "dcn_v2"),
    ("wide_deep", "deepfm"),
    ("lr", "fm"),
    ("fm", "fnn"),
    ("fm", "deepfm"),
    ("fm", "nfm"),
    ("fm", "afm"),
    ("dnn", "base_seq"),
    ("base_seq", "din"),
    ("afm", "din"),
    ("din", "dien"),
    ("dnn", "drn"),
)


BOX_W, BOX_H = 0.62, 0.4  # a node's box, in generations (x) and line rows (y)


@dataclass(frozen=True)
class Measured:
    """One model's figure on the compared dataset."""

    value: float
    seconds: float | None
    runs: int = 1


def _row_value(row: dict[str, Any], metric: str) -> float | None:
    """A result row's ``metric`` in any of the shapes recforge writes (leaderboard rows,
    ``benchmarks/repro.py`` summaries, per-run records)."""
    for candidate in (
        row.get(metric),
        (row.get("mean") or {}).get(metric),
        (row.get("test") or {}).get(metric) if isinstance(row.get("test"), dict) else None,
        row.get(f"test_{metric}"),
    ):
        if isinstance(candidate, (int, float)) and math.isfinite(candidate):
            return float(candidate)
    return None


def _row_seconds(row: dict[str, Any]) -> float | None:
    if isinstance(row.get("train_seconds"), (int, float)):
        return float(row["train_seconds"])
    runs = [r.get("train_seconds") for r in row.get("runs") or [] if isinstance(r, dict)]
    runs = [float(r) for r in runs if isinstance(r, (int, float))]
    if runs:
        return sum(runs) / len(runs)
    return float(row["wall_s"]) if isinstance(row.get("wall_s"), (int, float)) else None


def measured_from_rows(rows: Sequence[dict[str, Any]], metric: str) -> dict[str, Measured]:
    """Per model: the mean of ``metric`` (and of train seconds) over its rows that have it.

    When a model's rows name several ``variant``s and carry ``valid_<metric>``, only the
    variant with the best mean validation value counts (a choice made on validation, never on
    the charted test figure).
    """
    from recforge import metrics

    higher = metrics.higher_is_better(metric)
    groups: dict[str, dict[Any, list[dict[str, Any]]]] = {}
    for row in rows:
        if not isinstance(row, dict) or not isinstance(row.get("model"), str):
            continue
        if _row_value(row, metric) is not None:
            groups.setdefault(row["model"], {}).setdefault(row.get("variant"), []).append(row)
    values: dict[str, list[tuple[float, float | None]]] = {}
    for model, variants in groups.items():
        chosen = [r for rs in variants.values() for r in rs]
        valid = {v: [r.get(f"valid_{metric}") for r in rs] for v, rs in variants.items()}
        if len(variants) > 1 and all(
            all(isinstance(x, (int, float)) for x in xs) for xs in valid.values()
        ):
            mean = {v: sum(xs) / len(xs) for v, xs in valid.items()}
            pick = (max if higher else min)(mean, key=mean.__getitem__)
            chosen = variants[pick]
        values[model] = [(_row_value(r, metric), _row_seconds(r)) for r in chosen]
    out = {}
    for model, pairs in values.items():
        secs = [s for _, s in pairs if s is not None]
        out[model] = Measured(
            sum(v for v, _ in pairs) / len(pairs), sum(secs) / len(secs) if secs else None,
            len(pairs),
        )  # fmt: skip
    return out


def load_measured(paths: Sequence[Path], metric: str) -> dict[str, Measured]:
    """Models' figures from result JSON files (a later file's model replaces an earlier one's).

    Accepts ``recforge compare`` leaderboards (``{"results": [...]}``), ``benchmarks/repro.py``
    tables (a list of ``{"model", "mean": {...}, "runs": [...]}``) and per-run records
    (``{"runs": [{"model", "test_auc", ...}]}``).

    Raises:
        ValueError: A file that is not JSON or holds no row with ``metric``.
    """
    merged: dict[str, Measured] = {}
    for path in paths:
        try:
            data = json.loads(Path(path).read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not JSON ({exc.msg}, line {exc.lineno})") from None
        if isinstance(data, dict):
            rows = data.get("results") or data.get("runs") or []
        else:
            rows = data if isinstance(data, list) else []
        found = measured_from_rows(rows, metric)
        if not found:
            raise ValueError(f"{path}: no result row with a {metric!r} figure")
        merged.update(found)
    return merged


def lineage_layout(models: Sequence[str]) -> dict[str, tuple[float, float]]:
    """Node positions: x = generation (longest chain of ancestors among ``models``' lineage),
    y = the model's line of evolution (top to bottom), spread when a cell holds several."""
    shown = set(models)
    parents: dict[str, list[str]] = {}
    for a, b in LINEAGE_EDGES:
        if a in shown and b in shown:
            parents.setdefault(b, []).append(a)
    depth: dict[str, int] = {}

    def generation(m: str) -> int:
        if m not in depth:
            depth[m] = 1 + max((generation(p) for p in parents.get(m, [])), default=-1)
        return depth[m]

    line_of = {m: i for i, (_, ms) in enumerate(LINEAGE_LINES) for m in ms}
    lines = sorted({line_of[m] for m in shown if m in line_of})
    cells: dict[tuple[int, int], list[str]] = {}
    for m in models:
        if m in line_of:
            cells.setdefault((generation(m), line_of[m]), []).append(m)
    # a line's row is as tall as its fullest cell; rows are stacked top to bottom
    height = {line: max(len(ms) for (_, ln), ms in cells.items() if ln == line) for line in lines}
    top, centre = 0.0, {}
    for line in lines:
        span = height[line] * (BOX_H + 0.14) + 0.3
        centre[line] = top - span / 2
        top -= span
    pos = {}
    for (x, line), ms in cells.items():
        for k, m in enumerate(ms):
            offset = ((len(ms) - 1) / 2 - k) * (BOX_H + 0.14)
            pos[m] = (float(x), centre[line] + offset)
    return pos


def edge_outcomes(
    measured: dict[str, Measured], metric: str, shown: set[str]
) -> dict[tuple[str, str], bool | None]:
    """For each lineage edge between shown models: did the successor beat its predecessor on
    ``metric`` (``None`` when either is unmeasured)?"""
    from recforge import metrics

    higher = metrics.higher_is_better(metric)
    out: dict[tuple[str, str], bool | None] = {}
    for a, b in LINEAGE_EDGES:
        if a in shown and b in shown:
            beat = None
            if a in measured and b in measured:
                va, vb = measured[a].value, measured[b].value
                beat = vb > va if higher else vb < va
            out[(a, b)] = beat
    return out


def lineage_figure(measured: dict[str, Measured], metric: str, title: str) -> Any:
    """The chapter's model lineage: nodes = models (annotated with ``metric`` and train time
    where measured), edges = "derived from", green when the successor beat its predecessor on
    ``metric``, red when not, grey when either is unmeasured; background bands = the lines of
    evolution. Shown: the measured models and their ancestors (unmeasured ones greyed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    from recforge import metrics

    higher = metrics.higher_is_better(metric)
    line_of = {m: i for i, (_, ms) in enumerate(LINEAGE_LINES) for m in ms}
    shown = {m for m in measured if m in line_of}
    grow = True
    while grow:  # add the ancestors of shown models (a DIN chart shows where DIN comes from)
        extra = {a for a, b in LINEAGE_EDGES if b in shown and a not in shown and a in line_of}
        grow = bool(extra)
        shown |= extra
    order = [m for _, ms in LINEAGE_LINES for m in ms if m in shown]
    pos = lineage_layout(order)
    xs = [x for x, _ in pos.values()] or [0.0]
    ys = [y for _, y in pos.values()] or [0.0]
    fig, ax = plt.subplots(figsize=(2.2 * (max(xs) - min(xs) + 1) + 2.5,
                                    1.3 * (max(ys) - min(ys) + 1) + 1.0))  # fmt: skip
    band_rows: dict[int, list[float]] = {}
    for m, (_, y) in pos.items():
        band_rows.setdefault(line_of[m], []).append(y)
    for k, (line, ys_line) in enumerate(sorted(band_rows.items())):
        lo, hi = min(ys_line) - BOX_H / 2 - 0.14, max(ys_line) + BOX_H / 2 + 0.14
        ax.axhspan(lo, hi, color="#f3f3f3" if k % 2 == 0 else "#e8eef5", zorder=0)
        ax.text(min(xs) - 0.45, (lo + hi) / 2, LINEAGE_LINES[line][0], ha="right",
                va="center", fontsize=9, style="italic")  # fmt: skip
    colours = {True: "#2e8b57", False: "#c44e52", None: "#b0b0b0"}
    for (a, b), beat in edge_outcomes(measured, metric, set(pos)).items():
        (xa, ya), (xb, yb) = pos[a], pos[b]
        if xb > xa:  # right edge of the predecessor to the left edge of the successor
            start, end = (xa + BOX_W / 2, ya), (xb - BOX_W / 2, yb)
        else:  # same generation: bottom/top edges
            sign = -1.0 if yb < ya else 1.0
            start, end = (xa, ya + sign * BOX_H / 2), (xb, yb - sign * BOX_H / 2)
        ax.annotate(
            "", xy=end, xytext=start,
            arrowprops={"arrowstyle": "-|>", "color": colours[beat], "lw": 1.5,
                        "shrinkA": 0, "shrinkB": 1, "mutation_scale": 12,
                        # an edge skipping generations to another row bends, so it does
                        # not pass as leaving a node between (in its row it runs straight,
                        # along the row's centre)
                        "connectionstyle": f"arc3,rad={-0.2 if xb - xa > 1 and ya != yb else 0.0}"},
            zorder=1,
        )  # fmt: skip
    for m, (x, y) in pos.items():
        got = measured.get(m)
        text = m
        if got is not None:
            secs = "" if got.seconds is None else f"\n{got.seconds:,.0f} s"
            text += f"\n{metric} {got.value:.4f}{secs}"
        box = FancyBboxPatch((x - BOX_W / 2, y - BOX_H / 2), BOX_W, BOX_H,
                             boxstyle="round,pad=0.02",
                             facecolor="white" if got else "#f7f7f7",
                             edgecolor="#4878a8" if got else "#c8c8c8", lw=1.4,
                             zorder=2)  # fmt: skip
        ax.add_patch(box)
        ax.text(x, y, text, ha="center", va="center", fontsize=7.5, zorder=3,
                color="black" if got else "#909090")  # fmt: skip
    ax.set_xlim(min(xs) - 1.9, max(xs) + 0.5)
    ax.set_ylim(min(ys) - 0.6, max(ys) + 0.6)
    ax.axis("off")
    better = "higher" if higher else "lower"
    ax.set_title(f"{title}\narrow: derived from; green = successor's {metric} is {better} "
                 "(better), red = not, grey = not measured", fontsize=9)  # fmt: skip
    fig.tight_layout()
    return fig


def write_lineage_chart(measured: dict[str, Measured], path: Path, metric: str, title: str) -> Path:
    """Write :func:`lineage_figure` as a PNG (atomically); returns ``path``."""
    import matplotlib.pyplot as plt

    from recforge.io import atomic_write

    fig = lineage_figure(measured, metric, title)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return path


# ---- command -----------------------------------------------------------------------------------


def cmd_compare(args: argparse.Namespace) -> int:
    from recforge.commands.core import validate_model_section
    from recforge.config import load_run_config, to_dict
    from recforge.data.pipeline import encode_run

    if args.from_results:
        if args.chart != "lineage":
            raise ValueError("--from-results draws a chart: add --chart lineage")
        measured = load_measured([Path(p) for p in args.from_results], args.metric)
        title = args.title or f"{args.dataset or 'results'}: test {args.metric}"
        path = write_lineage_chart(measured, Path(args.output) / "lineage.png", args.metric, title)
        print(f"wrote {path} ({len(measured)} measured models)")
        return 0
    if not args.dataset:
        raise ValueError("compare needs --dataset (or --from-results with --chart lineage)")

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
    if args.chart == "lineage":
        measured = measured_from_rows(leaderboard_rows(results), args.metric)
        title = args.title or f"{args.dataset}: test {args.metric}"
        paths["lineage"] = write_lineage_chart(measured, output / "lineage.png", args.metric, title)
    print(paths["md"].read_text())
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0 if all("error" not in r.extra for r in results) else 1
