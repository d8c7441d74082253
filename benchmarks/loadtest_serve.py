"""Load test of ``recforge serve`` on loopback: throughput, latency and errors, with hot reloads.

What it does:
  1. Trains two DeepFM and two DIN bundles (seeds 0 and 1, one epoch) on the embedded synthetic
     click log (or takes them from ``--work`` when they are already there), and computes each
     bundle's scores of every payload in process (the reference every response is checked
     against).
  2. For each model and each mode (``batched``: dynamic micro-batching, the default;
     ``unbatched``: ``--no-batching``, each request scored on its own), starts
     ``recforge serve BUNDLE`` (uvicorn, 127.0.0.1, a free port, admin token) as a subprocess
     and waits for ``/health``.
  3. For every cell CONCURRENCYxBATCH, a separate client process (spawned, asyncio + httpx, one
     connection per concurrent client) posts ``/predict`` requests until either the request
     count or the time limit is reached; latency is measured per request.
  4. During every cell the parent swaps the served bundle to the other seed's bundle with
     ``POST /admin/reload`` (a third of the way in).
  5. A response is an error when it is not a 200, has the wrong number of scores, or its scores
     differ (beyond 1e-5) from its bundle's in-process scores; each generation must name one
     bundle. Prints requests/s, records/s, p50/p99 latency and errors per cell, saves JSON (and
     a markdown table with ``--md``), and exits non-zero when any request failed or a reload
     did not take effect.
  6. With ``--memory-workers``, first measures resident memory (PSS, private) of
     ``recforge serve --workers N`` with memory-mapped and copied weights on a DeepFM with a
     1M-row item table.

Command (as run for benchmarks/results/loadtest_serve_microbatch.md):
    python benchmarks/loadtest_serve.py --memory-workers 1 3 \\
        --out /tmp/loadtest_serve_microbatch.json \\
        --md benchmarks/results/loadtest_serve_microbatch.md
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
TOLERANCE = 1e-5


# ---- client (runs in a spawned process) -------------------------------------------------------
class _RawConnection:
    """A minimal HTTP/1.1 keep-alive client over asyncio streams (one connection).

    The load generator must not be the bottleneck: on a 2-core machine httpx's async pool costs
    more CPU per request than the batched server does, and more with every extra connection.
    This sends prebuilt request bytes and reads ``Content-Length`` framed answers (uvicorn sends
    every answer of this service that way); TCP_NODELAY as curl and browsers do.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, request: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            self.writer.get_extra_info("socket").setsockopt(
                socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
            )
        assert self.reader is not None
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = next(
            int(line.split(b":", 1)[1])
            for line in lines
            if line.lower().startswith(b"content-length")
        )
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def _client_main(
    base: str,
    body: bytes,
    expected: dict[str, list[float]],
    concurrency: int,
    max_requests: int,
    seconds: float,
    client: str = "raw",
) -> dict[str, Any]:
    batch = len(next(iter(expected.values())))
    latencies: list[float] = []
    errors: list[str] = []
    bundles: dict[str, int] = {}
    generations: dict[int, set[str]] = {}
    issued = 0
    host, port = base.rsplit("//", 1)[1].rsplit(":", 1)
    request = (
        f"POST /predict HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    headers = {"Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
    transport = httpx.AsyncHTTPTransport(limits=limits, socket_options=nodelay)
    async with httpx.AsyncClient(base_url=base, timeout=60, transport=transport) as http:
        connections = [_RawConnection(host, int(port)) for _ in range(concurrency)]

        async def post(conn: _RawConnection) -> tuple[int, bytes]:
            if client == "raw":
                return await conn.post(request)
            resp = await http.post("/predict", content=body, headers=headers)
            return resp.status_code, resp.content

        async def worker(conn: _RawConnection) -> None:
            nonlocal issued
            while issued < max_requests and time.perf_counter() < deadline:
                issued += 1
                start = time.perf_counter()
                try:
                    status, content = await post(conn)
                    took = time.perf_counter() - start
                    if status != 200:
                        errors.append(f"HTTP {status}: {content[:200]!r}")
                        continue
                    data = json.loads(content)
                    scores, bundle = data["scores"], data["bundle"]
                    if len(scores) != batch:
                        errors.append(f"{len(scores)} scores for {batch} records")
                        continue
                    want = expected.get(bundle)
                    if want is None or any(
                        abs(a - b) > TOLERANCE for a, b in zip(scores, want, strict=True)
                    ):
                        errors.append(f"scores differ from bundle {bundle}'s own")
                        continue
                    bundles[bundle] = bundles.get(bundle, 0) + 1
                    generations.setdefault(int(data["generation"]), set()).add(bundle)
                    latencies.append(took)
                except (httpx.HTTPError, OSError, asyncio.IncompleteReadError, ValueError,
                        KeyError, IndexError) as exc:  # fmt: skip
                    errors.append(f"{type(exc).__name__}: {exc}")

        for conn in connections:  # open and warm every connection and the model (not measured)
            await post(conn)
        deadline = time.perf_counter() + seconds
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(conn) for conn in connections))
        wall = time.perf_counter() - t0
        for conn in connections:
            await conn.close()
    mixed = {g: sorted(b) for g, b in generations.items() if len(b) > 1}
    if mixed:
        errors.append(f"generations naming more than one bundle: {mixed}")
    return {
        "latencies": latencies,
        "errors": errors,
        "wall_s": wall,
        "bundles": bundles,
        "generations": sorted(generations),
    }


