"""Segment kinds through a real shard process against the same index in-process.

For each kind (flat, hnsw, ivfpq) the same clustered vectors are loaded twice:
into an index partition in this process (the shard's own storage engine: same
RocksDB, same sealed segment, same planner and rerank) and into a shard server
started by `LocalCluster` (its own etcd, one shard), written over
`ShardService.Upsert` and sealed with `Flush` into one segment on both sides.
Then the same queries run one per call, sequentially, on both sides, and 32
per call (the coordinator micro-batches).

Reported per kind and side: recall@10 against exact float64 search, p50/p99
latency, QPS; and the ratio shard / in-process — what gRPC, protobuf and the
process boundary cost over the engine itself. Prints a table and writes JSON
under benchmarks/results/ (with the machine and its load, see run_record).

    python -m benchmarks.segments_bench                # 20,000 x 128, about a minute
    python -m benchmarks.segments_bench --n 100000     # the acceptance scale
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from benchmarks.ground_truth import exact_ground_truth, recall_at_k
from benchmarks.latency import LatencyHistogram
from benchmarks.run_record import RESULTS_DIR, machine, write_json
from benchmarks.synthetic_data import gaussian_mixture
from cli.local_cluster import LocalCluster
from core.domain import EntityKey, Metric, VersionRef
from protos.vecshard.v1 import common_pb2 as cpb
from protos.vecshard.v1.internal import shard_pb2 as pb
from protos.vecshard.v1.internal import shard_pb2_grpc
from registry.model import EmbeddingFamily, EmbeddingVersion, IndexKind, IndexVersion, Tenant
from registry.placement import bucket_of
from registry.registry import Registry
from shard_server.lifecycle import LifecyclePolicy
from shard_server.model import Query
from shard_server.partition import IndexPartition
from shard_server.records import Record
from shard_server.sealed_segment import BuildSettings
from shard_server.storage import ShardStore

TENANT = "bench"
BUCKETS = 8
BATCH = 5000
# The parameters the acceptance test states (tests/test_shard_recall.py).
PARAMS: dict[IndexKind, dict[str, int]] = {
    IndexKind.FLAT: {},
    IndexKind.HNSW: {"M": 16, "ef_construction": 100, "ef_search": 64},
    IndexKind.IVFPQ: {
        "nlist": 256,
        "m": 32,
        "nbits": 8,
        "nprobe": 16,
        "refine_factor": 10,
        "train_size": 10_000,
    },
}


@dataclass
class Measured:
    recall: float
    latency: LatencyHistogram
    qps: float
    batch_qps: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "recall_at_10": self.recall,
            "p50_ms": self.latency.percentile(50) * 1e3,
            "p99_ms": self.latency.percentile(99) * 1e3,
            "qps": self.qps,
            "batch_qps": self.batch_qps,
            "latency": self.latency.to_dict(),
        }


def measure(
    many: Callable[[np.ndarray], list[list[int]]],
    queries: np.ndarray,
    truth: np.ndarray,
    batch: int,
) -> Measured:
    """Recall and latency one query at a time (a batch of one), then QPS in batches."""

    def one(q: np.ndarray) -> list[int]:
        return many(q[None])[0]

    for q in queries[:20]:  # warm caches and connections
        one(q)
    hist = LatencyHistogram(significant_digits=2)
    found = np.full((len(queries), 10), -1, dtype=np.int64)
    start = time.perf_counter()
    for i, q in enumerate(queries):
        t = time.perf_counter()
        ids = one(q)
        hist.record(time.perf_counter() - t)
        found[i, : len(ids)] = ids[:10]
    qps = len(queries) / (time.perf_counter() - start)
    start = time.perf_counter()
    for b in range(0, len(queries), batch):
        many(queries[b : b + batch])
    batch_qps = len(queries) / (time.perf_counter() - start)
    return Measured(recall_at_k(found, truth, 10), hist, qps, batch_qps)


def _index(kind: IndexKind, dim: int) -> tuple[EmbeddingFamily, IndexVersion]:
    family = EmbeddingFamily("vec", "item", dim, Metric.L2)
    return family, IndexVersion(
        kind.value,
        "v1",
        VersionRef("vec", "v1"),
        kind=kind,
        params=PARAMS[kind],
        num_buckets=BUCKETS,
        max_k=100,
    )


def in_process(
    kind: IndexKind, base: np.ndarray, directory: Path, threads: int
) -> tuple[IndexPartition, ShardStore]:
    family, index = _index(kind, base.shape[1])
    store = ShardStore(directory / "rocksdb")
    part = IndexPartition(
        index,
        family,
        store,
        directory / "segments",
        LifecyclePolicy(seal_rows=len(base) + 1, build=BuildSettings(threads=threads)),
    )
    part.load()
    for start in range(0, len(base), BATCH):
        part.upsert(
            [
                Record(
                    EntityKey(TENANT, "item", str(i)),
                    base[i],
                    1,
                    bucket=bucket_of(TENANT, str(i), BUCKETS),
                )
                for i in range(start, min(start + BATCH, len(base)))
            ]
        )
    part.flush(compact=False)
    return part, store


def _shard_upsert(stub: shard_pb2_grpc.ShardServiceStub, kind: IndexKind, base: np.ndarray) -> None:
    ref = pb.IndexRef(name=kind.value, version="v1")
    for start in range(0, len(base), BATCH):
        records = [
            pb.BucketedRecord(
                record=cpb.EmbeddingRecord(
                    key=cpb.EntityKey(tenant_id=TENANT, entity_type="item", entity_id=str(i)),
                    vector=base[i].tobytes(),
                    source_version=1,
                ),
                bucket=bucket_of(TENANT, str(i), BUCKETS),
            )
            for i in range(start, min(start + BATCH, len(base)))
        ]
        stub.Upsert(iter([pb.UpsertBatch(index=ref, records=records)]), timeout=300)
    stub.Flush(pb.FlushRequest(index=ref), timeout=600)


def _shard_search(
    stub: shard_pb2_grpc.ShardServiceStub, kind: IndexKind, queries: np.ndarray
) -> list[list[int]]:
    req = pb.SearchRequest(
        index=pb.IndexRef(name=kind.value, version="v1"),
        queries=[pb.Query(vector=q.tobytes(), k=10, tenant_id=TENANT) for q in queries],
    )
    return [[int(h.key.entity_id) for h in r.hits] for r in stub.Search(req, timeout=60).results]


def _local_search(part: IndexPartition, queries: np.ndarray) -> list[list[int]]:
    return [
        [int(h.key.entity_id) for h in r.hits]
        for r in part.search([Query(q, 10, TENANT) for q in queries])
    ]


def run(args: argparse.Namespace) -> dict[str, Any]:
    kinds = [IndexKind(k) for k in args.kinds]
    data = gaussian_mixture(args.n, args.dim, max(10, args.n // 1000), args.queries, seed=args.seed)
    base = np.ascontiguousarray(data.base, dtype="<f4")
    queries = np.ascontiguousarray(data.queries, dtype="<f4")
    truth = exact_ground_truth(base, queries, 10, "l2")
    faiss.omp_set_num_threads(args.threads)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="segments-bench-") as tmp:
        cluster = LocalCluster(
            Path(tmp) / "cluster",
            num_shards=1,
            etcd_prefix=f"/segments-bench/{uuid.uuid4().hex[:8]}/",
            extra_env={
                "VECSHARD__SHARD__SEAL_ROWS": str(args.n + 1),
                "VECSHARD__SHARD__SEAL_AGE_SECONDS": "86400",
                "VECSHARD__SHARD__BUILD_THREADS": str(args.threads),
            },
        )
        cluster.start()
        try:
            store = cluster.etcd_store()
            registry = Registry(store, cluster.etcd_prefix)
            registry.put_tenant(Tenant(TENANT))
            registry.put_family(_index(kinds[0], args.dim)[0])
            registry.put_embedding_version(EmbeddingVersion("vec", "v1"))
            for kind in kinds:
                registry.create_index(_index(kind, args.dim)[1], cluster.shard_ids())
            store.close()
            ready = cluster.shards["shard-0"].ready
            assert ready is not None
            channel = cluster.shard_channel(str(ready["grpc"]))
            stub = shard_pb2_grpc.ShardServiceStub(channel)
            for kind in kinds:
                t = time.perf_counter()
                part, local_store = in_process(kind, base, Path(tmp) / kind.value, args.threads)
                local_build = time.perf_counter() - t
                try:
                    local = measure(partial(_local_search, part), queries, truth, args.batch)
                finally:
                    local_store.close()
                t = time.perf_counter()
                _shard_upsert(stub, kind, base)
                shard_build = time.perf_counter() - t
                remote = measure(partial(_shard_search, stub, kind), queries, truth, args.batch)
                results.append(
                    {
                        "kind": kind.value,
                        "params": PARAMS[kind],
                        "in_process": {**local.to_dict(), "load_and_seal_s": local_build},
                        "shard": {**remote.to_dict(), "write_and_seal_s": shard_build},
                        "ratio_p50": remote.latency.percentile(50) / local.latency.percentile(50),
                        "ratio_qps": remote.qps / local.qps,
                        "ratio_batch_qps": remote.batch_qps / local.batch_qps,
                    }
                )
            channel.close()
        finally:
            cluster.stop()
    return {
        "benchmark": "segments",
        "config": {
            "n": args.n,
            "dim": args.dim,
            "queries": args.queries,
            "k": 10,
            "batch": args.batch,
            "seed": args.seed,
            "threads": args.threads,
            "dataset": data.name,
        },
        "machine": machine(),
        "results": results,
    }


def table(report: dict[str, Any]) -> str:
    head = (
        f"{'kind':<6} {'side':<11} {'recall@10':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'QPS':>8} {'QPS x' + str(report['config']['batch']):>9}"
    )
    lines = [head, "-" * len(head)]
    for r in report["results"]:
        for side in ("in_process", "shard"):
            m = r[side]
            lines.append(
                f"{r['kind']:<6} {side:<11} {m['recall_at_10']:>9.4f} {m['p50_ms']:>8.3f} "
                f"{m['p99_ms']:>8.3f} {m['qps']:>8.0f} {m['batch_qps']:>9.0f}"
            )
        lines.append(
            f"{r['kind']:<6} {'shard/local':<11} {'':>9} {r['ratio_p50']:>7.2f}x {'':>8} "
            f"{r['ratio_qps']:>7.2f}x {r['ratio_batch_qps']:>8.2f}x"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.segments_bench", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--n", type=int, default=20_000, help="base vectors (default 20000)")
    p.add_argument("--dim", type=int, default=128, help="dimension (default 128)")
    p.add_argument("--queries", type=int, default=500, help="queries (default 500)")
    p.add_argument("--batch", type=int, default=32, help="queries per call, batched run")
    p.add_argument("--seed", type=int, default=4)
    p.add_argument("--threads", type=int, default=2, help="index build threads")
    p.add_argument(
        "--kinds",
        nargs="+",
        default=[k.value for k in IndexKind],
        choices=[k.value for k in IndexKind],
    )
    p.add_argument(
        "--out", type=Path, help="JSON path (default benchmarks/results/segments-*.json)"
    )
    args = p.parse_args(argv)
    if args.n < 10_000 and "ivfpq" in args.kinds:
        p.error("--n must be ≥ 10000 for ivfpq (IVF-PQ trains on 10,000 vectors)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    print(table(report))
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = write_json(args.out or RESULTS_DIR / f"segments-{stamp}.json", report)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
