"""Collect the tuned Frappe_x1 studies (``benchmarks/tune_frappe.sh``) into one table.

Reads each ``runs/tune/frappe_<model>/summary.json`` (best trial chosen on validation AUC, its
config retrained once and tested) and ``trials.csv``, puts the test figures next to BARS's
(``../shared/REFERENCE.md`` §3.11) and writes ``benchmarks/results/<name>.md`` / ``.json``,
each study's optimisation history as ``<name>_<model>_history.png`` and the Frappe lineage
chart ``<name>_lineage.png`` (tuned rows plus the deep models of ``--deep``).

Usage:
    python benchmarks/bars_frappe_tuned.py --studies runs/tune --models lr fm afm nfm \\
        --deep benchmarks/results/ctr_frappe.json
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

from recforge.commands.compare import load_measured, measured_from_rows, write_lineage_chart

BARS = {  # Frappe_x1 test AUC / logloss (REFERENCE.md §3.11, BARS leaderboard)
    "lr": (0.9356, 0.3076),
    "fm": (0.9671, 0.2065),
    "nfm": (0.9804, 0.2058),
    "afm": (0.9697, 0.2264),
    "deepfm": (0.9842, 0.1482),
    "dcn": (0.9839, 0.1527),
}


def study_row(folder: Path, model: str) -> dict:
    summary = json.loads((folder / "summary.json").read_text())
    with (folder / "trials.csv").open() as f:
        trials = list(csv.DictReader(f))
    seconds = sum(float(t["seconds"]) for t in trials if t.get("seconds"))
    bars_auc, bars_logloss = BARS.get(model, (None, None))
    test = summary["test"]
    return {
        "model": model,
        "auc": test.get("auc"),
        "logloss": test.get("logloss"),
        "bars_auc": bars_auc,
        "bars_logloss": bars_logloss,
        "delta_auc": None if bars_auc is None else test["auc"] - bars_auc,
        "valid_auc": summary["best"]["valid"],
        "params": summary["best"]["params"],
        "trials": summary["trials"],
        "states": summary["states"],
        "study_seconds": round(seconds, 1),
        "train_seconds": summary["retrained"].get("train_seconds"),
        "best_epoch": summary["retrained"].get("best_epoch"),
        "importance": summary["importance"],
        "command": summary["command"],
    }


def markdown(rows: list[dict]) -> str:
    lines = [
        "## Frappe_x1 tuned with `recforge tune`: selection on validation AUC, best config "
        "retrained once and tested",
        "",
        "| model | ours AUC | ours logloss | BARS AUC | BARS logloss | ΔAUC | valid AUC | "
        "chosen | trials | study CPU s | best run s (best epoch) |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|---:|---:|",
    ]
    for r in rows:
        chosen = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in r["params"].items())  # fmt: skip
        states = ", ".join(f"{v} {k.lower()}" for k, v in r["states"].items())
        lines.append(
            f"| {r['model']} | {r['auc']:.4f} | {r['logloss']:.4f} | {r['bars_auc']:.4f} | "
            f"{r['bars_logloss']:.4f} | {r['delta_auc']:+.4f} | {r['valid_auc']:.4f} | "
            f"{chosen} | {r['trials']} ({states}) | {r['study_seconds']:.0f} | "
            f"{r['train_seconds']:.0f} ({r['best_epoch']}) |"
        )
    lines += ["", "Commands (from the repository root, `OMP_NUM_THREADS=1 nice -n 5`):", ""]
    lines += [f"- {r['model']}: `{r['command']}`" for r in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", default="runs/tune")
    parser.add_argument("--models", nargs="+", default=["lr", "fm", "afm", "nfm"])
    parser.add_argument("--deep", nargs="*", default=[], help="leaderboards for the chart")
    parser.add_argument("--name", default="bars_frappe_tuned")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    out = Path(args.out)
    rows = []
    for model in args.models:
        folder = Path(args.studies) / f"frappe_{model}"
        if not (folder / "summary.json").exists():
            print(f"skip {model}: no finished study in {folder}")
            continue
        rows.append(study_row(folder, model))
        shutil.copyfile(folder / "history.png", out / f"{args.name}_{model}_history.png")
    (out / f"{args.name}.md").write_text(markdown(rows))
    (out / f"{args.name}.json").write_text(json.dumps({"results": rows}, indent=1))
    measured = load_measured([Path(p) for p in args.deep], "auc") if args.deep else {}
    tuned = [{"model": r["model"], "auc": r["auc"], "train_seconds": r["train_seconds"]}
             for r in rows]  # fmt: skip
    measured.update(measured_from_rows(tuned, "auc"))
    deep = ", ".join(Path(d).name for d in args.deep) or "none"
    title = f"Frappe_x1: test AUC (LR/FM/AFM/NFM tuned with recforge tune; others: {deep})"
    write_lineage_chart(measured, out / f"{args.name}_lineage.png", "auc", title)
    print((out / f"{args.name}.md").read_text())


if __name__ == "__main__":
    main()
