"""The two sides of the ingest benchmark, and what each measures.

* **in-process**: the shard's own write path (`IndexPartition.upsert_columns`:
  the same checks, RocksDB batch synced to the WAL, growing segment) in this
  process, on the same rows in the same batches — the baseline the cluster's
  rate is a ratio of — then its index build (`flush`): build rate per core.
* **cluster**: a local cluster (`BenchCluster`); rows through the SDK
  (`upsert_matrix`, records as columns; optionally per-record `upsert` into a
  second family), CPU microseconds per row of every process; the shards'
  index builds (Flush, one shard at a time: build rate); each shard's memory
  (RSS, anonymous and file-backed, from /proc) when empty, after Flush and
  after a search pass, with `Describe`'s own accounting; and the search pass's
  recall@10 and CPU milliseconds per query of every process (what capacity
  planning needs when no search benchmark was run).

Seals are deferred during the timed ingest (seal thresholds past the data),
so the rate is the write path's — durable and searchable (exactly) once
acknowledged — and the index build is measured on its own by Flush.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format

from benchmarks.bench_cluster import (
    FAMILY,
    TENANT,
    VERSION,
    BenchCluster,
    IndexPlan,
    SharedEtcd,
    records,
)
from benchmarks.datasets import Dataset
from benchmarks.ground_truth import exact_ground_truth, recall_at_k
from benchmarks.process_cpu import CpuMeter, cpu_seconds
from cli.local_cluster import LocalCluster
from core.domain import Metric, VersionRef
from core.record_columns import PackedStrings, RecordColumns
from protos.vecshard.v1.internal import shard_pb2 as spb
from protos.vecshard.v1.internal import shard_pb2_grpc
from registry.model import EmbeddingFamily, IndexKind, IndexVersion
from registry.placement import tenant_buckets_of
from shard_server.lifecycle import LifecyclePolicy
from shard_server.memory import ProcessMemory, process_memory
from shard_server.model import Query
from shard_server.partition import IndexPartition
from shard_server.storage import ShardStore

Say = Callable[[str], None]
BUCKETS = 16
RECORDS_FAMILY = "bench_records"


def batches(n: int, batch: int) -> list[tuple[int, int]]:
    return [(start, min(n, start + batch)) for start in range(0, n, batch)]


def ids_of(start: int, end: int) -> list[str]:
    return [str(i) for i in range(start, end)]


def columns_of(data: Dataset, start: int, end: int) -> RecordColumns:
    n = end - start
    return RecordColumns(
        PackedStrings.of(ids_of(start, end)),
        np.ascontiguousarray(data.base[start:end], dtype=np.float32),
        np.ones(n, dtype=np.int64),
        np.ones(n, dtype=np.int64),
        entity_type="item",
    )


def in_process(
    data: Dataset, kind: str, params: dict[str, Any], batch: int, say: Say
) -> dict[str, Any]:
    """The shard's write path and index build alone, on RocksDB in this process."""
    n, dim = data.base.shape
    family = EmbeddingFamily("bench", "item", dim, Metric(data.metric))
    index = IndexVersion(
        "ix", VERSION, VersionRef("bench", VERSION), kind=IndexKind(kind), params=params,
        num_buckets=BUCKETS,
    )  # fmt: skip
    prepared = [
        (columns_of(data, s, e), tenant_buckets_of(TENANT, [i.encode() for i in ids_of(s, e)], BUCKETS))
        for s, e in batches(n, batch)
    ]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        store = ShardStore(Path(tmp) / "rocksdb")
        policy = LifecyclePolicy(seal_rows=n + 1, seal_age_seconds=1e9)
        part = IndexPartition(index, family, store, Path(tmp) / "segments", policy)
        part.load()
        try:
            cpu, t = time.process_time(), time.perf_counter()
            for cols, buckets in prepared:
                part.upsert_columns(TENANT, cols, buckets)
            seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
            t = time.perf_counter()
            part.flush(compact=False)
            build = time.perf_counter() - t
            # The search itself, one query per call: what a shard spends
            # beyond it is the cost of serving it.
            cpu_q = time.process_time()
            for q in data.queries:
                part.search([Query(q, 10, TENANT)])
            search_ms = (time.process_time() - cpu_q) / len(data.queries) * 1e3
        finally:
            store.close()
    say(f"in-process {n}×{dim}: {n / seconds:,.0f} rows/s; build {build:.1f} s")
    return {
        "rows_per_s": n / seconds,
        "seconds": seconds,
        "cpu_us_per_row": cpu / n * 1e6,
        "build_s": build,
        "build_rows_per_s": n / build,
        "search_cpu_ms_per_query": search_ms,
    }


