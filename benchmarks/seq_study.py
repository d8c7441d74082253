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
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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
    "DIEN, AUGRU as released (keep gate)": ("dien", ["model.params.evolution=augru_released"]),
    "Base, Glorot init (released code)": ("base_seq", ["model.params.linear_init=glorot"]),
    "DIN, Glorot init (released code)": ("din", ["model.params.linear_init=glorot"]),
    "DIEN, Glorot init (released code)": ("dien", ["model.params.linear_init=glorot"]),
    "DIEN, in-batch negatives, Glorot init": (
        "dien",
        ["model.params.negatives=in_batch", "model.params.linear_init=glorot"],
    ),
    "DIEN, Glorot init, with the in-batch and mean-pooling defaults": (
        "dien",
        ["model.params.linear_init=glorot"],
    ),
    "DIEN, in-batch negatives, mean pooling": (
        "dien",
        ["model.params.negatives=in_batch", "model.params.pooling=mean"],
    ),
    "DIN, embeddings N(0, 1e-4) (peers)": ("din", ["model.params.embedding_init_std=0.0001"]),
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


def train_command(
    model: str, overrides: list[str], seed: int, path: str, config: Path, out: Path
) -> list[str]:
    """The ``recforge train`` command line of one run into ``out``."""
    return [
        sys.executable, "-m", "recforge", "train", "-c", str(config),
        f"model.name={model}", f"train.seed={seed}", f"data.path={path}",
        f"output_dir={out}", "train.progress=false", *overrides,
    ]  # fmt: skip


def run_one(
    label: str, model: str, overrides: list[str], seed: int, path: str, config: Path
) -> dict:
    """One ``recforge train`` run; its test metrics, best validation AUC and timings."""
    with tempfile.TemporaryDirectory(prefix="seq_study_") as tmp:
        out = Path(tmp) / "run"
        cmd = train_command(model, overrides, seed, path, config, out)
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
        # per epoch: the training loss (DIEN: click loss + alpha * auxiliary loss) and the
        # validation metrics, for the learning curves
        "history": [
            {k: v for k, v in h.items() if k in ("epoch", "train_loss") or k.startswith("valid_")}
            for h in history
        ],
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


# ---- evidence: why DIEN trails DIN (learning curves, auxiliary loss, attention, lengths) ----
# label -> (model, overrides, folder): the shipped defaults, and DIEN with the released code's
# kind of auxiliary negatives
EVIDENCE_MODELS: dict[str, tuple[str, list[str], str]] = {
    "Base": ("base_seq", [], "Base"),
    "DIN": ("din", [], "DIN"),
    "DIEN": ("dien", [], "DIEN"),
    "DIEN, in-batch negatives": ("dien", ["model.params.negatives=in_batch"], "DIEN_in_batch"),
}
# validation history lengths, inclusive ranges (Beauty's validation rows have 3 to 100)
BUCKETS = ((1, 3), (4, 4), (5, 5), (6, 10), (11, 20), (21, 100))
IB = "DIEN, in-batch negatives"
MARKER = "<!-- hand-written below this line: seq_study.py keeps it when it rewrites the file -->"


def _snapshot(folder: Path, snaps: Path, saved: int) -> int:
    """Copy ``folder``'s checkpoint once its ``history.json`` has grown past ``saved`` epochs.

    The trainer keeps only its newest checkpoint and writes it before ``history.json``, so a
    copy taken when the history grows holds the weights of the epoch just recorded.
    """
    try:
        n = len(json.loads((folder / "history.json").read_text()))
    except (OSError, ValueError):
        return saved
    if n > saved:
        shutil.copyfile(folder / "checkpoint.pt", snaps / f"epoch{n - 1}.pt")
    return max(n, saved)


