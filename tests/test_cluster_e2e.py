"""Issue-2 acceptance through real processes: etcd + 3 shard servers + a
coordinator. Exact top-k against numpy brute force for every metric, ties
included; determinism whatever order shards answer in; batch lookups; a
SIGKILLed shard keeps every acknowledged write; bad input gets clear statuses."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

import grpc
import numpy as np
import pytest

from cli.local_cluster import ADMIN, LocalCluster
from client.retrieval_client import Record, RetrievalClient
from coordinator.model import Access, SearchQuery, ShardAnswer, ShardQuery
from coordinator.remote_shard import RemoteShard
from coordinator.service import RetrievalEngine
from coordinator.shard import Shard
from core.domain import AttrType, AttrValue, Metric, VersionRef
from core.errors import InvalidArgument, NotFound
from core.filters import Eq, Filter, Range, matches
from core.scoring import canonical_scores, normalized, prepare_query
from protos.vecshard.v1 import common_pb2 as cpb
from protos.vecshard.v1 import retrieval_pb2 as pb
from protos.vecshard.v1 import retrieval_pb2_grpc
from registry.model import Bundle, EmbeddingFamily, EmbeddingVersion, IndexVersion, Route, Tenant
from registry.registry import Registry
from registry.watcher import SnapshotCache
from tests.conftest import ClusterFactory
from tests.specs import TEST_TENANTS

pytestmark = pytest.mark.integration

DIM = 64
N = 20_000
TENANTS = ["t0", "t1", "t2"]
N_DUPLICATES = 1500
MAX_K = 100
PURPOSE = "test"
SCHEMA = {"genre": AttrType.STRING, "year": AttrType.INT, "tags": AttrType.STRING_LIST}


class Data:
    def __init__(self, seed: int = 42) -> None:
        rng = np.random.default_rng(seed)
        self.vectors = rng.normal(size=(N, DIM)).astype(np.float32)
        # Planted duplicates: identical vectors under other ids, same tenant.
        src = rng.choice(N - N_DUPLICATES, size=N_DUPLICATES, replace=False)
        self.vectors[N - N_DUPLICATES :] = self.vectors[src]
        self.tenant = np.array([TENANTS[i % 3] for i in range(N)])
        self.tenant[N - N_DUPLICATES :] = self.tenant[src]
        # The same entity id exists in several tenants: only the tenant tells them apart.
        self.ids = [
            f"item-{i // 3:05d}" if i < N - N_DUPLICATES else f"dup-{i:05d}" for i in range(N)
        ]
        self.attrs: list[dict[str, AttrValue]] = [
            {
                "genre": ["rock", "jazz", "pop", "folk"][i % 4],
                "year": 1990 + i % 30,
                "tags": ("a", "bc"[i % 2]),
            }
            for i in range(N)
        ]
        queries = rng.normal(size=(100, DIM)).astype(np.float32)
        queries[::2] = self.vectors[
            src[:50]
        ]  # exact hits on duplicated vectors: ties in the top-10
        self.queries = queries
        self.query_tenants = [
            self.tenant[src[i // 2]] if i % 2 == 0 else TENANTS[i % 3] for i in range(100)
        ]

    def records(self, rows: Sequence[int]) -> dict[str, list[Record]]:
        out: dict[str, list[Record]] = {t: [] for t in TENANTS}
        for i in rows:
            out[str(self.tenant[i])].append(
                Record(self.ids[i], self.vectors[i], attributes=self.attrs[i], source_version=1)
            )
        return out

    def brute_force(
        self, metric: Metric, q: np.ndarray, tenant: str, k: int, flt: Filter | None = None
    ):
        rows = [i for i in np.flatnonzero(self.tenant == tenant) if matches(flt, self.attrs[i])]
        base = self.vectors[rows]
        if metric is Metric.COSINE:
            base = np.stack([normalized(v) for v in base])
        scores = canonical_scores(metric, prepare_query(q, metric, metric is Metric.COSINE), base)
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]
        cand = np.flatnonzero(scores >= kth)
        ranked = sorted(
            ((float(scores[c]), self.ids[rows[c]]) for c in cand),
            key=lambda t: (-t[0], t[1].encode()),
        )
        return [(tenant, eid, s) for s, eid in ranked[:k]]


def setup_registry(registry: Registry, shard_ids: list[str]) -> None:
    for tenant in TEST_TENANTS:
        registry.put_tenant(Tenant(tenant))
    for metric in Metric:
        name = f"vec_{metric.value}"
        registry.put_family(EmbeddingFamily(name, "item", DIM, metric, allowed_purposes=(PURPOSE,)))
        registry.put_embedding_version(EmbeddingVersion(name, "v1"))
        registry.create_index(
            IndexVersion(
                f"ix_{metric.value}",
                "v1",
                VersionRef(name, "v1"),
                num_buckets=12,
                attributes=SCHEMA,
                max_k=MAX_K,
            ),
            shard_ids,
        )
        registry.put_bundle(
            Bundle(
                f"b_{metric.value}",
                VersionRef(name, "v1"),
                VersionRef(name, "v1"),
                VersionRef(f"ix_{metric.value}", "v1"),
            )
        )
        registry.put_route(Route(f"route_{metric.value}", f"b_{metric.value}"))


@pytest.fixture(scope="module")
def data() -> Data:
    return Data()


@pytest.fixture(scope="module")
def cluster(make_module_cluster: ClusterFactory, data: Data) -> LocalCluster:
    cluster = make_module_cluster(num_shards=3)
    store = cluster.etcd_store()
    setup_registry(Registry(store, cluster.etcd_prefix), cluster.shard_ids())
    store.close()
    per_tenant = data.records(range(N))
    for tenant, recs in per_tenant.items():
        with RetrievalClient(cluster.coordinator_target, tenant_id=tenant, purpose=PURPOSE) as c:
            for metric in Metric:
                written, ignored = c.upsert(f"vec_{metric.value}", "v1", recs, batch_size=2000)
                assert (written, ignored) == (len(recs), 0)
    return cluster


def search_hits(
    cluster: LocalCluster,
    metric: Metric,
    q: np.ndarray,
    tenant: str,
    k: int = 10,
    flt: Filter | None = None,
):
    with RetrievalClient(cluster.coordinator_target, tenant_id=tenant, purpose=PURPOSE) as c:
        res = c.search(f"route_{metric.value}", q, k, filter=flt)
    return [(h.key.tenant_id, h.key.entity_id, h.score) for h in res.hits]


@pytest.mark.parametrize("metric", list(Metric), ids=lambda m: m.value)
def test_top10_equals_brute_force_for_every_metric(
    cluster: LocalCluster, data: Data, metric: Metric
) -> None:
    ties_seen = 0
    for q, tenant in zip(data.queries, data.query_tenants, strict=True):
        got = search_hits(cluster, metric, q, tenant)
        want = data.brute_force(metric, q, tenant, 10)
        assert got == want
        ties_seen += len({s for *_, s in got}) < len(got)
    assert ties_seen >= 25, "the planted duplicates should produce tied scores in many top-10s"


@pytest.mark.parametrize(
    "flt", [Eq("genre", "jazz"), Range("year", gte=2000, lt=2005)], ids=["eq", "range"]
)
def test_filtered_search_equals_filtered_brute_force(
    cluster: LocalCluster, data: Data, flt: Filter
) -> None:
    for q, tenant in list(zip(data.queries, data.query_tenants, strict=True))[:20]:
        assert search_hits(cluster, Metric.L2, q, tenant, 10, flt) == data.brute_force(
            Metric.L2, q, tenant, 10, flt
        )


class ShuffledShard:
    """A real remote shard whose answers arrive after a random delay."""

    def __init__(self, inner: Shard, rnd: random.Random) -> None:
        self.inner, self.rnd = inner, rnd
        self.shard_id, self.address = inner.shard_id, inner.address

    async def search(
        self, index: VersionRef, queries: Sequence[ShardQuery], timeout: float
    ) -> list[ShardAnswer]:
        await asyncio.sleep(self.rnd.uniform(0, 0.02))
        return await self.inner.search(index, queries, timeout)


def test_same_query_gives_byte_identical_results_whatever_the_shard_order(
    cluster: LocalCluster, data: Data
) -> None:
    q, tenant = data.queries[0], data.query_tenants[0]
    req = pb.SearchRequest(
        route="route_l2",
        access=cpb.AccessContext(tenant_id=tenant, purpose=PURPOSE),
        query_vector=q.tobytes(),
        k=50,
    )
    with cluster.channel() as ch:
        stub = retrieval_pb2_grpc.RetrievalServiceStub(ch)
        first, second = stub.Search(req), stub.Search(req)
    wire = [h.SerializeToString(deterministic=True) for h in first.hits]
    assert wire == [h.SerializeToString(deterministic=True) for h in second.hits]

    async def in_process_runs() -> list[list[bytes]]:
        store = cluster.etcd_store()
        cache = SnapshotCache(Registry(store, cluster.etcd_prefix))
        cache.refresh()
        rnd = random.Random(7)
        remotes: dict[str, RemoteShard] = {}

        def factory(shard_id: str, address: str) -> Shard:
            remotes.setdefault(
                shard_id, RemoteShard(shard_id, address, credentials=cluster.peer_credentials())
            )
            return ShuffledShard(remotes[shard_id], rnd)  # type: ignore[return-value]  # search() only

        engine = RetrievalEngine(cache, factory)
        runs = []
        for _ in range(6):
            res = await engine.search(
                SearchQuery("route_l2", Access(tenant, PURPOSE, principal=ADMIN), q, 50), timeout=10
            )
            runs.append(
                [
                    pb.Hit(
                        key=cpb.EntityKey(
                            tenant_id=h.key.tenant_id,
                            entity_type=h.key.entity_type,
                            entity_id=h.key.entity_id,
                        ),
                        score=h.score,
                        rank=i,
                        shard_id=h.shard_id,
                    ).SerializeToString(deterministic=True)
                    for i, h in enumerate(res.hits)
                ]
            )
        for r in remotes.values():
            await r.close()
        store.close()
        return runs

    for run in asyncio.run(in_process_runs()):
        assert run == wire


def test_batch_get_returns_one_record_per_key_in_request_order(
    cluster: LocalCluster, data: Data
) -> None:
    t0_rows = [i for i in range(N - N_DUPLICATES) if data.tenant[i] == "t0"][:50]
    keys = []
    for n, row in enumerate(t0_rows):
        keys.append(data.ids[row])
        keys.append(f"unknown-{n}")
    with RetrievalClient(cluster.coordinator_target, tenant_id="t0", purpose=PURPOSE) as c:
        got = c.batch_get("vec_l2", "v1", keys)
    assert [lk.key.entity_id for lk in got] == keys
    assert [lk.status for lk in got] == ["found", "missing"] * 50
    for lk, row in zip(got[::2], t0_rows, strict=True):
        assert lk.vector is not None and lk.vector.tobytes() == data.vectors[row].tobytes()
        assert dict(lk.attributes) == data.attrs[row]


def test_sigkilled_shard_serves_every_acknowledged_write_after_restart(
    cluster: LocalCluster, data: Data
) -> None:
    rng = np.random.default_rng(3)
    fresh = [
        Record(f"late-{i}", rng.normal(size=DIM).astype(np.float32), source_version=1)
        for i in range(300)
    ]
    with RetrievalClient(cluster.coordinator_target, tenant_id="t1", purpose=PURPOSE) as c:
        assert c.upsert("vec_inner_product", "v1", fresh) == (300, 0)
        before = [search_hits(cluster, Metric.INNER_PRODUCT, q, "t1") for q in data.queries[:10]]
        for shard_id in cluster.shard_ids():
            cluster.kill_shard(shard_id)  # no graceful anything: SIGKILL right after the ack
            cluster.restart_shard(shard_id)
        got = c.batch_get("vec_inner_product", "v1", [r.entity_id for r in fresh])
        assert [lk.status for lk in got] == ["found"] * 300
        assert all(
            lk.vector is not None and lk.vector.tobytes() == np.asarray(r.vector).tobytes()
            for lk, r in zip(got, fresh, strict=True)
        )
        after = [search_hits(cluster, Metric.INNER_PRODUCT, q, "t1") for q in data.queries[:10]]
    assert after == before


def raw_stub(cluster: LocalCluster) -> retrieval_pb2_grpc.RetrievalServiceStub:
    return retrieval_pb2_grpc.RetrievalServiceStub(cluster.channel())


ACCESS = cpb.AccessContext(tenant_id="t0", purpose=PURPOSE)
GOOD = np.ones(DIM, dtype=np.float32)


@pytest.mark.parametrize(
    ("request_", "code", "message"),
    [
        (
            pb.SearchRequest(
                route="route_l2", access=ACCESS, query_vector=GOOD[:10].tobytes(), k=5
            ),
            "INVALID_ARGUMENT",
            "dimension 10 does not match, expected 64",
        ),
        (
            pb.SearchRequest(
                route="route_l2",
                access=ACCESS,
                query_vector=np.full(DIM, np.nan, np.float32).tobytes(),
                k=5,
            ),
            "INVALID_ARGUMENT",
            "NaN or Inf",
        ),
        (
            pb.SearchRequest(
                route="route_l2",
                access=ACCESS,
                query_vector=np.full(DIM, np.inf, np.float32).tobytes(),
                k=5,
            ),
            "INVALID_ARGUMENT",
            "NaN or Inf",
        ),
        (
            pb.SearchRequest(
                route="route_l2", access=ACCESS, query_vector=GOOD.tobytes() + b"x", k=5
            ),
            "INVALID_ARGUMENT",
            "float32",
        ),
        (
            pb.SearchRequest(route="route_l2", access=ACCESS, query_vector=GOOD.tobytes(), k=0),
            "INVALID_ARGUMENT",
            "k=0 is out of range; expected 1..100",
        ),
        (
            pb.SearchRequest(route="route_l2", access=ACCESS, query_vector=GOOD.tobytes(), k=101),
            "INVALID_ARGUMENT",
            "expected 1..100",
        ),
        (
            pb.SearchRequest(
                route="no_such_route", access=ACCESS, query_vector=GOOD.tobytes(), k=5
            ),
            "NOT_FOUND",
            "unknown route 'no_such_route'",
        ),
        (
            pb.SearchRequest(
                route="route_l2",
                access=ACCESS,
                query_vector=GOOD.tobytes(),
                k=5,
                filter=cpb.Filter(
                    eq=cpb.Eq(attribute="colour", value=cpb.AttributeValue(string_value="red"))
                ),
            ),
            "INVALID_ARGUMENT",
            "attribute 'colour', which this index does not have; filterable attributes: genre, tags, year",
        ),
        (
            pb.SearchRequest(
                route="route_l2",
                access=cpb.AccessContext(tenant_id="t0", purpose="ads"),
                query_vector=GOOD.tobytes(),
                k=5,
            ),
            "PERMISSION_DENIED",
            "purpose 'ads'",
        ),
    ],
    ids=["dim", "nan", "inf", "bytes", "k0", "kmax", "route", "filter", "purpose"],
)
def test_bad_search_input_gets_a_clear_status(
    cluster: LocalCluster, request_: pb.SearchRequest, code: str, message: str
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        raw_stub(cluster).Search(request_)
    assert err.value.code().name == code
    assert message in (err.value.details() or "")


@pytest.mark.parametrize(
    ("bad_vector", "message"),
    [
        (np.ones(DIM - 1, np.float32), "dimension 63 does not match, expected 64"),
        (np.array([np.nan] + [1.0] * (DIM - 1), np.float32), "NaN or Inf"),
        (np.array([np.inf] + [1.0] * (DIM - 1), np.float32), "NaN or Inf"),
    ],
    ids=["dim", "nan", "inf"],
)
def test_rejected_upsert_writes_nothing(
    cluster: LocalCluster, bad_vector: np.ndarray, message: str
) -> None:
    good = [
        cpb.EmbeddingRecord(key=cpb.EntityKey(entity_id=f"never-{i}"), vector=GOOD.tobytes())
        for i in range(20)
    ]
    bad = cpb.EmbeddingRecord(
        key=cpb.EntityKey(entity_id="the-bad-one"), vector=bad_vector.tobytes()
    )
    req = pb.UpsertRequest(
        access=ACCESS,
        embedding_name="vec_l2",
        embedding_version="v1",
        records=[*good, bad, *good[:2]],
    )
    with pytest.raises(grpc.RpcError) as err:
        raw_stub(cluster).Upsert(req)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = err.value.details() or ""
    assert message in details and "the-bad-one" in details
    with RetrievalClient(cluster.coordinator_target, tenant_id="t0", purpose=PURPOSE) as c:
        assert {
            lk.status for lk in c.batch_get("vec_l2", "v1", [f"never-{i}" for i in range(20)])
        } == {"missing"}


def test_client_checks_before_sending(cluster: LocalCluster) -> None:
    with RetrievalClient(cluster.coordinator_target, tenant_id="t0", purpose=PURPOSE) as c:
        with pytest.raises(InvalidArgument, match="expected 64"):
            c.search("route_l2", np.ones(3), 5)
        with pytest.raises(InvalidArgument, match="1..100"):
            c.search("route_l2", GOOD, 0)
        with pytest.raises(NotFound, match="unknown route"):
            c.search("nope", GOOD, 5)
    # Tenant and purpose may be left to the grant (a principal granted exactly
    # one); this admin is granted every tenant and purpose, so the server asks.
    for tenant, purpose, why in (
        ("", PURPOSE, "tenant_id is empty"),
        ("t0", "", "purpose is empty"),
    ):
        with (
            RetrievalClient(cluster.coordinator_target, tenant_id=tenant, purpose=purpose) as c,
            pytest.raises(InvalidArgument, match=why),
        ):
            c.search("route_l2", GOOD, 5)
    with pytest.raises(InvalidArgument, match="tenant_id must be a string"):
        RetrievalClient(cluster.coordinator_target, tenant_id=None, purpose=PURPOSE)  # type: ignore[arg-type]  # the check under test
    with pytest.raises(InvalidArgument, match="timeout"):
        RetrievalClient(cluster.coordinator_target, tenant_id="t0", purpose=PURPOSE, timeout=0)
