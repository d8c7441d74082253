"""Run shipped configs through the front door (``recforge train``) and write the table.

Every figure this script reports comes from ``recforge train -c CONFIG`` run as a user runs it
(one subprocess per config and seed); the script only collects each run's ``metrics.json`` and
puts it next to the published figure (``../shared/REFERENCE.md``).

Usage:
    python benchmarks/repro.py --name cf_ml1m configs/repro/autorec_ml1m.yaml \\
        configs/repro/u_autorec_ml1m.yaml --seeds 0 1 2 --set data.path=/data/ml-1m
    python benchmarks/repro.py --name ncf configs/models/gmf.yaml configs/models/ncf_mlp.yaml \\
        configs/models/neumf.yaml --set data.path=/data/ncf-split train.threads=2

Writes ``benchmarks/results/<name>.md`` and ``<name>.json``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

# (model, dataset) -> published test figures (REFERENCE.md)
PUBLISHED: dict[tuple[str, str], dict[str, float]] = {
    ("autorec", "movielens-1m"): {"rmse": 0.831},
    ("u_autorec", "movielens-1m"): {"rmse": 0.874},
    ("neumf", "movielens-1m-ncf"): {"hr@10": 0.726, "ndcg@10": 0.445},
    ("ncf_mlp", "movielens-1m-ncf"): {"hr@10": 0.692, "ndcg@10": 0.425},
    ("deepfm", "frappe"): {"auc": 0.9842, "logloss": 0.1482},  # BARS Frappe_x1
    ("dcn", "frappe"): {"auc": 0.9839, "logloss": 0.1527},
}


def run_one(config: Path, seed: int, overrides: list[str], out: Path) -> dict:
    """``recforge train -c config`` with a seed; returns its ``metrics.json`` plus timing."""
    cmd = [sys.executable, "-m", "recforge.cli", "train", "-c", str(config), f"train.seed={seed}",
           f"output_dir={out}", "train.progress=false", *overrides]  # fmt: skip
    print("$", shlex.join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    summary = json.loads((out / "metrics.json").read_text())
    summary["wall_seconds"] = time.perf_counter() - start
    summary["command"] = shlex.join(["recforge", *cmd[3:]])
    return summary


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("configs", nargs="+", type=Path)
    p.add_argument("--name", required=True, help="results file stem")
    p.add_argument("--seeds", type=int, nargs="+", default=[2026])
    p.add_argument("--set", nargs="*", default=[], help="key=value overrides for every run")
    p.add_argument("--runs", type=Path, default=Path("runs/repro"))
    p.add_argument("--output", type=Path, default=Path("benchmarks/results"))
    p.add_argument(
        "--table-only", action="store_true",
        help="rewrite <name>.md from the runs already in <name>.json (published figures updated)",
    )  # fmt: skip
    args = p.parse_args()
    if args.table_only:
        rows = json.loads((args.output / f"{args.name}.json").read_text())
        for r in rows:
            r["published"] = PUBLISHED.get((r["model"], r["dataset"]), {})
        return write_table(args.name, rows, args.output)
    rows = []
    for config in args.configs:
        raw = yaml.safe_load(config.read_text())
        model, dataset = raw["model"]["name"], raw["data"]["dataset"]
        label = model if raw["model"]["params"].get("item_based", True) else f"u_{model}"
        runs = [
            run_one(config, seed, args.set, args.runs / f"{config.stem}_s{seed}")
            for seed in args.seeds
        ]
        keys = sorted(runs[0]["test"])
        mean = {k: statistics.fmean(r["test"][k] for r in runs) for k in keys}
        std = {k: statistics.pstdev([r["test"][k] for r in runs]) for k in keys}
        rows.append({"config": str(config), "model": label, "dataset": dataset,
                     "seeds": args.seeds, "mean": mean, "std": std, "runs": runs,
                     "published": PUBLISHED.get((label, dataset), {})})  # fmt: skip
    return write_table(args.name, rows, args.output)


def write_table(name: str, rows: list[dict], output: Path) -> int:
    """``<name>.md`` and ``<name>.json`` from the collected runs."""
    lines = [f"# {name}: shipped configs through `recforge train`", "",
             "| config | model | dataset | test (mean ± std over seeds) | published | s/run |",
             "|---|---|---|---|---|---:|"]  # fmt: skip
    for r in rows:
        test = ", ".join(f"{k} {r['mean'][k]:.4f} ± {r['std'][k]:.4f}" for k in r["mean"])
        pub = ", ".join(f"{k} {v}" for k, v in r["published"].items()) or "-"
        secs = statistics.fmean(x["wall_seconds"] for x in r["runs"])
        lines.append(f"| `{r['config']}` | {r['model']} | {r['dataset']} | {test} | {pub} "
                     f"| {secs:.0f} |")  # fmt: skip
    lines += ["", "Commands (one per run):", ""]
    lines += [f"    {x['command']}" for r in rows for x in r["runs"]]
    output.mkdir(parents=True, exist_ok=True)
    (output / f"{name}.md").write_text("\n".join(lines) + "\n")
    (output / f"{name}.json").write_text(json.dumps(rows, indent=1, default=float))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