def _client_process(conn: Any, *args: Any) -> None:
    conn.send(asyncio.run(_client_main(*args)))
    conn.close()


# ---- server ---------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(
    bundle: Path, port: int, log_path: Path, max_batch: int, extra: list[str]
) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "recforge.cli", "serve", str(bundle), "--port", str(port),
           "--max-batch", str(max_batch),
           "--reload-root", str(bundle.parents[1]),  # both seeds' bundles live under it
           "--log-level", "warning", *extra]  # fmt: skip
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


def _payloads(rows: int, batches: list[int]) -> dict[int, list[dict[str, Any]]]:
    from recforge.data.sources.synthetic import make_click_log

    table, _ = make_click_log(**{**LOG_OPTIONS, "rows": rows})
    tail = table.slice(table.num_rows - max(batches)).drop_columns(["label", "ts"]).to_pylist()
    return {b: tail[:b] for b in batches}


def _expected(bundles: list[Path], records: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Each bundle's in-process scores of ``records``, keyed by bundle id."""
    from recforge.serve.predictor import Predictor

    out = {}
    for path in bundles:
        predictor = Predictor.load(path)
        out[predictor.bundle_id] = predictor.predict(records).astype(float).tolist()
    return out


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


MODES = {"batched": [], "unbatched": ["--no-batching"], "batched-onnx": ["--backend", "onnx"]}


# ---- resident memory per worker -------------------------------------------------------------
def _big_bundle(work: Path, items: int, dim: int) -> Path:
    """A DeepFM bundle whose weights are mostly one large item embedding table."""
    import numpy as np
    import pyarrow as pa

    from recforge.data.encode.preprocess import Preprocessor
    from recforge.features import CategoricalField, Schema
    from recforge.models import registry
    from recforge.serve.bundle import save_bundle

    folder = work / f"big_deepfm_{items}x{dim}"
    if (folder / "meta.json").exists():
        return folder
    ids = np.arange(items)
    table = pa.table({"user_id": (ids % 1000).astype(str), "item_id": ids.astype(str),
                      "label": (ids % 2).astype(np.float32)})  # fmt: skip
    schema = Schema(
        fields=(
            CategoricalField("user_id", group="user"),
            CategoricalField("item_id", group="item"),
        ),
        user_key="user_id",
        item_key="item_id",
        embedding_dim=dim,
    )
    pre = Preprocessor(schema).fit(table)
    model = registry.build("deepfm", pre.schema, {"hidden": [64]})
    save_bundle(folder, "deepfm", model, pre)
    return folder


def _memory_kb(pid: int) -> dict[str, int]:
    """Rss, Pss and Private (USS) of a process, in kB, from /proc/PID/smaps_rollup."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        fields[key] = int(value.split()[0])
    private = fields["Private_Clean"] + fields["Private_Dirty"]
    return {"rss_kb": fields["Rss"], "pss_kb": fields["Pss"], "private_kb": private}


def _measure_memory(work: Path, workers: list[int], items: int, dim: int) -> list[dict[str, Any]]:
    """Resident memory of ``recforge serve --workers N`` with and without memory-mapped weights,
    after every worker answered /predict for every item (all weights touched)."""
    bundle = _big_bundle(work, items, dim)
    model_mb = (bundle / "model.pt").stat().st_size / 2**20
    rows = []
    # every 31st item: a 4 KiB page holds 32 rows of the 32-dim float table, so every page of
    # the weights is read when a worker scores these records
    records = [{"user_id": str(i % 1000), "item_id": str(i)} for i in range(0, items, 31)]
    for mmap in (True, False):
        for n in workers:
            port = _free_port()
            weights = "--mmap-weights" if mmap else "--no-mmap-weights"
            extra = ["--workers", str(n), "--max-batch", str(len(records)),
                     "--max-body-mb", "512", weights]  # fmt: skip
            server = _start_server(bundle, port, work / "server_memory.log", 1, extra)
            base = f"http://127.0.0.1:{port}"
            auth = {"Authorization": f"Bearer {TOKEN}", "Connection": "close"}
            try:
                scored: dict[int, int] = {}  # worker pid -> batches it scored
                deadline = time.monotonic() + 180
                while (len(scored) < n or min(scored.values()) == 0) and (
                    time.monotonic() < deadline
                ):  # new connections until every worker has scored the records
                    resp = httpx.post(f"{base}/predict", json={"records": records},
                                      headers={"Connection": "close"}, timeout=120)  # fmt: skip
                    resp.raise_for_status()
                    for _ in range(4 * n):
                        health = httpx.get(f"{base}/health", headers=auth, timeout=30).json()
                        scored[health["worker"]] = health["batches"]["batches"]
                pids = sorted(scored)
                mem = [_memory_kb(pid) for pid in pids]
                # the process that started the workers (uvicorn's supervisor, or the parent the
                # workers were forked from) counts too
                parent = [] if server.pid in scored else [_memory_kb(server.pid)]
                whole = mem + parent
                row = {
                    "mmap": mmap,
                    "workers": n,
                    "model_mb": round(model_mb, 1),
                    "per_worker": mem,
                    "parent": parent[0] if parent else None,
                    "total_pss_mb": round(sum(m["pss_kb"] for m in whole) / 1024, 1),
                    "total_private_mb": round(sum(m["private_kb"] for m in whole) / 1024, 1),
                }
                rows.append(row)
                print(f"memory: mmap={mmap} workers={n} model {model_mb:.0f} MB: total PSS "
                      f"{row['total_pss_mb']} MB, private {row['total_private_mb']} MB, RSS per "
                      f"worker {[m['rss_kb'] // 1024 for m in mem]} MB", flush=True)  # fmt: skip
            finally:
                server.terminate()
                server.wait(timeout=30)
    return rows


# ---- main -----------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["deepfm", "din"])
    parser.add_argument("--cells", nargs="*", default=["1x1", "8x1", "32x1", "32x64"],
                        help="CONCURRENCYxBATCH cells")  # fmt: skip
    parser.add_argument("--modes", nargs="+", default=["unbatched", "batched", "batched-onnx"],
                        choices=MODES)  # fmt: skip
    parser.add_argument("--requests", type=int, default=20_000, help="request cap per cell")
    parser.add_argument("--seconds", type=float, default=5.0, help="time cap per cell")
    parser.add_argument("--rows", type=int, default=20_000, help="synthetic training rows")
    parser.add_argument("--work", default="/tmp/recforge_loadtest", help="bundles and logs")
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw",
                        help="load generator: raw asyncio HTTP/1.1 or httpx")  # fmt: skip
    parser.add_argument("--server-args", default="", help="more `recforge serve` options")
    parser.add_argument(
        "--no-reload",
        action="store_true",
        help="no hot reload in the cells (to see the latency tail without it)",
    )
    parser.add_argument("--out", help="write the results JSON here")
    parser.add_argument("--md", help="write the results as a markdown table here")
    parser.add_argument("--memory-workers", nargs="*", type=int, default=[],
                        help="also measure resident memory with these worker counts")  # fmt: skip
    parser.add_argument("--memory-items", type=int, default=1_000_000,
                        help="item vocabulary of the memory test's model")  # fmt: skip
    args = parser.parse_args()
    memory = []
    if args.memory_workers:
        memory = _measure_memory(Path(args.work), args.memory_workers, args.memory_items, 32)
        if not args.cells:
            if args.out:
                Path(args.out).write_text(json.dumps({"memory": memory}, indent=1))
            return 0

    started = time.perf_counter()
    load_before = os.getloadavg()[0]  # the machine may be shared: say how busy it was
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    cells_spec = [tuple(int(x) for x in c.split("x")) for c in args.cells]
    batches = sorted({b for _, b in cells_spec})
    bundles = _bundles(work, args.models, args.rows)
    payloads = _payloads(args.rows, batches)
    ctx = mp.get_context("spawn")
    cells: list[dict[str, Any]] = []
    failed = False
    for name in args.models:
        expected = {b: _expected(bundles[name], payloads[b]) for b in batches}
        for mode in args.modes:
            port = _free_port()
            log_path = work / f"server_{name}_{mode}.log"
            extra = MODES[mode] + args.server_args.split()
            server = _start_server(bundles[name][0], port, log_path, max(batches), extra)
            base = f"http://127.0.0.1:{port}"
            serving = 0  # index of the seed being served
            try:
                for conc, batch in cells_spec:
                    body = json.dumps({"records": payloads[batch]}).encode()
                    parent, child = ctx.Pipe(duplex=False)
                    job = (base, body, expected[batch], conc, args.requests, args.seconds,
                           args.client)  # fmt: skip
                    client = ctx.Process(target=_client_process, args=(child, *job))
                    client.start()
                    time.sleep(1.0 + args.seconds / 3)  # client spawn + warm-up + a third
                    reload_s = 0.0
                    if not args.no_reload:
                        serving = 1 - serving
                        t0 = time.perf_counter()
                        resp = httpx.post(f"{base}/admin/reload",
                                          json={"path": str(bundles[name][serving])},
                                          headers={"Authorization": f"Bearer {TOKEN}"},
                                          timeout=120)  # fmt: skip
                        reload_s = time.perf_counter() - t0
                    result = parent.recv()
                    client.join()
                    lat = result["latencies"]
                    health = httpx.get(f"{base}/health").json()
                    reload_ok = (
                        len(result["bundles"]) == 1
                        if args.no_reload
                        else (
                            resp.status_code == 200
                            and health["bundle"] == resp.json().get("bundle")
                            and len(result["bundles"]) == 2
                        )
                    )
                    cell = {
                        "model": name,
                        "mode": mode,
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
                        "generations_seen": result["generations"],
                        "reload_s": round(reload_s, 3),
                        "reload_ok": reload_ok,
                    }
                    cells.append(cell)
                    print(f"{name:<7} {mode:<9} c={conc:<3} b={batch:<4} "
                          f"{cell['requests_per_s']:>8.1f} req/s {cell['records_per_s']:>9.1f} "
                          f"rec/s p50 {cell['p50_ms']:>7.2f} ms p99 {cell['p99_ms']:>7.2f} ms "
                          f"errors {cell['errors']} reload ok={reload_ok} "
                          f"generations {result['generations']}", flush=True)  # fmt: skip
                    failed |= cell["errors"] > 0 or not reload_ok
            finally:
                server.terminate()
                server.wait(timeout=30)

    header = (
        "| model | mode | clients | records/request | requests | req/s | records/s | p50 ms "
        "| p99 ms | errors | reload ok |"
    )
    lines = [header, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for c in cells:
        lines.append(f"| {c['model']} | {c['mode']} | {c['concurrency']} | {c['batch']} | "
                     f"{c['requests']} | {c['requests_per_s']:.1f} | {c['records_per_s']:.0f} | "
                     f"{c['p50_ms']:.2f} | {c['p99_ms']:.2f} | {c['errors']} | "
                     f"{'yes' if c['reload_ok'] else 'NO'} |")  # fmt: skip
    total_errors = sum(c["errors"] for c in cells)
    table = "\n".join(lines)
    print("\n" + table)
    print(f"\ntotal errors: {total_errors}; reloads ok: {all(c['reload_ok'] for c in cells)}; "
          f"run took {time.perf_counter() - started:.0f} s")  # fmt: skip
    import torch

    command = "python " + " ".join(sys.argv)
    machine = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "load_average_1min_start_end": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    if args.out:
        summary = {
            "what": "recforge serve (uvicorn, 1 worker) on 127.0.0.1, /predict, client in a "
            "separate spawned process (asyncio + httpx), a hot reload in every cell",
            "command": command,
            "machine": machine,
            "limits": {"requests_per_cell": args.requests, "seconds_per_cell": args.seconds},
            "training_rows": args.rows,
            "cells": cells,
            "memory": memory,
            "total_errors": total_errors,
            "table": table,
            "run_seconds": round(time.perf_counter() - started, 1),
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(summary, indent=1))
    if args.md:
        memory_md = ""
        if memory:
            rows = ["| weights | workers | model.pt MB | total PSS MB (all processes) | "
                    "private MB per worker | parent PSS MB |",
                    "|---|---:|---:|---:|---|---:|"]  # fmt: skip
            for m in memory:
                private = ", ".join(str(w["private_kb"] // 1024) for w in m["per_worker"])
                parent = m["parent"]["pss_kb"] // 1024 if m.get("parent") else "-"
                kind = "memory-mapped" if m["mmap"] else "copied"
                rows.append(f"| {kind} | {m['workers']} | {m['model_mb']} | "
                            f"{m['total_pss_mb']} | {private} | {parent} |")  # fmt: skip
            memory_md = "\n\nResident memory per worker:\n\n" + "\n".join(rows)
        Path(args.md).parent.mkdir(parents=True, exist_ok=True)
        Path(args.md).write_text(
            f"# recforge serve load test\n\nCommand: `{command}`\n\nMachine: {machine}; "
            f"{args.seconds:g} s per cell; a hot reload in every cell; every response's scores "
            f"checked against its bundle's in-process scores (1e-5).\n\n{table}\n\n"
            f"Total errors: {total_errors}.{memory_md}\n"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
