"""The in-memory copy of feature rows (`shard_server.feature_cache`): its
rules on plain data, then on a real RocksDB — the copy always equals what
RocksDB holds (after writes, deletes, purges, a reopen, writes racing the
warm-up scan), and a group that outgrows the budget falls back to RocksDB
with the same answers."""

from __future__ import annotations

import random
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.features import GroupRow
from shard_server.feature_cache import ROW_OVERHEAD, FeatureRowCache, row_bytes
from shard_server.feature_store import FeatureShardStore, FeatureStore, column_family, entity_key
from shard_server.storage import StoreMemory
from tests.feature_catalog import CATALOG, PROFILE, SESSION, T0, row, user

PROFILE_S = CATALOG.schema(PROFILE)
SESSION_S = CATALOG.schema(SESSION)
CF = column_family(PROFILE)

# -- plain rules ---------------------------------------------------------------


def test_a_new_family_is_complete_and_follows_writes_in_order() -> None:
    cache = FeatureRowCache(1 << 20)
    assert cache.rows("a") is None
    cache.created("a")
    assert cache.rows("a") == {}
    cache.applied([("a", b"k", b"1"), ("a", b"k", b"2"), ("b", b"x", b"9"), ("a", b"j", b"3")])
    assert cache.rows("a") == {b"k": b"2", b"j": b"3"}
    assert cache.rows("b") is None  # not copied: ignored
    cache.applied([("a", b"k", None), ("a", b"gone", None)])
    assert cache.rows("a") == {b"j": b"3"}
    # Only copied (or being copied) families are worth telling about a write.
    assert cache.tracks("a") and not cache.tracks("b")
    assert cache.begin_warm("c") and cache.tracks("c")
    assert cache.used_bytes == row_bytes(b"j", b"3") == 2 + ROW_OVERHEAD


def test_no_budget_copies_nothing() -> None:
    cache = FeatureRowCache(0)
    cache.created("a")
    assert cache.rows("a") is None and not cache.begin_warm("a")
    with pytest.raises(ValueError, match="≥ 0"):
        FeatureRowCache(-1)


def test_writes_during_a_warm_up_win_over_the_scan() -> None:
    cache = FeatureRowCache(1 << 20)
    assert cache.begin_warm("a") and not cache.begin_warm("a")
    assert cache.rows("a") is None  # not served until complete
    cache.applied([("a", b"new", b"n"), ("a", b"old", b"o2"), ("a", b"dead", None)])
    scanned = {b"old": b"o1", b"dead": b"d", b"kept": b"k"}
    assert cache.finish_warm("a", scanned, sum(row_bytes(k, v) for k, v in scanned.items()))
    copy = cache.rows("a")
    assert copy == {b"old": b"o2", b"kept": b"k", b"new": b"n"}
    assert cache.used_bytes == sum(row_bytes(k, v) for k, v in copy.items())


def test_a_family_past_the_budget_is_dropped_and_stays_dropped() -> None:
    cache = FeatureRowCache(3 * (ROW_OVERHEAD + 2))
    cache.created("small")
    cache.created("big")
    cache.applied([("small", b"s", b"1")])
    cache.applied([("big", b"a", b"1"), ("big", b"b", b"1")])
    assert cache.rows("big") is not None  # exactly at the budget
    cache.applied([("big", b"c", b"1")])
    assert cache.rows("big") is None and cache.over_budget == {"big"}
    assert cache.rows("small") == {b"s": b"1"}
    cache.applied([("big", b"d", b"1")])
    assert cache.rows("big") is None  # not resurrected by later writes
    assert not cache.tracks("big")
    assert cache.used_bytes == ROW_OVERHEAD + 2
    # A warm-up that does not fit is refused the same way.
    assert cache.begin_warm("other")
    scanned = {b"x" * 10: b"y" * 10}
    assert not cache.finish_warm("other", scanned, row_bytes(b"x" * 10, b"y" * 10) * 9)
    assert cache.rows("other") is None and "other" in cache.over_budget


def test_a_reader_racing_overwrites_never_sees_the_row_missing() -> None:
    cache = FeatureRowCache(1 << 20)
    cache.created("a")
    cache.applied([("a", b"k", b"0")])
    rows = cache.rows("a")
    assert rows is not None
    stop = threading.Event()
    missing = 0

    def reader() -> None:
        nonlocal missing
        while not stop.is_set():
            missing += rows.get(b"k") is None

    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(100_000):
            cache.applied([("a", b"k", str(i % 7).encode())])
    finally:
        stop.set()
        t.join()
        sys.setswitchinterval(before)
    assert missing == 0


ops = st.lists(
    st.tuples(st.sampled_from([b"a", b"b", b"c", b"d"]), st.none() | st.binary(max_size=3)),
    max_size=30,
)


