"""The `Shard` contract (coordinator/shard.py), one suite for every
implementation: the in-memory shard the coordinator's unit tests use and a
real `RemoteShard` talking to a real shard server process. Every test runs
against both, unchanged; the registry is the same real etcd for both.

Each test gets its own embedding family, index version and feature groups,
so the module's one shard process serves every test without interference.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pytest

from cli.local_cluster import ADMIN, LocalCluster
from coordinator import vouching
from coordinator.model import GroupFetch, ShardAnswer, ShardIndex, ShardQuery, WriteRecord
from coordinator.remote_shard import RemoteShard
from coordinator.shard import Shard
from core.bounds import score_upper_bound
from core.domain import AttrType, AttrValue, EntityKey, Metric, VersionRef
from core.embedding_columns import EmbeddingColumns
from core.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from core.filters import And, Eq, Filter, In, Not, Range, matches
from core.ordering import order_key
from core.record_columns import AttributeColumn, PackedStrings, RecordColumns
from core.scoring import canonical_scores, prepare_query
from core.vouch import Vouch
from registry.admin import RegistryAdmin
from registry.feature_batches import RowBatch
from registry.registry import Registry
from registry.watcher import SnapshotCache
from tests.conftest import ClusterFactory
from tests.inmemory import InMemoryShard

pytestmark = pytest.mark.integration

SHARD = "shard-0"
PURPOSE = "test"
DIM = 4
BUCKETS = 4
TIMEOUT = 10.0
S = 1_000_000
T0 = 1_800_000_000 * S


@pytest.fixture(scope="module")
def cluster(make_module_cluster: ClusterFactory) -> LocalCluster:
    return make_module_cluster(num_shards=1)


@pytest.fixture(scope="module")
def registry(cluster: LocalCluster) -> Iterator[SnapshotCache]:
    store = cluster.etcd_store()
    cache = SnapshotCache(Registry(store, cluster.etcd_prefix))
    # The shard serves only registered tenants (it checks every vouch).
    RegistryAdmin(cache.registry).apply(
        [{"kind": "Tenant", "spec": {"tenant_id": t}} for t in ("t", "u", "nobody")]
    )
    cache.refresh()
    yield cache
    store.close()


class Vouching:
    """What a coordinator adds to each shard call (coordinator.vouching): the
    caller of every query, and of every other call, per tenant. Calls that
    mix tenants go as one call per tenant, as a coordinator's would (a
    request is for one tenant); the in-memory shard gets the same calls."""

    def __init__(self, inner: Shard) -> None:
        self.inner = inner
        self.shard_id, self.address = inner.shard_id, inner.address

    @staticmethod
    def _as(tenant: str) -> None:
        vouching.CALLER.set(Vouch(ADMIN, PURPOSE, tenant))

    @classmethod
    def _one_tenant(cls, keys: Sequence[EntityKey]) -> None:
        tenants = {k.tenant_id for k in keys}
        assert len(tenants) <= 1, "a coordinator sends one tenant's keys per call"
        cls._as(next(iter(tenants), "t"))

    async def search(
        self, index: VersionRef, queries: Sequence[ShardQuery], timeout: float
    ) -> list[ShardAnswer]:
        vouched = [replace(q, principal=ADMIN, purpose=PURPOSE) for q in queries]
        return await self.inner.search(index, vouched, timeout)

    async def upsert(
        self, index: VersionRef, records: Sequence[tuple[WriteRecord, int]], timeout: float
    ) -> tuple[int, int]:
        written = ignored = 0
        for tenant in dict.fromkeys(r.key.tenant_id for r, _ in records):
            self._as(tenant)
            w, i = await self.inner.upsert(
                index, [(r, b) for r, b in records if r.key.tenant_id == tenant], timeout
            )
            written, ignored = written + w, ignored + i
        return written, ignored

    async def upsert_columns(
        self,
        index: VersionRef,
        tenant_id: str,
        records: RecordColumns,
        buckets: np.ndarray,
        timeout: float,
    ) -> tuple[int, int]:
        self._as(tenant_id)
        return await self.inner.upsert_columns(index, tenant_id, records, buckets, timeout)

    async def delete(
        self, index: VersionRef, keys: Sequence[EntityKey], source_version: int, timeout: float
    ) -> int:
        deleted = 0
        for tenant in dict.fromkeys(k.tenant_id for k in keys):
            self._as(tenant)
            mine = [k for k in keys if k.tenant_id == tenant]
            deleted += await self.inner.delete(index, mine, source_version, timeout)
        return deleted

    async def batch_get(
        self,
        index: VersionRef,
        keys: Sequence[EntityKey],
        include_vectors: bool,
        timeout: float,
        include_attributes: bool = False,
    ) -> EmbeddingColumns:
        self._one_tenant(keys)
        return await self.inner.batch_get(index, keys, include_vectors, timeout, include_attributes)

    async def describe(self, timeout: float = 5.0) -> list[ShardIndex]:
        return await self.inner.describe(timeout)

    async def get_feature_columns(
        self,
        tenant_id: str,
        fetches: Sequence[GroupFetch],
        request_time: int,
        personalized: bool,
        timeout: float,
    ) -> list[object]:
        self._as(tenant_id)
        return await self.inner.get_feature_columns(
            tenant_id, fetches, request_time, personalized, timeout
        )

    async def put_features(
        self, group: VersionRef, batch: RowBatch, timeout: float
    ) -> tuple[int, int]:
        self._one_tenant(batch.entities)
        return await self.inner.put_features(group, batch, timeout)

    async def close(self) -> None:
        await self.inner.close()


@pytest.fixture(params=["in-memory", "remote"])
def make_shard(request: pytest.FixtureRequest, registry: SnapshotCache) -> Callable[[], Shard]:
    """Builds the shard inside the test's event loop (a gRPC channel binds to it)."""
    if request.param == "in-memory":
        return lambda: InMemoryShard(SHARD, registry=registry)
    address = registry.snapshot.shards[SHARD].address
    cluster: LocalCluster = request.getfixturevalue("cluster")
    creds = cluster.peer_credentials()
    return lambda: Vouching(RemoteShard(SHARD, address, credentials=creds))


