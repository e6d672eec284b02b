"""A shard's timed background work: the timer itself (`shard_server.periodic`:
runs again after a failure, stops when asked, off at interval 0), the
deletion of feature rows past their group's TTL (`FeatureNode.purge_expired`,
on a real RocksDB with its row cache), and what anti-entropy leaves out of
its digests and copies (rows past the TTL: each replica purges them on its
own schedule)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from core.domain import EntityKey, VersionRef
from registry.snapshot import Snapshot
from shard_server import records as rec
from shard_server.bucket_digests import feature_digests, index_digests, unexpired
from shard_server.feature_service import FeatureNode
from shard_server.feature_store import FeatureShardStore, FeatureStore, column_family
from shard_server.periodic import Periodic
from shard_server.storage import RECORDS, ShardStore
from tests.feature_catalog import CATALOG, HOUR, MINUTE, PROFILE, SESSION, T0, row, user

SESSION_S, PROFILE_S = CATALOG.schema(SESSION), CATALOG.schema(PROFILE)  # TTL 30 min; none


def test_the_timer_runs_again_after_a_failure_and_stops_when_asked() -> None:
    runs: list[float] = []
    errors: list[int] = []
    three = threading.Event()

    def work() -> None:
        runs.append(time.monotonic())
        if len(runs) >= 3:
            three.set()
        if len(runs) == 1:
            raise RuntimeError("first run fails")

    loop = Periodic("test-timer", work, 0.01, on_error=lambda: errors.append(1))
    loop.start()
    assert three.wait(5), runs
    loop.stop()
    # Stopped: its thread is gone, so no run can follow.
    assert not loop._thread.is_alive() and loop.stopping and errors == [1]

    off = Periodic("test-off", work, 0)
    off.start()
    assert not off._thread.is_alive()
    off.stop()


def test_rows_past_their_ttl_leave_disk_and_the_row_cache(tmp_path: Path) -> None:
    storage = FeatureShardStore(tmp_path)
    store = FeatureStore(storage)
    old, fresh, edge = user("old"), user("fresh"), user("edge")
    store.put(
        SESSION_S,
        [
            row(old, T0 - HOUR, session_clicks=1),
            row(fresh, T0 - MINUTE, session_clicks=2),
            row(edge, T0 - 30 * MINUTE, session_clicks=3),  # exactly the TTL: still live
        ],
    )
    store.put(PROFILE_S, [row(old, T0 - 100 * HOUR, age_bucket="x")])  # no TTL
    cache = storage.row_cache.rows(column_family(SESSION))
    assert cache is not None and len(cache) == 3
    node = FeatureNode(store, SimpleNamespace(snapshot=_catalogued()))  # type: ignore[arg-type]

    assert node.purge_expired(T0) == 1
    assert node.purge_expired(T0) == 0
    got = store.multi_get(SESSION_S, [old, fresh, edge])
    assert [r.values["session_clicks"] if r else None for r in got] == [None, 2, 3]
    assert len(storage.row_cache.rows(column_family(SESSION)) or {}) == 2
    on_disk = [k for k, _ in storage.iter_prefix(column_family(SESSION), b"")]
    assert len(on_disk) == 2 and not any(k.endswith(b"old") for k in on_disk)
    assert store.multi_get(PROFILE_S, [old])[0] is not None
    storage.close()


def test_anti_entropy_neither_counts_nor_copies_expired_rows(tmp_path: Path) -> None:
    """One replica purged an expired row, the other not yet: no difference."""
    purged_storage, kept_storage = (
        FeatureShardStore(tmp_path / "a"),
        FeatureShardStore(tmp_path / "b"),
    )
    purged, kept = FeatureStore(purged_storage), FeatureStore(kept_storage)
    rows = [row(user("old"), T0 - HOUR, session_clicks=1), row(user("new"), T0, session_clicks=2)]
    purged.put(SESSION_S, rows[1:])
    kept.put(SESSION_S, rows)
    snap = _catalogued()
    buckets = range(16)
    assert feature_digests(purged, snap, SESSION, buckets, T0) == feature_digests(
        kept, snap, SESSION, buckets, T0
    )
    # Before the old row expired, the digests tell the replicas apart.
    assert feature_digests(purged, snap, SESSION, buckets, T0 - 2 * HOUR + 1) != (
        feature_digests(kept, snap, SESSION, buckets, T0 - 2 * HOUR + 1)
    )
    copied = list(kept_storage.iter_prefix(column_family(SESSION), b""))
    assert len(unexpired(copied, 1800, T0)) == 1 and unexpired(copied, None, T0) == copied
    purged_storage.close()
    kept_storage.close()


def test_anti_entropy_neither_counts_nor_copies_expired_records(tmp_path: Path) -> None:
    """Records past their family's lifetime (`record_expiry`) the same way:
    a replica that removed one and a replica that did not yet agree."""
    index = VersionRef("ix", "v1")

    def stored(eid: str, created_at: int) -> tuple[str, bytes, bytes]:
        key = EntityKey("t", "item", eid)
        value = rec.encode_record(rec.Record(key, np.ones(4, np.float32), 1, created_at=created_at))
        return RECORDS, rec.record_key(index, key), value

    expired, kept = ShardStore(tmp_path / "a"), ShardStore(tmp_path / "b")
    expired.write(puts=[stored("new", T0)])
    kept.write(puts=[stored("new", T0), stored("old", T0 - HOUR)])
    assert index_digests(expired, index, [0], T0 - MINUTE) == index_digests(
        kept, index, [0], T0 - MINUTE
    )
    assert index_digests(expired, index, [0]) != index_digests(kept, index, [0])
    expired.close()
    kept.close()


def _catalogued() -> Snapshot:
    """A snapshot whose feature catalog is the shared test catalog."""
    return SimpleNamespace(  # type: ignore[return-value]
        feature_catalog=CATALOG, retired_groups=frozenset(), tenants={}
    )
