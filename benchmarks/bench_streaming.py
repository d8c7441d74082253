"""Peak memory of streaming preprocessing on a CSV several times larger than the memory budget.

Writes a synthetic click-log CSV (``recforge.data.sources.synthetic``) of at least ``--factor``
times
``--budget-mb`` under ``--workdir`` (in /tmp, never in the repository), then runs
``pipeline.encode_run`` (random 80/10/10 split, fit on train, encode all three splits) in a
child process and reports the child's peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss`` read in
the child), its RSS right after the imports (torch comes in through ``recforge.features``), the
time, rows/s, the CSV size and the encoded size. For comparison, the in-memory and streaming
paths both run on a smaller prefix of the same file. The temporary files are deleted afterwards.

Usage:
    nice -n 10 python benchmarks/bench_streaming.py --budget-mb 100 --factor 5.2
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path


def _rss_now_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _child(mode: str, csv: str, cache: str, budget: float, chunk_rows: int) -> None:
    """Encode ``csv`` with ``streaming=mode``; print one JSON line of measurements."""
    from recforge.config import DataConfig
    from recforge.data import pipeline
    from recforge.data.sources.synthetic import click_log_schema

    baseline = _rss_now_mb()
    schema_path = Path(cache + ".schema.json")
    schema_path.write_text(click_log_schema().to_json())
    cfg = DataConfig(
        dataset="files",
        train=csv,
        schema=str(schema_path),
        cache_dir=cache,
        streaming=mode,  # type: ignore[arg-type]
        memory_budget_mb=budget,
        chunk_rows=chunk_rows,
    )
    start = time.perf_counter()
    run = pipeline.encode_run(cfg, seed=0)
    seconds = time.perf_counter() - start
    rows = len(run.train) + len(run.valid) + len(run.test)
    assert run.cache_path is not None
    encoded = sum(p.stat().st_size for p in run.cache_path.rglob("*.npy"))
    out = {
        "mode": mode,
        "streamed": pipeline.use_streaming(cfg),
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_s": round(rows / seconds),
        "encoded_mb": round(encoded / 2**20, 1),
        "import_rss_mb": round(baseline, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps(out), flush=True)


def _write_csv(path: Path, min_bytes: int, piece_rows: int, max_rows: int | None = None) -> int:
    """Append click-log pieces (different seeds) to ``path`` until it holds ``min_bytes``."""
    from recforge.data.sources.synthetic import make_click_log, write_click_log

    rows, seed = 0, 0
    piece = path.with_suffix(".piece.csv")
    with open(path, "wb") as out:
        while out.tell() < min_bytes and (max_rows is None or rows < max_rows):
            table, _ = make_click_log(rows=piece_rows, seed=seed, n_users=50_000, n_items=200_000)
            write_click_log(table, piece)
            data = piece.read_bytes()
            out.write(data if seed == 0 else data[data.index(b"\n") + 1 :])
            rows += piece_rows
            seed += 1
    piece.unlink()
    return rows


def _run_child(args: argparse.Namespace, mode: str, csv: Path, tag: str) -> dict:
    cache = args.workdir / f"cache_{tag}"
    cmd = [sys.executable, __file__, "--child", mode, str(csv), str(cache)]
    cmd += [str(args.budget_mb), str(args.chunk_rows)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"child {mode} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["csv_mb"] = round(csv.stat().st_size / 2**20, 1)
    shutil.rmtree(cache, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget-mb", type=float, default=100.0)
    parser.add_argument("--factor", type=float, default=5.2, help="CSV size / budget")
    parser.add_argument("--chunk-rows", type=int, default=50_000)
    parser.add_argument("--small-rows", type=int, default=1_000_000, help="in-memory comparison")
    parser.add_argument("--piece-rows", type=int, default=250_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/recforge_bench_streaming"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_streaming.json"))
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, csv, cache, budget, chunk = args.child
        _child(mode, csv, cache, float(budget), int(chunk))
        return
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log = logging.getLogger("bench_streaming")
    args.workdir.mkdir(parents=True, exist_ok=True)
    try:
        big, small = args.workdir / "big.csv", args.workdir / "small.csv"
        start = time.perf_counter()
        big_rows = _write_csv(big, int(args.factor * args.budget_mb * 2**20), args.piece_rows)
        gen_s = time.perf_counter() - start
        log.info(
            "wrote %s: %d rows, %.0f MiB in %.0f s",
            big,
            big_rows,
            big.stat().st_size / 2**20,
            gen_s,
        )
        _write_csv(small, 1 << 62, args.piece_rows, max_rows=args.small_rows)
        runs = {
            "small_in_memory": _run_child(args, "never", small, "small_never"),
            "small_streaming": _run_child(args, "always", small, "small_always"),
            "big_streaming": _run_child(args, "always", big, "big_always"),
        }
        for name, r in runs.items():
            log.info(
                "%-16s %7.1f MiB CSV -> %7.1f MiB encoded, %d rows in %.1f s (%d rows/s); "
                "peak RSS %.0f MiB (%.0f MiB after imports)",
                name, r["csv_mb"], r["encoded_mb"], r["rows"], r["seconds"], r["rows_per_s"],
                r["peak_rss_mb"], r["import_rss_mb"],
            )  # fmt: skip
        big_run = runs["big_streaming"]
        summary = {
            "what": "peak RSS of encode_run (random split, fit, encode) on a synthetic click-log "
            "CSV; each run in its own child process",
            "command": "nice -n 10 python benchmarks/bench_streaming.py "
            f"--budget-mb {args.budget_mb:g} --factor {args.factor:g} "
            f"--chunk-rows {args.chunk_rows} --small-rows {args.small_rows}",
            "budget_mb": args.budget_mb,
            "chunk_rows": args.chunk_rows,
            "generate_seconds": round(gen_s, 1),
            "csv_over_budget": round(big_run["csv_mb"] / args.budget_mb, 2),
            "encoded_over_budget": round(big_run["encoded_mb"] / args.budget_mb, 2),
            "data_rss_over_budget": round(
                (big_run["peak_rss_mb"] - big_run["import_rss_mb"]) / args.budget_mb, 2
            ),
            "runs": runs,
        }
        log.info(json.dumps(summary, indent=1))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=1) + "\n")
    finally:
        shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
