"""Training over memory-mapped encoded data several times larger than the memory budget.

Writes a synthetic click-log CSV of ``--factor`` times ``--budget-mb`` under ``--workdir`` (in
/tmp, never in the repository), encodes it once through the streaming path of
``pipeline.encode_run`` (in a child process), then trains a model for one epoch in a second
child process that memory-maps the encoded cache. A sampling thread in that child records the
peak of its anonymous memory (``RssAnon``: heap, tensors, optimizer state, batches) and of its
file-backed resident pages (``RssFile``: pages of the mapped ``.npy`` files, which the kernel
can drop and re-read, so they are page cache rather than memory the process owns). The
temporary files are deleted afterwards.

Usage:
    nice -n 10 python benchmarks/bench_mmap_train.py --budget-mb 100 --factor 5.2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_streaming import _write_csv  # noqa: E402  (the same CSV generator)

RESULTS = Path(__file__).resolve().parent / "results"


def _status_mb() -> dict[str, float]:
    """Current RSS parts of this process from /proc/self/status, in MiB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(rest.split()[0]) / 1024
    return out


class _Sampler:
    """Peak of each RSS part, sampled every ``interval`` seconds on a daemon thread."""

    def __init__(self, interval: float = 0.02) -> None:
        self.peak = {"VmRSS": 0.0, "RssAnon": 0.0, "RssFile": 0.0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stop.is_set():
            for k, v in _status_mb().items():
                self.peak[k] = max(self.peak[k], v)
            time.sleep(interval)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return {k: round(v, 1) for k, v in self.peak.items()}


def _config(csv: str, cache: str, budget: float, chunk_rows: int):  # noqa: ANN202
    from recforge.config import DataConfig
    from recforge.data.sources.synthetic import click_log_schema

    schema_path = Path(cache + ".schema.json")
    schema_path.write_text(click_log_schema().to_json())
    return DataConfig(
        dataset="files",
        train=csv,
        schema=str(schema_path),
        cache_dir=cache,
        streaming="always",
        memory_budget_mb=budget,
        chunk_rows=chunk_rows,
    )


def _child_encode(csv: str, cache: str, budget: float, chunk_rows: int) -> None:
    from recforge.data import pipeline

    start = time.perf_counter()
    run = pipeline.encode_run(_config(csv, cache, budget, chunk_rows), seed=0)
    assert run.cache_path is not None
    encoded = sum(p.stat().st_size for p in run.cache_path.rglob("*.npy"))
    print(json.dumps({"seconds": round(time.perf_counter() - start, 1),
                      "encoded_mb": round(encoded / 2**20, 1),
                      "rows": len(run.train) + len(run.valid) + len(run.test)}))  # fmt: skip


def _child_train(
    csv: str, cache: str, budget: float, chunk_rows: int, model: str, batch: int, window: int
) -> None:
    import torch

    from recforge.config import TrainConfig
    from recforge.data import pipeline
    from recforge.run import train_model

    torch.set_num_threads(2)
    baseline = _status_mb()
    sampler = _Sampler()
    run = pipeline.encode_run(_config(csv, cache, budget, chunk_rows), seed=0)  # cache: mmap
    mapped = isinstance(run.train.sparse, __import__("numpy").memmap)
    cfg = TrainConfig(epochs=1, batch_size=batch, lr=1e-3, patience=0, lr_patience=0,
                      progress=False, eval_batch_size=batch * 4,
                      shuffle_window=window)  # fmt: skip
    params = {"embedding_dim": 16, "sparse": True}
    start = time.perf_counter()
    result, _ = train_model(model, params, run, cfg)
    seconds = time.perf_counter() - start
    peak = sampler.stop()
    print(json.dumps({
        "model": model,
        "shuffle_window": window,
        "memory_mapped": bool(mapped),
        "train_rows": len(run.train),
        "eval_rows": len(run.valid) + len(run.test),
        "seconds": round(seconds, 1),
        "train_samples_per_s": round(len(run.train) / result.train_seconds),
        "test_auc": round(result.test_metrics.get("auc", float("nan")), 4),
        "baseline_mb": {k: round(v, 1) for k, v in baseline.items()},
        "peak_mb": peak,
    }))  # fmt: skip


def _run(cmd: list[str], timeout: float | None = None) -> dict:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"timed_out_after_s": timeout}
    if proc.returncode:
        raise RuntimeError(f"child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _run_limited(cmd: list[str], limit_mb: float, timeout: float) -> dict:
    """Run ``cmd`` inside a cgroup-v1 memory group capped at ``limit_mb`` (page cache included,
    as the kernel counts it): the child is OOM-killed if what it cannot give back exceeds it."""
    root = Path("/sys/fs/cgroup/memory")
    if not (root / "cgroup.procs").exists():
        raise RuntimeError(f"{root}: no cgroup-v1 memory controller here; drop --memory-limit-mb")
    group = root / f"recforge_bench_{os.getpid()}"
    group.mkdir()
    try:
        (group / "memory.limit_in_bytes").write_text(str(int(limit_mb * 2**20)))
        # drop the clean page cache the encoder left, so the child faults the mapped pages in
        # itself and they are charged to its group (cgroup v1 charges a page to its first user)
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("1")
        wrapped = ["sh", "-c", f'echo $$ > {group}/cgroup.procs && exec "$@"', "sh", *cmd]
        result = _run(wrapped, timeout)
        max_usage = int((group / "memory.max_usage_in_bytes").read_text())
        result["cgroup"] = {
            "limit_mb": limit_mb,
            "max_usage_mb": round(max_usage / 2**20, 1),
            "limit_hits": int((group / "memory.failcnt").read_text()),
        }
        return result
    finally:
        for pid in (group / "cgroup.procs").read_text().split():  # a timed-out child
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        while (group / "cgroup.procs").read_text().strip():
            time.sleep(0.1)
        group.rmdir()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget-mb", type=float, default=100.0)
    parser.add_argument("--factor", type=float, default=5.2, help="CSV size / budget")
    parser.add_argument("--chunk-rows", type=int, default=50_000)
    parser.add_argument("--piece-rows", type=int, default=250_000)
    parser.add_argument("--model", default="fm")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument(
        "--memory-limit-mb",
        type=float,
        help="also train under a cgroup memory limit this size (cgroup v1, needs root)",
    )
    parser.add_argument(
        "--shuffle-window", type=int, default=262_144, help="block-shuffle window (rows)"
    )
    parser.add_argument("--limit-timeout", type=float, default=240.0, help="seconds per run")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/recforge_bench_mmap"))
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_mmap_train.json")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, csv, cache, budget, chunk, *rest = args.child
        if kind == "encode":
            _child_encode(csv, cache, float(budget), int(chunk))
        else:
            _child_train(csv, cache, float(budget), int(chunk), rest[0], int(rest[1]),
                         int(rest[2]))  # fmt: skip
        return
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log = logging.getLogger("bench_mmap_train")
    args.workdir.mkdir(parents=True, exist_ok=True)
    try:
        csv, cache = args.workdir / "big.csv", args.workdir / "cache"
        rows = _write_csv(csv, int(args.factor * args.budget_mb * 2**20), args.piece_rows)
        csv_mb = csv.stat().st_size / 2**20
        log.info("wrote %s: %d rows, %.0f MiB", csv, rows, csv_mb)
        common = [str(csv), str(cache), str(args.budget_mb), str(args.chunk_rows)]
        enc = _run([sys.executable, __file__, "--child", "encode", *common])
        log.info("encoded %d rows into %.0f MiB in %.1f s", enc["rows"], enc["encoded_mb"],
                 enc["seconds"])  # fmt: skip
        train_cmd = [sys.executable, __file__, "--child", "train", *common, args.model,
                     str(args.batch_size)]  # fmt: skip
        tr = _run([*train_cmd, "0"])
        anon = tr["peak_mb"]["RssAnon"] - tr["baseline_mb"]["RssAnon"]
        log.info(
            "%s, 1 epoch over %d memory-mapped rows (%.0f MiB encoded, %.1fx the %.0f MiB "
            "budget), full shuffle, no limit: %.1f s, %d samples/s, test AUC %.4f; peak "
            "RssAnon %.0f MiB (%.0f above the %.0f MiB after imports), peak RssFile %.0f MiB "
            "(mapped pages, reclaimable)",
            tr["model"], tr["train_rows"], enc["encoded_mb"], enc["encoded_mb"] / args.budget_mb,
            args.budget_mb, tr["seconds"], tr["train_samples_per_s"], tr["test_auc"],
            tr["peak_mb"]["RssAnon"], anon, tr["baseline_mb"]["RssAnon"],
            tr["peak_mb"]["RssFile"],
        )  # fmt: skip
        limited = {}
        if args.memory_limit_mb:
            for name, window in (("full", 0), ("block", args.shuffle_window)):
                r = _run_limited([*train_cmd, str(window)], args.memory_limit_mb,
                                 args.limit_timeout)  # fmt: skip
                limited[name] = r
                if "timed_out_after_s" in r:
                    log.info("under a %.0f MiB cgroup limit, %s shuffle: not finished in %.0f s "
                             "(thrashing: each batch faults pages all over the files)",
                             args.memory_limit_mb, name, r["timed_out_after_s"])  # fmt: skip
                    continue
                log.info(
                    "under a %.0f MiB cgroup limit (page cache included), %s shuffle "
                    "(window %d): %.1f s, %d samples/s, test AUC %.4f; cgroup max usage "
                    "%.0f MiB, %d limit hits (pages reclaimed, no OOM kill)",
                    args.memory_limit_mb, name, window, r["seconds"], r["train_samples_per_s"],
                    r["test_auc"], r["cgroup"]["max_usage_mb"], r["cgroup"]["limit_hits"],
                )  # fmt: skip
        summary = {
            "what": "one training epoch over a streamed, memory-mapped encoded cache larger "
            "than the memory budget; RSS split into anonymous and file-backed pages",
            "command": "nice -n 10 python benchmarks/bench_mmap_train.py "
            f"--budget-mb {args.budget_mb:g} --factor {args.factor:g} --model {args.model} "
            f"--batch-size {args.batch_size}"
            + (f" --memory-limit-mb {args.memory_limit_mb:g}" if args.memory_limit_mb else "")
            + f" --shuffle-window {args.shuffle_window} --limit-timeout {args.limit_timeout:g}",
            "budget_mb": args.budget_mb,
            "csv_mb": round(csv_mb, 1),
            "encode": enc,
            "train": tr,
            "train_under_limit": limited or None,
            "anon_above_imports_mb": round(anon, 1),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=1) + "\n")
        log.info("wrote %s", args.out)
    finally:
        shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
