"""A snapshot of the registry kept current by an etcd watch.

Why full reloads: the registry is small (hundreds of keys), and reloading the
whole prefix on any event makes the snapshot consistent at one revision, with
no per-event patching to get wrong. If etcd is unreachable the last good
snapshot keeps serving and `staleness()` says for how long.

A caller that misses something the watch has not delivered yet calls
`reread()` (coalesced, rate-limited, skipped at an unchanged revision; see
`registry.reread`), never `refresh()`, which always loads the whole prefix.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from registry.registry import Registry
from registry.reread import Rereader
from registry.snapshot import Snapshot

log = logging.getLogger(__name__)


class SnapshotCache:
    def __init__(
        self, registry: Registry, poll_interval: float = 5.0, reread_interval: float = 0.05
    ) -> None:
        self.registry = registry
        self.poll_interval = poll_interval
        self._snapshot = Snapshot()
        self._loaded_at = 0.0
        self._changed = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._began = self._installed = 0  # reads begun; the last installed
        self._cancel_watch: Callable[[], None] | None = None
        self._thread: threading.Thread | None = None
        self._listeners: list[Callable[[Snapshot], object]] = []
        self._last_warning = 0.0
        self._rereader = Rereader(
            registry.store.revision,
            lambda: self._snapshot,
            self.refresh,
            self._confirmed,
            reread_interval,
        )

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def staleness(self) -> float:
        """Seconds since the snapshot was last confirmed current."""
        return 0.0 if self._cancel_watch and self._loaded_at else time.monotonic() - self._loaded_at

    def on_change(self, listener: Callable[[Snapshot], object]) -> None:
        self._listeners.append(listener)

    def reread(self) -> Snapshot:
        """A snapshot at least as new as etcd when this call began, for a
        caller that found something missing; concurrent callers share reads.
        Raises Unavailable if etcd cannot be read."""
        return self._rereader.reread()

    def _confirmed(self) -> None:
        self._loaded_at = time.monotonic()

    def refresh(self) -> Snapshot:
        """Reloads the whole prefix now; raises Unavailable if etcd cannot be read.

        Of reads racing each other, the one begun last wins — ordered by when
        they began, not by etcd's revision, which goes back when etcd is
        restored from a backup (without `--bump-revision`): ordered by
        revision, every read after a restore was discarded until the revision
        passed the old one, serving the pre-restore registry meanwhile."""
        with self._lock:
            self._began += 1
            ticket = self._began
        snap = self.registry.snapshot()
        with self._lock:
            if ticket > self._installed:
                self._installed = ticket
                self._snapshot = snap
                self._loaded_at = time.monotonic()
        for listener in self._listeners:
            listener(self._snapshot)
        return self._snapshot

    def start(self) -> None:
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="registry-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._changed.set()
        if self._cancel_watch:
            self._cancel_watch()
        if self._thread:
            self._thread.join(timeout=5)

    def _drop_watch(self) -> None:
        """Cancels the watch before a new one is made: dropped uncancelled, it
        kept delivering events beside its successor (a leak per failure)."""
        cancel, self._cancel_watch = self._cancel_watch, None
        if cancel is not None:
            try:
                cancel()
            except Exception as exc:  # noqa: BLE001 - a broken watch may not cancel cleanly
                log.debug("cancelling the registry watch: %s", exc)

    def _on_event(self, exc: Exception | None) -> None:
        if exc is not None:
            log.warning("registry watch broke (%s); serving the last snapshot", type(exc).__name__)
            self._cancel_watch = None
        self._changed.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self._cancel_watch is None:
                    self._cancel_watch = self.registry.store.watch_prefix(
                        self.registry.keys.prefix, self._on_event
                    )
                    self.refresh()  # catch up on anything missed while unwatched
                self._changed.wait(self.poll_interval)
                self._changed.clear()
                if not self._stop.is_set():
                    self.refresh()
            except Exception as exc:  # noqa: BLE001 - keep serving the last snapshot
                log.warning(
                    "registry refresh failed, serving snapshot %.1fs old: %s", self.staleness(), exc
                )
                self._drop_watch()
                self._stop.wait(min(self.poll_interval, 1.0))
