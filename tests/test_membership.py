"""A shard's registration across a shutdown, on the in-memory store: `close`
during a slow etcd call leaves no registration behind."""

from __future__ import annotations

import threading
import time

from registry.keys import Keys
from registry.membership import ShardRegistration
from registry.memory_store import InMemoryStore, MemoryLease
from registry.model import ShardMember

KEYS = Keys("/t/")
KEY = KEYS.shard("shard-0")


class PausableStore(InMemoryStore):
    """Lease refreshes stall while `slow` is set (etcd near its timeout) and
    do nothing while `paused` is (the process stopped: the lease runs out)."""

    def __init__(self) -> None:
        super().__init__()
        self.slow = threading.Event()
        self.paused = threading.Event()

    def lease(self, ttl: int) -> MemoryLease:
        lease = super().lease(ttl)
        inner = lease.refresh
        store = self

        def refresh() -> None:
            if store.slow.is_set():
                time.sleep(6)
            if not store.paused.is_set():
                inner()

        lease.refresh = refresh  # type: ignore[method-assign]
        return lease


def test_close_during_a_slow_refresh_leaves_no_registration() -> None:
    """`close` (SIGTERM) while the keep-alive waits on a slow etcd call: the
    keep-alive must not find the revoked key gone and register again."""
    store = PausableStore()
    reg = ShardRegistration(store, KEYS, ShardMember("shard-0", "127.0.0.1:1"), ttl=3)
    reg.start()
    store.slow.set()
    time.sleep(1.2)  # the keep-alive is now inside a slow refresh
    reg.close()
    time.sleep(2.0)
    entry = store.get(KEY)
    assert entry is None, f"stopped shard registered again after close(): {entry.value!r}"