def _memory(pid: int | None) -> ProcessMemory:
    return process_memory(pid) if pid is not None else ProcessMemory()


def _memory_dict(m: ProcessMemory) -> dict[str, int]:
    return {"rss": m.rss, "anon": m.anon, "file": m.file}


def _per_vector(before: ProcessMemory, after: ProcessMemory, rows: int) -> dict[str, float]:
    if rows <= 0:
        return {}
    return {
        "rss": (after.rss - before.rss) / rows,
        "anon": (after.anon - before.anon) / rows,
        "file": (after.file - before.file) / rows,
    }


def _stub(
    local: LocalCluster, address: str
) -> tuple[grpc.Channel, shard_pb2_grpc.ShardServiceStub]:
    """Shards answer cluster components only (mutual TLS): call as a coordinator."""
    channel = local.shard_channel(address)
    return channel, shard_pb2_grpc.ShardServiceStub(channel)


def _flush(local: LocalCluster, address: str, index: str) -> None:
    channel, stub = _stub(local, address)
    with channel:
        stub.Flush(spb.FlushRequest(index=spb.IndexRef(name=index, version=VERSION)), timeout=3600)


def _describe(local: LocalCluster, address: str, index: str) -> dict[str, Any]:
    channel, stub = _stub(local, address)
    with channel:
        resp = stub.Describe(spb.DescribeRequest(), timeout=60)
    for ix in resp.indexes:
        if ix.index.name == index:
            return json_format.MessageToDict(ix, preserving_proto_field_name=True)
    return {}


def cluster(
    data: Dataset,
    kind: str,
    params: dict[str, Any],
    shards: int,
    batch: int,
    in_flight: int,
    with_records: bool,
    root: Path,
    say: Say,
    etcd: SharedEtcd | None = None,
) -> dict[str, Any]:
    n, dim = data.base.shape
    env = {
        "VECSHARD__SHARD__SEAL_ROWS": str(n + 1),
        "VECSHARD__SHARD__SEAL_AGE_SECONDS": "86400",
    }
    out: dict[str, Any] = {"shards": shards}
    plan = IndexPlan("ix", kind, params)
    with BenchCluster.local(
        root / f"d{dim}-s{shards}", shards, env=env, dim=dim, metric=data.metric,
        num_buckets=BUCKETS, etcd=etcd,
    ) as bc:  # fmt: skip
        bc.add_index(plan)
        local = bc.cluster
        addresses = {sid: str(c.ready["grpc"]) for sid, c in local.shards.items() if c.ready}
        pids = {sid: c.pid for sid, c in local.shards.items()}
        for address in addresses.values():
            _flush(local, address, plan.name)  # opens the (empty) partition
        empty = {sid: _memory(pid) for sid, pid in pids.items()}
        procs = {sid: pid for sid, pid in pids.items() if pid is not None}
        if local.coordinator is not None and local.coordinator.pid is not None:
            procs["coordinator"] = local.coordinator.pid
        ids = ids_of(0, n)
        meter = CpuMeter(procs).start()
        t = time.perf_counter()
        with bc.client(timeout=600) as client:
            written, _ = client.upsert_matrix(
                FAMILY, VERSION, ids, data.base, source_versions=np.ones(n, np.int64),
                batch_size=batch, max_in_flight=in_flight,
            )  # fmt: skip
        seconds = time.perf_counter() - t
        used = meter.stop()
        if written != n:
            raise RuntimeError(f"upsert_matrix wrote {written} rows, expected {n}")
        out["columns"] = {
            "rows_per_s": n / seconds,
            "seconds": seconds,
            "cpu_us_per_row": {k: None if v is None else v / n * 1e6 for k, v in used.items()},
        }
        say(f"cluster {shards} shard(s) {n}×{dim}: upsert_matrix {n / seconds:,.0f} rows/s")
        builds: dict[str, dict[str, Any]] = {}
        rows_of: dict[str, int] = {}
        for sid, address in addresses.items():
            pid = pids[sid]
            before = cpu_seconds(pid) if pid is not None else None
            t = time.perf_counter()
            _flush(local, address, plan.name)
            took = time.perf_counter() - t
            after = cpu_seconds(pid) if pid is not None else None
            rows_of[sid] = int(_describe(local, address, plan.name).get("live_count", 0))
            builds[sid] = {
                "rows": rows_of[sid],
                "seconds": took,
                "rows_per_s": rows_of[sid] / took if took else None,
                "cpu_s": None if before is None or after is None else after - before,
            }
        out["build"] = builds
        built = [f"{s} {b['rows']} rows in {b['seconds']:.1f} s" for s, b in builds.items()]
        say(f"cluster: built {', '.join(built)}")
        flushed = {sid: _memory(pid) for sid, pid in pids.items()}
        described = {
            sid: _describe(local, address, plan.name) for sid, address in addresses.items()
        }
        out["search"] = search_pass(bc, plan, data, procs, say)
        searched = {sid: _memory(pid) for sid, pid in pids.items()}
        out["memory"] = {
            sid: {
                "rows": rows_of[sid],
                "empty": _memory_dict(empty[sid]),
                "after_flush": _memory_dict(flushed[sid]),
                "after_search": _memory_dict(searched[sid]),
                "bytes_per_vector_after_flush": _per_vector(empty[sid], flushed[sid], rows_of[sid]),
                "bytes_per_vector_after_search": _per_vector(empty[sid], searched[sid], rows_of[sid]),
                "describe": {
                    k: described[sid].get(k)
                    for k in ("memory_bytes", "mapped_bytes", "bytes_per_vector")
                },
            }
            for sid in pids
        }  # fmt: skip
        if with_records:
            out["records"] = records_path(bc, data, kind, params, batch, procs, say)
    return out