def train_kept(
    model: str, overrides: list[str], seed: int, path: str, config: Path, out: Path
) -> None:
    """One ``recforge train`` run into ``out`` (kept), each epoch's weights in ``out_epochs``."""
    snaps = out.with_name(out.name + "_epochs")
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(snaps, ignore_errors=True)
    snaps.mkdir(parents=True)
    stage = out.parent / f".{out.name}.partial"  # where the run writes until it has finished
    cmd = train_command(model, overrides, seed, path, config, out)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    saved = 0
    while proc.poll() is None:
        time.sleep(1.0)
        saved = _snapshot(stage, snaps, saved)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    _snapshot(out, snaps, saved)  # the last epoch, if the run published before the poll saw it


def _buckets(lengths: np.ndarray) -> list[np.ndarray]:
    return [(lengths >= lo) & (lengths <= hi) for lo, hi in BUCKETS]


def length_profile(prepared: Any) -> dict[str, Any]:
    """History lengths of the train / valid / test rows (quantiles, shares)."""
    out: dict[str, Any] = {}
    for split in ("train", "valid", "test"):
        table = getattr(prepared, split)
        offsets = table.column("hist_item_ids").combine_chunks().offsets.to_numpy()
        lengths = np.diff(offsets)
        out[split] = {
            "rows": int(len(lengths)),
            "mean": float(lengths.mean()),
            "quantiles": {
                str(q): float(np.percentile(lengths, q)) for q in (10, 25, 50, 75, 90, 99)
            },
            "share_le_5": float((lengths <= 5).mean()),
            "share_le_10": float((lengths <= 10).mean()),
            "share_gt_20": float((lengths > 20).mean()),
            "share_gt_50": float((lengths > 50).mean()),
            "buckets": [float(m.mean()) for m in _buckets(lengths)],
        }
    # how popular the clicked items are next to uniformly drawn ones (the click task's negative
    # candidates, and the auxiliary loss's default negatives): training positives per item
    label = np.asarray(prepared.train.column("label"))
    items = np.asarray(prepared.train.column("item_id"))
    counts = np.bincount(items[label == 1])
    ranked = np.sort(counts)[::-1]
    out["popularity"] = {
        "items": int((counts > 0).sum()),
        "top10pct_share_of_positives": float(ranked[: len(ranked) // 10].sum() / ranked.sum()),
        "mean_count_positive": float(counts[items[label == 1]].mean()),
        "mean_count_negative": float(counts[items[label == 0]].mean()),
        "median_count_positive": float(np.median(counts[items[label == 1]])),
        "median_count_negative": float(np.median(counts[items[label == 0]])),
    }
    return out


def epoch_stats(model: Any, data: Any, seed: int = 0) -> dict[str, float]:
    """Attention (and, for DIEN, auxiliary-loss) statistics of ``model`` on ``data``.

    Attention over rows with at least two behaviours: its entropy relative to a uniform
    weighting (1 = uniform), the largest weight and the weight on the newest behaviour. DIEN:
    the auxiliary loss (Eq. 5, per real pair) and the share of real pairs whose next
    behaviour outscores its negative, against uniform and against in-batch (popularity-
    weighted) negatives drawn from ``seed``, and the mean norms of the extractor states and
    the evolved interest.
    """
    import dataclasses

    import torch

    from recforge.data.loader import BatchLoader

    torch.manual_seed(seed)
    sums: dict[str, float] = dict.fromkeys(
        ("rows", "entropy", "max", "last", "pairs", "final", "state", "steps"), 0.0
    )
    dien = hasattr(model, "auxiliary_scores")
    kinds = ("uniform", "in_batch")
    cfgs = {k: dataclasses.replace(model.cfg, negatives=k) for k in kinds} if dien else {}
    own = model.cfg
    with torch.no_grad():
        for batch in BatchLoader(data, 4096):
            if dien:
                parts = model._interests(batch)
                att, lengths = parts["att"], parts["lengths"]
            else:
                att = model.attention_weights(batch)
                lengths = batch.lengths[model.behaviours[0][0]]
            many = lengths >= 2
            a = att[many]
            n = lengths[many].to(a.dtype)
            ent = -(a * torch.log(a.clamp(min=1e-12))).sum(1) / torch.log(n)
            sums["rows"] += float(many.sum())
            sums["entropy"] += float(ent.sum())
            sums["max"] += float(a.max(1).values.sum())
            sums["last"] += float(a.gather(1, (lengths[many] - 1)[:, None]).sum())
            if dien and parts["keys"].shape[1] >= 2:
                for kind in kinds:
                    model.cfg = cfgs[kind]
                    s_pos, s_neg, mask = model.auxiliary_scores(batch, parts)
                    model.cfg = own
                    loss = torch.nn.functional.softplus(-s_pos)
                    loss = loss + torch.nn.functional.softplus(s_neg)
                    hits = (s_pos > s_neg).to(mask.dtype)
                    sums[f"aux_{kind}"] = sums.get(f"aux_{kind}", 0.0) + float((loss * mask).sum())
                    sums[f"acc_{kind}"] = sums.get(f"acc_{kind}", 0.0) + float((hits * mask).sum())
                sums["pairs"] += float(mask.sum())
                sums["final"] += float(parts["final"].norm(dim=1).sum())
                real = torch.arange(parts["states"].shape[1])[None, :] < lengths[:, None]
                sums["state"] += float(parts["states"].norm(dim=-1)[real].sum())
                sums["steps"] += float(real.sum())
    out = {
        "attention_entropy": sums["entropy"] / sums["rows"],
        "attention_max": sums["max"] / sums["rows"],
        "attention_last": sums["last"] / sums["rows"],
    }
    if dien:
        for kind in kinds:
            out[f"aux_loss_{kind}"] = sums[f"aux_{kind}"] / sums["pairs"]
            out[f"aux_accuracy_{kind}"] = sums[f"acc_{kind}"] / sums["pairs"]
        out.update(
            final_norm=sums["final"] / len(data),
            state_norm=sums["state"] / sums["steps"],
        )
    return out


def evidence(dataset: str, path: str, seed: int, workdir: Path) -> dict[str, Any]:
    """Base, DIN and DIEN (shipped defaults, one seed) trained through ``recforge train`` with
    every epoch's weights kept; their learning curves, the attention and DIEN's auxiliary loss
    per epoch, validation AUC by history length, and the data's history lengths. Validation
    and training rows only: the test split is only scored by ``recforge train`` itself."""
    import torch

    from recforge.data.sources import catalogue
    from recforge.metrics import auc
    from recforge.serve.bundle import load_bundle

    torch.set_num_threads(1)
    config = CONFIGS[dataset]
    cfg = yaml.safe_load(config.read_text())
    prepared = catalogue.load(cfg["data"]["dataset"], path=path, **cfg["data"].get("options", {}))
    rng = np.random.default_rng(0)
    train_rows = np.sort(rng.choice(prepared.train.num_rows, 30_000, replace=False))
    result: dict[str, Any] = {"seed": seed, "lengths": length_profile(prepared), "models": {}}
    for label, (model_name, overrides, folder) in EVIDENCE_MODELS.items():
        out = workdir / folder
        if not (out / "metrics.json").exists():
            train_kept(model_name, overrides, seed, path, config, out)
        bundle = load_bundle(out / "bundle")
        model = bundle.model.eval()
        valid = bundle.preprocessor.transform(prepared.valid)
        train = bundle.preprocessor.transform(prepared.train.take(train_rows))
        summary = json.loads((out / "metrics.json").read_text())
        history = json.loads((out / "history.json").read_text())
        entry: dict[str, Any] = {
            "best_epoch": summary["best_epoch"],
            "test_auc": summary["test"]["auc"],
            "curve": [
                {k: h[k] for k in ("epoch", "train_loss", "valid_auc", "valid_logloss") if k in h}
                for h in history
            ],
        }
        with torch.no_grad():  # the best (restored) weights: validation AUC by history length
            from recforge.data.loader import BatchLoader

            scores = torch.cat([model(b) for b in BatchLoader(valid, 4096)]).numpy()
        lengths = valid.lengths[model.behaviours[0][0]]
        entry["valid_auc_by_length"] = [
            auc(valid.label[m], scores[m]) if m.any() else float("nan") for m in _buckets(lengths)
        ]
        if model_name != "base_seq":  # the attention models
            snaps = out.with_name(out.name + "_epochs")
            per_epoch = []
            for e in range(len(history)):
                snap = snaps / f"epoch{e}.pt"
                if not snap.exists():
                    continue
                state = torch.load(snap, map_location="cpu", weights_only=False)["model"]
                model.load_state_dict(state)
                model.eval()
                stats = {"epoch": e, **epoch_stats(model, valid)}
                if hasattr(model, "auxiliary_scores"):
                    on_train = epoch_stats(model, train)
                    stats.update({f"train_{k}": v for k, v in on_train.items() if "aux" in k})
                per_epoch.append(stats)
            entry["epochs"] = per_epoch
        result["models"][label] = entry
        print(f"evidence: {label} done", flush=True)
    return result


def _f(x: float, digits: int = 4) -> str:
    return "—" if x is None or x != x else f"{x:.{digits}f}"


def _d(x: float) -> str:
    return "—" if x != x else f"{x:+.4f}"


def evidence_markdown(ev: dict[str, Any]) -> str:
    """The evidence tables (history lengths, learning curves, AUC by history length)."""
    lines = [
        "",
        f"## Evidence (`seq_study.py --evidence`, seed {ev['seed']}, `seq_beauty_evidence.json`)",
        "",
        "History lengths (behaviours before the predicted one, at most `max_len` = 100):",
        "",
        "| split | rows | mean | median | 90th pct | 99th pct | ≤ 5 | ≤ 10 | > 20 | > 50 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for split in ("train", "valid", "test"):
        p = ev["lengths"][split]
        q = p["quantiles"]
        lines.append(
            f"| {split} | {p['rows']} | {p['mean']:.1f} | {q['50']:.0f} | {q['90']:.0f} "
            f"| {q['99']:.0f} | {p['share_le_5']:.1%} | {p['share_le_10']:.1%} "
            f"| {p['share_gt_20']:.1%} | {p['share_gt_50']:.1%} |"
        )
    pop = ev["lengths"].get("popularity")
    if pop:
        lines += [
            "",
            f"Item popularity (training positives per item, {pop['items']} items): the top "
            f"10% of items take {pop['top10pct_share_of_positives']:.0%} of the positives; a "
            f"clicked item has {pop['mean_count_positive']:.1f} positives on average (median "
            f"{pop['median_count_positive']:.0f}), a uniformly drawn negative candidate "
            f"{pop['mean_count_negative']:.1f} (median {pop['median_count_negative']:.0f}).",
        ]
    models = ev["models"]
    lines += [
        "",
        "Per epoch (from 0; each model stops one epoch after its best, in bold): validation "
        "AUC; DIEN's training loss (click loss + auxiliary loss, the epoch's mean); its "
        "auxiliary loss (Eq. 5 per real behaviour pair) against the uniform negatives it "
        "trains with, on 30k training rows and on the validation rows; the share of "
        "validation pairs whose next behaviour outscores the negative, against uniform and "
        "against in-batch (popularity-weighted real) negatives; attention entropy relative "
        "to uniform weights (1 = uniform) on validation rows with at least two behaviours; "
        "the mean norm of DIEN's evolved interest h'(T) and of the extractor states h_t.",
        "",
        "| epoch | Base valid AUC | DIN valid AUC | DIEN valid AUC | DIEN train loss "
        "| DIEN aux loss train / valid | DIEN aux pair accuracy, uniform / in-batch negatives "
        "| attention entropy DIN / DIEN | DIEN ‖h'(T)‖ / ‖h_t‖ "
        f"| {IB} valid AUC | {IB}: aux pair accuracy, uniform / in-batch negatives |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    epochs = max(len(m["curve"]) for m in models.values())

    def curve(label: str, e: int, key: str) -> float:
        c = models.get(label, {}).get("curve", [])
        return c[e].get(key, float("nan")) if e < len(c) else float("nan")

    def stat(label: str, e: int, key: str) -> float:
        rows = [s for s in models.get(label, {}).get("epochs", []) if s["epoch"] == e]
        return rows[0].get(key, float("nan")) if rows else float("nan")

    for e in range(epochs):
        best = {k: "**" if m["best_epoch"] == e else "" for k, m in models.items()}
        cells = [
            f"{best.get(k, '')}{_f(curve(k, e, 'valid_auc'))}{best.get(k, '')}"
            for k in ("Base", "DIN", "DIEN", IB)
        ]
        ib_cell = cells.pop()
        lines.append(
            f"| {e} | {' | '.join(cells)} | {_f(curve('DIEN', e, 'train_loss'))} "
            f"| {_f(stat('DIEN', e, 'train_aux_loss_uniform'))} / "
            f"{_f(stat('DIEN', e, 'aux_loss_uniform'))} "
            f"| {_f(stat('DIEN', e, 'aux_accuracy_uniform'), 3)} / "
            f"{_f(stat('DIEN', e, 'aux_accuracy_in_batch'), 3)} "
            f"| {_f(stat('DIN', e, 'attention_entropy'), 3)} / "
            f"{_f(stat('DIEN', e, 'attention_entropy'), 3)} "
            f"| {_f(stat('DIEN', e, 'final_norm'), 2)} / {_f(stat('DIEN', e, 'state_norm'), 2)} "
            f"| {ib_cell} | {_f(stat(IB, e, 'aux_accuracy_uniform'), 3)} / "
            f"{_f(stat(IB, e, 'aux_accuracy_in_batch'), 3)} |"
        )
    lines += [
        "",
        "Validation AUC by history length (best epoch's weights; bold above):",
        "",
        f"| history length | share of valid rows | Base | DIN | DIEN | DIEN − DIN | {IB} "
        f"| {IB} − DIN |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    shares = ev["lengths"]["valid"]["buckets"]
    for i, (lo, hi) in enumerate(BUCKETS):
        by = {k: m["valid_auc_by_length"][i] for k, m in models.items()}
        nan = float("nan")
        name = f"{lo}" if lo == hi else f"{lo}–{hi}"
        lines.append(
            f"| {name} | {shares[i]:.1%} | {_f(by.get('Base'))} | {_f(by.get('DIN'))} "
            f"| {_f(by.get('DIEN'))} | {_d(by.get('DIEN', nan) - by.get('DIN', nan))} "
            f"| {_f(by.get(IB))} | {_d(by.get(IB, nan) - by.get('DIN', nan))} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=list(CONFIGS), default="beauty")
    parser.add_argument("--path", required=True, help="the dataset's local folder")
    parser.add_argument("--study", choices=[*STUDIES, "tuned"], nargs="+", default=["defaults"])
    parser.add_argument("--only", nargs="*", default=None, help="labels to run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--out", default=None, help="default: results/seq_<dataset>.jsonl")
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument(
        "--evidence",
        action="store_true",
        help="train Base, DIN and DIEN (first seed) keeping every epoch, write the evidence",
    )
    parser.add_argument(
        "--evidence-dir", default=None, help="its runs (default: a folder under the temp dir)"
    )
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
    evidence_file = out.with_name(f"{out.stem}_evidence.json")
    if args.evidence:
        tmp = Path(tempfile.gettempdir()) / f"seq_evidence_{args.dataset}"
        workdir = Path(args.evidence_dir or tmp)
        ev = evidence(args.dataset, args.path, args.seeds[0], workdir)
        evidence_file.write_text(json.dumps(ev, indent=1) + "\n")
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
    md = out.with_suffix(".md")
    kept = md.read_text().partition(MARKER)[2] if md.exists() else ""
    if evidence_file.exists():
        text += "\n" + evidence_markdown(json.loads(evidence_file.read_text()))
    md.write_text("\n".join(header) + text + "\n" + (f"{MARKER}{kept}" if kept else ""))
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
