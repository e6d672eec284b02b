"""Erasure markers for feature rows on a real RocksDB (`FeatureStore.erase`):
an erased subject's rows leave every group, and its history written again —
a producer replaying old events, a replica's copy — is refused, while new
activity after the erasure is accepted; the markers survive a restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from registry.features import PutAck
from shard_server.feature_store import FeatureShardStore, FeatureStore, entity_key
from shard_server.storage import StoreMemory
from tests.feature_catalog import ACTIVITY, CATALOG, PROFILE, T0, row, user

PROFILE_S = CATALOG.schema(PROFILE)
ACTIVITY_S = CATALOG.schema(ACTIVITY)
GONE, KEPT = user("gone"), user("kept")
ERASED_AT = T0 + 100


def refused() -> float:
    return REGISTRY.get_sample_value("vecshard_shard_feature_rows_erased_refused_total") or 0.0


@pytest.fixture(params=["row cache", "rocksdb only"])
def store(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[FeatureStore]:
    budget = StoreMemory().feature_cache_bytes if request.param == "row cache" else 0
    storage = FeatureShardStore(tmp_path / "shard", StoreMemory(feature_cache_bytes=budget))
    fs = FeatureStore(storage)
    fs.put(PROFILE_S, [row(GONE, T0, age_bucket="a"), row(KEPT, T0, age_bucket="b")])
    fs.put(ACTIVITY_S, [row(GONE, T0, ctr_7d=0.5), row(KEPT, T0, ctr_7d=0.25)])
    yield fs
    storage.close()


def values(fs: FeatureStore) -> list[object]:
    got = fs.multi_get(PROFILE_S, [GONE, KEPT]) + fs.multi_get(ACTIVITY_S, [GONE, KEPT])
    return [None if r is None else next(iter(r.values.values())) for r in got]


def test_an_erased_subject_leaves_every_group_and_its_history_stays_out(
    store: FeatureStore,
) -> None:
    assert store.erase([entity_key(GONE)], ERASED_AT) == 2
    assert values(store) == [None, "b", None, 0.25]
    before = refused()
    # A replay of its history (stamped before the erasure) is refused, as
    # written rows and as a replica's copies; the others' rows are not.
    ack = store.put(
        PROFILE_S, [row(GONE, T0 + 50, age_bucket="again"), row(KEPT, T0 + 1, age_bucket="c")]
    )
    assert ack == PutAck(1, 1)
    raw = dict(next(iter(store.iter_raw(PROFILE))))  # rows as a peer copies them
    again = [(entity_key(GONE), raw[entity_key(KEPT)])]
    assert store.apply_raw(PROFILE, again) == 0
    assert refused() == before + 2
    assert values(store) == [None, "c", None, 0.25]
    # New activity after the erasure is accepted.
    assert store.put(PROFILE_S, [row(GONE, ERASED_AT + 1, age_bucket="new")]) == PutAck(1, 0)
    assert values(store)[0] == "new"


def test_markers_survive_a_restart_and_a_later_erasure_moves_them(tmp_path: Path) -> None:
    storage = FeatureShardStore(tmp_path / "shard")
    FeatureStore(storage).erase([entity_key(GONE)], ERASED_AT)
    storage.close()
    storage = FeatureShardStore(tmp_path / "shard")
    try:
        fs = FeatureStore(storage)
        assert fs.put(PROFILE_S, [row(GONE, ERASED_AT, age_bucket="x")]) == PutAck(0, 1)
        assert fs.put(PROFILE_S, [row(GONE, ERASED_AT + 5, age_bucket="y")]) == PutAck(1, 0)
        # Erased again later: the later time holds; an earlier one never lowers it.
        fs.erase([entity_key(GONE)], ERASED_AT + 10)
        fs.erase([entity_key(GONE)], ERASED_AT)
        assert fs.multi_get(PROFILE_S, [GONE]) == [None]
        assert fs.put(PROFILE_S, [row(GONE, ERASED_AT + 10, age_bucket="z")]) == PutAck(0, 1)
    finally:
        storage.close()


def test_a_replica_that_lost_its_disk_takes_its_peers_markers(
    store: FeatureStore, tmp_path: Path
) -> None:
    """Catch-up copies markers with rows (`apply_markers`): a fresh replica
    then refuses the erased subject's history its peer refuses; a marker only
    moves forward, and copying it again changes nothing."""
    store.erase([entity_key(GONE)], ERASED_AT)
    fresh_storage = FeatureShardStore(tmp_path / "fresh")
    fresh = FeatureStore(fresh_storage)
    marks = dict(store.markers.items())
    assert marks == {entity_key(GONE): ERASED_AT}
    assert fresh.apply_markers(marks) == 1
    assert fresh.apply_markers(marks) == 0
    assert fresh.apply_markers({entity_key(GONE): ERASED_AT - 1}) == 0  # older: kept
    replay = [row(GONE, T0 + 50, age_bucket="again"), row(KEPT, T0, age_bucket="b")]
    assert fresh.put(PROFILE_S, replay) == PutAck(1, 1)
    assert fresh.put(PROFILE_S, [row(GONE, ERASED_AT + 1, age_bucket="new")]) == PutAck(1, 0)
    fresh_storage.close()
    # The markers survive a restart.
    again = FeatureShardStore(tmp_path / "fresh")
    assert dict(FeatureStore(again).markers.items()) == marks
    again.close()


def test_a_replica_that_missed_the_erasure_drops_the_history_with_the_marker(
    store: FeatureStore, tmp_path: Path
) -> None:
    """A replica down (or not yet one) when the erasure was sent still holds
    the subject's rows; the peer's marker it copies (catch-up, anti-entropy)
    takes them out of every group — those stamped at or before the marker,
    not later activity — and the replicas then agree row for row."""
    storage = FeatureShardStore(tmp_path / "missed")
    missed = FeatureStore(storage)
    missed.put(PROFILE_S, [row(GONE, T0, age_bucket="a"), row(KEPT, T0, age_bucket="b")])
    missed.put(ACTIVITY_S, [row(GONE, ERASED_AT + 5, ctr_7d=0.75), row(KEPT, T0, ctr_7d=0.25)])
    store.erase([entity_key(GONE)], ERASED_AT)
    store.put(ACTIVITY_S, [row(GONE, ERASED_AT + 5, ctr_7d=0.75)])  # activity after it
    assert missed.apply_markers(dict(store.markers.items())) == 1
    assert values(missed) == [None, "b", 0.75, 0.25]
    for group in (PROFILE, ACTIVITY):  # each pulls the other's rows: nothing moves
        for part in store.iter_raw(group):
            assert missed.apply_raw(group, part) == 0
        for part in missed.iter_raw(group):
            assert store.apply_raw(group, part) == 0
        assert list(store.iter_raw(group)) == list(missed.iter_raw(group))
    storage.close()


def test_a_row_stamped_ahead_of_the_erasure_stays_erased(tmp_path: Path) -> None:
    """A producer's clock an hour ahead of the coordinator's: the erasure
    deletes its row, and the marker covers that row's stamp, so a replay of
    the same row (or a lagging replica's copy of it) is refused — and real
    activity after it is accepted (found in review)."""
    storage = FeatureShardStore(tmp_path / "ahead")
    fs = FeatureStore(storage)
    ahead = row(GONE, T0 + 3600 * 10**6, age_bucket="secret")
    fs.put(PROFILE_S, [ahead])
    copy = list(next(iter(fs.iter_raw(PROFILE))))  # what a lagging peer exports
    assert fs.erase([entity_key(GONE)], ERASED_AT) == 1
    assert fs.put(PROFILE_S, [ahead]) == PutAck(0, 1)
    assert fs.apply_raw(PROFILE, copy) == 0
    assert fs.multi_get(PROFILE_S, [GONE]) == [None]
    later = row(GONE, T0 + 3600 * 10**6 + 1, age_bucket="new")
    assert fs.put(PROFILE_S, [later]) == PutAck(1, 0)
    storage.close()
