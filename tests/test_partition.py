"""Write semantics on a real RocksDB: replace, stale versions, idempotent
retries, tombstones that survive reopening, and all-or-nothing validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.domain import AttrType, AttrValue, EntityKey, Metric, VersionRef
from core.errors import InvalidArgument, ResourceExhausted
from core.recall import MAX_RECALL_SAMPLE
from registry.model import EmbeddingFamily, IndexVersion
from shard_server import metrics
from shard_server.model import LookupStatus, Query
from shard_server.partition import IndexPartition
from shard_server.recall_check import check_recall
from shard_server.records import Record
from shard_server.storage import ShardStore

FAMILY = EmbeddingFamily("f", "item", 4, Metric.COSINE)
INDEX = IndexVersion(
    "ix", "v1", VersionRef("f", "v1"), num_buckets=4, attributes={"c": AttrType.STRING}
)


def rec(
    eid: str, vec: list[float], sv: int = 1, tenant: str = "t", bucket: int = 0, **attrs: AttrValue
) -> Record:
    return Record(
        EntityKey(tenant, "item", eid),
        np.array(vec, np.float32),
        sv,
        attributes=dict(attrs),
        bucket=bucket,
    )


def open_partition(path: Path) -> tuple[ShardStore, IndexPartition]:
    store = ShardStore(path / "rocksdb")
    part = IndexPartition(INDEX, FAMILY, store, path / "segments")
    part.load()
    return store, part


def ids(part: IndexPartition, vec: list[float], k: int = 10, tenant: str = "t") -> list[str]:
    (res,) = part.search([Query(np.array(vec, np.float32), k, tenant)])
    return [h.key.entity_id for h in res.hits]


def test_versions_retries_and_tombstones_survive_reopen(tmp_path: Path) -> None:
    store, part = open_partition(tmp_path)
    assert part.upsert([rec("a", [1, 0, 0, 0], sv=5), rec("b", [0, 1, 0, 0], sv=5)]).written == 2
    # older version ignored and counted; same version replaces (idempotent retry)
    r = part.upsert([rec("a", [0, 0, 1, 0], sv=4)])
    assert (r.written, r.ignored_stale) == (0, 1)
    assert part.upsert([rec("a", [1, 0, 0, 0], sv=5)]).written == 1
    assert ids(part, [1, 0, 0, 0], k=1) == ["a"]
    # a delete older than the record removes nothing (issue 14, defect 2) ...
    assert part.delete([EntityKey("t", "item", "b")], source_version=4).written == 0
    assert "b" in ids(part, [0, 1, 0, 0])
    # ... one of its version wins, and a retried old upsert cannot bring it back
    assert part.delete([EntityKey("t", "item", "b")], source_version=5).written == 1
    assert part.upsert([rec("b", [0, 1, 0, 0], sv=5)]).ignored_stale == 1
    assert "b" not in ids(part, [0, 1, 0, 0])
    store.close()

    store, part = open_partition(tmp_path)
    assert ids(part, [0, 1, 0, 0]) == ["a"]
    (lk_a, lk_b, lk_c) = part.get([EntityKey("t", "item", x) for x in "abc"])
    assert (lk_a.status, lk_b.status, lk_c.status) == (
        LookupStatus.FOUND,
        LookupStatus.DELETED,
        LookupStatus.MISSING,
    )
    # cosine family: stored normalized, with the original norm kept
    assert lk_a.record is not None and lk_a.record.norm == pytest.approx(1.0)
    # a newer write after the delete is a real re-insert
    assert part.upsert([rec("b", [0, 2, 0, 0], sv=6)]).written == 1
    assert sorted(ids(part, [0, 1, 0, 0])) == ["a", "b"]
    store.close()


def test_within_a_batch_the_newest_version_wins(tmp_path: Path) -> None:
    store, part = open_partition(tmp_path)
    part.upsert([rec("a", [0, 1, 0, 0], sv=9), rec("a", [1, 0, 0, 0], sv=3)])
    (lk,) = part.get([EntityKey("t", "item", "a")])
    assert lk.record is not None and lk.record.source_version == 9
    store.close()


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (rec("bad", [1, 0, 0]), "dimension 3 does not match, expected 4"),
        (rec("bad", [1, float("nan"), 0, 0]), "NaN or Inf"),
        (rec("bad", [1, float("inf"), 0, 0]), "NaN or Inf"),
        (rec("bad", [0, 0, 0, 0]), "zero vector"),
        (rec("bad", [1, 0, 0, 0], c=3), "attribute 'c'"),
        (rec("bad", [1, 0, 0, 0], bucket=9), "bucket 9 out of range"),
    ],
)
def test_a_bad_record_rejects_the_whole_batch_naming_its_key(
    tmp_path: Path, bad: Record, message: str
) -> None:
    store, part = open_partition(tmp_path)
    with pytest.raises(InvalidArgument, match=message) as err:
        part.upsert([rec("good", [1, 0, 0, 0]), bad])
    assert "'bad'" in str(err.value)
    assert [lk.status for lk in part.get([EntityKey("t", "item", "good")])] == [
        LookupStatus.MISSING
    ]
    store.close()


def test_tenants_never_mix(tmp_path: Path) -> None:
    store, part = open_partition(tmp_path)
    part.upsert([rec("a", [1, 0, 0, 0], tenant="t1"), rec("a", [1, 0, 0, 0], tenant="t2")])
    (res,) = part.search([Query(np.array([1, 0, 0, 0], np.float32), 10, "t1")])
    assert [h.key for h in res.hits] == [EntityKey("t1", "item", "a")]
    assert ids(part, [1, 0, 0, 0], tenant="nobody") == []
    store.close()


# --- the version rules as a property ------------------------------------------

KEYS = [EntityKey("t", "item", x) for x in "xyz"]
Op = tuple[str, int, int]  # ("upsert" | "delete", key index, source_version)


def expected_state(ops: list[Op]) -> dict[int, tuple[str, int]]:
    """What the rules define, whatever the order: per key, the newest upsert
    is live unless a delete of its version or newer exists; else deleted if
    any delete was seen; else missing. Upsert versions are distinct here,
    so the order of arrival cannot matter."""
    out: dict[int, tuple[str, int]] = {}
    for k in range(len(KEYS)):
        ups = [v for kind, key, v in ops if key == k and kind == "upsert"]
        dels = [v for kind, key, v in ops if key == k and kind == "delete"]
        best = max(ups, default=None)
        if best is not None and (not dels or best > max(dels)):
            out[k] = ("found", best)
        elif dels:
            out[k] = ("deleted", 0)
        else:
            out[k] = ("missing", 0)
    return out


@st.composite
def interleavings(draw: st.DrawFn) -> list[Op]:
    n = draw(st.integers(1, 25))
    versions = draw(st.lists(st.integers(1, 60), min_size=n, max_size=n, unique=True))
    ops: list[Op] = []
    for v in versions:
        kind = draw(st.sampled_from(["upsert", "upsert", "delete"]))
        # deletes may share a version with an upsert: the delete must win
        version = draw(st.sampled_from([v, *[o[2] for o in ops]])) if kind == "delete" else v
        ops.append((kind, draw(st.integers(0, len(KEYS) - 1)), version))
    return ops


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=interleavings())
def test_any_interleaving_ends_in_the_state_the_version_rules_define(
    tmp_path_factory: pytest.TempPathFactory, ops: list[Op]
) -> None:
    store, part = open_partition(tmp_path_factory.mktemp("prop"))
    try:
        for kind, k, version in ops:
            if kind == "upsert":
                part.upsert([rec(KEYS[k].entity_id, [1, k, version, 1], sv=version)])
            else:
                part.delete([KEYS[k]], source_version=version)
        want = expected_state(ops)
        got = part.get(KEYS)
        for k, lk in enumerate(got):
            status, version = want[k]
            assert lk.status.value == status, (k, ops)
            if status == "found":
                assert lk.record is not None and lk.record.source_version == version
        live = {
            h.key for h in part.search([Query(np.array([1, 1, 1, 1], np.float32), 10, "t")])[0].hits
        }
        assert live == {KEYS[k] for k, (s, _) in want.items() if s == "found"}
    finally:
        store.close()


def test_a_recall_check_samples_at_most_its_bound(tmp_path: Path) -> None:
    """Each sampled vector is searched exactly over the whole shard: a sample
    of 2**32 (a typo) held a shard's CPU for as long as it had rows squared."""
    store, part = open_partition(tmp_path)
    part.upsert([rec(f"e{i}", [1.0, float(i), 0.0, 0.0]) for i in range(5)])
    assert check_recall(part, 3, MAX_RECALL_SAMPLE, seed=1).queries == 5
    for sample in (MAX_RECALL_SAMPLE + 1, 2**32 - 1, 0):
        with pytest.raises(InvalidArgument, match=f"sample_per_shard={sample}: expected 1..10000"):
            check_recall(part, 3, sample, seed=1)
    store.close()


