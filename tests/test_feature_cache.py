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


class Clock:
    """A clock the test moves (idle and retry times)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


ROW = ROW_OVERHEAD + 2  # one row of a one-byte key and value


def test_an_idle_group_gives_its_memory_to_one_that_grows() -> None:
    clock = Clock()
    cache = FeatureRowCache(4 * ROW, idle_seconds=100, retry_seconds=30, clock=clock)
    for cf in ("old", "new"):
        cache.created(cf)
        cache.applied([(cf, b"a", b"1"), (cf, b"b", b"1")])
    # Both read lately: the one that grows past the budget drops itself.
    clock.now += 50
    assert cache.rows("old") is not None
    cache.applied([("new", b"c", b"1")])
    assert cache.over_budget == {"new"} and cache.evictions == 0
    assert cache.rows("old") == {b"a": b"1", b"b": b"1"}
    # "old" is then not read for longer than idle_seconds: a growing group
    # takes its memory (least recently read first), and nothing else goes.
    cache.created("next")
    clock.now += 101
    cache.applied([("next", b"a", b"1"), ("next", b"b", b"1"), ("next", b"c", b"1")])
    assert cache.over_budget == {"new", "old"} and cache.evictions == 1
    assert cache.rows("next") == {b"a": b"1", b"b": b"1", b"c": b"1"}
    assert cache.used_bytes == 3 * ROW


def test_idle_groups_are_evicted_only_when_that_makes_it_fit() -> None:
    clock = Clock()
    cache = FeatureRowCache(3 * ROW, idle_seconds=100, clock=clock)
    cache.created("idle")
    cache.applied([("idle", b"a", b"1")])
    cache.created("busy")
    clock.now += 200
    assert cache.rows("busy") == {}
    # "busy" grows by four rows: evicting "idle" would not make them fit.
    cache.applied([("busy", k, b"1") for k in (b"a", b"b", b"c", b"d")])
    assert cache.over_budget == {"busy"} and cache.evictions == 0
    assert cache.rows("idle") == {b"a": b"1"}


def test_a_group_dropped_for_the_budget_is_due_again_only_after_the_retry() -> None:
    clock = Clock()
    cache = FeatureRowCache(2 * ROW, idle_seconds=100, retry_seconds=30, clock=clock)
    cache.created("a")
    cache.created("b")
    cache.applied([("a", b"x", b"1")])
    assert cache.rows("a") is not None
    cache.applied([("b", b"x", b"1"), ("b", b"y", b"1")])
    assert cache.over_budget == {"b"}
    assert not cache.due("a") and not cache.due("b")  # in memory; too soon
    clock.now += 31
    assert cache.due("b") and not cache.due("b")  # once per retry
    # "a" is read: no room for "b"'s two rows (one free) — no scan is worth it.
    assert cache.rows("a") is not None and cache.room_for("b") == 0
    clock.now += 101  # "a" idle: its row would make room
    assert cache.room_for("b") == 2 * ROW
    assert cache.begin_warm("b") and "b" not in cache.over_budget
    scanned = {b"x": b"1", b"y": b"1"}
    assert cache.finish_warm("b", scanned, 2 * ROW)
    assert cache.rows("b") == scanned and cache.over_budget == {"a"}
    # A group larger than the whole budget is never tried again.
    cache.created("huge")
    cache.applied([("huge", bytes([i]), b"1") for i in range(3)])
    clock.now += 1000
    assert "huge" in cache.over_budget and not cache.due("huge")
    with pytest.raises(ValueError, match="> 0 seconds"):
        FeatureRowCache(1, idle_seconds=0)


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


def _bytes_of(tmp_path: Path, rows: list[GroupRow]) -> int:
    storage = FeatureShardStore(tmp_path / "measure")
    FeatureStore(storage).put(PROFILE_S, rows)
    size = storage.row_cache.used_bytes
    storage.close()
    return size


def test_a_new_group_version_takes_the_memory_once_the_old_one_is_not_read(
    tmp_path: Path,
) -> None:
    """A model change: a new group version is written while the old one is
    still read (it does not fit beside it), then only the new one is read —
    it is copied into memory in place of the old one, and both answer as
    RocksDB does throughout."""
    old_rows = [_profile(i, i) for i in range(150)]
    size = _bytes_of(tmp_path, old_rows)
    clock = Clock()
    memory = StoreMemory(feature_cache_bytes=size * 3 // 2, feature_cache_idle_seconds=300)
    storage = FeatureShardStore(tmp_path / "shard", memory, clock=clock)
    fs = FeatureStore(storage)
    new_cf = column_family(SESSION)
    fs.put(PROFILE_S, old_rows)
    assert fs.multi_get(PROFILE_S, [user("u1")])[0] is not None
    fs.put(SESSION_S, [row(user(f"u{i}"), T0, session_clicks=i) for i in range(150)])
    assert storage.row_cache.over_budget == {new_cf}  # the old one is read
    users = [user(f"u{i}") for i in range(0, 160, 7)]

    def read_both() -> None:
        old = fs.multi_get(PROFILE_S, users)
        new = fs.multi_get(SESSION_S, users)
        assert [r.values["account_days"] if r else None for r in old] == [
            i if i < 150 else None for i in range(0, 160, 7)
        ]
        assert [r.values["session_clicks"] if r else None for r in new] == [
            i if i < 150 else None for i in range(0, 160, 7)
        ]

    # Both still read: the new one stays on RocksDB even past the retry.
    for _ in range(3):
        clock.now += 61
        read_both()
        assert storage.wait_for_row_cache(30)
    assert storage.row_cache.over_budget == {new_cf} and storage.row_cache.evictions == 0
    # Read and not in memory: what the over-budget alert is about.
    assert storage.row_cache.census() == {"in_memory": 1, "warming": 0, "over_budget": 1, "idle": 0}
    # The switch: only the new version is read; past idle_seconds the next
    # read of it copies it, evicting the old one — though a producer still
    # writes the old one (a write is no read: it kept the old one's memory).
    for step in range(6):
        clock.now += 61
        fs.put(PROFILE_S, [row(user("u1"), T0 + 10_000 + step, account_days=step)])
        assert fs.multi_get(SESSION_S, users[:3])[1] is not None
        assert storage.wait_for_row_cache(30)
    assert storage.row_cache.over_budget == {CF} and storage.row_cache.evictions == 1
    assert storage.row_cache.rows(new_cf) == _on_disk(storage, new_cf)
    # The old version is not read: on disk, and no cause for an alert.
    assert storage.row_cache.census() == {"in_memory": 1, "warming": 0, "over_budget": 0, "idle": 1}
    read_both()
    storage.close()
