"""GPU proof: DDP and TorchRec training through ``recforge train --nproc N`` on CUDA devices.

Where CUDA is available, this trains a DNN (DDP; TorchRec row-wise and table-wise) and DIN
(DDP; TorchRec row-wise, unpooled histories) on a synthetic click log through the front door,
``python -m recforge train -c CONFIG --nproc N`` with ``train.device=cuda`` (NCCL, one GPU per
rank), on 1 GPU and on all of them, and records each run's training samples/s, wall time and
test AUC in ``benchmarks/results/torchrec_gpu_proof.json`` and ``.md``. TorchRec runs are
skipped (and say so) when TorchRec does not import.

Without CUDA it prints one line and exits 0: the project builds and tests without a GPU::

    python benchmarks/gpu_proof.py                      # on a GPU machine (~5-10 min)
    python benchmarks/gpu_proof.py --rows 200000        # shorter
    python benchmarks/gpu_proof.py --device cpu --rows 20000 --out /tmp/proof   # the plumbing,
                                                        # on gloo CPU ranks
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

MODELS = {
    "dnn": {"name": "dnn", "params": {"hidden": [256, 128], "dropout": 0.0, "embedding_dim": 32}},
    "din": {"name": "din", "params": {"hidden": [200, 80], "dropout": 0.0, "embedding_dim": 16}},
}
# (model, engine, sharding of every table)
RUNS = [
    ("dnn", "ddp", None),
    ("dnn", "torchrec", "row_wise"),
    ("dnn", "torchrec", "table_wise"),
    ("din", "ddp", None),
    ("din", "torchrec", "row_wise"),
]


def _config(root: Path, args: argparse.Namespace, model: str, engine: str, plan: str | None,
            nproc: int) -> Path:  # fmt: skip
    name = f"{model}_{engine}_{plan or 'dense'}_{nproc}"
    train = {
        "batch_size": args.batch_size * nproc,  # the same per-GPU batch at every size
        "lr": 0.01,
        "epochs": args.epochs,
        "patience": 0,
        "lr_patience": 0,
        "device": args.device,
        "progress": False,
        "engine": engine,
        "eval_batch_size": 8192,
    }
    if args.device == "cpu":
        train["threads"] = 1
    if plan is not None:
        train["sharding"] = {"*": plan}
    cfg = {
        "data": {
            "dataset": "synthetic",
            "options": {
                "rows": args.rows,
                "seed": 0,
                "n_users": args.rows // 50,
                "n_items": args.rows // 25,
            },
            "cache_dir": str(root / "cache"),
        },  # fmt: skip
        "model": MODELS[model],
        "train": train,
        "output_dir": str(root / name),
    }
    path = root / f"{name}.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


def _run(path: Path, nproc: int, timeout_s: float) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "recforge", "train", "-c", str(path), "--nproc", str(nproc)],
        capture_output=True, text=True, env=env, timeout=timeout_s, check=False,
    )  # fmt: skip
    wall = time.perf_counter() - start
    if proc.returncode:
        lines = proc.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"exit {proc.returncode}", "wall_s": wall}
    out = Path(json.loads(path.read_text())["output_dir"])
    history = json.loads((out / "history.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    return {
        "samples_per_s": history[-1]["train_samples_per_s"],
        "train_seconds": metrics["train_seconds"],
        "test_auc": metrics["test"].get("auc"),
        "wall_s": wall,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=4096, help="per GPU (rank)")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--nproc", type=int, nargs="*", help="default: 1 and every GPU")
    parser.add_argument("--timeout-s", type=float, default=900)
    parser.add_argument("--out", type=Path, default=RESULTS / "torchrec_gpu_proof")
    args = parser.parse_args()

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"gpu_proof: no CUDA device here (torch {torch.__version__}); nothing was run")
        return 0
    sys.path.insert(0, str(ROOT / "src"))
    from recforge.distributed.torchrec_bridge import torchrec_available

    gpus = torch.cuda.device_count() if args.device == "cuda" else 2
    sizes = args.nproc or sorted({1, gpus})
    has_torchrec = torchrec_available()
    device = (
        torch.cuda.get_device_name(0) if args.device == "cuda" else platform.processor() or "cpu"
    )
    root = Path(tempfile.mkdtemp(prefix="gpu_proof_"))
    records = []
    for nproc in sizes:
        for model, engine, plan in RUNS:
            if engine == "torchrec" and not has_torchrec:
                result = {"error": "TorchRec does not import (pip install recforge[torchrec])"}
            else:
                path = _config(root, args, model, engine, plan, nproc)
                result = _run(path, nproc, args.timeout_s)
            record = {"model": model, "engine": engine, "plan": plan, "nproc": nproc, **result}
            print(json.dumps(record), flush=True)
            records.append(record)
    meta = {
        "command": "python benchmarks/gpu_proof.py " + " ".join(sys.argv[1:]),
        "device": device,
        "devices": gpus,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "nccl": ".".join(map(str, torch.cuda.nccl.version())) if args.device == "cuda" else None,
        "rows": args.rows,
        "per_rank_batch": args.batch_size,
        "epochs": args.epochs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "runs": records}, indent=1))
    lines = [
        "# DDP and TorchRec training on GPUs through `recforge train --nproc N`",
        "",
        f"`{meta['command']}` on {gpus} x {device} (torch {meta['torch']}, CUDA {meta['cuda']},"
        f" NCCL {meta['nccl']}); synthetic click log of {args.rows:,} rows, {args.epochs}"
        f" epoch(s), batch {args.batch_size} per rank.",
        "",
        "| model | engine (plan) | GPUs | samples/s | train s | test AUC |",
        "|---|---|---|---|---|---|",
    ]
    for r in records:
        what = r["engine"] + (f" ({r['plan']})" if r["plan"] else "")
        if "error" in r:
            lines.append(f"| {r['model']} | {what} | {r['nproc']} | failed: {r['error']} | | |")
        else:
            lines.append(
                f"| {r['model']} | {what} | {r['nproc']} | {r['samples_per_s']:,.0f} |"
                f" {r['train_seconds']:.1f} | {r['test_auc']:.4f} |"
            )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out.with_suffix('.md')}")
    return 1 if any("error" in r for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
