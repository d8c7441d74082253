"""Base vs DIN vs DIEN through ``recforge train``, with the ablations, on Amazon Beauty
(short histories) or MovieLens-100K in the DIN paper's protocol (long histories).

Every run is ``recforge train -c configs/seq/<dataset>.yaml model.name=... train.seed=...``
(plus the variant's overrides) in a fresh output folder; this script only starts those runs,
reads each run's ``metrics.json`` and ``history.json`` and writes the table. Runs already in
the results file are skipped, so an interrupted study continues where it stopped.

Usage (from the repository root)::

    python benchmarks/seq_study.py --dataset beauty \\
        --path /work/shared/datasets/amazon-s3rec-sequences --study defaults --seeds 1 2 3 4 5
    python benchmarks/seq_study.py --dataset beauty --path ... --study ablations --seeds 1 2 3
    python benchmarks/seq_study.py --dataset ml100k \\
        --path /work/shared/datasets/movielens-100k --study defaults --seeds 1 2 3 4 5

Writes ``benchmarks/results/seq_<dataset>.jsonl`` (one line per run) and ``seq_<dataset>.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {
    "beauty": ROOT / "configs" / "seq" / "amazon_beauty.yaml",
    "ml100k": ROOT / "configs" / "seq" / "movielens_100k_din.yaml",
}
RESULTS = ROOT / "benchmarks" / "results"

# label -> (model, overrides); the defaults are the shipped ones (no model option set)
DEFAULTS: dict[str, tuple[str, list[str]]] = {
    "Base": ("base_seq", []),
    "DIN": ("din", []),
    "DIEN": ("dien", []),
}
ABLATIONS: dict[str, tuple[str, list[str]]] = {
    "Base, sum pooling (papers)": ("base_seq", ["model.params.pooling=sum"]),
    "DIN, no softmax (paper Eq. 3)": ("din", ["model.params.softmax=false"]),
    "DIN, PReLU": (
        "din",
        ["model.params.activation=prelu", "model.params.attention_activation=prelu"],
    ),
    "DIEN, aux loss off (BARS)": ("dien", ["model.params.alpha=0"]),
    "DIEN, in-batch negatives": ("dien", ["model.params.negatives=in_batch"]),
    "DIEN, mean pooling": ("dien", ["model.params.pooling=mean"]),
    "DIEN, no candidate product (paper text)": (
        "dien",
        ["model.params.candidate_product=false"],
    ),
    "DIEN, AGRU": ("dien", ["model.params.evolution=agru"]),
    "DIEN, AIGRU": ("dien", ["model.params.evolution=aigru"]),
    "DIEN, GRU (no attention)": ("dien", ["model.params.evolution=gru"]),
    "DIN, history 20": ("din", ["data.options.max_len=20"]),
    "DIN, history 50": ("din", ["data.options.max_len=50"]),
    "DIN, history 200": ("din", ["data.options.max_len=200"]),
    "DIEN, history 20": ("dien", ["data.options.max_len=20"]),
    "DIEN, history 50": ("dien", ["data.options.max_len=50"]),
}
# the learning-rate budget every model gets (the config's lr is the third candidate); chosen
# per model on validation AUC (seed 1), never on test
LRS = ("1e-3", "3e-4")
MODELS = {"Base": "base_seq", "DIN": "din", "DIEN": "dien"}
LR_STUDY: dict[str, tuple[str, list[str]]] = {
    f"{name}, lr {lr}": (model, [f"train.lr={lr}"]) for name, model in MODELS.items() for lr in LRS
}
STUDIES = {"defaults": DEFAULTS, "ablations": ABLATIONS, "lr": LR_STUDY}


def tuned_study(runs: list[dict], config_lr: str) -> dict[str, tuple[str, list[str]]]:
    """Each model at the learning rate with the best seed-1 validation AUC among the config's
    and :data:`LRS` (every model gets the same budget; test AUC is never looked at)."""
    study = {}
    for name, model in MODELS.items():
        candidates = {config_lr: name, **{lr: f"{name}, lr {lr}" for lr in LRS}}
        valid = {
            lr: r["valid_auc"]
            for lr, label in candidates.items()
            for r in runs
            if r["label"] == label and r["seed"] == 1
        }
        if len(valid) < len(candidates):
            raise SystemExit(f"{name}: run the lr study (seed 1) before the tuned one")
        best = max(valid, key=valid.__getitem__)
        study[f"{name}, tuned lr"] = (model, [f"train.lr={best}"])
    return study


TITLES = {
    "beauty": "Amazon Beauty (the DIN paper's Amazon preparation; short histories)",
    "ml100k": "MovieLens-100K in the DIN paper's MovieLens protocol (long histories)",
}
PATHS = {
    "beauty": "/work/shared/datasets/amazon-s3rec-sequences",
    "ml100k": "/work/shared/datasets/movielens-100k",
}


def run_one(
    label: str, model: str, overrides: list[str], seed: int, path: str, config: Path
) -> dict:
    """One ``recforge train`` run; its test metrics, best validation AUC and timings."""
    with tempfile.TemporaryDirectory(prefix="seq_study_") as tmp:
        out = Path(tmp) / "run"
        cmd = [
            sys.executable, "-m", "recforge", "train", "-c", str(config),
            f"model.name={model}", f"train.seed={seed}", f"data.path={path}",
            f"output_dir={out}", "train.progress=false", *overrides,
        ]  # fmt: skip
        start = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
        wall = time.perf_counter() - start
        summary = json.loads((out / "metrics.json").read_text())
        history = json.loads((out / "history.json").read_text())
    valid = [h.get("valid_auc", float("nan")) for h in history]
    best = summary["best_epoch"]
    return {
        "label": label,
        "model": model,
        "overrides": overrides,
        "seed": seed,
        "test_auc": summary["test"]["auc"],
        "test_gauc": summary["test"].get("gauc", float("nan")),
        "valid_auc": valid[best] if 0 <= best < len(valid) else max(valid),
        "best_epoch": best,
        "epochs_run": len(history),
        "train_seconds": summary["train_seconds"],
        "wall_seconds": wall,
        "command": f"recforge train -c configs/seq/{config.name} "
        + " ".join([f"model.name={model}", f"train.seed={seed}", "data.path=PATH", *overrides]),
    }


def table(runs: list[dict]) -> str:
    """Mean ± std per variant, and each variant's paired test-AUC difference to DIN."""
    by: dict[str, list[dict]] = {}
    seen: set[tuple[str, int]] = set()
    for r in runs:  # a (variant, seed) run twice by two processes counts once
        if (r["label"], r["seed"]) not in seen:
            seen.add((r["label"], r["seed"]))
            by.setdefault(r["label"], []).append(r)
    din = {r["seed"]: r["test_auc"] for r in by.get("DIN", [])}
    din_tuned = {r["seed"]: r["test_auc"] for r in by.get("DIN, tuned lr", [])}
    lines = [
        "| variant | seeds | valid AUC | test AUC | test GAUC | paired Δ test AUC vs DIN "
        "(mean ± 2·std) | epochs (best/run) | train s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    tuned = [f"{name}, tuned lr" for name in MODELS]
    for label in [*DEFAULTS, *ABLATIONS, *LR_STUDY, *tuned]:
        rs = by.get(label)
        if not rs:
            continue
        v, t, g = (np.array([r[k] for r in rs]) for k in ("valid_auc", "test_auc", "test_gauc"))
        ref = din_tuned if label in tuned else din  # tuned models against the tuned DIN
        diffs = np.array([r["test_auc"] - ref[r["seed"]] for r in rs if r["seed"] in ref])
        delta = (
            f"{diffs.mean():+.4f} ± {2 * diffs.std(ddof=1):.4f}"
            if label not in ("DIN", "DIN, tuned lr") and len(diffs) > 1
            else "—"
        )
        ep = "/".join(f"{r['best_epoch']}:{r['epochs_run']}" for r in rs)
        lines.append(
            f"| {label} | {len(rs)} | {v.mean():.4f} ± {v.std(ddof=1) if len(v) > 1 else 0:.4f} "
            f"| {t.mean():.4f} ± {t.std(ddof=1) if len(t) > 1 else 0:.4f} "
            f"| {g.mean():.4f} ± {g.std(ddof=1) if len(g) > 1 else 0:.4f} | {delta} | {ep} "
            f"| {np.mean([r['train_seconds'] for r in rs]):.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=list(CONFIGS), default="beauty")
    parser.add_argument("--path", required=True, help="the dataset's local folder")
    parser.add_argument("--study", choices=[*STUDIES, "tuned"], nargs="+", default=["defaults"])
    parser.add_argument("--only", nargs="*", default=None, help="labels to run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--out", default=None, help="default: results/seq_<dataset>.jsonl")
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    out = Path(args.out or RESULTS / f"seq_{args.dataset}.jsonl")
    runs = [json.loads(x) for x in out.read_text().splitlines()] if out.exists() else []
    done = {(r["label"], r["seed"]) for r in runs}
    if not args.table_only:
        for study in args.study:
            if study == "tuned":
                config_lr = str(yaml.safe_load(CONFIGS[args.dataset].read_text())["train"]["lr"])
                variants = tuned_study(runs, config_lr)
            else:
                variants = STUDIES[study]
            for seed in args.seeds:  # seed-major: every variant gets its first seeds early
                for label, (model, overrides) in variants.items():
                    if (args.only and label not in args.only) or (label, seed) in done:
                        continue
                    r = run_one(label, model, overrides, seed, args.path, CONFIGS[args.dataset])
                    runs.append(r)
                    with out.open("a") as fh:
                        fh.write(json.dumps(r) + "\n")
                    print(f"{label} seed {seed}: test AUC {r['test_auc']:.4f}", flush=True)
    text = table(runs)
    config = CONFIGS[args.dataset].relative_to(ROOT)
    header = [
        f"# Base vs DIN vs DIEN: {TITLES[args.dataset]}",
        "",
        f"Every run: `recforge train -c {config} model.name=<model> train.seed=<seed> "
        f"data.path={PATHS[args.dataset]} [overrides]` (the protocol is in the config's "
        "comments); the table: `python benchmarks/seq_study.py --dataset "
        f"{args.dataset} --path {PATHS[args.dataset]} --study defaults ablations --seeds ...` "
        f"(runs in `{out.name}`, one JSON line each, with its command). Mean ± std over the "
        "seeds; the paired difference is each seed's test AUC minus DIN's with the same seed "
        "(± two standard deviations of those differences). Epochs: best (from 0) : run. Train "
        "seconds were measured on the shared 2-core machine under heavy load: compare AUCs, "
        "not times.",
        "",
    ]
    out.with_suffix(".md").write_text("\n".join(header) + text + "\n")
    # the shipped defaults' runs, in the per-run form `recforge compare --from-results` reads
    defaults = [
        {"model": r["model"], "seed": r["seed"], "test_auc": r["test_auc"],
         "test_gauc": r["test_gauc"], "train_seconds": r["train_seconds"]}
        for r in runs if r["label"] in DEFAULTS
    ]  # fmt: skip
    out.with_name(f"{out.stem}_defaults.json").write_text(json.dumps({"runs": defaults}) + "\n")
    print(text)


if __name__ == "__main__":
    main()
