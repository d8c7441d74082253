"""Dynamic micro-batching: concurrent requests scored together in one forward pass.

A :class:`MicroBatcher` owns one scorer thread. Callers :meth:`~MicroBatcher.submit` a job
(records to score, a user to recommend for, a record to explain) and get a future. The scorer
takes the first waiting job, keeps collecting until the batch holds ``max_records`` records, the
``window_ms`` after that first job has passed, or no further request is on its way (the HTTP app
:meth:`~MicroBatcher.announce`\\ s each scoring request as soon as its headers arrive, so a lone
client never waits for the window), then:

* takes the slot's current predictor **once**, so every job of the batch is answered by one
  model generation, whatever reloads happen meanwhile;
* scores all ``predict`` jobs with :meth:`Predictor.predict_many` (one columnar encoding, one
  forward pass; a malformed record fails only the request that carries it);
* answers ``recommend`` and ``explain`` jobs one by one on the same predictor;
* gives every caller its own rows and the generation that scored them.

A job whose caller stopped waiting (its deadline passed, see ``timeout_ms``) is dropped unscored.
While the scorer works on one batch the next one fills up, so under load batches grow by
themselves and the per-request cost (conversion, encoding, the forward pass's fixed overhead) is
paid once per batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from recforge.serve.predictor import Predictor, RequestError
from recforge.serve.slot import ModelSlot

log = logging.getLogger(__name__)

DEFAULT_WINDOW_MS = 2.0
DEFAULT_MAX_BATCH_RECORDS = 512
DEFAULT_TIMEOUT_MS = 10_000.0


@dataclass
class Scored:
    """What a job returns: its result and the predictor (model generation) that produced it."""

    value: Any
    predictor: Predictor


@dataclass
class _Job:
    kind: str  # "predict" | "recommend" | "explain"
    payload: Any
    size: int
    future: Future | asyncio.Future = field(default_factory=Future)
    loop: asyncio.AbstractEventLoop | None = None  # set for a job awaited on an event loop

    def start(self) -> bool:
        """False when the caller stopped waiting (the job is dropped unscored)."""
        if self.loop is None:
            return self.future.set_running_or_notify_cancel()
        return not self.future.cancelled()  # a read of the flag; set on the loop's thread


def _resolve(outcomes: list[tuple[asyncio.Future, Any]]) -> None:
    """Resolve a batch's awaited futures (runs on their event loop)."""
    for future, outcome in outcomes:
        if future.done():  # the caller gave up meanwhile
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


