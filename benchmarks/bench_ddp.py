"""Distributed data-parallel throughput (issue 8): 1 vs 2 CPU processes on gloo.

The 1M-row Criteo-shaped synthetic log of ``bench_core.py`` (``make_wide_log``: 26
categorical + 13 numeric fields, vocabularies up to 1e6; 90% train), embedding 16, sparse
embedding gradients (``SparseRowAdam``; gloo all-reduces the sparse rows), global batch 4096,
fp32. Each configuration trains a fixed number of global steps in freshly spawned processes
(``recforge.distributed.ddp.launch``) with **one torch thread per process**, so 2 processes
use 2 cores and 1 process uses 1. Reports global training samples/s and scaling efficiency
``sps(2) / (2 * sps(1))``, with the load average (the machine is shared).

Run (~3-5 min)::

    nice -n 10 python benchmarks/bench_ddp.py

Results go to ``benchmarks/results/bench_ddp.json``.

``--read-per-rank`` measures reading instead (no training): a synthetic click log of ``--rows``
rows written as ``--files`` CSV files, encoded by one process (the whole folder) and by 2 ranks
that each read, fit on and encode their own files (``recforge.data.pipeline.encode_per_rank``);
it reports each rank's read / fit / encode seconds and the wall time of the whole step, with
one Arrow thread per process (as a machine per rank would have its own cores)::

    python benchmarks/bench_ddp.py --read-per-rank --rows 1000000 --files 8

Results go to ``benchmarks/results/bench_ddp_read_per_rank.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_core import build, train_config  # the same models and options as the core benchmark

from recforge.data.encode.preprocess import Preprocessor
from recforge.data.sources.synthetic import make_wide_log
from recforge.data.store import load_encoded, save_encoded
from recforge.distributed.ddp import current_world, launch
from recforge.train import Trainer

RESULTS = Path(__file__).resolve().parent / "results"


def _train_worker(folder: str, args: argparse.Namespace, model_name: str) -> dict[str, float]:
    """One rank: load the encoded rows, train ``args.steps`` global steps, report speed."""
    pre = Preprocessor.load(Path(folder) / "preprocessor")
    rows = args.steps * args.batch_size
    train = load_encoded(Path(folder) / "train", mmap=True).take(np.arange(rows))  # in memory
    model, _ = build(model_name, pre.schema, args.embedding_dim, sparse=True, seed=args.seed)
    cfg = train_config(args, bf16=False)
    trainer = Trainer(model, cfg)
    record = trainer.fit(train)[-1]
    return {
        "processes": current_world().size,
        "samples_per_s": record["train_samples_per_s"],
        "train_seconds": record["train_seconds"],
        "train_loss": record["train_loss"],
    }


class _Solo:
    """The one-rank exchange: the per-rank path in one process (for its timings)."""

    rank, size = 0, 1

    def all_gather_bytes(self, data: bytes) -> list[bytes]:
        return [data]


def _read_worker(data: dict[str, object], path: str) -> dict[str, object]:
    """One rank: encode the folder, report the timings. ``path``: ``per_rank`` (each rank its
    own files; one process reads them all) or ``in_memory`` (one process, ``read_table``)."""
    import pyarrow as pa

    from recforge.config import DataConfig
    from recforge.data.pipeline import encode_per_rank, encode_run
    from recforge.distributed.ddp import RankExchange

    pa.set_cpu_count(1)  # one core per rank, as one torch thread: N ranks use N cores
    world = current_world()
    cfg = DataConfig(**data)
    start = time.perf_counter()
    if path == "in_memory":
        run = encode_run(cfg, seed=0, use_cache=False)
    else:
        run = encode_per_rank(cfg, 0, RankExchange() if world.distributed else _Solo())
    return {
        "processes": world.size,
        "path": path,
        "wall_s": round(time.perf_counter() - start, 2),
        "rows": [len(run.train), len(run.valid), len(run.test)],
        "shares": run.shares,
    }


def read_per_rank(args: argparse.Namespace) -> None:
    """1 process vs 2 ranks encoding a folder of CSV files (see the module docstring)."""
    from recforge.data.sources.synthetic import click_log_schema, make_click_log, write_click_log

    report: dict[str, object] = {
        "command": f"python benchmarks/bench_ddp.py --read-per-rank --rows {args.rows} "
        f"--files {args.files}",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores "
        f"(shared), torch {torch.__version__}",
    }
    with tempfile.TemporaryDirectory(prefix="bench-read-") as tmp:
        folder = Path(tmp) / "log"
        folder.mkdir()
        table, _ = make_click_log(rows=args.rows, seed=0)
        per_file = -(-args.rows // args.files)
        for k in range(args.files):
            write_click_log(table.slice(k * per_file, per_file), folder / f"part-{k:03d}.csv")
        (Path(tmp) / "schema.json").write_text(click_log_schema().to_json())
        size = sum(f.stat().st_size for f in folder.iterdir())
        report["input"] = f"{args.rows:,} rows in {args.files} CSV files, {size / 2**20:.0f} MiB"
        print(f"# {report['machine']}; {report['input']}")
        del table
        data = {"dataset": "files", "train": str(folder), "schema": str(Path(tmp) / "schema.json")}
        runs = []
        plan = [(1, "in_memory")] + [(int(n), "per_rank") for n in args.nprocs.split(",")]
        for nproc, path in plan:
            load_before = os.getloadavg()[0]
            out = launch(_read_worker, nproc, data, path, threads=1)
            out["load_avg_1min_before"] = round(load_before, 2)
            runs.append(out)
            per_rank = "; ".join(
                f"rank {s['rank']}: {len(s['parts']['train'])} files, {s['rows']['train']} rows, "
                f"read {s['read_s']} s ({s['cpu_s']['read']} CPU s), fit {s['fit_s']} s "
                f"({s['cpu_s']['fit']}), encode {s['encode_s']} s ({s['cpu_s']['encode']})"
                for s in out["shares"] or []
            )
            print(f"{path} x{nproc}: {out['wall_s']} s wall; {per_rank}")
    report["runs"] = runs
    out_path = RESULTS / "bench_ddp_read_per_rank.json"
    out_path.write_text(json.dumps(report, indent=1))
    print(f"wrote {out_path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--max-vocab", type=int, default=1_000_000)
    parser.add_argument("--models", default="dnn,deepfm")
    parser.add_argument("--nprocs", default="1,2")
    parser.add_argument("--steps", type=int, default=60, help="global steps per measurement")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--embedding-dim", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS / "bench_ddp.json"))
    parser.add_argument("--read-per-rank", action="store_true", help="measure reading only")
    parser.add_argument("--files", type=int, default=8, help="CSV files (--read-per-rank)")
    args = parser.parse_args()
    if args.read_per_rank:
        read_per_rank(args)
        return
    args.threads, args.epochs = 1, 1  # what bench_core.train_config reads
    report: dict[str, object] = {
        "command": "python benchmarks/bench_ddp.py "
        + " ".join(
            f"--{k.replace('_', '-')} {v}"
            for k, v in vars(args).items()
            if k not in ("out", "threads", "epochs")
        ),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores "
        f"(shared), torch {torch.__version__}",
        "threads_per_process": 1,
        "backend": "gloo",
        "sparse_embeddings": True,
        "global_batch": args.batch_size,
        "rows_per_measurement": args.steps * args.batch_size,
    }
    print(
        f"# {report['machine']}; 1 torch thread per process, gloo, global batch {args.batch_size}"
    )
    t = time.perf_counter()
    table, schema = make_wide_log(rows=args.rows, max_vocab=args.max_vocab, seed=args.seed)
    train_raw = table.slice(0, int(args.rows * 0.9))
    pre = Preprocessor(schema).fit(train_raw)
    train = pre.transform(train_raw)
    print(f"generated and encoded {args.rows:,} rows in {time.perf_counter() - t:.1f} s")
    del table, train_raw
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-ddp-") as tmp:
        pre.save(Path(tmp) / "preprocessor")
        save_encoded(train, Path(tmp) / "train")
        del train
        for name in args.models.split(","):
            speeds: dict[int, float] = {}
            for nproc in (int(n) for n in args.nprocs.split(",")):
                load_before = os.getloadavg()[0]
                out = launch(_train_worker, nproc, tmp, args, name, threads=1)
                speeds[nproc] = out["samples_per_s"]
                runs.append({"model": name, **out, "load_avg_1min_before": round(load_before, 2)})
                print(
                    f"{name:>6} x{nproc}: {out['samples_per_s']:,.0f} samples/s "
                    f"({args.steps} steps in {out['train_seconds']:.1f} s, loss "
                    f"{out['train_loss']:.4f}; load avg before {load_before:.1f})"
                )
            if 1 in speeds and 2 in speeds:
                eff = speeds[2] / (2 * speeds[1])
                report[f"{name}_scaling_efficiency"] = eff
                print(f"{name:>6} scaling efficiency sps(2)/(2*sps(1)) = {eff:.2f}")
    report["runs"] = runs
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=1))
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