@dataclass(frozen=True)
class Names:
    tag: str  # suffix of this test's feature names
    index: VersionRef
    metric: Metric
    group: VersionRef  # user features: public `label`, `ctr` with a 1 h SLA
    private: VersionRef  # user features, behavioural: `clicks`
    unwritten: VersionRef  # item features: never written


@pytest.fixture
def names(registry: SnapshotCache) -> Names:
    """A fresh family, index version and feature groups for this test."""
    tag = uuid.uuid4().hex[:10]
    fam, ix, g, p, u = (f"{x}{tag}" for x in ("f", "ix", "g", "p", "u"))
    defs: list[tuple[str, str, str, str, dict[str, object]]] = [
        ("label", "user", "string", "public", {"default_value": "none"}),
        ("ctr", "user", "float64", "public", {"freshness_sla_seconds": 3600, "default_value": 0.0}),
        ("clicks", "user", "int64", "behavioural", {"default_value": 0}),
        ("quality", "item", "float64", "public", {"default_value": 0.5}),
    ]
    docs = [
        {
            "kind": "EmbeddingFamily",
            "spec": {"name": fam, "entity_type": "item", "dimension": DIM, "metric": "cosine"},
        },
        {"kind": "EmbeddingVersion", "spec": {"name": fam, "version": "v1"}},
        {
            "kind": "IndexVersion",
            "spec": {
                "name": ix,
                "version": "v1",
                "embedding": {"name": fam, "version": "v1"},
                "kind": "flat",
                "num_buckets": BUCKETS,
                "attributes": {"genre": "string", "year": "int", "tags": "string_list"},
            },
        },
        *(
            {
                "kind": "FeatureDefinition",
                "spec": {"name": f"{n}{tag}", "version": "v1", "entity_type": et, "dtype": dt,
                         "privacy_class": pc, "owner": "tests", **extra},
            }
            for n, et, dt, pc, extra in defs
        ),
        *(
            {
                "kind": "FeatureGroup",
                "spec": {"name": name, "version": "v1", "entity_type": et,
                         "features": [{"name": f"{f}{tag}", "version": "v1"} for f in feats]},
            }
            for name, et, feats in (
                (g, "user", ["label", "ctr"]), (p, "user", ["clicks"]), (u, "item", ["quality"])
            )
        ),
    ]  # fmt: skip
    RegistryAdmin(registry.registry).apply(docs)
    registry.refresh()
    v1 = "v1"
    return Names(
        tag,
        VersionRef(ix, v1),
        Metric.COSINE,
        VersionRef(g, v1),
        VersionRef(p, v1),
        VersionRef(u, v1),
    )


