"""A real local vecshard cluster loaded with one benchmark data set.

Benchmarks measure what users run, so this is ``cli.local_cluster.LocalCluster`` (etcd,
shard and coordinator processes on loopback), set up through the public paths: the
registry library for families, index versions, bundles and routes, and
``RetrievalClient.upsert`` for the data. Entity ids are the data set's row numbers as
decimal strings, so a search answer maps straight back to ground-truth rows.

It also answers a question the search benchmark must not guess: which kind of index
actually serves the rows? The registry accepts any kind, but a shard from before the
storage engine (issue 4) serves every index version as ``flat``, and a shard with too few
rows to train IVF-PQ keeps them in exact segments; either would silently turn an HNSW or
IVF-PQ sweep into a flat one. ``probe_kind`` and ``served_segments`` ask the shards (their
``Describe``), after ``flush`` has sealed every segment.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import json_format
from numpy.typing import NDArray

from benchmarks import retrieval_api
from cli.etcd_process import EtcdProcess
from cli.local_cluster import LocalCluster
from cli.pki import LocalPki
from client.credentials import Credentials
from client.retrieval_client import Record, RetrievalClient
from core.domain import AttrType, AttrValue, Metric, VersionRef
from protos.vecshard.v1.internal import shard_pb2 as spb
from protos.vecshard.v1.internal import shard_pb2_grpc
from registry.model import (
    Bundle,
    EmbeddingFamily,
    EmbeddingVersion,
    IndexKind,
    IndexVersion,
    Route,
    Tenant,
)
from registry.placement import PLACEMENTS, decode_centroids
from registry.registry import Registry
from registry.store import EtcdStore  # noqa: TC002 - the annotation of _store

_SHARD_SERVICE = spb.DESCRIPTOR.services_by_name["ShardService"]

TENANT = "bench"
PURPOSE = "benchmark"
FAMILY = "bench_items"
VERSION = "v1"
# Rows the centroids of `centroid` placement are trained on (k-means over 16 buckets
# converges on a few thousand; more only slows set-up).
PLACEMENT_SAMPLE_ROWS = 20_000


@dataclass(frozen=True)
class IndexPlan:
    """One index version to serve (kind + parameters) and the route that reaches it."""

    name: str
    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def route(self) -> str:
        return f"route_{self.name}"


@dataclass(frozen=True)
class KindSupport:
    """Whether this build's shards serve an index kind, and if not, why."""

    kind: str
    supported: bool
    reason: str = ""
    served_as: tuple[str, ...] = ()


def row_ids(n: int) -> list[str]:
    return [str(i) for i in range(n)]


def records(
    vectors: NDArray[np.float32],
    attributes: Mapping[str, NDArray[Any]] | None = None,
    start: int = 0,
) -> list[Record]:
    """Rows as upsert records; list-valued attributes become the tuples the client expects."""
    attrs = attributes or {}
    out = []
    for i, vector in enumerate(vectors):
        row: dict[str, AttrValue] = {}
        for name, values in attrs.items():
            value = values[start + i]
            row[name] = tuple(value) if isinstance(value, list) else value.item()
        out.append(Record(str(start + i), vector, attributes=row, source_version=1))
    return out


