"""Re-reads of the registry on a miss (registry.reread, coordinator.snapshots):
callers share reads, reads are spaced by the rate limit, a read at an
unchanged revision loads nothing, a caller never takes a read that began
before it arrived, and the async flavour never blocks the event loop."""

from __future__ import annotations

import asyncio
import threading
from typing import cast

import pytest

from coordinator.snapshots import RegistryView
from core.errors import NotFound, Unavailable
from registry.registry import Registry
from registry.reread import Rereader
from registry.snapshot import Snapshot
from registry.store import EtcdStore, Put, RegistryStore
from registry.watcher import SnapshotCache
from tests.polling import eventually


class CountingStore:
    """Just the reads a snapshot needs; `rev` is etcd's revision."""

    def __init__(self) -> None:
        self.rev = 1
        self.lists = 0
        self.revisions = 0
        self.block: threading.Event | None = None  # the next list waits for it
        self.listing = threading.Event()  # set while a list is in progress

    def list_prefix(self, prefix: str) -> tuple[list[object], int]:
        self.lists += 1
        rev = self.rev
        gate, self.block = self.block, None
        if gate is not None:
            self.listing.set()
            assert gate.wait(10)
        return [], rev

    def revision(self) -> int:
        self.revisions += 1
        return self.rev


def cache_over(store: CountingStore, interval: float = 0.0) -> SnapshotCache:
    cache = SnapshotCache(Registry(cast(RegistryStore, store), "/t/"), reread_interval=interval)
    cache.refresh()
    return cache


def test_a_reread_at_an_unchanged_revision_loads_nothing() -> None:
    store = CountingStore()
    cache = cache_over(store)
    before = cache.snapshot
    assert store.lists == 1
    assert cache.reread() is before
    assert (store.lists, store.revisions) == (1, 1)
    store.rev = 7  # something changed in etcd
    assert cache.reread().revision == 7
    assert store.lists == 2


def test_rereads_begin_at_least_the_interval_apart() -> None:
    now = [100.0]
    slept: list[float] = []
    rev = [1]
    held = [Snapshot(revision=0)]

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    def load() -> Snapshot:
        held[0] = Snapshot(revision=rev[0])
        return held[0]

    rr = Rereader(
        lambda: rev[0], lambda: held[0], load, min_interval=0.05, clock=lambda: now[0], sleep=sleep
    )
    for r in (2, 3, 4):
        rev[0] = r
        assert rr.reread().revision == r
    assert slept == [pytest.approx(0.05), pytest.approx(0.05)]
    now[0] += 1.0  # long after the last read: no wait
    rev[0] = 5
    assert rr.reread().revision == 5
    assert len(slept) == 2 and rr.loads == 4


def test_callers_arriving_during_a_read_share_the_next_one() -> None:
    store = CountingStore()
    cache = cache_over(store)
    store.rev, store.block = 2, threading.Event()
    gate = store.block
    first: list[Snapshot] = []
    a = threading.Thread(target=lambda: first.append(cache.reread()))
    a.start()
    assert store.listing.wait(10)  # A's read is loading revision 2
    store.rev = 3  # changed while A reads: A's read may not show it
    later: list[Snapshot] = []
    others = [threading.Thread(target=lambda: later.append(cache.reread())) for _ in range(8)]
    for t in others:
        t.start()
    assert eventually(
        lambda: cache._rereader.waiting == 8, interval=0.005
    )  # all eight wait for a read
    gate.set()
    for t in (a, *others):
        t.join(10)
    assert [s.revision for s in first] == [2]
    assert [s.revision for s in later] == [3] * 8
    assert store.lists == 3  # start, A's read, and one read shared by the eight


def test_a_failed_read_raises_for_its_callers() -> None:
    def down() -> int:
        raise Unavailable("etcd at 127.0.0.1:1 is unreachable")

    rr = Rereader(down, lambda: Snapshot(revision=1), lambda: Snapshot(revision=1))
    with pytest.raises(Unavailable, match="unreachable"):
        rr.reread()


