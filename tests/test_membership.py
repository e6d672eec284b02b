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


def _lose_lease(store: PausableStore, events: list[str]) -> None:
    store.paused.set()
    poll(lambda: events, lambda e: "lost" in e, 5)
    store.paused.clear()


def test_start_up_does_not_serve_while_a_lost_leases_catch_up_runs() -> None:
    """Start-up's catch-up began before the lease was lost: on its end it
    opened the gate and went SERVING while the rejoin's catch-up (of what
    peers acknowledged meanwhile) still ran (found in review). It serves
    only under the lease its catch-up began with; the rejoin serves later."""
    store = PausableStore()
    member = ShardMember("shard-0", "127.0.0.1:1", state=ShardState.DRAINING)
    reg = ShardRegistration(store, KEYS, member, ttl=1)
    events: list[str] = []
    done = threading.Event()
    served: list[str] = []
    reg.on_lease_lost = lambda: events.append("lost")

    def catch_up() -> None:
        events.append("catching up")
        done.wait(10)

    reg.catch_up = catch_up
    reg.on_serving = lambda: served.append("open")
    reg.start()
    lease = reg.lease  # start-up's catch-up begins
    try:
        _lose_lease(store, events)
        poll(lambda: events, lambda e: "catching up" in e, 5)
        assert not reg.serve(lease)  # start-up's catch-up ends: not served
        assert state(store) is ShardState.DRAINING and served == []
        done.set()
        poll(lambda: state(store), lambda s: s is ShardState.SERVING, 5)
        assert served == ["open"]
    finally:
        done.set()
        reg.close()


def test_a_lost_leases_catch_up_that_fails_is_tried_again() -> None:
    """One failure (etcd still flapping right after the loss) ended the
    rejoin: the shard refused reads for good (found in review)."""
    store = PausableStore()
    reg = ShardRegistration(store, KEYS, ShardMember("shard-0", "127.0.0.1:1"), ttl=1)
    events: list[str] = []
    calls: list[int] = []

    def catch_up() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("etcd at 127.0.0.1:2379 is unreachable")

    reg.on_lease_lost = lambda: events.append("lost")
    reg.catch_up = catch_up
    reg.start()
    try:
        _lose_lease(store, events)
        poll(lambda: state(store), lambda s: s is ShardState.SERVING, 10)
        assert len(calls) == 2
    finally:
        reg.close()


def test_an_early_registration_is_kept_alive_through_a_long_start_up() -> None:
    """Registered early (a previous process's key to replace), the shard
    started its keep-alive only after loading segments: a load longer than
    the TTL let the lease expire, read as a lost one (a second catch-up
    racing start-up's). `start` runs once, right after the early register."""
    store = PausableStore()
    member = ShardMember("shard-0", "x", state=ShardState.DRAINING)
    reg = ShardRegistration(store, KEYS, member, ttl=1)
    events: list[str] = []
    reg.on_lease_lost = lambda: events.append("lost")
    reg.register()
    reg.start()
    time.sleep(1.6)  # segments load, the first catch-up pass
    reg.start()  # where start-up starts it otherwise: once is enough
    time.sleep(0.6)
    reg.close()
    assert "lost" not in events
