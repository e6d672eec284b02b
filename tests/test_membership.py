"""A shard's registration across a lost lease and a shutdown, on the
in-memory store: after a pause longer than the TTL the shard comes back
DRAINING and serves only once caught up; `close` during a slow etcd call
leaves no registration behind."""

from __future__ import annotations

import threading
import time

from registry import codec
from registry.keys import Keys
from registry.membership import ShardRegistration
from registry.memory_store import InMemoryStore, MemoryLease
from registry.model import ShardMember, ShardState
from tests.polling import poll

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


def state(store: InMemoryStore) -> ShardState | None:
    entry = store.get(KEY)
    if entry is None:
        return None
    member = codec.decode(entry.value)
    assert isinstance(member, ShardMember)
    return member.state


def test_a_lost_lease_rejoins_draining_and_serves_once_caught_up() -> None:
    store = PausableStore()
    reg = ShardRegistration(store, KEYS, ShardMember("shard-0", "127.0.0.1:1"), ttl=1)
    events: list[str] = []
    caught_up = threading.Event()
    reg.on_lease_lost = lambda: events.append("lost")
    reg.catch_up = lambda: (events.append("catching up"), caught_up.wait(10))  # type: ignore[assignment,func-returns-value]
    reg.on_serving = lambda: events.append("serving")
    reg.start()
    try:
        assert state(store) is ShardState.SERVING
        store.paused.set()  # longer than the TTL: the lease expires, the key goes
        assert "lost" in poll(lambda: events, lambda e: "lost" in e, 5)
        store.paused.clear()  # (lost again meanwhile, perhaps: caught up again)
        assert poll(lambda: state(store), lambda s: s is not None, 5) is ShardState.DRAINING
        time.sleep(1.0)  # the keep-alive goes on; the shard stays draining
        assert state(store) is ShardState.DRAINING
        assert "serving" not in events
        caught_up.set()
        assert poll(lambda: state(store), lambda s: s is ShardState.SERVING, 5) is (
            ShardState.SERVING
        )
        assert events[-1] == "serving" and events.count("serving") == 1
    finally:
        caught_up.set()
        reg.close()


def test_a_key_under_another_lease_is_not_this_registration() -> None:
    """The key is there, but another lease keeps it (another process wrote
    it): this registration's own lease no longer holds anything."""
    store = InMemoryStore()
    reg = ShardRegistration(store, KEYS, ShardMember("shard-0", "127.0.0.1:1"), ttl=1)
    lost = threading.Event()
    reg.on_lease_lost = lost.set
    reg.start()
    try:
        other = store.lease(30)
        store.put(KEY, codec.encode(ShardMember("shard-0", "127.0.0.1:2")), lease=other)
        assert lost.wait(3), "the keep-alive took another lease's key for its own"
        entry = poll(lambda: store.get(KEY), lambda e: e is not None and e.lease != other.id, 3)
        assert entry is not None and entry.lease != other.id
    finally:
        reg.close()


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
