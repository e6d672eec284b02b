"""Dropping a retired feature group version's rows on a real RocksDB
(`FeatureStore.drop_group`, `FeatureNode.drop_retired`): the disk and the
row cache are given back, the other groups keep every row, and nothing
writes the group again — not a late put, not a copy, not a restart."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from rocksdict import Options, Rdict

from core.domain import VersionRef
from core.errors import FailedPrecondition
from registry.model import Placement, Retirement, ShardMember
from registry.placement import feature_placement_ref
from registry.snapshot import Snapshot
from shard_server.feature_replication import Exported, catch_up_features
from shard_server.feature_service import FeatureNode
from shard_server.feature_store import FeatureShardStore, FeatureStore, column_family
from shard_server.storage import StoreMemory
from tests.feature_catalog import ACTIVITY, CATALOG, PROFILE, T0, row, user

PROFILE_S = CATALOG.schema(PROFILE)
ACTIVITY_S = CATALOG.schema(ACTIVITY)
ROWS = 20_000


def _disk(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*.sst"))


@pytest.fixture(params=["row cache", "rocksdb only"])
def shard(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[FeatureShardStore]:
    budget = StoreMemory().feature_cache_bytes if request.param == "row cache" else 0
    storage = FeatureShardStore(tmp_path / "shard", StoreMemory(feature_cache_bytes=budget))
    yield storage
    storage.close()


def _load(fs: FeatureStore) -> None:
    users = [user(f"u{i:06d}") for i in range(ROWS)]
    for start in range(0, ROWS, 5000):
        chunk = users[start : start + 5000]
        fs.put(PROFILE_S, [row(u, T0, age_bucket="x" * 40, account_days=7) for u in chunk])
        fs.put(ACTIVITY_S, [row(u, T0, ctr_7d=0.5) for u in chunk[:100]])


class _Cache:
    """The one thing `FeatureNode` reads of the registry here: a snapshot."""

    def __init__(self, snap: Snapshot) -> None:
        self.snapshot = snap


def _retired(*groups: VersionRef) -> Snapshot:
    return dataclasses.replace(
        Snapshot(),
        retired={
            ("FeatureGroup", g.name, g.version): Retirement(
                "FeatureGroup", g.name, g.version, "ana", "2026-11-28T00:00:00Z"
            )
            for g in groups
        },
    )


def test_dropping_gives_the_disk_and_the_cache_back_and_keeps_other_groups(
    shard: FeatureShardStore, tmp_path: Path
) -> None:
    fs = FeatureStore(shard)
    _load(fs)
    shard.flush_memtables()
    before_disk, before_cache = _disk(tmp_path), shard.row_cache.used_bytes
    node = FeatureNode(fs, _Cache(_retired(PROFILE)))  # type: ignore[arg-type]
    assert node.drop_retired(node.registry.snapshot) == [PROFILE]
    assert not fs.has_group(PROFILE) and fs.has_group(ACTIVITY)
    # Most of the disk was the profile group's: its SST files are gone.
    assert _disk(tmp_path) < before_disk / 4
    if before_cache:
        assert shard.row_cache.used_bytes < before_cache / 4
    assert not shard.row_cache.tracks(column_family(PROFILE))
    # The other group reads every row.
    got = fs.multi_get(ACTIVITY_S, [user(f"u{i:06d}") for i in range(100)])
    assert all(r is not None and r.values["ctr_7d"] == 0.5 for r in got)
    # Dropping again, or a group this shard never held, does nothing.
    assert node.drop_retired(node.registry.snapshot) == []


def test_nothing_writes_a_dropped_group_again(shard: FeatureShardStore, tmp_path: Path) -> None:
    fs = FeatureStore(shard)
    _load(fs)
    fs.drop_group(PROFILE)
    with pytest.raises(FailedPrecondition, match="retired"):
        fs.put(PROFILE_S, [row(user("late"), T0 + 1, age_bucket="y")])
    with pytest.raises(FailedPrecondition, match="retired"):
        fs.apply_raw(PROFILE, [(b"k", b"v")])
    # A write naming the family directly (one racing the drop) applies nothing.
    with pytest.raises(FailedPrecondition, match="nothing of this write was applied"):
        shard.write(
            puts=[(column_family(PROFILE), b"k", b"v"), (column_family(ACTIVITY), b"k", b"v")]
        )
    assert shard.multi_get(column_family(ACTIVITY), [b"k"]) == [None]
    shard.close()
    names = Rdict.list_cf(str(tmp_path / "shard"), Options(raw_mode=True))
    assert column_family(PROFILE) not in names and column_family(ACTIVITY) in names
    # After a restart the group is simply absent (not computed), the other intact.
    again = FeatureShardStore(tmp_path / "shard")
    try:
        fs2 = FeatureStore(again)
        assert not fs2.has_group(PROFILE)
        assert fs2.multi_get(ACTIVITY_S, [user("u000000")])[0] is not None
    finally:
        again.close()


def test_a_drop_racing_reads_writes_and_the_warm_up_loses_nothing_else(tmp_path: Path) -> None:
    """The start-up warm-up copies the families on disk while the drop
    runs, and writers keep writing the other group: no thread dies, the
    other group's rows are all there, the dropped one holds no memory."""
    path = tmp_path / "shard"
    first = FeatureShardStore(path)
    _load(FeatureStore(first))
    first.close()
    storage = FeatureShardStore(path)  # warm-up of both groups starts now
    fs = FeatureStore(storage)
    errors: list[BaseException] = []

    def write_activity() -> None:
        try:
            for i in range(200):
                fs.put(ACTIVITY_S, [row(user(f"w{i}"), T0, ctr_7d=float(i))])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    writer = threading.Thread(target=write_activity)
    writer.start()
    fs.drop_group(PROFILE)
    writer.join()
    assert storage.wait_for_row_cache(30)
    try:
        assert errors == []
        got = fs.multi_get(ACTIVITY_S, [user(f"w{i}") for i in range(200)])
        assert [r.values["ctr_7d"] for r in got if r is not None] == [float(i) for i in range(200)]
        assert not storage.row_cache.tracks(column_family(PROFILE))
        assert storage.row_cache.used_bytes < 200 * 1024  # activity only (~300 rows)
    finally:
        storage.close()


