"""One contract for every `RegistryStore`: the in-memory store and a real
etcd answer these the same way, so logic tested on one holds on the other."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from cli.etcd_process import EtcdProcess
from core.errors import Unavailable
from registry.memory_store import InMemoryStore
from registry.store import Delete, ModRevisionIs, Put, RegistryStore
from tests.conftest import new_prefix
from tests.polling import eventually


@pytest.fixture(params=["memory", "etcd"])
def store(request: pytest.FixtureRequest) -> Iterator[RegistryStore]:
    if request.param == "memory":
        s: RegistryStore = InMemoryStore()
    else:
        etcd: EtcdProcess = request.getfixturevalue("etcd")
        s = etcd.store()
    yield s
    s.close()


@pytest.fixture
def prefix() -> str:
    return new_prefix()


def test_put_get_delete_and_revisions(store: RegistryStore, prefix: str) -> None:
    assert store.get(prefix + "a") is None
    store.put(prefix + "a", b"1")
    first = store.get(prefix + "a")
    assert first is not None and first.value == b"1"
    store.put(prefix + "a", b"2")
    second = store.get(prefix + "a")
    assert second is not None and second.value == b"2"
    assert second.mod_revision > first.mod_revision
    assert store.delete(prefix + "a")
    assert not store.delete(prefix + "a"), "deleting a missing key reports False"
    assert store.get(prefix + "a") is None


def test_list_prefix_is_sorted_scoped_and_at_one_revision(
    store: RegistryStore, prefix: str
) -> None:
    for key in ("b", "a/2", "a/1", "c"):
        store.put(prefix + key, key.encode())
    store.put(prefix.rstrip("/") + "-sibling/x", b"outside")
    entries, revision = store.list_prefix(prefix + "a/")
    assert [e.key for e in entries] == [prefix + "a/1", prefix + "a/2"]
    everything, _ = store.list_prefix(prefix)
    assert [e.key for e in everything] == [prefix + k for k in ("a/1", "a/2", "b", "c")]
    assert all(e.mod_revision <= revision for e in everything)
    assert store.list_prefix(prefix + "nothing/") == ([], store.list_prefix(prefix)[1])


def test_compare_and_swap(store: RegistryStore, prefix: str) -> None:
    key = prefix + "route"
    assert store.txn([ModRevisionIs(key, 0)], [Put(key, b"v1")]), "create-if-absent"
    assert not store.txn([ModRevisionIs(key, 0)], [Put(key, b"v2")]), "the key exists now"
    entry = store.get(key)
    assert entry is not None and entry.value == b"v1"
    assert not store.txn([ModRevisionIs(key, entry.mod_revision + 100)], [Put(key, b"v3")])
    assert store.txn([ModRevisionIs(key, entry.mod_revision)], [Put(key, b"v3")])
    after = store.get(key)
    assert after is not None and after.value == b"v3"


def test_transaction_is_all_or_nothing_at_one_revision(store: RegistryStore, prefix: str) -> None:
    store.put(prefix + "gone", b"x")
    ok = store.txn(
        [ModRevisionIs(prefix + "new", 0)],
        [Put(prefix + "new", b"1"), Put(prefix + "other", b"2"), Delete(prefix + "gone")],
    )
    assert ok
    a, b = store.get(prefix + "new"), store.get(prefix + "other")
    assert a is not None and b is not None and a.mod_revision == b.mod_revision
    assert store.get(prefix + "gone") is None
    # A failed compare applies none of the operations.
    assert not store.txn(
        [ModRevisionIs(prefix + "new", 0)], [Put(prefix + "third", b"3"), Delete(prefix + "new")]
    )
    assert store.get(prefix + "third") is None and store.get(prefix + "new") is not None


def test_watch_reports_changes_under_its_prefix_until_cancelled(
    store: RegistryStore, prefix: str
) -> None:
    calls: list[Exception | None] = []
    seen = threading.Event()
    writer = threading.get_ident()
    threads: set[int] = set()

    def on_event(exc: Exception | None) -> None:
        calls.append(exc)
        threads.add(threading.get_ident())
        seen.set()

    cancel = store.watch_prefix(prefix + "w/", on_event)
    store.put(prefix + "w/one", b"1")
    assert seen.wait(5), "a put under the prefix reached no watch"
    assert calls[0] is None
    assert writer not in threads, "watch callbacks run on the store's thread, not the writer's"
    seen.clear()
    store.delete(prefix + "w/one")
    assert seen.wait(5), "a delete under the prefix reached no watch"

    cancel()
    count = len(calls)
    # A second watch sees the next change; the cancelled one stays silent.
    later = threading.Event()
    cancel2 = store.watch_prefix(prefix + "w/", lambda exc: later.set())
    store.put(prefix + "w/two", b"2")
    assert later.wait(5)
    cancel2()
    assert len(calls) == count, "a cancelled watch was still called"


def test_revoked_lease_deletes_its_keys_at_once(store: RegistryStore, prefix: str) -> None:
    lease = store.lease(10)
    store.put(prefix + "member", b"m", lease=lease)
    store.put(prefix + "plain", b"p")
    lease.revoke()
    assert store.get(prefix + "member") is None
    assert store.get(prefix + "plain") is not None


def test_a_lease_kept_alive_survives_and_an_abandoned_one_expires(
    store: RegistryStore, prefix: str
) -> None:
    kept, dropped = store.lease(2), store.lease(2)
    store.put(prefix + "kept", b"k", lease=kept)
    store.put(prefix + "dropped", b"d", lease=dropped)
    gone = threading.Event()
    cancel = store.watch_prefix(
        prefix, lambda exc: gone.set() if store.get(prefix + "dropped") is None else None
    )
    try:
        end = time.monotonic() + 3.5  # well past the 2 s TTL
        while time.monotonic() < end:
            kept.refresh()
            gone.wait(0.5)
        assert eventually(lambda: store.get(prefix + "dropped") is None, 10), "lease never expired"
        assert gone.wait(5), "the expiry reached no watch"
        assert store.get(prefix + "kept") is not None, "a refreshed lease expired"
    finally:
        cancel()
        kept.revoke()


def test_closed_store_refuses_calls() -> None:
    s = InMemoryStore()
    s.close()
    with pytest.raises(Unavailable):
        s.get("/x")


def test_get_names_the_keys_lease(store: RegistryStore, prefix: str) -> None:
    """A shard's keep-alive tells its own registration from another
    process's key of the same shard by the lease (`registry.membership`)."""
    lease = store.lease(10)
    store.put(prefix + "leased", b"x", lease=lease)
    store.put(prefix + "plain", b"y")
    try:
        leased, plain = store.get(prefix + "leased"), store.get(prefix + "plain")
        assert leased is not None and leased.lease == lease.id
        assert plain is not None and not plain.lease
    finally:
        lease.revoke()
