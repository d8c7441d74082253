"""A slot that holds the predictor a server answers with, and hot-swaps it.

:meth:`ModelSlot.reload` loads the new bundle completely before it swaps the reference under a
lock, so a request that already took the old predictor finishes on it and a failed load leaves
the old model serving. :meth:`ModelSlot.watch` polls the bundle's ``meta.json`` (bundles are
renamed into place, so a new one has a new inode) and reloads when it changes.

Several worker processes of one server (``recforge serve --workers N``) share a
:class:`SharedState` file: a reload in any worker writes the new generation number and bundle
path there (under an exclusive ``flock``), and every other worker's :meth:`ModelSlot.follow`
thread loads that bundle and publishes it under the same generation number, so a reload reaches
every worker and a generation names the same bundle in all of them.
"""

from __future__ import annotations

import fcntl
import gc
import json
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa

from recforge.serve.predictor import DEFAULT_MAX_RECORDS, Predictor, read_seen

log = logging.getLogger(__name__)


class ModelSlot:
    """The predictor a server answers with, swapped atomically on reload.

    Args:
        path: Bundle folder served first (loaded in the constructor).
        max_records: Passed to each :class:`Predictor`.
        seen: Training interactions for ``recommend`` (a path or table), re-encoded with each
            new bundle's vocabulary.
        device: Where models live.
        shared_state: The :class:`SharedState` file of a multi-worker server (``None``: this
            process is the only one). A worker started after a reload serves the reloaded bundle.
        mmap: Memory-map the weights (see :func:`recforge.serve.bundle.load_bundle`).
        backend: What scores ``predict``: ``torch`` or ``onnx`` (see :class:`Predictor`).
    """

    def __init__(
        self,
        path: str | Path,
        max_records: int = DEFAULT_MAX_RECORDS,
        seen: str | Path | pa.Table | None = None,
        device: str = "cpu",
        shared_state: str | Path | None = None,
        mmap: bool = False,
        backend: str = "torch",
    ) -> None:
        self.max_records = max_records
        self.backend = backend
        self.seen = read_seen(seen)
        self.device = device
        self.mmap = mmap
        self._lock = threading.Lock()  # guards the reference and the generation counter
        self._reload_lock = threading.Lock()  # one reload at a time
        self.last_error: str | None = None
        self._generation = 0
        self.path = Path(path)
        self.shared = SharedState(shared_state) if shared_state is not None else None
        if self.shared is None:
            self._current = self._publish(self._load(self.path))
        else:
            with self.shared.locked():
                state = self.shared.read()
                if state is None:  # the first worker up
                    self._current = self._publish(self._load(self.path))
                    self.shared.write(self._generation, self.path, _meta_key(self.path))
                else:  # serve what the others serve, under the same generation
                    self.path = Path(state["path"])
                    self._current = self._publish(self._load(self.path), state["generation"])
            self._follow_key = self.shared.key()
        self._watch_key = _meta_key(self.path)

    def _load(self, path: Path) -> Predictor:
        return Predictor.load(
            path, self.max_records, self.seen, self.device, mmap=self.mmap, backend=self.backend
        )

    def _publish(self, predictor: Predictor, generation: int | None = None) -> Predictor:
        with self._lock:
            self._generation = self._generation + 1 if generation is None else int(generation)
            predictor.generation = self._generation
            self._current = predictor
        freeze_heap()
        return predictor

    @property
    def generation(self) -> int:
        """The generation number of the predictor being served."""
        return self._generation

    def get(self) -> Predictor:
        """The current predictor; keep using the returned object for a whole request."""
        return self._current

    def reload(self, path: str | Path | None = None) -> Predictor:
        """Load ``path`` (default: the current bundle's folder) fully, then swap it in.

        Raises:
            RuntimeError: The new bundle could not be loaded; the old one keeps serving and
                :attr:`last_error` holds the reason.
        """
        with self._reload_lock, self._shared_lock():
            target = Path(path) if path is not None else self.path
            key = _meta_key(target)
            generation = None  # the next number, unless another worker already published it
            if self.shared is not None:
                state = self.shared.read()
                if state is not None:
                    if (
                        state["generation"] > self._generation
                        and Path(state["path"]) == target
                        and _as_key(state.get("key")) == key
                    ):
                        generation = state["generation"]  # the same change, seen by a watcher
                    else:
                        self._generation = max(self._generation, state["generation"])
            try:
                fresh = self._load(target)
            except Exception as exc:  # any failure keeps the old model serving
                self.last_error = f"{target}: {exc}"
                log.error("reload failed, still serving %s: %s", self._current.bundle_id, exc)
                raise RuntimeError(self.last_error) from exc
            self.path = target
            self._watch_key = key
            self.last_error = None
            old = self._current
            self._publish(fresh, generation)
            if self.shared is not None:
                self.shared.write(self._generation, target, key)
                self._follow_key = self.shared.key()
            log.info(
                "reloaded %s: %s (%s) -> %s (%s)",
                target, old.model_name, old.bundle_id, fresh.model_name, fresh.bundle_id,
            )  # fmt: skip
            return fresh

    def poll(self) -> bool:
        """Reload when the watched bundle's ``meta.json`` changed; True when it swapped."""
        key = _meta_key(self.path)
        if key is None or key == self._watch_key:
            return False
        try:
            self.reload()
        except RuntimeError:
            self._watch_key = key  # do not retry a broken bundle until it changes again
            return False
        return True

    def _shared_lock(self) -> Any:
        return self.shared.locked() if self.shared is not None else _nothing()

    def sync(self) -> bool:
        """Adopt a reload another worker published in the shared state; True when it swapped."""
        if self.shared is None:
            return False
        key = self.shared.key()
        if key is None or key == self._follow_key:
            return False
        with self._reload_lock:
            self._follow_key = key
            state = self.shared.read()
            if state is None or state["generation"] <= self._generation:
                return False
            target = Path(state["path"])
            try:
                fresh = self._load(target)
            except Exception as exc:  # keep serving; the next published reload is tried again
                self.last_error = f"{target}: {exc}"
                log.error("could not follow the reload to %s: %s", target, exc)
                return False
            self.path = target
            self._watch_key = _meta_key(target)
            self.last_error = None
            self._publish(fresh, state["generation"])
            log.info("followed reload to generation %d: %s", state["generation"], target)
            return True

    def follow(self, interval: float = 0.2) -> threading.Event:
        """Check the shared state every ``interval`` seconds in a daemon thread and adopt other
        workers' reloads; set the returned event to stop."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(interval):
                self.sync()

        threading.Thread(target=loop, name="recforge-reload-follow", daemon=True).start()
        return stop

    def watch(self, interval: float = 1.0) -> threading.Event:
        """Poll in a daemon thread every ``interval`` seconds; set the returned event to stop."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(interval):
                self.poll()

        threading.Thread(target=loop, name="recforge-bundle-watch", daemon=True).start()
        return stop