def test_an_erasure_racing_a_drop_erases_the_other_groups(
    shard: FeatureShardStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The eraser lists the families on disk, then reads each: one dropped
    in between is skipped (nothing of it is left), not a failed erasure."""
    from shard_server.erasure import ShardEraser

    fs = FeatureStore(shard)
    _load(fs)
    listed = shard.column_families()
    fs.drop_group(PROFILE)
    monkeypatch.setattr(shard, "column_families", lambda: listed)
    eraser = ShardEraser(None, shard, tmp_path, fs)  # type: ignore[arg-type]  # node: unused
    assert eraser.delete_feature_rows([user("u000001"), user("u000002")], T0) == 2
    assert fs.multi_get(ACTIVITY_S, [user("u000001"), user("u000003")])[0] is None
    assert fs.multi_get(ACTIVITY_S, [user("u000003")])[0] is not None


def test_catch_up_copies_live_groups_only(shard: FeatureShardStore) -> None:
    """A shard restored from its peers must not bring a retired group version
    back (its rows are being dropped everywhere): catch-up asks only for the
    live ones, markers first."""
    asked: list[VersionRef] = []

    def export(address: str, group: VersionRef, buckets: list[int]) -> Iterator[Exported]:
        asked.append(group)
        yield [], {b"marker": T0}

    placements = {
        feature_placement_ref(g.name, g.version): Placement(
            feature_placement_ref(g.name, g.version), (("shard-0", "shard-1"),)
        )
        for g in (PROFILE, ACTIVITY)
    }
    members = {s: ShardMember(s, f"{s}:1") for s in ("shard-0", "shard-1")}
    snap = dataclasses.replace(_retired(PROFILE), placements=placements, shards=members)
    fs = FeatureStore(shard)
    assert catch_up_features(fs, snap, "shard-0", export) == (0, {})
    assert asked == [ACTIVITY]
    assert dict(fs.markers.items()) == {b"marker": T0}