class BenchCluster:
    """A LocalCluster plus the benchmark's registry objects and data.

    Give it a ``LocalCluster`` that is not started yet (it starts and stops it) or one that
    already runs (tests share one etcd per session; it then leaves its life cycle alone).
    """

    def __init__(
        self,
        cluster: LocalCluster,
        *,
        dim: int,
        metric: str,
        attributes: Mapping[str, AttrType] | None = None,
        num_buckets: int = 16,
        max_k: int = 100,
        replicas: int = 1,
        placement: str = "hash",
    ) -> None:
        """`replicas`: shards holding each bucket of the index versions it adds
        (each write goes to all of them; a search asks one per bucket).
        `placement`: how the index versions it adds spread rows over buckets —
        `hash` (every shard holds a sample of everything, so every query asks
        every shard) or `centroid` (nearby rows share a bucket, so score bounds
        can skip shards; trained on the sample `add_index` is given)."""
        if placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {PLACEMENTS}; got {placement!r}")
        self.cluster = cluster
        self.dim = dim
        self.metric = Metric(metric)
        self.attributes = dict(attributes or {})
        self.num_buckets = num_buckets
        self.max_k = max_k
        self.replicas = replicas
        self.placement = placement
        self._owned = False
        self._store: EtcdStore | None = None
        self.registry: Registry | None = None

    @classmethod
    def local(
        cls,
        data_dir: Path,
        num_shards: int,
        *,
        etcd: SharedEtcd | None = None,
        env: Mapping[str, str] | None = None,
        **settings: Any,
    ) -> BenchCluster:
        """A new cluster under ``data_dir`` with its own registry prefix."""
        cluster = LocalCluster(
            data_dir,
            num_shards=num_shards,
            etcd_prefix=f"/vecshard-bench/{uuid.uuid4().hex[:10]}/",
            etcd_endpoint=etcd.endpoint if etcd else None,
            extra_env=dict(env or {}),
            pki=etcd.pki if etcd else None,
        )
        return cls(cluster, **settings)

    # -- life cycle -----------------------------------------------------------------------

    def start(self) -> BenchCluster:
        if self.cluster.coordinator is None:
            self.cluster.start()
            self._owned = True
        try:
            self._store = self.cluster.etcd_store()
            self.registry = Registry(self._store, self.cluster.etcd_prefix)
            self.registry.put_tenant(Tenant(TENANT, allowed_purposes=(PURPOSE,)))
            self._put_family(FAMILY)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._owned:
            self.cluster.stop()
            self._owned = False

    def __enter__(self) -> BenchCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def address(self) -> str:
        return self.cluster.coordinator_address

    def client(self, timeout: float = 60.0) -> RetrievalClient:
        return RetrievalClient(
            self.address,
            tenant_id=TENANT,
            purpose=PURPOSE,
            timeout=timeout,
            credentials=self.cluster.credentials(),
        )

    @property
    def server_pids(self) -> dict[str, int]:
        """Each shard's process id by shard id, and the coordinator's: what the
        benchmarks meter CPU per query of."""
        local = self.cluster
        pids = {sid: child.pid for sid, child in local.shards.items() if child.pid is not None}
        if local.coordinator is not None and local.coordinator.pid is not None:
            pids["coordinator"] = local.coordinator.pid
        return pids

    def credentials(self) -> Credentials:
        """The CA and the admin token, for raw gRPC load (closed and open loops)."""
        return self.cluster.credentials()

    # -- registry -------------------------------------------------------------------------

    def _put_family(self, name: str) -> None:
        assert self.registry is not None
        self.registry.put_family(
            EmbeddingFamily(
                name,
                "item",
                self.dim,
                self.metric,
                normalize=self.metric is Metric.COSINE,
                owner="benchmarks",
                allowed_purposes=(PURPOSE,),
            )
        )
        self.registry.put_embedding_version(EmbeddingVersion(name, VERSION))

    def add_family(self, name: str) -> None:
        """Another embedding family (and its version v1) like the benchmark's own."""
        self._put_family(name)

    def add_index(
        self,
        plan: IndexPlan,
        family: str = FAMILY,
        sample: NDArray[np.float32] | None = None,
    ) -> None:
        """Registers the index version on every shard, a bundle and a route to it.

        Register before ingesting: the coordinator writes each record to every index
        version of the embedding version, so one upsert fills them all. With centroid
        placement the centroids are trained on `sample` (required then) before any write.
        """
        assert self.registry is not None
        if self.placement == "centroid" and sample is None:
            raise ValueError("centroid placement needs a sample to train its centroids on")
        embedding = VersionRef(family, VERSION)
        self.registry.create_index(
            IndexVersion(
                plan.name,
                VERSION,
                embedding,
                kind=IndexKind(plan.kind),
                params=dict(plan.params),
                num_buckets=self.num_buckets,
                attributes=self.attributes,
                max_k=self.max_k,
                placement=self.placement,
            ),
            self.cluster.shard_ids(),
            self.replicas,
        )
        if self.placement == "centroid":
            assert sample is not None
            self.registry.train_placement(
                VersionRef(plan.name, VERSION), sample[:PLACEMENT_SAMPLE_ROWS]
            )
        bundle = f"bundle_{plan.name}"
        self.registry.put_bundle(
            Bundle(bundle, embedding, embedding, VersionRef(plan.name, VERSION))
        )
        self.registry.put_route(Route(plan.route, bundle), who="benchmarks", why="benchmark set-up")

    # -- data -----------------------------------------------------------------------------

    def ingest(
        self,
        vectors: NDArray[np.float32],
        attributes: Mapping[str, NDArray[Any]] | None = None,
        batch: int = 2000,
        family: str = FAMILY,
    ) -> float:
        """Upserts every row through the coordinator; returns the seconds it took."""
        t0 = time.perf_counter()
        with self.client() as c:
            for start in range(0, len(vectors), batch):
                chunk = records(vectors[start : start + batch], attributes, start)
                written, _ = c.upsert(family, VERSION, chunk, batch_size=batch)
                if written != len(chunk):
                    raise RuntimeError(
                        f"upsert of rows {start}..{start + len(chunk)} wrote {written} records, "
                        f"expected {len(chunk)}"
                    )
        return time.perf_counter() - t0

    # -- what the shards serve ------------------------------------------------------------

    def _shard_addresses(self) -> dict[str, str]:
        return {
            shard_id: str(child.ready["grpc"])
            for shard_id, child in self.cluster.shards.items()
            if child.alive() and child.ready is not None
        }

    def describe_shards(self) -> dict[str, dict[str, Any]]:
        """Every live shard's own ``Describe`` (index kinds, segments) as JSON-ready dicts."""
        out: dict[str, dict[str, Any]] = {}
        for shard_id, address in self._shard_addresses().items():
            with self.cluster.shard_channel(address) as channel:
                stub = shard_pb2_grpc.ShardServiceStub(channel)
                resp = stub.Describe(spb.DescribeRequest(), timeout=30)
            out[shard_id] = json_format.MessageToDict(resp, preserving_proto_field_name=True)
        return out

    def served_segments(self, index_name: str) -> dict[str, int]:
        """Live rows of an index version by the kind of segment serving them, over all shards.

        A shard with segments (issue 4) reports each one (a growing segment is ``flat``:
        searched exactly); an older shard reports one kind for the whole index version.
        """
        rows: dict[str, int] = {}
        for described in self.describe_shards().values():
            for stats in described.get("indexes", []):
                if stats.get("index", {}).get("name") != index_name:
                    continue
                segments = stats.get("segments")
                if segments:
                    for seg in segments:
                        live = int(seg.get("rows", 0)) - int(seg.get("deleted_rows", 0))
                        kind = str(seg.get("kind", "?"))
                        rows[kind] = rows.get(kind, 0) + live
                else:
                    kind = str(stats.get("kind", "?"))
                    rows[kind] = rows.get(kind, 0) + int(stats.get("live_count", 0))
        return rows

    def flush(self, index_name: str, timeout: float = 3600.0) -> bool:
        """Seals and compacts every shard's segments of an index version now, so searches hit
        the built index rather than a growing (exact) segment; False where this build's
        shard has no ``Flush`` RPC (before issue 4), which leaves ``wait_settled``."""
        method = _SHARD_SERVICE.methods_by_name.get("Flush")
        if method is None:
            return False
        request_cls = retrieval_api.message_class(method.input_type)
        response_cls = retrieval_api.message_class(method.output_type)
        request = json_format.ParseDict(
            {"index": {"name": index_name, "version": VERSION}, "compact": True}, request_cls()
        )
        for address in self._shard_addresses().values():
            with self.cluster.shard_channel(address) as channel:
                call = channel.unary_unary(
                    f"/{_SHARD_SERVICE.full_name}/Flush",
                    request_serializer=request_cls.SerializeToString,
                    response_deserializer=response_cls.FromString,
                )
                call(request, timeout=timeout)
        return True

    def build_index(self, index_name: str, settle_timeout: float) -> dict[str, Any]:
        """Makes an index version's segments final (``flush``, or waiting for background
        builds to settle on older shards) and says which segment kinds serve its rows."""
        t0 = time.perf_counter()
        flushed = self.flush(index_name)
        settled = True if flushed else self.wait_settled(settle_timeout)
        return {
            "flushed": flushed,
            "settled": settled,
            "seconds": time.perf_counter() - t0,
            "rows_by_segment_kind": self.served_segments(index_name),
            **self.placement_of(index_name),
        }

    def placement_of(self, index_name: str) -> dict[str, Any]:
        """How the registry places the index version's rows: its placement and
        how many trained centroids it holds (0 for hash placement)."""
        assert self.registry is not None
        ref = VersionRef(index_name, VERSION)
        snap = self.registry.snapshot()
        placed = snap.placement(ref)
        centroids = decode_centroids(placed.centroids, self.dim) if placed.centroids else ()
        return {"placement": snap.index(ref).placement, "centroids": len(centroids)}

    def probe_kind(
        self, kind: str, params: Mapping[str, Any], sample: NDArray[np.float32]
    ) -> KindSupport:
        """Whether the shards serve ``kind`` with ``params``, tried on a small side index.

        A probe failure of any sort (the registry or a shard refusing the kind or its
        parameters, a search error) means "not supported here", with the reason, so a sweep
        over a kind this build lacks is reported instead of crashing the run.
        """
        family = f"probe_{kind}_{uuid.uuid4().hex[:6]}"
        plan = IndexPlan(family, kind, params)
        try:
            self._put_family(family)
            self.add_index(plan, family, sample)
            self.ingest(sample, family=family)
            self.flush(plan.name)
            with self.client() as c:
                c.search(plan.route, sample[0], min(10, len(sample)))
            served = self.served_segments(plan.name)
        except Exception as exc:  # noqa: BLE001 - any refusal is the answer we report
            return KindSupport(kind, False, f"{type(exc).__name__}: {exc}")
        if served.get(kind, 0) > 0:
            return KindSupport(kind, True, served_as=tuple(sorted(served)))
        return KindSupport(
            kind,
            False,
            f"the shards serve an index version declared {kind!r} from {served} "
            f"(rows by segment kind): either this build's shard has no {kind} segments, or "
            f"each shard holds fewer rows than its min_index_rows and searches them exactly "
            f"(--cluster-env VECSHARD__SHARD__MIN_INDEX_ROWS=N lowers it)",
            served_as=tuple(sorted(served)),
        )

    def wait_settled(self, timeout: float, quiet: float = 2.0, poll: float = 0.5) -> bool:
        """Waits until every shard's ``Describe`` stops changing for ``quiet`` seconds (for
        shards without ``Flush``); returns False on timeout."""
        deadline = time.monotonic() + timeout
        last: object = None
        stable_since = time.monotonic()
        while time.monotonic() < deadline:
            now = {
                sid: {k: v for k, v in d.items() if k != "sequence"}
                for sid, d in self.describe_shards().items()
            }
            if now != last:
                last, stable_since = now, time.monotonic()
            elif time.monotonic() - stable_since >= quiet:
                return True
            time.sleep(poll)
        return False


@dataclass(frozen=True)
class SharedEtcd:
    endpoint: str
    pki: LocalPki


@contextmanager
def shared_etcd(base: Path) -> Iterator[SharedEtcd]:
    """One etcd for several clusters in a run (each gets its own key prefix),
    and the PKI they share with it."""
    pki = LocalPki.ensure(base / "pki")
    etcd = EtcdProcess(base / "etcd-data", base / "etcd.log", pki.etcd)
    etcd.start()
    try:
        yield SharedEtcd(etcd.endpoint, pki)
    finally:
        etcd.stop()


@contextmanager
def serving_cluster(
    root: Path,
    shards: int,
    plan: IndexPlan,
    base: NDArray[np.float32],
    env: Mapping[str, str] | None = None,
) -> Iterator[BenchCluster]:
    """A local cluster (its own etcd) serving `base` through one index version, built and
    flushed: what the profiling tools measure against."""
    with BenchCluster.local(
        root / "cluster", shards, env=env, dim=base.shape[1], metric="l2"
    ) as cluster:
        cluster.add_index(plan)
        cluster.ingest(base)
        cluster.build_index(plan.name, 900.0)
        yield cluster
