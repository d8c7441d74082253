"""Load test of ``recforge serve`` on loopback: throughput, latency and errors, with a hot reload.

What it does:
  1. Trains two DeepFM and two DIN bundles (seeds 0 and 1, one epoch) on the embedded synthetic
     click log (or takes them from ``--work`` when they are already there).
  2. For each model, starts ``recforge serve BUNDLE`` (uvicorn, 127.0.0.1, a free port, admin
     token) as a subprocess and waits for ``/health``.
  3. For every concurrency x batch size cell, a separate client process (spawned, asyncio +
     httpx, one connection per concurrent client) posts ``/predict`` requests until either the
     request count or the time limit is reached; latency is measured per request.
  4. During one cell per model (concurrency 8, batch 256 by default) the parent process swaps
     the served bundle to the seed-1 bundle with ``POST /admin/reload``.
  5. Prints requests/s, records/s, p50/p99 latency and errors per cell, saves JSON, and exits
     non-zero when any request failed or a reload did not take effect.

Command (as run for benchmarks/results/loadtest_serve.json):
    nice -n 10 python benchmarks/loadtest_serve.py --out benchmarks/results/loadtest_serve.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

TOKEN = "loadtest-token"
LOG_OPTIONS = {"rows": 20_000, "seed": 0, "n_users": 400, "n_items": 2_000}


# ---- client (runs in a spawned process) -------------------------------------------------------
async def _client_main(
    base: str, body: bytes, batch: int, concurrency: int, max_requests: int, seconds: float
) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[str] = []
    bundles: dict[str, int] = {}
    issued = 0
    deadline = time.perf_counter() + seconds
    headers = {"Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    # TCP_NODELAY as curl and browsers do: httpx writes headers and body separately
    nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
    transport = httpx.AsyncHTTPTransport(limits=limits, socket_options=nodelay)
    async with httpx.AsyncClient(base_url=base, timeout=60, transport=transport) as http:

        async def worker() -> None:
            nonlocal issued
            while issued < max_requests and time.perf_counter() < deadline:
                issued += 1
                start = time.perf_counter()
                try:
                    resp = await http.post("/predict", content=body, headers=headers)
                    took = time.perf_counter() - start
                    if resp.status_code != 200:
                        errors.append(f"HTTP {resp.status_code}: {resp.text[:200]}")
                        continue
                    data = resp.json()
                    if len(data["scores"]) != batch:
                        errors.append(f"{len(data['scores'])} scores for {batch} records")
                        continue
                    bundles[data["bundle"]] = bundles.get(data["bundle"], 0) + 1
                    latencies.append(took)
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")

        for _ in range(3):  # warm the connection pool and the model (not measured)
            await http.post("/predict", content=body, headers=headers)
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return {"latencies": latencies, "errors": errors, "wall_s": wall, "bundles": bundles}


def _client_process(conn: Any, *args: Any) -> None:
    conn.send(asyncio.run(_client_main(*args)))
    conn.close()


# ---- server ---------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(
    bundle: Path, port: int, log_path: Path, max_batch: int, threads: int
) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "recforge.cli", "serve", str(bundle), "--port", str(port),
           "--max-batch", str(max_batch), "--threads", str(threads),
           "--reload-root", str(bundle.parents[1]),  # both seeds' bundles live under it
           "--log-level", "warning"]  # fmt: skip
    env = {**os.environ, "RECFORGE_ADMIN_TOKEN": TOKEN}
    log = open(log_path, "a")  # noqa: SIM115 (closed when the server stops)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"server did not start; see {log_path}")
        time.sleep(0.1)


# ---- bundles --------------------------------------------------------------------------------
def _bundles(work: Path, models: list[str], rows: int) -> dict[str, list[Path]]:
    from recforge.config import DataConfig, ModelSection, RunConfig, TrainConfig
    from recforge.run import train_from_config

    out: dict[str, list[Path]] = {}
    for name in models:
        out[name] = []
        for seed in (0, 1):
            folder = work / f"{name}_seed{seed}"
            if not (folder / "bundle" / "meta.json").exists():
                cfg = RunConfig(
                    data=DataConfig(
                        dataset="synthetic",
                        options={**LOG_OPTIONS, "rows": rows},
                        cache_dir=str(work / "cache"),
                    ),
                    model=ModelSection(name=name, params={}),
                    train=TrainConfig(epochs=1, batch_size=1024, seed=seed, progress=False),
                    output_dir=str(folder),
                )
                t0 = time.perf_counter()
                result = train_from_config(cfg)
                print(f"trained {name} seed {seed}: test {result.test_metrics} "
                      f"({time.perf_counter() - t0:.1f} s)", flush=True)  # fmt: skip
            out[name].append(folder / "bundle")
    return out


def _payloads(rows: int, batches: list[int]) -> dict[int, bytes]:
    from recforge.data.sources.synthetic import make_click_log

    table, _ = make_click_log(**{**LOG_OPTIONS, "rows": rows})
    tail = table.slice(table.num_rows - max(batches)).drop_columns(["label", "ts"]).to_pylist()
    return {b: json.dumps({"records": tail[:b]}).encode() for b in batches}


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


# ---- main -----------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["deepfm", "din"])
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 256])
    parser.add_argument("--requests", type=int, default=3000, help="request cap per cell")
    parser.add_argument("--seconds", type=float, default=6.0, help="time cap per cell")
    parser.add_argument("--rows", type=int, default=20_000, help="synthetic training rows")
    parser.add_argument("--reload-cell", default="8x256", help="CONCURRENCYxBATCH of the reload")
    parser.add_argument("--work", default="/tmp/recforge_loadtest", help="bundles and logs")
    parser.add_argument("--server-threads", type=int, default=1, help="server torch threads")
    parser.add_argument("--out", help="write the results JSON here")
    args = parser.parse_args()

    started = time.perf_counter()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    bundles = _bundles(work, args.models, args.rows)
    payloads = _payloads(args.rows, args.batch)
    reload_c, reload_b = (int(x) for x in args.reload_cell.split("x"))
    ctx = mp.get_context("spawn")
    cells: list[dict[str, Any]] = []
    reloads: list[dict[str, Any]] = []
    failed = False
    for name in args.models:
        first, second = bundles[name]
        port = _free_port()
        log_path = work / f"server_{name}.log"
        server = _start_server(first, port, log_path, max(args.batch), args.server_threads)
        base = f"http://127.0.0.1:{port}"
        try:
            for conc in args.concurrency:
                for batch in args.batch:
                    parent, child = ctx.Pipe(duplex=False)
                    job = (base, payloads[batch], batch, conc, args.requests, args.seconds)
                    client = ctx.Process(target=_client_process, args=(child, *job))
                    client.start()
                    reload_info = None
                    if (conc, batch) == (reload_c, reload_b):
                        time.sleep(min(2.0, args.seconds / 3))  # client spawn + warm-up + load
                        t0 = time.perf_counter()
                        resp = httpx.post(f"{base}/admin/reload", json={"path": str(second)},
                                          headers={"Authorization": f"Bearer {TOKEN}"},
                                          timeout=120)  # fmt: skip
                        reload_info = {"model": name, "cell": f"{conc}x{batch}",
                                       "status": resp.status_code, "response": resp.json(),
                                       "seconds": round(time.perf_counter() - t0, 3)}  # fmt: skip
                    result = parent.recv()
                    client.join()
                    lat = result["latencies"]
                    cell = {
                        "model": name,
                        "concurrency": conc,
                        "batch": batch,
                        "requests": len(lat),
                        "errors": len(result["errors"]),
                        "error_samples": result["errors"][:3],
                        "wall_s": round(result["wall_s"], 3),
                        "requests_per_s": round(len(lat) / result["wall_s"], 1),
                        "records_per_s": round(len(lat) * batch / result["wall_s"], 1),
                        "p50_ms": round(1000 * _percentile(lat, 50), 2),
                        "p99_ms": round(1000 * _percentile(lat, 99), 2),
                        "bundles_seen": result["bundles"],
                    }
                    cells.append(cell)
                    print(f"{name:<7} c={conc:<3} b={batch:<4} {cell['requests_per_s']:>8.1f} "
                          f"req/s {cell['records_per_s']:>10.1f} rec/s p50 {cell['p50_ms']:>8.2f} "
                          f"ms p99 {cell['p99_ms']:>8.2f} ms errors {cell['errors']}",
                          flush=True)  # fmt: skip
                    failed |= cell["errors"] > 0
                    if reload_info is not None:
                        health = httpx.get(f"{base}/health").json()
                        ok = reload_info["status"] == 200 and health["bundle"] == reload_info[
                            "response"].get("bundle") and len(result["bundles"]) == 2  # fmt: skip
                        reload_info["served_after"] = health["bundle"]
                        reload_info["ok"] = ok
                        reloads.append(reload_info)
                        print(f"hot reload during {name} {conc}x{batch}: HTTP "
                              f"{reload_info['status']} in {reload_info['seconds']} s, responses "
                              f"by bundle {result['bundles']}, ok={ok}", flush=True)  # fmt: skip
                        failed |= not ok
        finally:
            server.terminate()
            server.wait(timeout=30)

    header = (
        "| model | concurrency | batch | requests | req/s | records/s | p50 ms | p99 ms | errors |"
    )
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in cells:
        lines.append(f"| {c['model']} | {c['concurrency']} | {c['batch']} | {c['requests']} | "
                     f"{c['requests_per_s']:.1f} | {c['records_per_s']:.0f} | {c['p50_ms']:.2f} | "
                     f"{c['p99_ms']:.2f} | {c['errors']} |")  # fmt: skip
    total_errors = sum(c["errors"] for c in cells)
    print("\n" + "\n".join(lines))
    print(f"\ntotal errors: {total_errors}; reloads: {[r['ok'] for r in reloads]}; "
          f"run took {time.perf_counter() - started:.0f} s")  # fmt: skip
    if args.out:
        import torch

        summary = {
            "what": "recforge serve (uvicorn, 1 worker) on 127.0.0.1, /predict, client in a "
            "separate spawned process (asyncio + httpx)",
            "command": "nice -n 10 python " + " ".join(sys.argv),
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "python": platform.python_version(),
                "torch": torch.__version__,
                "torch_threads_server": args.server_threads,
            },  # fmt: skip
            "limits": {"requests_per_cell": args.requests, "seconds_per_cell": args.seconds},
            "training_rows": args.rows,
            "cells": cells,
            "reloads": reloads,
            "total_errors": total_errors,
            "table": "\n".join(lines),
            "run_seconds": round(time.perf_counter() - started, 1),
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(summary, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
