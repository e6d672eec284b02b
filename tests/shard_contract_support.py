"""What the `Shard` contract suite (tests/test_shard_contract_*.py) shares:
its fixtures, the caller a coordinator vouches for, and the helpers that
write, search and compute the expected answers.

The suite runs every test against every implementation of the protocol
(coordinator/shard.py): the in-memory shard the coordinator's unit tests use
and a real `RemoteShard` talking to a real shard server process, unchanged;
the registry is the same real etcd for both. Each test module binds the
fixtures (`cluster`, `registry`, `make_shard`, `names`, `write`) to their own
names (`make_shard = support.make_shard`), so every module gets the same
parametrization; bound rather than imported, since every test's parameters
shadow them (ruff F811 on an import). `cluster` and `registry` are
module-scoped: one shard process per test module.

Each test gets its own embedding family, index version and feature groups
(`names`), so a module's one shard process serves every test without
interference.
"""

from __future__ import annotations

import asyncio
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
from core.domain import AttrType, AttrValue, EntityKey, Metric, VersionRef
from core.embedding_columns import EmbeddingColumns
from core.filters import Filter, matches
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
