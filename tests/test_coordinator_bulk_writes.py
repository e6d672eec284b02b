"""Records as columns through the coordinator, on plain data with in-memory
shards: the batch is checked with the per-record rules (the same verdicts),
placed in the same buckets, split over the same replica sets, and leaves the
shards in the state the same records written one by one leave — with
replicas, a quorum, centroid move-deletes and stale rows."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.model import Access, WriteRecord
from coordinator.moves import move_deletes, move_deletes_of
from coordinator.packed_records import checked_columns
from coordinator.quorum import column_replica_sets, replica_sets
from coordinator.records import checked_records
from coordinator.service import RetrievalEngine
from coordinator.shard import Shard
from core.domain import AttrType, AttrValue, EntityKey, Metric, VersionRef
from core.errors import InvalidArgument, Unavailable, VecshardError
from core.limits import DEFAULT_LIMITS
from core.record_columns import AttributeColumn, PackedStrings, RecordColumns
from registry.model import EmbeddingFamily, IndexVersion
from registry.placement import encode_centroids
from tests.inmemory import InMemoryShard
from tests.static_registry import FAMILY, INDEX, StaticRegistry, registry_for

T = TypeVar("T")
ME = Access("t", "test")
NOW = 1_800_000_000_000_000


def run(work: Callable[[], Awaitable[T]]) -> T:
    import asyncio

    async def scenario() -> T:
        return await work()

    return asyncio.run(scenario())


def cluster(
    buckets: list[tuple[str, ...]], registered: tuple[str, ...] | None = None, **kw: Any
) -> tuple[RetrievalEngine, dict[str, InMemoryShard], StaticRegistry]:
    ids = sorted({s for b in buckets for s in b})
    reg = registry_for(registered if registered is not None else ids, buckets, **kw)
    shards = {s: InMemoryShard(s, registry=reg) for s in ids}

    def factory(shard_id: str, address: str) -> Shard:
        return shards[shard_id]

    return RetrievalEngine(reg, factory), shards, reg


def columns(
    ids: list[str],
    vectors: np.ndarray,
    versions: list[int] | None = None,
    prices: list[float | None] | None = None,
) -> RecordColumns:
    n = len(ids)
    attrs = {"price": AttributeColumn.of(AttrType.FLOAT, prices)} if prices is not None else {}
    return RecordColumns(
        PackedStrings.of(ids),
        np.asarray(vectors, np.float32),
        np.array(versions or [0] * n, dtype=np.int64),
        np.zeros(n, dtype=np.int64),
        attrs,
    )


def as_records(batch: RecordColumns) -> list[WriteRecord]:
    return [
        WriteRecord(
            EntityKey(ME.tenant_id, batch.entity_type, eid),
            batch.vectors[i],
            int(batch.source_versions[i]),
            batch.model_version,
            int(batch.created_at[i]),
            batch.attributes_of(i),
        )
        for i, eid in enumerate(batch.entity_ids.tolist())
    ]


def state(shards: dict[str, InMemoryShard]) -> dict[str, dict[EntityKey, tuple[object, ...]]]:
    """Per shard, what it holds: record (vector bytes, version, attributes), bucket."""
    out: dict[str, dict[EntityKey, tuple[object, ...]]] = {}
    for sid, shard in shards.items():
        part = shard._partitions.get(INDEX)
        records = part.records if part else {}
        out[sid] = {
            k: (r.vector.tobytes(), r.source_version, r.attributes, b)
            for k, (r, b, _) in records.items()
        }
    return out


@pytest.mark.parametrize("placement", ["hash", "centroid"])
def test_columns_leave_the_shards_as_the_same_records_one_by_one(placement: str) -> None:
    rng = np.random.default_rng(5)
    centroids = encode_centroids(rng.normal(size=(4, 4)).astype(np.float32))
    layout: list[tuple[str, ...]] = [("a", "b"), ("b", "c"), ("c", "a"), ("a", "b")]
    kw: dict[str, Any] = {"placement": placement, "centroids": centroids, "write_quorum": 2}
    by_cols, shards_cols, _ = cluster(layout, **kw)
    by_recs, shards_recs, _ = cluster(layout, **kw)
    for round_ in range(3):  # later rounds move keys to other centroids and go stale
        # Keys repeat within a batch: all rows of one go where the winner goes.
        ids = [f"k{i}" for i in rng.integers(0, 40, size=60)]
        n = len(ids)
        vectors = rng.normal(size=(n, 4)).astype(np.float32)
        versions = rng.integers(1, 4 + round_, size=n).tolist()
        prices = [float(p) if p > 0 else None for p in rng.normal(size=n)]
        batch = columns(ids, vectors, versions, prices)
        got = run(functools.partial(by_cols.upsert_columns, ME, FAMILY, batch, 5.0))
        want = run(functools.partial(by_recs.upsert, ME, FAMILY, as_records(batch), 5.0))
        assert got == want
        assert state(shards_cols) == state(shards_recs)
    assert any(state(shards_cols).values())


def test_a_quorum_is_met_while_a_replica_fails_and_missed_without_it() -> None:
    engine, shards, _ = cluster([("a", "b", "c"), ("b", "c", "a")], write_quorum=2)
    shards["c"].error = Unavailable("shard c is down")
    batch = columns([f"e{i}" for i in range(12)], np.ones((12, 4)), [10] * 12)
    assert run(lambda: engine.upsert_columns(ME, FAMILY, batch, 5.0)) == (12, 0)
    shards["b"].error = Unavailable("shard b is down")
    with pytest.raises(Unavailable):
        run(lambda: engine.upsert_columns(ME, FAMILY, batch, 5.0))
    assert shards["a"].ops["upsert_columns"] == 4  # a holds both replica sets, twice


def test_unset_versions_take_the_coordinators_clock() -> None:
    engine, shards, _ = cluster([("a",)])
    run(lambda: engine.upsert_columns(ME, FAMILY, columns(["x"], np.ones((1, 4))), 5.0))
    ((record, _, _),) = shards["a"]._partitions[INDEX].records.values()
    assert record.source_version > NOW // 2 and record.created_at == record.source_version


@pytest.mark.parametrize("version", [-1, -(2**63)])
def test_a_negative_source_version_is_refused_before_any_shard(version: int) -> None:
    """Centroid placement fenced a moved key on every other shard just below
    its version: INT64_MIN wrapped to an INT64_MAX tombstone there, and the
    key could never be written to those shards again (found in review).
    Versions are positive; 0 stays "unset: the coordinator's clock"."""
    centroids = encode_centroids(np.array([[1, 0, 0, 0], [-1, 0, 0, 0]], np.float32))
    engine, shards, _ = cluster([("a",), ("b",)], placement="centroid", centroids=centroids)
    vec = np.array([[0.9, 0.1, 0, 0]], np.float32)
    want = rf"records\[0\] .*: source_version {version}; expected a positive int64"
    with pytest.raises(InvalidArgument, match=want):
        run(lambda: engine.upsert_columns(ME, FAMILY, columns(["k"], vec, [version]), 5.0))
    record = WriteRecord(EntityKey("t", "item", "k"), vec[0], version)
    with pytest.raises(InvalidArgument, match=want):
        run(lambda: engine.upsert(ME, FAMILY, [record], 5.0))
    with pytest.raises(InvalidArgument, match=f"delete: source_version {version}"):
        run(lambda: engine.delete(ME, FAMILY, [record.key], version, 5.0))
    assert all(not s.ops for s in shards.values())
    # The key is writable everywhere at an ordinary version.
    first = replace(record, source_version=1)
    assert run(lambda: engine.upsert(ME, FAMILY, [first], 5.0)) == (1, 0)
    moved = replace(record, vector=np.array([-0.9, 0.1, 0, 0], np.float32), source_version=2)
    assert run(lambda: engine.upsert(ME, FAMILY, [moved], 5.0)) == (1, 0)


# --- the checks: the per-record verdict, over arrays --------------------------


COSINE = EmbeddingFamily("f", "item", 3, Metric.COSINE)
IX = IndexVersion("ix", "v1", VersionRef("f", "v1"), attributes={"price": AttrType.FLOAT})


@st.composite
def maybe_bad_batches(draw: st.DrawFn) -> RecordColumns:
    n = draw(st.integers(1, 8))
    ids = [draw(st.sampled_from(["a", "b", "", "x" * 600, "é"])) for _ in range(n)]
    rows = [
        draw(st.sampled_from([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [1.0, float("nan"), 0.0]]))
        for _ in range(n)
    ]
    price: list[AttrValue | None] = [
        draw(st.one_of(st.none(), st.floats(-5, 5), st.just(float("inf")))) for _ in range(n)
    ]
    kind = draw(st.sampled_from([AttrType.FLOAT, AttrType.STRING]))
    values = price if kind is AttrType.FLOAT else [None if v is None else str(v) for v in price]
    return RecordColumns(
        PackedStrings.of(ids),
        np.array(rows, np.float32),
        np.array(
            draw(st.lists(st.sampled_from([0, 1, 9, -1, -(2**63)]), min_size=n, max_size=n)),
            np.int64,
        ),
        np.zeros(n, np.int64),
        {"price": AttributeColumn.of(kind, values)},
        entity_type=draw(st.sampled_from(["", "item", "user"])),
    )


def _outcome(check: Callable[[], object]) -> tuple[str, object]:
    try:
        return "ok", check()
    except VecshardError as exc:
        return type(exc).__name__, None


@settings(max_examples=300)
@given(maybe_bad_batches())
def test_a_batch_passes_exactly_when_every_record_would(batch: RecordColumns) -> None:
    """Limits are checked on columns by core.limits (its own tests hold them to
    the per-record checks); here: keys, vectors, declared attribute types."""
    records = [
        WriteRecord(
            EntityKey("", batch.entity_type, eid),
            batch.vectors[i],
            int(batch.source_versions[i]),
            attributes=batch.attributes_of(i),
        )  # fmt: skip
        for i, eid in enumerate(batch.entity_ids.tolist())
    ]
    limits = replace(DEFAULT_LIMITS, max_records_per_request=100)
    per_record = _outcome(lambda: checked_records(ME, COSINE, [IX], records, limits, NOW))

    def check_keys() -> None:
        for r in records:
            DEFAULT_LIMITS.check_key(r.key._replace(tenant_id="t", entity_type="item"), "r")

    per_record_limits = _outcome(check_keys)
    as_columns = _outcome(
        lambda: checked_columns(ME, COSINE, [IX], batch, DEFAULT_LIMITS, 100, NOW)
    )
    want = per_record if per_record[0] != "ok" else per_record_limits
    assert as_columns[0] == want[0]
    if as_columns[0] == "ok":
        checked = as_columns[1]
        assert isinstance(checked, RecordColumns) and checked.entity_type == "item"
        accepted = per_record[1]
        assert isinstance(accepted, list)
        assert checked.source_versions.tolist() == [r.source_version for r in accepted]


def test_a_bad_row_is_named_and_an_oversized_batch_refused() -> None:
    batch = columns(["a", "b", "c"], np.array([[1, 2, 3], [0, 0, 0], [1, 1, 1]], np.float32))
    with pytest.raises(InvalidArgument, match=r"records\[1\] \('t', 'item', 'b'\): zero vector"):
        checked_columns(ME, COSINE, [IX], batch, DEFAULT_LIMITS, 100, NOW)
    with pytest.raises(InvalidArgument, match="3 records in one request, expected at most 2"):
        checked_columns(ME, COSINE, [IX], batch, DEFAULT_LIMITS, 2, NOW)
    with pytest.raises(InvalidArgument, match="dimension 2 does not match, expected 3"):
        checked_columns(
            ME,
            COSINE,
            [IX],
            columns(["a"], np.array([[1, 2]], np.float32)),
            DEFAULT_LIMITS,
            100,
            NOW,
        )


# --- replica sets and move-deletes over arrays ----------------------------------


@settings(max_examples=100)
@given(
    st.lists(
        st.lists(st.sampled_from("abcd"), min_size=1, max_size=3, unique=True),
        min_size=1,
        max_size=6,
    ),
    st.data(),
)
def test_replica_sets_and_move_deletes_over_arrays_equal_the_per_record_ones(
    layout: list[list[str]], data: st.DataObject
) -> None:
    reg = registry_for(sorted({s for b in layout for s in b}), layout)
    snap = reg.snapshot
    index, placement = snap.indexes[INDEX], snap.placement(INDEX)
    n = data.draw(st.integers(0, 20))
    buckets = data.draw(st.lists(st.integers(0, len(layout) - 1), min_size=n, max_size=n))
    versions = data.draw(st.lists(st.integers(1, 3), min_size=n, max_size=n))
    records = [
        WriteRecord(EntityKey("t", "item", f"k{i}"), np.zeros(4, np.float32), v)
        for i, v in enumerate(versions)
    ]
    arr = np.array(buckets, dtype=np.int64)
    per_record = replica_sets(snap, index, placement, list(zip(buckets, range(n), strict=True)))
    over_arrays = column_replica_sets(snap, index, placement, arr)
    assert {g: (bs, rows) for g, (_, bs, rows) in per_record.items()} == {
        g: (bs, rows.tolist()) for g, (_, bs, rows) in over_arrays.items()
    }
    shard_ids = sorted({s for b in layout for s in b})
    assert move_deletes(placement, shard_ids, records, buckets) == move_deletes_of(
        placement, shard_ids, [r.key for r in records], arr, np.array(versions, dtype=np.int64)
    )


def test_a_write_placed_on_a_shard_with_fewer_registered_replicas_sends_nothing() -> None:
    engine, shards, _ = cluster([("a", "b")], registered=("a",))
    with pytest.raises(Unavailable, match=r"replica\(s\) \['b'\] not registered"):
        run(lambda: engine.upsert_columns(ME, FAMILY, columns(["x"], np.ones((1, 4))), 5.0))
    assert shards["a"].ops["upsert_columns"] == 0


@pytest.mark.parametrize("as_columns", [False, True])
def test_a_key_twice_in_one_batch_lives_once_under_centroid_placement(as_columns: bool) -> None:
    """Each row's vector picks its own centroid: two rows of a key landed on
    two shards and neither move-delete (a version below) removed the other —
    the key lived twice (found in review). Every row of a key now goes where
    the winner goes: the highest version, the last row on a tie (both rows
    of `k` take the coordinator's clock)."""
    centroids = encode_centroids(np.array([[1, 0, 0, 0], [-1, 0, 0, 0]], np.float32))
    engine, shards, _ = cluster([("a",), ("b",)], placement="centroid", centroids=centroids)
    near_a, near_b = [0.9, 0.1, 0.0, 0.0], [-0.9, 0.1, 0.0, 0.0]
    batch = columns(["k", "k", "j", "j"], np.array([near_a, near_b, near_b, near_a]), [0, 0, 5, 3])
    if as_columns:
        run(functools.partial(engine.upsert_columns, ME, FAMILY, batch, 5.0))
    else:
        run(functools.partial(engine.upsert, ME, FAMILY, as_records(batch), 5.0))
    stored = {sid: {k.entity_id: v for k, v in held.items()} for sid, held in state(shards).items()}
    assert set(stored["a"]) == set() and set(stored["b"]) == {"k", "j"}
    assert stored["b"]["k"][0] == stored["b"]["j"][0] == np.array(near_b, np.float32).tobytes()
    assert stored["b"]["j"][1] == 5