class _FullDisk:
    """Stands in for the Rdict of a database whose disk filled: every write
    fails as RocksDB's does (its background error), closing too."""

    def __init__(self, db: Any) -> None:
        self.db = db

    def write(self, batch: Any, options: Any) -> None:
        raise Exception(  # noqa: TRY002 - rocksdict raises exactly this
            "IO error: No space left on device: While appending to file: "
            "rocksdb/000008.log: No space left on device"
        )

    def close(self) -> None:
        self.db.close()
        raise Exception("IO error: Writer has previous error.")  # noqa: TRY002


def test_a_full_disk_refuses_writes_with_resource_exhausted_and_loses_nothing(
    tmp_path: Path,
) -> None:
    """Found filling a shard's disk (a tmpfs) through a real cluster: writes
    failed with INTERNAL and a RocksDB message, and the shard's stop failed
    on closing the database; every acknowledged row survived the restart."""
    store, part = open_partition(tmp_path)
    part.upsert([rec("kept", [1.0, 0.0, 0.0, 0.0])])
    store._db = _FullDisk(store._db)  # type: ignore[assignment]
    before = metrics.STORAGE_WRITE_FAILURES.labels("disk_full")._value.get()
    with pytest.raises(ResourceExhausted, match=r"disk is full \(.*rocksdb\): nothing of this"):
        part.upsert([rec("lost", [0.0, 1.0, 0.0, 0.0])])
    assert metrics.STORAGE_WRITE_FAILURES.labels("disk_full")._value.get() == before + 1
    assert ids(part, [0.0, 1.0, 0.0, 0.0]) == ["kept"]  # reads go on; the refused row is nowhere
    store.close()  # logged, not raised
    store, part = open_partition(tmp_path)
    assert ids(part, [0.0, 1.0, 0.0, 0.0]) == ["kept"]
    store.close()
