"""`RegistryStore` in memory, with etcd's semantics where callers rely on them.

Why it exists: registry logic (snapshots, routing, membership, watches) is
tested against the same contract suite as `EtcdStore`
(`tests/test_registry_store_contract.py`), so a unit test that runs on this
store runs on the semantics production gets — one revision counter for the
whole key space, a transaction's operations under one revision, watches
called from a thread that is not the writer's, lease expiry deleting keys.

It is not durable and serves one process; it is not a test-mode branch of
`EtcdStore`, just a second implementation of the narrow interface.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from core.errors import Unavailable
from registry.store import Delete, Entry, ModRevisionIs, Put

log = logging.getLogger(__name__)

_Listener = Callable[[Exception | None], None]


@dataclass
class _Value:
    value: bytes
    mod_revision: int
    lease: int | None


@dataclass
class MemoryLease:
    id: int
    ttl: int
    _store: InMemoryStore = field(repr=False)

    def refresh(self) -> None:
        self._store._refresh(self.id)

    def revoke(self) -> None:
        self._store._revoke(self.id)


class InMemoryStore:
    """The registry store in one process's memory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: dict[str, _Value] = {}
        self._revision = 1  # etcd starts at 1, before any write
        self._leases: dict[int, float] = {}  # lease id → monotonic expiry
        self._lease_ttl: dict[int, int] = {}
        self._lease_ids = itertools.count(0x1000)
        self._watches: dict[int, tuple[str, _Listener]] = {}
        self._watch_ids = itertools.count(1)
        self._events: list[tuple[_Listener, Exception | None]] = []
        self._wake = threading.Condition(self._lock)
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="memory-store", daemon=True)
        self._thread.start()

    # --- reads ----------------------------------------------------------------

    def get(self, key: str) -> Entry | None:
        with self._lock:
            self._check_open()
            v = self._data.get(key)
            return None if v is None else Entry(key, v.value, v.mod_revision, v.lease)

    def list_prefix(self, prefix: str) -> tuple[list[Entry], int]:
        with self._lock:
            self._check_open()
            entries = [
                Entry(k, v.value, v.mod_revision)
                for k, v in sorted(self._data.items())
                if k.startswith(prefix)
            ]
            return entries, self._revision

    def revision(self) -> int:
        with self._lock:
            self._check_open()
            return self._revision

    # --- writes ---------------------------------------------------------------

    def put(self, key: str, value: bytes, lease: object | None = None) -> None:
        lease_id = getattr(lease, "id", lease)
        with self._lock:
            self._check_open()
            self._apply([Put(key, value, lease_id if isinstance(lease_id, int) else None)])

    def delete(self, key: str) -> bool:
        with self._lock:
            self._check_open()
            return self._apply([Delete(key)]) > 0

    def txn(self, compares: Sequence[ModRevisionIs], ops: Sequence[Put | Delete]) -> bool:
        with self._lock:
            self._check_open()
            for c in compares:
                v = self._data.get(c.key)
                if (v.mod_revision if v is not None else 0) != c.revision:
                    return False
            self._apply(ops)
            return True

    def _apply(self, ops: Sequence[Put | Delete]) -> int:
        """Applies `ops` under one new revision (none if nothing changed);
        returns how many keys changed. Caller holds the lock."""
        for op in ops:
            if isinstance(op, Put) and op.lease is not None and op.lease not in self._leases:
                raise Unavailable(f"lease {op.lease:#x} not found (expired or revoked)")
        changed: list[str] = []
        revision = self._revision + 1
        for op in ops:
            if isinstance(op, Put):
                self._data[op.key] = _Value(op.value, revision, op.lease)
                changed.append(op.key)
            elif self._data.pop(op.key, None) is not None:
                changed.append(op.key)
        if changed:
            self._revision = revision
            self._notify(changed)
        return len(changed)

    # --- watches --------------------------------------------------------------

    def watch_prefix(self, prefix: str, on_event: _Listener) -> Callable[[], None]:
        with self._lock:
            self._check_open()
            watch_id = next(self._watch_ids)
            self._watches[watch_id] = (prefix, on_event)

        def cancel() -> None:
            with self._lock:
                self._watches.pop(watch_id, None)

        return cancel

    def _notify(self, keys: list[str]) -> None:
        """Queues one event per watch that covers a changed key; a separate
        thread delivers them, as etcd's watch thread does. Caller holds the lock."""
        for prefix, listener in self._watches.values():
            if any(k.startswith(prefix) for k in keys):
                self._events.append((listener, None))
        self._wake.notify_all()

    # --- leases ---------------------------------------------------------------

    def lease(self, ttl: int) -> MemoryLease:
        if ttl <= 0:
            raise ValueError(f"lease ttl {ttl}: expected a positive number of seconds")
        with self._lock:
            self._check_open()
            lease_id = next(self._lease_ids)
            self._leases[lease_id] = time.monotonic() + ttl
            self._lease_ttl[lease_id] = ttl
            self._wake.notify_all()
            return MemoryLease(lease_id, ttl, self)

    def _refresh(self, lease_id: int) -> None:
        with self._lock:
            if lease_id in self._leases:  # like etcd: refreshing a dead lease is a no-op
                self._leases[lease_id] = time.monotonic() + self._lease_ttl[lease_id]

    def _revoke(self, lease_id: int) -> None:
        with self._lock:
            self._drop_lease(lease_id)

    def _drop_lease(self, lease_id: int) -> None:
        """Deletes the lease and every key attached to it, in one revision."""
        self._leases.pop(lease_id, None)
        self._lease_ttl.pop(lease_id, None)
        self._apply([Delete(k) for k, v in self._data.items() if v.lease == lease_id])

    # --- the delivery and expiry thread ---------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._closed and not self._events and not self._due():
                    self._wake.wait(timeout=self._next_expiry())
                if self._closed:
                    return
                now = time.monotonic()
                for lease_id in [i for i, at in self._leases.items() if at <= now]:
                    self._drop_lease(lease_id)
                events, self._events = self._events, []
            for listener, exc in events:
                try:
                    listener(exc)
                except Exception:  # noqa: BLE001 - one bad listener must not stop the others
                    log.exception("registry watch listener failed")

    def _due(self) -> bool:
        now = time.monotonic()
        return any(at <= now for at in self._leases.values())

    def _next_expiry(self) -> float | None:
        if not self._leases:
            return None
        return max(0.0, min(self._leases.values()) - time.monotonic())

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("the in-memory registry store is closed")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._wake.notify_all()
        self._thread.join(timeout=5)