class BlockingSource:
    """A SnapshotSource whose re-read blocks (like etcd) until released."""

    def __init__(self) -> None:
        self.snapshot = Snapshot(revision=1)
        self.calls = 0
        self.entered = threading.Event()
        self.release = threading.Event()

    def reread(self) -> Snapshot:
        self.calls += 1
        self.entered.set()
        assert self.release.wait(10)
        self.snapshot = Snapshot(revision=self.snapshot.revision + 1)
        return self.snapshot


def test_async_callers_coalesce_and_the_loop_keeps_running() -> None:
    source = BlockingSource()
    view = RegistryView(source)

    async def scenario() -> None:
        burst = [asyncio.ensure_future(view.reread()) for _ in range(50)]
        await asyncio.to_thread(source.entered.wait, 10)
        # The read blocks a worker thread; the loop still runs new callers.
        late = [asyncio.ensure_future(view.reread()) for _ in range(20)]
        await asyncio.sleep(0)
        assert source.calls == 1
        source.release.set()
        assert {s.revision for s in await asyncio.gather(*burst)} == {2}
        assert {s.revision for s in await asyncio.gather(*late)} == {3}
        assert source.calls == 2

    asyncio.run(scenario())


def test_fresh_rereads_once_on_not_found() -> None:
    source = BlockingSource()
    source.release.set()
    view = RegistryView(source)

    def lookup(s: Snapshot) -> int:
        if s.revision < 2:
            raise NotFound("unknown route 'r'")
        return s.revision

    async def scenario() -> None:
        snap, found = await view.fresh(lookup)
        assert (snap.revision, found, source.calls) == (2, 2, 1)
        with pytest.raises(NotFound):
            await view.fresh(
                lambda s: s.index(__import__("core.domain").domain.VersionRef("x", "1"))
            )

    asyncio.run(scenario())


@pytest.mark.integration
def test_etcd_revision_is_the_listing_revision_and_grows(store: EtcdStore, prefix: str) -> None:
    _, listed = store.list_prefix(prefix)
    assert store.revision() == listed
    assert store.txn([], [Put(prefix + "k", b"v")])
    assert store.revision() == listed + 1


def test_the_cache_follows_etcd_restored_to_an_older_revision() -> None:
    """After etcd is restored from a backup (without --bump-revision) its
    revision goes back; the cache installed a read only at a revision at
    least its own, so it served the pre-restore registry until etcd's
    revision passed the old one, reporting itself current (found in review).
    Reads are now ordered by when they began."""
    from registry.memory_store import InMemoryStore
    from registry.model import Tenant

    class Restorable(InMemoryStore):
        def restore(self, backup: InMemoryStore) -> None:
            """Its keys and revision become the backup's (nothing else)."""
            with self._lock:
                self._data, self._revision = dict(backup._data), backup._revision

    backup, live = InMemoryStore(), Restorable()
    Registry(backup, "/t/").put_tenant(Tenant("before"))
    for i in range(20):
        Registry(live, "/t/").put_tenant(Tenant(f"t{i}"))
    cache = SnapshotCache(Registry(live, "/t/"), poll_interval=60)
    assert "t19" in cache.refresh().tenants
    live.restore(backup)
    Registry(live, "/t/").put_tenant(Tenant("after"))
    snap = cache.refresh()
    assert set(snap.tenants) == {"before", "after"}, snap.tenants


def test_a_failed_refresh_replaces_its_watch_instead_of_leaking_it() -> None:
    """A refresh that raised dropped the watch without cancelling it: each
    failure left one more watch delivering every event (found in review)."""
    from registry.memory_store import InMemoryStore
    from registry.model import Tenant

    store = InMemoryStore()
    reg = Registry(store, "/t/")
    cache = SnapshotCache(reg, poll_interval=60)
    failures = [RuntimeError("a listener failed")] * 3

    def listener(snap: Snapshot) -> None:
        if failures and "t0" in snap.tenants:
            raise failures.pop()

    cache.on_change(listener)
    cache.start()
    try:
        reg.put_tenant(Tenant("t0"))
        assert eventually(lambda: not failures, timeout=10)
        reg.put_tenant(Tenant("t1"))
        assert eventually(lambda: "t1" in cache.snapshot.tenants, timeout=10)
        assert len(store._watches) == 1, store._watches
    finally:
        cache.stop()
