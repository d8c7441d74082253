"""A slot that holds the predictor a server answers with, and hot-swaps it.

:meth:`ModelSlot.reload` loads the new bundle completely before it swaps the reference under a
lock, so a request that already took the old predictor finishes on it and a failed load leaves
the old model serving. :meth:`ModelSlot.watch` polls the bundle's ``meta.json`` (bundles are
renamed into place, so a new one has a new inode) and reloads when it changes.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

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
    """

    def __init__(
        self,
        path: str | Path,
        max_records: int = DEFAULT_MAX_RECORDS,
        seen: str | Path | pa.Table | None = None,
        device: str = "cpu",
    ) -> None:
        self.max_records = max_records
        self.seen = read_seen(seen)
        self.device = device
        self._lock = threading.Lock()  # guards the reference and the generation counter
        self._reload_lock = threading.Lock()  # one reload at a time
        self.last_error: str | None = None
        self._generation = 0
        self.path = Path(path)
        self._current = self._publish(self._load(self.path))
        self._watch_key = _meta_key(self.path)

    def _load(self, path: Path) -> Predictor:
        return Predictor.load(path, self.max_records, self.seen, self.device)

    def _publish(self, predictor: Predictor) -> Predictor:
        with self._lock:
            self._generation += 1
            predictor.generation = self._generation
            self._current = predictor
        return predictor

    def get(self) -> Predictor:
        """The current predictor; keep using the returned object for a whole request."""
        return self._current

    def reload(self, path: str | Path | None = None) -> Predictor:
        """Load ``path`` (default: the current bundle's folder) fully, then swap it in.

        Raises:
            RuntimeError: The new bundle could not be loaded; the old one keeps serving and
                :attr:`last_error` holds the reason.
        """
        with self._reload_lock:
            target = Path(path) if path is not None else self.path
            key = _meta_key(target)
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
            self._publish(fresh)
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