def _meta_key(folder: Path) -> tuple[int, int] | None:
    """Identity of a bundle's ``meta.json`` (bundles are renamed into place: inode changes)."""
    try:
        st = (Path(folder) / "meta.json").stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns)


def _as_key(value: Any) -> tuple[int, int] | None:
    return (int(value[0]), int(value[1])) if value else None


@contextmanager
def _nothing() -> Iterator[None]:
    yield


class SharedState:
    """The reload state the worker processes of one server share: a JSON file holding the
    generation number being served and its bundle's path (and ``meta.json`` identity).

    Writers hold an exclusive ``flock`` on ``<file>.lock`` for the whole reload, so two workers
    never publish the same number; the file is replaced atomically (write, then rename), so a
    reader never sees half of it and needs no lock.

    Args:
        path: The state file (its folder must exist).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock_path = self.path.with_name(self.path.name + ".lock")

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the writers' lock (across processes) for the block."""
        with open(self._lock_path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def key(self) -> tuple[int, int] | None:
        """Identity of the state file (it is renamed into place: a new inode per write)."""
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns)

    def read(self) -> dict[str, Any] | None:
        """``{"generation": int, "path": str, "key": [ino, mtime_ns] | None}`` or None."""
        try:
            state = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return state if isinstance(state, dict) and "generation" in state else None

    def write(self, generation: int, path: Path, key: tuple[int, int] | None) -> None:
        """Publish a generation (call while holding :meth:`locked`)."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        body = {"generation": int(generation), "path": str(path), "key": list(key) if key else None}
        tmp.write_text(json.dumps(body))
        os.replace(tmp, self.path)


def freeze_heap() -> None:
    """Move every live object out of the garbage collector's reach (``gc.freeze``).

    A service's model, vocabularies and framework objects live as long as it does; left in the
    collector's generations, every full collection under load walks them all. Measured on
    DeepFM, 32 clients x 1 record: a ~120 ms stall of every request about once a second, p99
    131 ms; frozen, p99 18 ms (``benchmarks/results/loadtest_serve_microbatch.md``). Called at
    start-up and after each reload; unfreezing first lets the collection reclaim a replaced
    model's cycles once nothing uses it.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