def run(make_shard: Callable[[], Shard], body: Callable[[Shard], Awaitable[None]]) -> None:
    async def scenario() -> None:
        shard = make_shard()
        try:
            await body(shard)
        finally:
            await shard.close()

    asyncio.run(scenario())


def key(eid: str, tenant: str = "t") -> EntityKey:
    return EntityKey(tenant, "item", eid)


def record(
    eid: str, vec: object, version: int = 1, tenant: str = "t", **attrs: AttrValue
) -> WriteRecord:
    return WriteRecord(
        key(eid, tenant),
        np.asarray(vec, dtype=np.float32),
        source_version=version,
        model_version="m1",
        created_at=1_000 + version,
        attributes=dict(attrs),
    )


def bucket_of(r: WriteRecord) -> int:
    return sum(map(ord, r.key.entity_id)) % BUCKETS


def catalogue(n: int, seed: int = 0) -> list[WriteRecord]:
    """Items of tenant t on a small integer grid (so scores tie), with attributes."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        v = rng.integers(-2, 3, size=DIM).astype(np.float32)
        v[i % DIM] = 3.0  # never the zero vector (cosine)
        out.append(
            record(
                f"e{i:02d}", v, genre=["rock", "jazz", "pop"][i % 3], year=1990 + i,
                tags=("a", "b") if i % 2 else ("c",),
            )
        )  # fmt: skip
    out.append(record("e99", out[0].vector, genre="rock", year=1990, tags=("c",)))  # a tie with e00
    return out


def expected(
    records: list[WriteRecord], q: np.ndarray, k: int, tenant: str = "t", flt: Filter | None = None
) -> list[tuple[EntityKey, float]]:
    """Brute force, by the canonical scoring and the global order."""
    pool = [r for r in records if r.key.tenant_id == tenant and matches(flt, r.attributes)]
    if not pool:
        return []
    stored = np.stack([prepare_query(r.vector, Metric.COSINE, True) for r in pool])
    query = prepare_query(np.asarray(q, dtype=np.float32), Metric.COSINE, True)
    scores = canonical_scores(Metric.COSINE, query, stored)
    ranked = sorted(
        zip(scores, pool, strict=True), key=lambda sr: order_key(float(sr[0]), sr[1].key)
    )
    return [(r.key, float(s)) for s, r in ranked[:k]]


Write = Callable[..., Awaitable[tuple[int, int]]]
_KINDS = {
    str: AttrType.STRING,
    int: AttrType.INT,
    float: AttrType.FLOAT,
    tuple: AttrType.STRING_LIST,
}


def as_columns(records: list[WriteRecord]) -> RecordColumns:
    """Records of one tenant (and one model version) as columns."""
    kinds = {n: _KINDS[type(v)] for r in records for n, v in r.attributes.items()}
    return RecordColumns(
        PackedStrings.of([r.key.entity_id for r in records]),
        np.stack([r.vector for r in records]),
        np.array([r.source_version for r in records], dtype=np.int64),
        np.array([r.created_at for r in records], dtype=np.int64),
        {
            n: AttributeColumn.of(k, [r.attributes.get(n) for r in records])
            for n, k in kinds.items()
        },
        records[0].model_version,
        "item",
    )


@pytest.fixture(params=["records", "columns"])
def write(request: pytest.FixtureRequest) -> Write:
    """Writes through `upsert` (a record each) or `upsert_columns` (rows of a
    tenant as columns): every rule of the contract holds for both."""

    async def by_records(
        shard: Shard, index: VersionRef, records: list[WriteRecord], bucket: int | None = None
    ) -> tuple[int, int]:
        pairs = [(r, bucket_of(r) if bucket is None else bucket) for r in records]
        return await shard.upsert(index, pairs, TIMEOUT)

    async def by_columns(
        shard: Shard, index: VersionRef, records: list[WriteRecord], bucket: int | None = None
    ) -> tuple[int, int]:
        written = ignored = 0
        for tenant in dict.fromkeys(r.key.tenant_id for r in records):
            mine = [r for r in records if r.key.tenant_id == tenant]
            buckets = [bucket_of(r) if bucket is None else bucket for r in mine]
            w, i = await shard.upsert_columns(
                index, tenant, as_columns(mine), np.array(buckets), TIMEOUT
            )
            written, ignored = written + w, ignored + i
        return written, ignored

    return by_records if request.param == "records" else by_columns


async def search(
    shard: Shard, index: VersionRef, q: object, k: int, tenant: str = "t", flt: Filter | None = None
) -> list[tuple[EntityKey, float]]:
    query = ShardQuery(np.asarray(q, dtype=np.float32), k, tenant, flt)
    (answer,) = await shard.search(index, [query], TIMEOUT)
    assert [order_key(h.score, h.key) for h in answer.hits] == sorted(
        order_key(h.score, h.key) for h in answer.hits
    )
    return [(h.key, h.score) for h in answer.hits]


async def statuses(shard: Shard, index: VersionRef, eids: list[str]) -> list[str]:
    found = await shard.batch_get(index, [key(e) for e in eids], False, TIMEOUT)
    return found.statuses()


def test_upsert_then_search_gives_every_match_in_the_global_order(
    make_shard: Callable[[], Shard], names: Names, write: Write
) -> None:
    data = catalogue(16)
    others = [record(f"o{i}", [1.0, 0.0, 0.0, float(i)], tenant="u") for i in range(4)]

    async def body(shard: Shard) -> None:
        assert await write(shard, names.index, data + others) == (len(data) + 4, 0)
        rng = np.random.default_rng(1)
        for q in [data[0].vector, *rng.normal(size=(4, DIM))]:
            for k in (1, 5, len(data), 50):
                assert await search(shard, names.index, q, k) == expected(data, q, k)
        (answer,) = await shard.search(names.index, [ShardQuery(data[3].vector, 3, "t")], TIMEOUT)
        assert answer.candidates == len(data) and not answer.approximate
        assert {h.bucket for h in answer.hits} <= set(range(BUCKETS))
        assert all(
            h.bucket == bucket_of(next(r for r in data if r.key == h.key)) for h in answer.hits
        )
        assert await search(shard, names.index, data[0].vector, 10, tenant="nobody") == []

    run(make_shard, body)


def test_a_stale_upsert_is_ignored_and_counted(
    make_shard: Callable[[], Shard], names: Names, write: Write
) -> None:
    async def body(shard: Shard) -> None:
        assert await write(shard, names.index, [record("a", [1, 0, 0, 0], 5)]) == (1, 0)
        assert await write(shard, names.index, [record("a", [0, 1, 0, 0], 4)]) == (0, 1)
        mixed = [record("a", [0, 0, 1, 0], 3), record("b", [0, 0, 0, 1], 1)]
        assert await write(shard, names.index, mixed) == (1, 1)
        a = await shard.batch_get(names.index, [key("a")], True, TIMEOUT)
        assert a.statuses() == ["found"] and a.source_version.tolist() == [5]
        assert a.vectors.tolist() == [[1.0, 0.0, 0.0, 0.0]]
        # Within one batch the highest version of a key wins, whatever the order.
        batch = [record("c", [1, 1, 0, 0], 9), record("c", [0, 1, 1, 0], 2)]
        assert await write(shard, names.index, batch) == (1, 0)
        c = await shard.batch_get(names.index, [key("c")], False, TIMEOUT)
        assert c.statuses() == ["found"] and c.source_version.tolist() == [9]

    run(make_shard, body)


def test_replaying_a_batch_is_idempotent(
    make_shard: Callable[[], Shard], names: Names, write: Write
) -> None:
    data = catalogue(8)

    async def body(shard: Shard) -> None:
        assert await write(shard, names.index, data) == (len(data), 0)
        before = await search(shard, names.index, data[2].vector, 20)
        assert await write(shard, names.index, data) == (len(data), 0)  # equal version replaces
        assert await search(shard, names.index, data[2].vector, 20) == before
        (ix,) = [i for i in await shard.describe(TIMEOUT) if i.index == names.index]
        assert (ix.live_count, ix.tombstones) == (len(data), 0)

    run(make_shard, body)


def test_delete_then_lookup_says_deleted(
    make_shard: Callable[[], Shard], names: Names, write: Write
) -> None:
    data = catalogue(6)

    async def body(shard: Shard) -> None:
        await write(shard, names.index, data)
        assert (
            await shard.delete(names.index, [key("e01"), key("e02"), key("e01")], 10, TIMEOUT) == 2
        )
        assert await statuses(shard, names.index, ["e00", "e01", "e02"]) == [
            "found", "deleted", "deleted",
        ]  # fmt: skip
        hits = await search(shard, names.index, data[1].vector, 20)
        assert {k.entity_id for k, _ in hits} == {r.key.entity_id for r in data} - {"e01", "e02"}
        # A key never written: nothing removed, but the delete is remembered.
        assert await shard.delete(names.index, [key("ghost")], 10, TIMEOUT) == 0
        assert await statuses(shard, names.index, ["ghost"]) == ["deleted"]
        (ix,) = [i for i in await shard.describe(TIMEOUT) if i.index == names.index]
        assert (ix.live_count, ix.tombstones) == (len(data) - 2, 3)

    run(make_shard, body)


def test_a_delete_wins_over_equal_and_older_writes(
    make_shard: Callable[[], Shard], names: Names, write: Write
) -> None:
    async def body(shard: Shard) -> None:
        await write(shard, names.index, [record("k", [1, 0, 0, 0], 5)])
        assert await shard.delete(names.index, [key("k")], 8, TIMEOUT) == 1
        assert await write(shard, names.index, [record("k", [1, 1, 0, 0], 8)]) == (0, 1)
        assert await write(shard, names.index, [record("k", [1, 1, 1, 0], 6)]) == (0, 1)
        assert await statuses(shard, names.index, ["k"]) == ["deleted"]
        assert await write(shard, names.index, [record("k", [0, 0, 0, 1], 9)]) == (1, 0)
        k = await shard.batch_get(names.index, [key("k")], True, TIMEOUT)
        assert k.statuses() == ["found"]
        assert (int(k.source_version[0]), k.vectors[0].tolist()) == (9, [0.0, 0.0, 0.0, 1.0])
        (ix,) = [i for i in await shard.describe(TIMEOUT) if i.index == names.index]
        assert (ix.live_count, ix.tombstones) == (1, 0)  # the newer write revived the key

    run(make_shard, body)


def test_a_delete_never_removes_a_newer_write(
    make_shard: Callable[[], Shard], names: Names, write: Write
) -> None:
    async def body(shard: Shard) -> None:
        await write(shard, names.index, [record("k", [1, 0, 0, 0], 100)])
        assert await shard.delete(names.index, [key("k")], 5, TIMEOUT) == 0
        k = await shard.batch_get(names.index, [key("k")], False, TIMEOUT)
        assert k.statuses() == ["found"] and k.source_version.tolist() == [100]
        assert [e for e, _ in await search(shard, names.index, [1, 0, 0, 0], 3)] == [key("k")]
        # The older delete still fences writes of its version and older.
        await shard.delete(names.index, [key("k")], 100, TIMEOUT)
        assert await write(shard, names.index, [record("k", [1, 0, 0, 0], 50)]) == (0, 1)

    run(make_shard, body)


def test_batch_get_answers_every_key_in_request_order(
    make_shard: Callable[[], Shard], names: Names, write: Write
) -> None:
    a = record("a", [3, 0, 0, 4], 7, genre="jazz", year=2001, tags=("x", "y"))
    b, c = record("b", [0, 1, 0, 0], 2), record("c", [0, 0, 2, 0], 3)

    async def body(shard: Shard) -> None:
        await write(shard, names.index, [a, b, c])
        await shard.delete(names.index, [key("b")], 4, TIMEOUT)
        eids = ["a", "x", "b", "c", "y", "a"]
        keys = [key(e) for e in eids]
        found = await shard.batch_get(names.index, keys, True, TIMEOUT, include_attributes=True)
        assert found.statuses() == ["found", "missing", "deleted", "found", "missing", "found"]
        assert found.source_version.tolist() == [7, 0, 0, 3, 0, 7]
        assert found.created_at.tolist() == [1007, 0, 0, 1003, 0, 1007]
        assert [found.model_version(i) for i in range(6)] == ["m1", "", "", "m1", "", "m1"]
        assert found.attributes_json is not None
        assert json.loads(found.attributes_json[0]) == {
            "genre": "jazz",
            "year": 2001,
            "tags": ["x", "y"],
        }
        assert found.attributes_json[1:3] == ["", ""]
        assert found.norm[0] == pytest.approx(5.0)
        assert found.vectors[0].tolist() == pytest.approx(
            [0.6, 0.0, 0.0, 0.8]
        )  # cosine: normalized
        assert not found.vectors[[1, 2, 4]].any()
        without = await shard.batch_get(names.index, [key("a")], False, TIMEOUT)
        assert without.vectors.shape == (1, 0) and without.attributes_json is None
        other = await shard.batch_get(names.index, [key("a", tenant="u")], True, TIMEOUT)
        assert other.statuses() == ["missing"] and other.vectors.tolist() == [[0.0] * DIM]

    run(make_shard, body)


def test_filters_narrow_the_search_exactly(
    make_shard: Callable[[], Shard], names: Names, write: Write
) -> None:
    data = catalogue(18, seed=3)
    filters: list[Filter] = [
        Eq("genre", "rock"),
        Range("year", gte=1995, lt=2003),
        In("tags", ("a",)),
        And((Eq("genre", "jazz"), Not(Range("year", gt=2000)))),
        Eq("genre", "none"),
    ]

    async def body(shard: Shard) -> None:
        await write(shard, names.index, data)
        for flt in filters:
            got = await search(shard, names.index, data[5].vector, 7, flt=flt)
            assert got == expected(data, data[5].vector, 7, flt=flt), flt
        with pytest.raises(InvalidArgument):
            await search(shard, names.index, data[5].vector, 7, flt=Eq("color", "red"))

    run(make_shard, body)


def test_describe_returns_the_index_and_its_summary_bounds_every_row(
    make_shard: Callable[[], Shard], names: Names, write: Write
) -> None:
    data = catalogue(12, seed=5)

    async def body(shard: Shard) -> None:
        await write(shard, names.index, data)
        await shard.delete(names.index, [key("e03")], 100, TIMEOUT)
        # The module cluster's coordinators describe this shard in the
        # background; when the write escaped a summary one of them held, the
        # shard withholds summaries for its quiet period (summary_leases).
        deadline = time.monotonic() + 15.0
        while True:
            described = {i.index: i for i in await shard.describe(TIMEOUT)}
            ix = described[names.index]
            if ix.summary is not None or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
        assert (ix.live_count, ix.tombstones) == (len(data) - 1, 1)
        assert ix.summary is not None and ix.summary.metric is names.metric
        for q in np.random.default_rng(2).normal(size=(8, DIM)):
            prepared = prepare_query(q, names.metric, True)
            best = expected(data, q.astype(np.float32), 1)[0][1]
            bound = score_upper_bound(
                names.metric, prepared, ix.summary.centroids, ix.summary.radii
            )
            assert bound >= best - 1e-5
        assert set(ix.summary.buckets) == {bucket_of(r) for r in data}
        assert all(tenants == frozenset({"t"}) for _, tenants in ix.summary.buckets.values())

    run(make_shard, body)


def test_bad_requests_are_refused_the_same_way(
    make_shard: Callable[[], Shard], names: Names, write: Write
) -> None:
    unknown = VersionRef("nosuchindex", "v1")

    async def body(shard: Shard) -> None:
        with pytest.raises(NotFound):
            await shard.search(unknown, [ShardQuery(np.ones(DIM, np.float32), 1, "t")], TIMEOUT)
        with pytest.raises(NotFound):
            await shard.batch_get(unknown, [key("a")], False, TIMEOUT)
        with pytest.raises(InvalidArgument):
            await write(shard, names.index, [record("a", [1.0, 2.0])])
        with pytest.raises(FailedPrecondition):  # a bucket the shard does not hold
            await write(shard, names.index, [record("a", [1, 0, 0, 0])], BUCKETS)
        with pytest.raises(InvalidArgument):
            await search(shard, names.index, np.ones(DIM), 0)
        with pytest.raises(InvalidArgument):
            await search(shard, names.index, np.ones(DIM + 1), 3)
        assert await statuses(shard, names.index, ["a"]) == ["missing"]  # nothing half-written

    run(make_shard, body)


def test_close_ends_the_shard(make_shard: Callable[[], Shard], names: Names, write: Write) -> None:
    async def body(shard: Shard) -> None:
        await write(shard, names.index, [record("a", [1, 0, 0, 0])])
        await shard.close()
        with pytest.raises(Unavailable):
            await shard.batch_get(names.index, [key("a")], False, TIMEOUT)

    run(make_shard, body)
