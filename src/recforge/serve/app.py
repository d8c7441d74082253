"""The HTTP scoring service: a FastAPI app over a hot-swappable :class:`ModelSlot`.

Endpoints::

    POST /predict        {"records": [{column: value, ...}, ...]} -> {"scores": [...], ...}
    POST /recommend      {"user": id, "k": 10, "candidates": [...]?, "exclude_seen": true}
    POST /explain        {"record": {...}} -> attention weights (DIN, DIEN, AFM)
    GET  /health         liveness and the bundle being served
    GET  /metadata       model, params, schema, training metrics
    POST /admin/reload   {"path": "..."}? with "Authorization: Bearer TOKEN"

Bad input never becomes a 500: malformed JSON is a 400, a missing field or a wrong type a 422,
an oversized batch a 413, an unknown user or item a 404, an endpoint the model does not support
a 400; every error body is ``{"detail": message, "field": name}``. Admin endpoints exist only
when a token is configured (otherwise 404); a missing token is a 401 and a wrong one a 403.
Scoring is CPU-bound and runs off the event loop. With micro-batching (the default) the
scoring endpoints hand their parsed request to a :class:`MicroBatcher`, whose scorer thread
encodes and scores the requests that arrived together in one forward pass, on one model
generation, and answers each with its own rows; a request not scored within ``timeout_ms`` is a
503. Without it each request is scored on its own in FastAPI's thread pool. Either way a
request is answered by one predictor, even if a reload swaps the slot meanwhile, and every
answer names the generation that scored it.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr
from starlette.concurrency import run_in_threadpool

from recforge.serve.batcher import (
    DEFAULT_MAX_BATCH_RECORDS,
    DEFAULT_TIMEOUT_MS,
    DEFAULT_WINDOW_MS,
    MicroBatcher,
    Scored,
)
from recforge.serve.predictor import DEFAULT_MAX_RECORDS, RequestError
from recforge.serve.slot import ModelSlot

log = logging.getLogger(__name__)

ENV_CONFIG = "RECFORGE_SERVE_CONFIG"
TOKEN_ENV = "RECFORGE_ADMIN_TOKEN"  # noqa: S105 (a variable name); the token itself, when no token file
DEFAULT_MAX_BODY_MB = 64.0


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` is a 413 before anything parses it.

    A declared ``Content-Length`` over the limit is refused at once; otherwise the body is read
    (counting, so a chunked body stops being read as soon as it passes the limit) and handed to
    the app unchanged.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: nothing to answer
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = bool(message.get("more_body", False))
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Any, receive: Any, send: Any) -> None:
        mb = self.max_bytes / 2**20
        response = _error(413, f"request body over the {mb:g} MiB limit", "body")
        await response(scope, receive, send)


SCORING_PATHS = frozenset({"/predict", "/recommend", "/explain"})
_ANNOUNCED = "recforge.announced"  # scope key: this request still counts as on its way


class Announce:
    """ASGI middleware: tell the batcher a scoring request is on its way as soon as its headers
    arrive, so the scorer waits for it (up to the window) instead of closing a batch without it.
    The endpoint's submit stops the count; a request that never submits (a 4xx, a client that
    went away) is retracted when it ends."""

    def __init__(self, app: Any, batcher: MicroBatcher) -> None:
        self.app, self.batcher = app, batcher

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] not in SCORING_PATHS:
            await self.app(scope, receive, send)
            return
        self.batcher.announce()
        scope[_ANNOUNCED] = True
        try:
            await self.app(scope, receive, send)
        finally:
            if scope.pop(_ANNOUNCED, False):
                self.batcher.retract()


# ---- request envelopes -----------------------------------------------------------------------
class PredictRequest(BaseModel):
    """Raw records in the training columns; values may be null (missing)."""

    model_config = ConfigDict(extra="forbid")
    records: list[dict[str, Any]]


class RecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: StrictStr | StrictInt
    k: StrictInt = Field(default=10, ge=1)
    candidates: list[StrictStr | StrictInt] | None = None
    exclude_seen: StrictBool = True


class ExplainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    record: dict[str, Any]


class ReloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: StrictStr | None = None


# ---- errors ----------------------------------------------------------------------------------
def _error(status: int, detail: str, field: str | None) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status == 503:
        headers = {"Retry-After": "1"}
    return JSONResponse(
        status_code=status, content={"detail": detail, "field": field}, headers=headers
    )


async def _on_request_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestError)
    return _error(exc.status, str(exc), exc.field)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    """The first pydantic error as one message naming the field (``records[3]``, ``k``...)."""
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request", "type": ""}
    if first.get("type") == "json_invalid":
        ctx = first.get("ctx") or {}
        return _error(400, f"malformed JSON: {ctx.get('error', first.get('msg'))}", "body")
    loc = [p for p in first.get("loc", ()) if p != "body"]
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    field = field or "body"
    if first.get("type") == "missing":
        return _error(422, f"missing required field {field!r}", field)
    if first.get("type") == "extra_forbidden":
        return _error(422, f"unexpected field {field!r}", field)
    return _error(422, f"field {field!r}: {first.get('msg')}", field)


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("internal error on %s", request.url.path)
    return _error(500, f"internal error: {type(exc).__name__}", None)


# ---- the app ---------------------------------------------------------------------------------
def create_app(
    bundle_path: str | Path,
    admin_token: str | None = None,
    max_batch: int = DEFAULT_MAX_RECORDS,
    seen: str | Path | None = None,
    watch_interval: float | None = None,
    device: str = "cpu",
    max_body_mb: float = DEFAULT_MAX_BODY_MB,
    admin_token_file: str | Path | None = None,
    allowed_hosts: list[str] | None = None,
    reload_root: str | Path | None = None,
    batching: bool = True,
    batch_window_ms: float = DEFAULT_WINDOW_MS,
    max_batch_records: int = DEFAULT_MAX_BATCH_RECORDS,
    timeout_ms: float = DEFAULT_TIMEOUT_MS,
    threads: int | None = None,
    shared_state: str | Path | None = None,
    sync_interval: float = 0.2,
    mmap_weights: bool = True,
    backend: str = "torch",
) -> FastAPI:
    """Build the service for the bundle at ``bundle_path`` (loaded before this returns).

    Args:
        bundle_path: Bundle folder (``output_dir/bundle``).
        admin_token: Bearer token of the admin endpoints; ``None`` disables them (unless
            ``admin_token_file`` gives one).
        max_batch: Most records one ``/predict`` request may carry.
        seen: Training interactions (CSV/TSV/Parquet with raw user and item ids) that
            ``/recommend`` excludes.
        watch_interval: Poll the bundle's ``meta.json`` every this many seconds and reload when
            it changes; ``None`` does not watch.
        device: Device of the model.
        max_body_mb: Largest request body accepted (MiB); a larger one is a 413.
        admin_token_file: A file holding the admin token (first line), so the token never
            appears in a command line or in the environment of worker processes.
        allowed_hosts: Accepted ``Host`` header values (a 400 otherwise; DNS rebinding cannot
            reach a loopback service through another name); ``None`` accepts any.
        reload_root: ``/admin/reload`` loads only bundles inside this folder (default: the
            folder holding ``bundle_path``).
        batching: Score concurrent requests together (dynamic micro-batching); off scores each
            request on its own in the thread pool.
        batch_window_ms: Longest wait for more requests after the first of a batch (a batch
            closes earlier when no other scoring request is on its way).
        max_batch_records: Records that close a batch at once.
        timeout_ms: A request not scored within this long is answered 503 (with batching).
        threads: torch intra-op threads of this process (``None`` leaves torch's default).
        shared_state: A file through which the worker processes of one server share reloads
            and generation numbers (set by ``recforge serve --workers N``); ``None`` for one
            process.
        sync_interval: Seconds between checks of ``shared_state`` for another worker's reload.
        mmap_weights: Memory-map the bundle's weights (CPU), so worker processes share one
            copy of them in the page cache.
        backend: ``torch`` or ``onnx``: what runs ``/predict``'s forward pass (ONNX Runtime on
            the model exported at load time; needs the ``export`` extra).

    Reload errors on ``/health`` and the bundle's path on ``/metadata`` are shown only to a
    request carrying the admin token; others see that a reload failed, not where.
    """
    if admin_token_file is not None:
        token_path = Path(admin_token_file)
        try:
            admin_token = token_path.read_text().strip().splitlines()[0].strip()
        except (OSError, IndexError):
            raise ValueError(f"{token_path}: cannot read an admin token from it") from None
    root = Path(reload_root if reload_root is not None else Path(bundle_path).parent).resolve()
    if threads is not None:
        import torch

        torch.set_num_threads(int(threads))
    if timeout_ms <= 0:
        raise ValueError("timeout_ms must be > 0")
    slot = ModelSlot(
        bundle_path,
        max_records=max_batch,
        seen=seen,
        device=device,
        shared_state=shared_state,
        mmap=mmap_weights,
        backend=backend,
    )
    batcher = (
        MicroBatcher(slot, batch_window_ms, max_batch_records, track_announced=True)
        if batching
        else None
    )
    timeout = timeout_ms / 1000.0

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = slot.watch(watch_interval) if watch_interval else None
        sync = slot.follow(sync_interval) if shared_state is not None else None
        # the app and framework objects too, now that they exist (the model was frozen when
        # the slot published it; a worker forked from a loaded parent must not collect again:
        # walking the inherited objects would copy every page they live on)
        gc.freeze()
        yield
        for event in (stop, sync):
            if event is not None:
                event.set()
        if batcher is not None:
            batcher.stop()

    app = FastAPI(title="recforge", lifespan=lifespan)
    app.state.slot = slot
    app.state.batcher = batcher
    app.add_exception_handler(RequestError, _on_request_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(Exception, _on_unexpected)
    app.add_middleware(BodyLimit, max_bytes=int(max_body_mb * 2**20))
    if allowed_hosts is not None:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    if batcher is not None:
        app.add_middleware(Announce, batcher=batcher)  # outermost: counts from the headers on
    is_admin = _admin_test(admin_token)

    async def score(request: Request, kind: str, payload: Any, size: int) -> Scored:
        """Score through the batcher (or alone in the thread pool when batching is off)."""
        if batcher is None:
            return await run_in_threadpool(_score_alone, slot, kind, payload)
        announced = request.scope.pop(_ANNOUNCED, False)
        future = batcher.submit(kind, payload, size, announced, asyncio.get_running_loop())
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise RequestError(
                f"not scored within {timeout_ms:g} ms (the server is overloaded); retry later",
                field=None,
                status=503,
            ) from None

    @app.post("/predict")
    async def predict(request: Request, body: PredictRequest) -> JSONResponse:
        done = await score(request, "predict", body.records, len(body.records))
        return _reply(done.predictor, scores=done.value.astype(float).tolist())

    @app.post("/recommend")
    async def recommend(request: Request, body: RecommendRequest) -> JSONResponse:
        args = {"user": body.user, "k": body.k, "candidates": body.candidates,
                "exclude_seen": body.exclude_seen}  # fmt: skip
        done = await score(request, "recommend", args, 1)
        rec = done.value
        return _reply(done.predictor, user=rec.user, items=rec.items, scores=rec.scores)

    @app.post("/explain")
    async def explain(request: Request, body: ExplainRequest) -> JSONResponse:
        done = await score(request, "explain", body.record, 1)
        expl = done.value
        note = {"note": expl.note} if expl.note else {}
        return _reply(
            done.predictor, kind=expl.kind, score=expl.score, weights=expl.to_records(), **note
        )

    @app.get("/health")
    def health(authorization: str | None = Header(default=None)) -> JSONResponse:
        error = slot.last_error
        admin = is_admin(authorization)
        if error is not None and not admin:
            error = "a reload failed (details for the admin token only)"
        extra: dict[str, Any] = {}
        if admin:  # which worker process answered, and how its batches went
            extra["worker"] = os.getpid()
            if batcher is not None:
                extra["batches"] = batcher.stats.as_dict()
        return _reply(slot.get(), status="ok", last_reload_error=error, **extra)

    @app.get("/metadata")
    def metadata(authorization: str | None = Header(default=None)) -> JSONResponse:
        meta = slot.get().metadata()
        if not is_admin(authorization):
            meta.pop("path", None)
        return JSONResponse(json.loads(json.dumps(meta, default=str)))

    if admin_token:
        require_admin = _bearer_check(admin_token)

        @app.post("/admin/reload", dependencies=[Depends(require_admin)])
        def reload(body: ReloadRequest | None = None) -> JSONResponse:
            old = slot.get()
            path = body.path if body is not None else None
            if path is not None and not Path(path).resolve().is_relative_to(root):
                raise RequestError(
                    f"reload loads bundles under the reload root only ({root})",
                    field="path",
                    status=403,
                )
            try:
                new = slot.reload(path)
            except RuntimeError as exc:
                return JSONResponse(
                    status_code=422,
                    content={"detail": f"reload failed, still serving the old bundle: {exc}",
                             "field": "path", "bundle": old.bundle_id},
                )  # fmt: skip
            return JSONResponse(
                {
                    "status": "reloaded",
                    "model": new.model_name,
                    "bundle": new.bundle_id,
                    "previous": old.bundle_id,
                    "generation": new.generation,
                }
            )

    return app


def _score_alone(slot: ModelSlot, kind: str, payload: Any) -> Scored:
    """One request on the current predictor, without batching (runs in the thread pool)."""
    predictor = slot.get()
    if kind == "predict":
        return Scored(predictor.predict(payload), predictor)
    if kind == "recommend":
        return Scored(predictor.recommend(**payload), predictor)
    return Scored(predictor.explain(payload), predictor)


def _reply(predictor: Any, **body: Any) -> JSONResponse:
    """A response naming the model, bundle and generation that answered it."""
    return JSONResponse(
        {
            **body,
            "model": predictor.model_name,
            "bundle": predictor.bundle_id,
            "generation": predictor.generation,
        }
    )


def _bearer(authorization: str | None) -> bytes | None:
    """The token of an ``Authorization: Bearer <token>`` header; ``None`` for any other."""
    if not authorization or not authorization.lower().startswith("bearer "):
        return None
    return authorization[len("bearer ") :].strip().encode()


def _bearer_check(token: str) -> Any:
    """A dependency that accepts ``Authorization: Bearer <token>`` (401 missing, 403 wrong)."""
    expected = token.encode()

    def check(authorization: str | None = Header(default=None)) -> None:
        given = _bearer(authorization)
        if given is None:
            raise RequestError("admin endpoints need 'Authorization: Bearer <token>'",
                               field="Authorization", status=401)  # fmt: skip
        if not hmac.compare_digest(given, expected):
            raise RequestError("wrong admin token", field="Authorization", status=403)

    return check


def _admin_test(token: str | None) -> Any:
    """``fn(authorization header) -> bool``: True for ``Bearer <the admin token>``."""
    expected = token.encode() if token else None

    def is_admin(authorization: str | None) -> bool:
        given = _bearer(authorization)
        return expected is not None and given is not None and hmac.compare_digest(given, expected)

    return is_admin


def create_app_from_env() -> FastAPI:
    """App factory for ``uvicorn --factory`` with several workers: options come from the
    JSON in ``$RECFORGE_SERVE_CONFIG`` (the keyword arguments of :func:`create_app`)."""
    raw = os.environ.get(ENV_CONFIG)
    if not raw:
        raise RuntimeError(f"${ENV_CONFIG} is not set")
    options = json.loads(raw)
    if not options.get("admin_token") and not options.get("admin_token_file"):
        options["admin_token"] = os.environ.get(TOKEN_ENV) or None  # never in the JSON
    return create_app(**options)