@dataclass
class BatchStats:
    """Counters of the batches scored so far (for tests, logs and ``/health``)."""

    batches: int = 0
    jobs: int = 0
    records: int = 0
    largest: int = 0  # most jobs in one batch
    dropped: int = 0  # jobs whose caller had stopped waiting

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class MicroBatcher:
    """Collect concurrent scoring jobs and run each collection on one model generation.

    Args:
        slot: Where the current predictor comes from (taken once per batch).
        window_ms: Longest wait for more jobs after the first one of a batch arrived.
        max_records: Records that close a batch at once (a single larger request is scored
            alone, never split).
        track_announced: Close a batch early when no announced request is still on its way
            (the HTTP app announces requests; direct callers leave this off and wait the window).
    """

    def __init__(
        self,
        slot: ModelSlot,
        window_ms: float = DEFAULT_WINDOW_MS,
        max_records: int = DEFAULT_MAX_BATCH_RECORDS,
        track_announced: bool = False,
    ) -> None:
        if window_ms < 0:
            raise ValueError("window_ms must be >= 0")
        if max_records < 1:
            raise ValueError("max_records must be >= 1")
        self.slot = slot
        self.window = window_ms / 1000.0
        self.max_records = int(max_records)
        self.track_announced = track_announced
        self.stats = BatchStats()
        self._queue: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._announced = 0
        self._queued = 0  # records waiting in the queue
        self._collected = 0  # records in the batch being collected
        self._phase = "idle"  # idle (waits for a job) | collecting | scoring
        self._thread: threading.Thread | None = None
        self._stopped = False

    # ---- callers -------------------------------------------------------------------------
    def announce(self) -> None:
        """A scoring request is on its way (its body is being read and parsed)."""
        with self._cond:
            self._announced += 1

    def retract(self) -> None:
        """An announced request will not be submitted (it failed validation, or was sent)."""
        with self._cond:
            self._announced -= 1
            self._wake_if_due()

    def submit(
        self,
        kind: str,
        payload: Any,
        size: int = 1,
        announced: bool = False,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> Future | asyncio.Future:
        """Queue a job; the future resolves to a :class:`Scored` or raises its error.

        Args:
            kind: ``predict`` (payload: a list of records), ``recommend`` (payload: the
                keyword arguments of :meth:`Predictor.recommend`) or ``explain`` (a record).
            payload: What to score.
            size: Records the job adds to a batch.
            announced: The request was :meth:`announce`\\ d; it stops counting as on its way.
            loop: Return an :class:`asyncio.Future` of this (running) event loop instead of a
                thread future; the scorer resolves all of a batch's futures of one loop with
                one wake-up of that loop.
        """
        if kind not in ("predict", "recommend", "explain"):
            raise ValueError(f"unknown job kind {kind!r}")
        if loop is None:
            job = _Job(kind, payload, max(1, int(size)))
        else:
            job = _Job(kind, payload, max(1, int(size)), loop.create_future(), loop)
        with self._cond:
            if self._stopped:
                raise RuntimeError("the batcher is stopped")
            if announced:
                self._announced -= 1
            self._queue.append(job)
            self._queued += job.size
            self._wake_if_due()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="recforge-scorer", daemon=True
                )
                self._thread.start()
        return job.future

    def _wake_if_due(self) -> None:
        """Wake the scorer only when it has something to do (call holding the lock): waking it
        for every arrival would hand it the GIL once per request, away from the HTTP loop."""
        first = self._phase == "idle" and bool(self._queue)
        full = self._collected + self._queued >= self.max_records
        last = self.track_announced and self._announced <= 0
        if first or (self._phase == "collecting" and (full or last)):
            self._cond.notify()

    async def score(
        self, kind: str, payload: Any, size: int = 1, announced: bool = False
    ) -> Scored:
        """:meth:`submit` from a coroutine and await the result (no thread hop per request)."""
        return await self.submit(kind, payload, size, announced, asyncio.get_running_loop())

    def run(self, kind: str, payload: Any, size: int = 1, timeout: float | None = None) -> Scored:
        """Submit and wait (for callers in threads); raises TimeoutError past ``timeout`` s."""
        future = self.submit(kind, payload, size)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def stop(self) -> None:
        """Finish the batch in progress and end the scorer thread (queued jobs are cancelled)."""
        with self._cond:
            self._stopped = True
            pending = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for job in pending:
            job.future.cancel()
        if self._thread is not None:
            self._thread.join(timeout=10)

    # ---- the scorer thread ---------------------------------------------------------------
    def _collect(self) -> list[_Job] | None:
        """Wait for a first job, then gather the batch; None when stopped."""
        with self._cond:
            self._phase = "idle"
            while not self._queue and not self._stopped:
                self._cond.wait()
            if self._stopped:
                return None
            self._phase = "collecting"
            batch: list[_Job] = []
            self._collected = 0
            closes = time.monotonic() + self.window
            while True:
                while self._queue and self._collected < self.max_records:
                    if batch and self._collected + self._queue[0].size > self.max_records:
                        self._collected = self.max_records  # the next job opens the next batch
                        break
                    job = self._queue.popleft()
                    batch.append(job)
                    self._queued -= job.size
                    self._collected += job.size
                if self._collected >= self.max_records or self._stopped:
                    break
                if self.track_announced and self._announced <= 0:
                    break  # nothing else is on its way: do not wait for the window
                left = closes - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            self._phase = "scoring"
            return batch

    def _run(self) -> None:
        while True:
            batch = self._collect()
            if batch is None:
                return
            live = [job for job in batch if job.start()]
            self.stats.dropped += len(batch) - len(live)
            if not live:
                continue
            try:
                outcomes = self._score(live)
            except Exception as exc:  # a bug, not bad input: every job of the batch fails
                log.exception("scoring a batch of %d jobs failed", len(live))
                outcomes = [exc] * len(live)
            self._deliver(live, outcomes)

    @staticmethod
    def _deliver(jobs: list[_Job], outcomes: list[Any]) -> None:
        """Thread futures directly; awaited ones with one call per event loop."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future, Any]]] = {}
        for job, outcome in zip(jobs, outcomes, strict=True):
            if job.loop is not None:
                by_loop.setdefault(job.loop, []).append((job.future, outcome))
            elif isinstance(outcome, BaseException):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_resolve, items)

    def _score(self, jobs: list[_Job]) -> list[Any]:
        """Each job's :class:`Scored` or :class:`RequestError`, in order."""
        predictor = self.slot.get()  # one generation for the whole batch
        stats = self.stats
        stats.batches += 1
        stats.jobs += len(jobs)
        stats.records += sum(job.size for job in jobs)
        stats.largest = max(stats.largest, len(jobs))
        outcomes: list[Any] = [None] * len(jobs)
        # the batched kinds: one call for all their jobs, which returns per job a result or the
        # exception that job alone fails with
        for kind, score_many in (
            ("predict", predictor.predict_many),
            ("recommend", predictor.recommend_many),
        ):
            picked = [i for i, job in enumerate(jobs) if job.kind == kind]
            if not picked:
                continue
            results = score_many([jobs[i].payload for i in picked])
            for i, result in zip(picked, results, strict=True):
                failed = isinstance(result, Exception)
                outcomes[i] = result if failed else Scored(result, predictor)
        for i, job in enumerate(jobs):
            if job.kind != "explain":
                continue
            try:
                outcomes[i] = Scored(predictor.explain(job.payload), predictor)
            except RequestError as exc:
                outcomes[i] = exc
        return outcomes