@given(ops, st.data())
@settings(max_examples=200, deadline=None)
def test_the_copy_equals_the_store_whenever_the_scan_was_taken(
    writes: list[tuple[bytes, bytes | None]], data: st.DataObject
) -> None:
    """A model of the store: writes apply in order; the warm-up begins after
    write `begin` and its scan sees the state after write `scan` ≥ `begin`
    (an iterator opened any time after begin_warm). The published copy must
    equal the final state."""
    begin = data.draw(st.integers(0, len(writes)))
    scan = data.draw(st.integers(begin, len(writes)))
    state: dict[bytes, bytes] = {}
    cache = FeatureRowCache(1 << 20)
    snapshot: dict[bytes, bytes] = {}
    for i in range(len(writes) + 1):
        if i == begin:
            cache.begin_warm("cf")
        if i == scan:
            snapshot = dict(state)
        if i == len(writes):
            break
        key, value = writes[i]
        if value is None:
            state.pop(key, None)
        else:
            state[key] = value
        cache.applied([("cf", key, value)])
    size = sum(row_bytes(k, v) for k, v in snapshot.items())
    assert cache.finish_warm("cf", snapshot, size)
    assert cache.rows("cf") == state
    assert cache.used_bytes == sum(row_bytes(k, v) for k, v in state.items())


# -- on RocksDB ----------------------------------------------------------------


def _on_disk(storage: FeatureShardStore, cf: str) -> dict[bytes, bytes]:
    return dict(storage.iter_prefix(cf, b""))


def _profile(i: int, days: int) -> GroupRow:
    return row(user(f"u{i}"), T0 + days, account_days=days)


def test_reads_come_from_the_copy_and_equal_rocksdb(tmp_path: Path) -> None:
    storage = FeatureShardStore(tmp_path)
    fs = FeatureStore(storage)
    fs.put(PROFILE_S, [_profile(i, i) for i in range(50)])
    copy = storage.row_cache.rows(CF)
    assert copy is not None and copy == _on_disk(storage, CF)
    keys = [entity_key(user(f"u{i}")) for i in range(60)]
    assert storage.multi_get(CF, keys) == super(FeatureShardStore, storage).multi_get(CF, keys)
    # The delete an erasure writes goes through the store's write path too.
    storage.write(deletes=[(CF, keys[3])])
    assert storage.multi_get(CF, [keys[3]]) == [None]
    assert copy == _on_disk(storage, CF)
    storage.close()


def test_a_reopened_store_copies_its_families_in_the_background(tmp_path: Path) -> None:
    storage = FeatureShardStore(tmp_path)
    FeatureStore(storage).put(PROFILE_S, [_profile(i, i) for i in range(300)])
    FeatureStore(storage).put(SESSION_S, [row(user("s"), T0, session_clicks=1)])
    storage.close()
    storage = FeatureShardStore(tmp_path)
    assert storage.wait_for_row_cache(30)
    for cf in (CF, column_family(SESSION)):
        assert storage.row_cache.rows(cf) == _on_disk(storage, cf)
    got = FeatureStore(storage).multi_get(PROFILE_S, [user("u7"), user("nobody")])
    assert got[0] is not None and got[0].values["account_days"] == 7 and got[1] is None
    storage.close()


def test_writes_racing_the_warm_up_are_all_in_the_copy(tmp_path: Path) -> None:
    storage = FeatureShardStore(tmp_path)
    FeatureStore(storage).put(PROFILE_S, [_profile(i, 1) for i in range(100_000)])
    storage.close()
    storage = FeatureShardStore(tmp_path)  # the warm-up starts now
    fs = FeatureStore(storage)
    rng = random.Random(7)
    stop = threading.Event()
    during_warm_up = 0

    def writer() -> None:
        nonlocal during_warm_up
        day = 2
        while not stop.is_set():
            picked = rng.sample(range(110_000), 20)
            fs.put(PROFILE_S, [_profile(i, day) for i in picked])
            storage.write(deletes=[(CF, entity_key(user(f"u{rng.randrange(110_000)}")))])
            during_warm_up += int(storage.row_cache.rows(CF) is None)
            day += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        assert storage.wait_for_row_cache(60)
    finally:
        stop.set()
        t.join()
    assert during_warm_up > 0  # the race happened
    assert storage.row_cache.rows(CF) == _on_disk(storage, CF)
    storage.close()


def test_a_group_past_the_budget_is_read_from_rocksdb_with_the_same_answers(
    tmp_path: Path,
) -> None:
    small = StoreMemory(feature_cache_bytes=40 * (ROW_OVERHEAD + 64))
    storage = FeatureShardStore(tmp_path, small)
    fs = FeatureStore(storage)
    fs.put(PROFILE_S, [_profile(i, i) for i in range(20)])
    assert storage.row_cache.rows(CF) is not None
    fs.put(PROFILE_S, [_profile(i, i) for i in range(20, 200)])
    assert storage.row_cache.rows(CF) is None and CF in storage.row_cache.over_budget
    got = fs.multi_get(PROFILE_S, [user(f"u{i}") for i in range(0, 200, 37)])
    assert [r.values["account_days"] for r in got if r] == list(range(0, 200, 37))
    storage.close()
    # Reopened, it is not copied either: the scan stops at the budget.
    storage = FeatureShardStore(tmp_path, small)
    assert storage.wait_for_row_cache(30)
    assert storage.row_cache.rows(CF) is None and CF in storage.row_cache.over_budget
    storage.close()
