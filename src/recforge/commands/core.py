"""Core subcommands: models, train, evaluate, predict, datasets, demo."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from recforge.io import atomic_write, atomic_write_text

if TYPE_CHECKING:
    from recforge.config import RunConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list registered models with their papers")
    p.add_argument(
        "--family",
        choices=["baseline", "ctr", "cf", "sequence", "rl"],
        help="only one family",
    )
    p.set_defaults(handler=cmd_models)

    p = sub.add_parser("train", help="train a model from a YAML config and/or overrides")
    p.add_argument("-c", "--config", help="YAML run config")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=3e-4")
    p.add_argument("--resume", action="store_true", help="resume from output_dir's checkpoint")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the data cache")
    p.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="processes per machine for distributed data parallel (gloo on CPU, NCCL on GPU)",
    )
    p.add_argument(
        "--nnodes",
        type=int,
        default=1,
        help="machines in the job: run the same command on each, with the same --rdzv-endpoint",
    )
    p.add_argument(
        "--rdzv-endpoint",
        metavar="HOST:PORT",
        help="where the machines meet (c10d rendezvous; reachable from all of them)",
    )
    p.add_argument("--rdzv-id", help="the job's name at the rendezvous (default: from endpoint)")
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a saved bundle on a labelled file")
    p.add_argument("bundle", help="bundle folder (output_dir/bundle)")
    p.add_argument("data", help="CSV/TSV/Parquet/libfm file with the label column")
    p.set_defaults(handler=cmd_evaluate)

    p = sub.add_parser("predict", help="score raw rows (CSV/Parquet) with a saved bundle")
    p.add_argument("bundle", help="bundle folder")
    p.add_argument("data", help="input file (no label needed)")
    p.add_argument("-o", "--output", help="output CSV (default: stdout)")
    p.add_argument("--keep", nargs="*", default=[], help="input columns to copy to the output")
    p.set_defaults(handler=cmd_predict)

    p = sub.add_parser("datasets", help="list, fetch or prepare catalogue datasets")
    p.add_argument("action", choices=["list", "fetch", "prepare"], nargs="?", default="list")
    p.add_argument("name", nargs="?", help="dataset name")
    p.add_argument("--path", help="local copy for prepare")
    p.add_argument("--force", action="store_true", help="re-download even when cached")
    p.set_defaults(handler=cmd_datasets)

    p = sub.add_parser("demo", help="train the models on an embedded synthetic log (no files)")
    p.add_argument("--rows", type=int, default=100_000, help="synthetic rows")
    p.add_argument("--models", nargs="*", help="model names (default: all CTR/sequence models)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", help="folder for bundles and the leaderboard")
    p.set_defaults(handler=cmd_demo)


def cmd_models(args: argparse.Namespace) -> int:
    from recforge.models import registry

    for name in registry.names(args.family):
        spec = registry.get(name)
        print(f"{name:<14} {spec.family:<9} {spec.paper}")
    return 0


def validate_model_section(cfg: RunConfig, where: str | None = None) -> None:
    """Check ``cfg.model`` against the registry: a known name, params its config class accepts.

    ``recforge.config`` knows no model, so every command that loads a run config calls this
    right after :func:`~recforge.config.load_run_config`, before any work.

    Raises:
        ConfigError: one line naming the model section (and ``where``, the config file).
    """
    from recforge.config import ConfigError
    from recforge.models import registry

    prefix = f"{where}: " if where else ""
    try:
        registry.get(cfg.model.name)
    except KeyError as exc:  # str() of a KeyError would quote the message
        raise ConfigError(f"{prefix}model.name: {exc.args[0]}") from None
    try:
        registry.make_config(cfg.model.name, cfg.model.params)
    except ConfigError as exc:
        raise ConfigError(f"{prefix}{exc}") from None


def cmd_train(args: argparse.Namespace) -> int:
    from recforge.config import load_run_config
    from recforge.run import train_job

    cfg = load_run_config(args.config, args.overrides)
    validate_model_section(cfg, args.config)
    if cfg.train.engine == "torchrec":  # a missing TorchRec or a bad sharding type: before launch
        from recforge.distributed.engine import build_engine

        build_engine(cfg.train)
    result = train_job(
        cfg,
        nproc=args.nproc,
        resume=args.resume,
        use_cache=not args.no_cache,
        nnodes=args.nnodes,
        rdzv_endpoint=args.rdzv_endpoint,
        rdzv_id=args.rdzv_id,
    )
    if result is None:  # a rank (or machine) other than global rank 0: rank 0 reports
        return 0
    print(
        json.dumps(
            {
                "model": result.model,
                "test": result.test_metrics,
                "train_seconds": round(result.train_seconds, 2),
                "output_dir": str(cfg.output_dir),
            },
            indent=1,
        )
    )
    return 0


def _read(path: str, bundle) -> pa.Table:  # noqa: ANN001
    from recforge.data.read.readers import read_table

    return read_table(path, schema=bundle.preprocessor.schema)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from recforge import metrics
    from recforge.serve.bundle import load_bundle

    bundle = load_bundle(args.bundle)
    table = _read(args.data, bundle)
    encoded = bundle.preprocessor.transform(table, with_label=True)
    scores = bundle.predict_encoded(encoded, logits=True)
    labels = np.asarray(encoded.label)
    if bundle.task == "regression":
        out = metrics.compute(["rmse", "mae"], labels, scores, task="regression")
    else:
        names = ["auc", "logloss"] + (["gauc"] if "group" in encoded.extras else [])
        out = metrics.compute(names, labels, scores, groups=encoded.extras.get("group"))
    print(json.dumps({"rows": len(labels), **out}, indent=1))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from recforge.serve.bundle import load_bundle

    bundle = load_bundle(args.bundle)
    table = _read(args.data, bundle)
    start = time.perf_counter()
    scores = bundle.predict_table(table)
    elapsed = time.perf_counter() - start
    columns = {c: table.column(c) for c in args.keep}
    columns["score"] = pa.array(scores.astype(np.float64))
    out = pa.table(columns)
    if args.output:
        atomic_write(Path(args.output), lambda tmp: pacsv.write_csv(out, tmp))
        print(
            f"wrote {len(scores)} scores to {args.output} ({len(scores) / elapsed:,.0f} rows/s)",
            file=sys.stderr,
        )
    else:
        sink = pa.BufferOutputStream()
        pacsv.write_csv(out, sink)
        sys.stdout.write(sink.getvalue().to_pybytes().decode())
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from recforge.data.sources import catalogue as datasets

    if args.action == "list":
        for name, spec in datasets.catalogue().items():
            cached = "cached" if (datasets.dataset_dir(name)).exists() else ""
            print(f"{name:<22} {spec.description} {cached}".rstrip())
        return 0
    if not args.name:
        raise ValueError(f"datasets {args.action} needs a dataset name")
    if args.action == "fetch":
        folder = datasets.fetch(args.name, force=args.force)
        print(f"{args.name}: files in {folder}")
        return 0
    prepared = datasets.load(args.name, path=args.path)
    splits = {k: getattr(prepared, k) for k in ("train", "valid", "test")}
    sizes = {k: (None if v is None else v.num_rows) for k, v in splits.items()}
    print(
        json.dumps(
            {
                "dataset": args.name,
                "rows": sizes,
                "fields": [f.name for f in prepared.schema.fields],
                "task": prepared.schema.task,
            },
            indent=1,
        )
    )
    return 0


# What each line of evolution's mechanism can capture in the demo's log (the planted terms of
# recforge.data.sources.synthetic's hidden label model).
DEMO_SIGNALS: dict[str, str] = {
    "1 deeper networks": "non-linear mixes of every field (price curve, 3-way term)",
    "2 new crossing operations": "explicit pairwise products (segment x category, device x hour)",
    "3 combined models": "memorised and bounded-degree crosses (device x day-part x category)",
    "4 FM goes deep": "pairwise interactions (FM) plus higher orders (the deep part)",
    "5 attention": "interest match: the candidate's category among the recent behaviours",
    "6 sequence models": "interest drift: a user's interests change mid-timeline",
    "baselines": "the floor: item popularity only",
}


def demo_report(run: Any, rows: int, seconds: float) -> str:
    """The demo's leaderboard, grouped by the chapter's lines of evolution, between the
    generator's oracle AUC (ceiling) and the random/popularity floor."""
    from recforge.commands.compare import LINEAGE_LINES

    by_name = {r.model: r for r in run.results}
    line_of = {m: line for line, ms in LINEAGE_LINES for m in ms}
    popularity = by_name.get("popularity")
    floor = popularity.test_metrics.get("auc", 0.5) if popularity else 0.5
    ceiling = run.oracle_auc
    out = [
        f"recforge demo: {rows:,} synthetic rows (test {run.test_rows:,}), "
        f"{len(run.results)} models, {seconds:.0f} s",
        f"ceiling: oracle AUC {ceiling:.4f} (the generator's own click probabilities); "
        f"floor: random 0.5000" + (f", popularity {floor:.4f}" if popularity else ""),
        "`gap closed` = share of the way from the floor to the ceiling.",
    ]
    groups: dict[str, list[Any]] = {}
    for r in run.results:
        groups.setdefault(line_of.get(r.model, "baselines"), []).append(r)
    order = [line for line, _ in LINEAGE_LINES] + ["baselines"]
    for line in [g for g in order if g in groups] + sorted(set(groups) - set(order)):
        out += ["", f"### {line}: {DEMO_SIGNALS.get(line, '')}", ""]
        out += [
            "| model | AUC | gap closed | logloss | GAUC | train s | params |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in sorted(groups[line], key=lambda r: -r.test_metrics.get("auc", 0.0)):
            m = r.test_metrics
            auc = m.get("auc", float("nan"))
            closed = (auc - floor) / (ceiling - floor) if ceiling > floor else float("nan")
            out.append(
                f"| {r.model} | {auc:.4f} | {closed:+.0%} | {m.get('logloss', float('nan')):.4f}"
                f" | {m.get('gauc', float('nan')):.4f} | {r.train_seconds:.1f} | "
                f"{r.parameters:,} |"
            )
    return "\n".join(out)


def cmd_demo(args: argparse.Namespace) -> int:
    from recforge.commands.compare import Measured, write_lineage_chart
    from recforge.run import demo

    start = time.perf_counter()
    output = Path(args.output) if args.output else None
    run = demo(
        rows=args.rows, models=args.models, epochs=args.epochs, seed=args.seed, output_dir=output
    )
    report = demo_report(run, args.rows, time.perf_counter() - start)
    print(report)
    if output is None:
        print("\n(--output DIR keeps the bundles and draws the lineage chart)")
        return 0
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output / "leaderboard.md", report + "\n")
    measured = {
        r.model: Measured(r.test_metrics["auc"], r.train_seconds)
        for r in run.results
        if "auc" in r.test_metrics
    }
    chart = write_lineage_chart(
        measured, output / "lineage.png", "auc", f"recforge demo ({args.rows:,} rows): test AUC"
    )
    print(f"\nlineage chart: {chart}")
    return 0