def search_pass(
    bc: BenchCluster, plan: IndexPlan, data: Dataset, procs: dict[str, int], say: Say
) -> dict[str, Any]:
    """One query at a time through the coordinator: recall@10 and CPU per query."""
    truth = exact_ground_truth(data.base, data.queries, 10, data.metric)
    found = np.full((len(data.queries), 10), -1, dtype=np.int64)
    with bc.client() as client:
        for q in data.queries[:20]:
            client.search(plan.route, q, k=10)  # warm connections
        meter = CpuMeter(procs).start()
        t = time.perf_counter()
        for i, q in enumerate(data.queries):
            hits = client.search(plan.route, q, k=10).hits
            found[i, : len(hits)] = [int(h.key.entity_id) for h in hits]
        seconds = time.perf_counter() - t
        used = meter.stop()
    m = len(data.queries)
    result = {
        "queries": m,
        "k": 10,
        "params": dict(plan.params),
        "recall_at_10": recall_at_k(found, truth, 10),
        "qps_one_client": m / seconds,
        "cpu_ms_per_query": {k: None if v is None else v / m * 1e3 for k, v in used.items()},
    }
    say(
        f"cluster: search recall@10 {result['recall_at_10']:.3f}, {m / seconds:.0f} QPS (one client)"
    )
    return result


def records_path(
    bc: BenchCluster,
    data: Dataset,
    kind: str,
    params: dict[str, Any],
    batch: int,
    procs: dict[str, int],
    say: Say,
) -> dict[str, Any]:
    """The same rows per record (`upsert`), into a second family, for comparison."""
    n = data.base.shape[0]
    bc.add_family(RECORDS_FAMILY)
    bc.add_index(IndexPlan("ix_records", kind, params), family=RECORDS_FAMILY)
    chunks = [records(data.base[s:e], None, s) for s, e in batches(n, batch)]
    meter = CpuMeter(procs).start()
    t = time.perf_counter()
    with bc.client(timeout=600) as client:
        for chunk in chunks:
            client.upsert(RECORDS_FAMILY, VERSION, chunk, batch_size=batch)
    seconds = time.perf_counter() - t
    used = meter.stop()
    say(f"cluster: per-record upsert {n / seconds:,.0f} rows/s")
    return {
        "rows_per_s": n / seconds,
        "seconds": seconds,
        "cpu_us_per_row": {k: None if v is None else v / n * 1e6 for k, v in used.items()},
    }
