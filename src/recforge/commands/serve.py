"""``recforge serve``: the HTTP scoring service (FastAPI on uvicorn) over a saved bundle."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import shutil
import socket
import sys
import tempfile

LOOPBACK_NAMES = ["localhost", "127.0.0.1", "::1", "[::1]"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a bundle over HTTP: /predict, /recommend, /explain, /health, /metadata",
    )
    p.add_argument("bundle", help="bundle folder (output_dir/bundle)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    p.add_argument("--port", type=int, default=8000, help="port (0: any free port)")
    p.add_argument(
        "--admin-token-file",
        default=None,
        help="file whose first line is the bearer token of /admin/reload (else "
        "$RECFORGE_ADMIN_TOKEN); without a token the admin endpoints are disabled. The token "
        "itself is never taken on the command line, where every local user could read it",
    )
    p.add_argument(
        "--allowed-hosts",
        default=None,
        help="comma-separated Host header values accepted (default: loopback names and the "
        "bound address); anything else is a 400, which stops DNS-rebinding pages",
    )
    p.add_argument(
        "--reload-root",
        default=None,
        help="/admin/reload loads only bundles under this folder (default: the bundle's parent)",
    )
    p.add_argument("--max-batch", type=int, default=4096, help="most records per /predict")
    p.add_argument(
        "--max-body-mb", type=float, default=64.0, help="largest request body (MiB); else 413"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes; a reload (admin or --watch) reaches every one of them. Where "
        "the platform can fork, they are forked from one process that has loaded the model, so "
        "they share its memory copy-on-write; elsewhere uvicorn spawns them",
    )
    p.add_argument(
        "--batching",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="dynamic micro-batching: score concurrent requests in one forward pass "
        "(--no-batching scores each request on its own)",
    )
    p.add_argument(
        "--batch-window-ms",
        type=float,
        default=2.0,
        help="longest wait for more requests after the first of a batch (a batch closes "
        "earlier when no other request is arriving); default 2",
    )
    p.add_argument(
        "--max-batch-records",
        type=int,
        default=512,
        help="records that close a micro-batch at once (a larger request is scored alone)",
    )
    p.add_argument(
        "--timeout-ms",
        type=float,
        default=10_000.0,
        help="a request not scored within this long gets 503 (default 10000)",
    )
    p.add_argument(
        "--mmap-weights",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="memory-map the bundle's weights (CPU) so worker processes share one copy",
    )
    p.add_argument(
        "--backend",
        choices=["torch", "onnx"],
        default="torch",
        help="what runs /predict's forward pass: the eager model, or ONNX Runtime on the model "
        "exported (and checked against eager) at load time; needs the export extra",
    )
    p.add_argument(
        "--sync-interval",
        type=float,
        default=0.2,
        help="with several workers: seconds between checks for another worker's reload",
    )
    p.add_argument(
        "--watch",
        action="store_true",
        help="reload when the bundle folder's meta.json changes (bundles are renamed into place)",
    )
    p.add_argument("--watch-interval", type=float, default=1.0, help="seconds between polls")
    p.add_argument("--seen", help="training interactions (user, item columns) for /recommend")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads per worker (default: the cores per worker less one for "
        "the HTTP loop, at least 1 and at most 4)",
    )
    p.add_argument("--log-level", default="info", help="uvicorn log level")
    p.set_defaults(handler=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    import torch
    import uvicorn

    from recforge.serve.app import ENV_CONFIG, create_app

    if args.workers < 1:
        raise ValueError("--workers must be >= 1")
    if args.max_batch_records < 1 or args.batch_window_ms < 0 or args.timeout_ms <= 0:
        raise ValueError(
            "--max-batch-records must be >= 1, --batch-window-ms >= 0 and --timeout-ms > 0"
        )
    threads = args.threads or default_threads(os.cpu_count() or 1, args.workers)
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # already set, or parallel work already ran
        torch.set_num_interop_threads(1)  # inference runs no parallel ops of its own
    hosts = (
        [h.strip() for h in args.allowed_hosts.split(",") if h.strip()]
        if args.allowed_hosts
        else sorted({*LOOPBACK_NAMES, args.host})
    )
    options = {
        "bundle_path": str(args.bundle),
        "admin_token_file": args.admin_token_file,
        "max_batch": args.max_batch,
        "max_body_mb": args.max_body_mb,
        "seen": args.seen,
        "watch_interval": args.watch_interval if args.watch else None,
        "allowed_hosts": hosts,
        "reload_root": args.reload_root,
        "batching": args.batching,
        "batch_window_ms": args.batch_window_ms,
        "max_batch_records": args.max_batch_records,
        "timeout_ms": args.timeout_ms,
        "threads": threads,
        "mmap_weights": args.mmap_weights,
        "backend": args.backend,
    }
    if not _is_loopback(args.host):
        print(
            f"recforge serve: WARNING: binding {args.host} exposes /predict, /recommend, "
            "/explain and /metadata without authentication to every machine that can reach it",
            file=sys.stderr,
            flush=True,
        )
    if args.workers > 1 and hasattr(os, "fork"):
        return _serve_forked(args, options, threads)
    if args.workers > 1:
        # each worker process builds its own app; a reload in any of them (/admin/reload, or
        # --watch) is published in a shared state file that the others follow. The token
        # reaches the workers through its file or their inherited $RECFORGE_ADMIN_TOKEN, never
        # the JSON.
        state_dir = tempfile.mkdtemp(prefix="recforge-serve-")
        options["shared_state"] = os.path.join(state_dir, "state.json")
        options["sync_interval"] = args.sync_interval
        os.environ[ENV_CONFIG] = json.dumps(options)
        try:
            uvicorn.run(
                "recforge.serve.app:create_app_from_env",
                factory=True,
                host=args.host,
                port=args.port,
                workers=args.workers,
                log_level=args.log_level,
            )
        finally:
            shutil.rmtree(state_dir, ignore_errors=True)
        return 0
    token = _env_token(args)
    app = create_app(admin_token=token, **options)  # loads the bundle: bad ones fail before bind
    sock = _bind(args.host, args.port)
    port = sock.getsockname()[1]
    print(f"recforge serve: listening on http://{args.host}:{port}", file=sys.stderr, flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level=args.log_level))
    server.run(sockets=[sock])
    return 0


def _serve_forked(args: argparse.Namespace, options: dict, threads: int) -> int:
    """``--workers N`` on a platform with ``fork``: load once, bind once, fork N workers.

    The parent builds the app (loading the bundle) and binds the socket, then forks; each worker
    runs its own uvicorn server on the inherited socket, so the kernel spreads connections over
    them. The workers share the parent's memory (interpreter, torch, model, vocabularies)
    copy-on-write, which a spawned worker would each load again (~300 MB each for a DeepFM).
    The parent loads with one torch thread, so no OpenMP pool exists before the fork; each
    worker then sets its own thread count. A reload in one worker reaches the others through
    the shared state file, as with spawned workers. The parent waits and passes SIGINT/SIGTERM
    on; if a worker dies, the others are stopped and the exit code is non-zero.
    """
    import signal

    import torch
    import uvicorn

    from recforge.serve.app import create_app

    state_dir = tempfile.mkdtemp(prefix="recforge-serve-")
    options = {**options, "threads": None, "shared_state": os.path.join(state_dir, "state.json"),
               "sync_interval": args.sync_interval}  # fmt: skip
    torch.set_num_threads(1)
    token = _env_token(args)
    app = create_app(admin_token=token, **options)  # loads the bundle: bad ones fail before bind
    sock = _bind(args.host, args.port)
    print(
        f"recforge serve: listening on http://{args.host}:{sock.getsockname()[1]} "
        f"({args.workers} forked workers)",
        file=sys.stderr,
        flush=True,
    )
    pids: list[int] = []
    try:
        for _ in range(args.workers):
            pid = os.fork()
            if pid == 0:  # a worker: serve until told to stop, never return into the CLI
                code = 1
                try:
                    torch.set_num_threads(threads)
                    uvicorn.Server(uvicorn.Config(app, log_level=args.log_level)).run(
                        sockets=[sock]
                    )
                    code = 0
                finally:
                    os._exit(code)
            pids.append(pid)
        sock.close()
        stopping = False

        def stop(signum: int, _frame: object) -> None:
            nonlocal stopping
            stopping = True
            for child in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGTERM)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        failed = False
        while pids:
            pid, status = os.wait()
            pids.remove(pid)
            if os.waitstatus_to_exitcode(status) != 0 and not stopping:
                failed = True
                stop(signal.SIGTERM, None)
        return 1 if failed else 0
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)


def _env_token(args: argparse.Namespace) -> str | None:
    """The admin token from ``$RECFORGE_ADMIN_TOKEN`` unless a token file is given (never argv)."""
    from recforge.serve.app import TOKEN_ENV

    return None if args.admin_token_file else os.environ.get(TOKEN_ENV) or None


def _bind(host: str, port: int) -> socket.socket:
    """A listening-ready socket bound to ``host:port`` (port 0: a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted connections only for sockets that
    # say so; with proto 0 Nagle + delayed ACK add ~40 ms to every keep-alive response
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def default_threads(cores: int, workers: int) -> int:
    """torch intra-op threads per worker: its share of the cores less one for the HTTP loop
    (parsing, validation, JSON), at least 1, at most 4 (micro-batches of tens to hundreds of
    rows gain little from more; a large single request would)."""
    return max(1, min(4, cores // max(1, workers) - 1))


def _is_loopback(host: str) -> bool:
    """True for a loopback address or the name ``localhost``."""
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
