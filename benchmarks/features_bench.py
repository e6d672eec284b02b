"""Feature and embedding lookup latency through a local 3-shard cluster,
beside the same work in process (`benchmarks.features_inprocess`: the same
rows in one RocksDB, read and resolved by the same functions; the ratio is
the figure), and bulk-load rates.

    python -m benchmarks.features_bench --entities 1000000 --requests 2000

One GetFeatures call = 800 items × 2 item feature groups + 1 user (3 groups
in all), through the SDK (columnar); one BatchGetEmbeddings call = 100 keys
(`get_embeddings`, columnar). Requests are issued one at a time (closed
loop, one client): this measures service latency, not throughput; the CPU
each process spends per request is reported beside it. Loading is timed per
kind: PutFeatures rows/s (columns, 20,000 rows per request), materialization
rows/s (Parquet → coordinator, `offline.materialize`) and upserts/s.
Writes JSON to benchmarks/results/features_bench.json.

`--profiler py-spy|perf` also records every server process while each kind's
requests run and prints where its CPU went (`benchmarks.profile_search`:
py-spy's Python frames, or perf's samples of every thread by library); a
profiled run's latencies carry the profiler's cost, so measure and profile
in separate runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from benchmarks.features_inprocess import InProcess, timed, warm_up
from benchmarks.process_cpu import CpuMeter, per_query_faults, per_query_ms
from benchmarks.profile_search import PROFILERS, missing, print_where, profiled
from benchmarks.run_record import machine, write_json
from benchmarks.scrape import samples
from cli.local_cluster import LocalCluster
from client.credentials import Credentials
from client.feature_results import arrow_array
from client.registry_client import RegistryClient
from client.retrieval_client import Record, RetrievalClient
from core.domain import VersionRef
from core.feature_columns import from_values
from offline.materialize import GrpcFeatureSink, MaterializeJob, materialize
from offline.parquet_store import OfflineStore
from registry.feature_catalog import FeatureCatalog
from registry.features import (
    FeatureDefinition,
    FeatureDType,
    FeatureGroup,
    FeatureObject,
    FeatureRef,
    FeatureSet,
    PrivacyClass,
)
from shard_server.storage import StoreMemory

RESULTS = Path(__file__).resolve().parent / "results"
TENANT = "bench"
DIM = 32
T0 = 1_800_000_000_000_000
BATCH = 20_000
INDEX = VersionRef("bench_ix", "v1")
STATS, META, PROFILE = (VersionRef(g, "v1") for g in ("item_stats", "item_meta", "user_profile"))
DAILY = VersionRef("item_daily", "v1")
SHARDS = 3


def _defs() -> tuple[list[FeatureObject], FeatureSet]:
    def item(name: str, dtype: FeatureDType, default: object) -> FeatureDefinition:
        return FeatureDefinition(
            name, "v1", "item", dtype, PrivacyClass.PUBLIC, "bench", default_value=default
        )

    defs = [
        item("ctr", FeatureDType.FLOAT64, 0.0),
        item("price", FeatureDType.FLOAT64, 0.0),
        item("category", FeatureDType.STRING, "?"),
        item("clicks", FeatureDType.INT64, 0),
        FeatureDefinition(
            "age", "v1", "user", FeatureDType.INT64, PrivacyClass.PUBLIC, "bench", default_value=0
        ),
    ]
    v1 = [VersionRef(d.name, "v1") for d in defs]
    groups = [
        FeatureGroup(STATS.name, "v1", "item", (v1[0], v1[1])),
        FeatureGroup(META.name, "v1", "item", (v1[2],)),
        FeatureGroup(PROFILE.name, "v1", "user", (v1[4],)),
        FeatureGroup(DAILY.name, "v1", "item", (v1[0], v1[3], v1[2])),
    ]
    fs = FeatureSet(
        "ranker",
        "v1",
        (
            FeatureRef(STATS.name, "v1", "ctr"),
            FeatureRef(STATS.name, "v1", "price"),
            FeatureRef(META.name, "v1", "category"),
            FeatureRef(PROFILE.name, "v1", "age"),
        ),
    )
    return [*defs, *groups, fs], fs


def _docs(objs: list[FeatureObject], replicas: int = 1) -> list[dict[str, Any]]:
    """Registry documents of `objs`; feature groups placed with `replicas`."""
    from registry import codec

    docs = []
    for d in (json.loads(codec.encode(o)) for o in objs):
        doc = {"kind": d["kind"], "spec": d["spec"]}
        if d["kind"] == "FeatureGroup" and replicas > 1:
            doc["replicas"] = replicas
        docs.append(doc)
    return docs


EMBED_SPEC = f"""
kind: EmbeddingFamily
spec: {{name: bench_vec, entity_type: item, dimension: {DIM}, metric: inner_product}}
---
kind: EmbeddingVersion
spec: {{name: bench_vec, version: v1}}
---
kind: IndexVersion
spec: {{name: bench_ix, version: v1, embedding: {{name: bench_vec, version: v1}}, kind: flat, num_buckets: 12}}
---
kind: Tenant
spec: {{tenant_id: {TENANT}}}
"""


def percentiles(samples: list[float]) -> dict[str, float]:
    a = np.array(samples) * 1e3
    return {f"p{p}": float(np.percentile(a, p)) for p in (50, 95, 99)} | {
        "mean": float(a.mean()),
        "n": len(a),
    }


def progress(what: str, done: int, total: int, start: float) -> None:
    rate = done / max(1e-9, time.perf_counter() - start)
    print(f"\r  {what}: {done:,}/{total:,} ({rate:,.0f}/s)", end="", file=sys.stderr, flush=True)


class Data:
    def __init__(self, entities: int, users: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.rng = rng
        self.items = [f"i{n}" for n in range(entities)]
        self.users = [f"u{n}" for n in range(users)]
        self.vectors = rng.normal(size=(entities, DIM)).astype(np.float32)
        self.ctr = rng.random(entities)
        self.price = rng.uniform(1, 100, entities)
        self.category = from_values("string", ["books", "music", "toys"] * (entities // 3 + 1))

    def columns(self, group: VersionRef, lo: int, hi: int) -> dict[str, Any]:
        rows = np.arange(lo, hi)
        if group == STATS:
            return {"ctr": self.ctr[lo:hi], "price": self.price[lo:hi]}
        return {"category": self.category.take(rows)}


def load_cluster(c: RetrievalClient, data: Data) -> dict[str, float]:
    n = len(data.items)
    start = time.perf_counter()
    for lo in range(0, n, BATCH):
        hi = min(n, lo + BATCH)
        for group in (STATS, META):
            c.put_feature_columns(
                group.name, "v1", data.items[lo:hi], np.full(hi - lo, T0), data.columns(group, lo, hi),
                batch_size=BATCH,
            )  # fmt: skip
        progress("PutFeatures (2 groups)", hi, n, start)
    c.put_feature_columns(
        PROFILE.name, "v1", data.users, np.full(len(data.users), T0),
        {"age": np.full(len(data.users), 30)},
    )  # fmt: skip
    put_s = time.perf_counter() - start
    print(file=sys.stderr)
    start = time.perf_counter()
    for lo in range(0, n, 5000):
        ids = data.items[lo : lo + 5000]
        c.upsert(
            "bench_vec", "v1",
            [Record(i, data.vectors[lo + k], source_version=1) for k, i in enumerate(ids)],
            batch_size=5000,
        )  # fmt: skip
        progress("upserts", lo + len(ids), n, start)
    upsert_s = time.perf_counter() - start
    print(file=sys.stderr)
    rows = 2 * n + len(data.users)
    return {
        "put_features_rows": rows,
        "put_features_seconds": put_s,
        "put_features_rows_per_s": rows / put_s,
        "upsert_seconds": upsert_s,
        "upserts_per_s": n / upsert_s,
    }


def materialize_rate(
    address: str,
    credentials: Credentials,
    tmp: Path,
    catalog: FeatureCatalog,
    data: Data,
    rows: int,
) -> dict[str, float]:
    """Parquet → PutFeatures through the coordinator, `rows` rows of a
    3-feature group (float64, int64, string)."""
    schema = catalog.schema(DAILY)
    store = OfflineStore(tmp / "offline")
    n = min(rows, len(data.items))
    stamps = np.full(n, T0 + 1_000_000, dtype=np.int64)
    cols = {
        "ctr": from_values("float64", data.ctr[:n].tolist()),
        "clicks": from_values("int64", list(range(n))),
        "category": data.category.take(np.arange(n)),
    }
    table = pa.table(
        {
            "tenant_id": pa.array([TENANT] * n),
            "entity_type": pa.array(["item"] * n),
            "entity_id": pa.array(data.items[:n]),
            "feature_timestamp": pa.array(stamps),
            "generated_at": pa.array(stamps),
            **{name: arrow_array(c) for name, c in cols.items()},
        }
    )
    store.write_features(schema, table)
    sink = GrpcFeatureSink(address, timeout=600, credentials=credentials)
    job = MaterializeJob(schema, batch_size=BATCH)
    start = time.perf_counter()
    report = materialize(job, store, sink, tmp / "materialize.json", progress=sys.stderr)
    seconds = time.perf_counter() - start
    sink.close()
    assert report.written == n, report
    return {
        "materialize_rows": n,
        "materialize_seconds": seconds,
        "materialize_rows_per_s": n / seconds,
    }


def measure_cluster(
    c: RetrievalClient,
    data: Data,
    requests: int,
    pids: dict[str, int],
    profiler: str | None = None,
    profile_dir: Path = RESULTS / "profile",
) -> dict[str, Any]:
    rng = np.random.default_rng(1)
    n = len(data.items)
    out: dict[str, Any] = {}

    def features(r: int) -> float:
        pick = rng.choice(n, 800, replace=False)
        ents = [("user", data.users[r % len(data.users)])] + [("item", data.items[p]) for p in pick]
        t = time.perf_counter()
        res = c.get_features("ranker", "v1", ents, request_time_us=T0 + 1)
        took = time.perf_counter() - t
        assert not res.missing_by_reason, res.missing_by_reason
        assert len(res.frame("item")) == 800
        return took

    def lookups(r: int) -> float:
        ids = [data.items[p] for p in rng.choice(n, 100, replace=False)]
        t = time.perf_counter()
        got = c.get_embeddings("bench_vec", "v1", ids)
        took = time.perf_counter() - t
        assert (got.status == 1).all(), got.statuses()
        return took

    for name, call in (("get_features_800x2+1", features), ("batch_get_embeddings_100", lookups)):
        warm_up(call, requests)
        with profiled(profiler, pids, profile_dir, name) as where:
            meter = CpuMeter(pids).start()
            start = time.perf_counter()
            samples = []
            for r in range(requests):
                samples.append(call(r))
                if r % 100 == 0:
                    progress(name, r, requests, start)
            print(file=sys.stderr)
            out[name] = {
                "cluster": percentiles(samples),
                "cluster_cpu_ms_per_request": per_query_ms(meter.stop(), requests),
                "cluster_page_faults_per_request": per_query_faults(meter.faults, requests),
            }
        if profiler:
            print(f"== where {name}'s CPU went")
            print_where(profiler, where)
            out[name]["profile"] = where
    return out


def measure_in_process(
    path: Path, catalog: FeatureCatalog, fs: FeatureSet, data: Data, requests: int
) -> dict[str, Any]:
    # One process doing three shards' reads: their three feature caches' worth.
    shards = StoreMemory().feature_cache_bytes * SHARDS
    base = InProcess(path, catalog, fs, TENANT, StoreMemory(feature_cache_bytes=shards))
    n = len(data.items)
    try:
        for lo in range(0, n, BATCH):
            hi = min(n, lo + BATCH)
            ids = data.items[lo:hi]
            for group in (STATS, META):
                cols = {
                    k: v if not isinstance(v, np.ndarray) else from_values("float64", v.tolist())
                    for k, v in data.columns(group, lo, hi).items()
                }
                base.put(group, "item", ids, T0, cols)
            base.put_vectors(INDEX, ids, data.vectors[lo:hi])
        base.put(
            PROFILE, "user", data.users, T0, {"age": from_values("int64", [30] * len(data.users))}
        )
        # The cluster's requests, drawn in its order, warmed up alike (`warm_up`).
        rng = np.random.default_rng(1)

        def features(r: int) -> float:
            pick = rng.choice(n, 800, replace=False)
            ids = {"user": [data.users[r % len(data.users)]], "item": [data.items[p] for p in pick]}
            return timed(partial(base.get_features, ids, T0 + 1))

        def lookups(r: int) -> float:
            ids = [data.items[p] for p in rng.choice(n, 100, replace=False)]
            return timed(partial(base.get_embeddings, INDEX, ids, DIM))

        out: dict[str, Any] = {}
        for name, call in (
            ("get_features_800x2+1", features),
            ("batch_get_embeddings_100", lookups),
        ):
            warm_up(call, requests)
            out[name] = percentiles([call(r) for r in range(requests)])
        cache = base.storage.row_cache
        return out | {"feature_cache": {"bytes": cache.used_bytes, **cache.census()}}
    finally:
        base.close()


def shard_feature_caches(cluster: LocalCluster) -> dict[str, dict[str, float]]:
    """Per shard, what its feature cache held when the requests ran (bytes,
    group versions in memory / over budget): whether the shards read rows
    from memory or from RocksDB (`VECSHARD__SHARD__FEATURE_CACHE_MIB`)."""
    out: dict[str, dict[str, float]] = {}
    for sid, child in cluster.shards.items():
        port = child.ready and child.ready.get("metrics")
        if not port:
            continue
        figures = {"bytes": samples(int(port), "vecshard_feature_cache_bytes")[0][2]}
        for _, labels, value in samples(int(port), "vecshard_feature_cache_groups"):
            figures[labels["state"]] = value
        out[sid] = figures
    return out


def run(
    entities: int,
    requests: int,
    users: int,
    seed: int,
    materialize_rows: int,
    profiler: str | None = None,
    profile_dir: Path = RESULTS / "profile",
    replicas: int = 1,
) -> dict[str, Any]:
    objs, fs = _defs()
    catalog = FeatureCatalog.build(objs)
    data = Data(entities, users, seed)
    out: dict[str, Any] = {"entities": entities, "requests": requests, "users": users}
    out["replicas"] = replicas
    with tempfile.TemporaryDirectory(prefix="vecshard-featbench-") as tmp:
        cluster = LocalCluster(Path(tmp) / "cluster", num_shards=SHARDS)
        cluster.start()
        try:
            creds = cluster.credentials()
            with RegistryClient(cluster.coordinator_address, credentials=creds) as reg:
                reg.apply(_docs(objs, replicas))
                reg.apply(EMBED_SPEC)
            with RetrievalClient(
                cluster.coordinator_address,
                tenant_id=TENANT,
                purpose="bench",
                timeout=600,
                credentials=creds,
            ) as c:
                out["load"] = load_cluster(c, data)
                if materialize_rows:
                    out["load"] |= materialize_rate(
                        cluster.coordinator_address,
                        creds,
                        Path(tmp),
                        catalog,
                        data,
                        materialize_rows,
                    )
                children = {"coordinator": cluster.coordinator, **cluster.shards}
                pids = {name: p.pid for name, p in children.items() if p is not None and p.pid}
                measured = measure_cluster(c, data, requests, pids, profiler, profile_dir)
                out["feature_cache"] = shard_feature_caches(cluster)
        finally:
            cluster.stop()
        base = measure_in_process(Path(tmp) / "inprocess", catalog, fs, data, requests)
        out["feature_cache"]["in_process"] = base.pop("feature_cache")
    for name, figures in measured.items():
        figures["in_process"] = base[name]
        figures["p95_ratio"] = figures["cluster"]["p95"] / figures["in_process"]["p95"]
        out[name] = figures
    out["machine"] = machine()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.features_bench", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "--entities", type=int, default=1_000_000, help="items loaded (default 1,000,000)"
    )
    p.add_argument(
        "--requests", type=int, default=2000, help="requests of each kind (default 2000)"
    )
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--materialize-rows", type=int, default=None,
        help="rows materialized from Parquet (default: --entities; 0 skips)",
    )  # fmt: skip
    p.add_argument(
        "--replicas", type=int, default=1,
        help=f"replicas of each feature group's buckets, 1..{SHARDS} (default 1)",
    )  # fmt: skip
    p.add_argument("--out", type=Path, default=RESULTS / "features_bench.json")
    p.add_argument(
        "--profiler",
        choices=PROFILERS,
        help="also record every server process while each kind runs and print where its "
        "CPU went (py-spy or perf; the latencies then carry the profiler's cost)",
    )
    p.add_argument(
        "--profile-dir", type=Path, default=RESULTS / "profile",
        help="where the recordings go (default benchmarks/results/profile)",
    )  # fmt: skip
    args = p.parse_args(argv)
    rows = args.entities if args.materialize_rows is None else args.materialize_rows
    why = missing(args.profiler) if args.profiler else None
    if why:
        p.error(why)
    if not 1 <= args.replicas <= SHARDS:
        p.error(f"--replicas {args.replicas}: expected 1..{SHARDS} (the shards started)")
    result = run(
        args.entities, args.requests, args.users, args.seed, rows, args.profiler,
        args.profile_dir, args.replicas,
    )  # fmt: skip
    write_json(args.out, result)
    print(f"\n{'call':<28} {'':>10} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for name in ("get_features_800x2+1", "batch_get_embeddings_100"):
        for where in ("cluster", "in_process"):
            r = result[name][where]
            print(f"{name:<28} {where:>10} {r['p50']:>8.2f} {r['p95']:>8.2f} {r['p99']:>8.2f}")
        print(f"{'':<28} {'p95 ratio':>10} {result[name]['p95_ratio']:>8.1f}×")
        cpu = result[name]["cluster_cpu_ms_per_request"]
        print(f"{'':<28} {'CPU ms/req':>10} " + ", ".join(
            f"{k} {v:.2f}" for k, v in cpu.items() if v is not None
        ))  # fmt: skip
        faults = result[name]["cluster_page_faults_per_request"]
        print(f"{'':<28} {'faults/req':>10} " + ", ".join(
            f"{k} {v:.1f}" for k, v in faults.items() if v is not None
        ))  # fmt: skip
    caches = result.get("feature_cache", {})
    print("\nfeature cache: " + ", ".join(
        f"{k} {v['bytes'] / 2**20:.1f} MiB ({v.get('in_memory', 0):.0f} in memory, "
        f"{v.get('over_budget', 0):.0f} over budget)"
        for k, v in caches.items()
    ))  # fmt: skip
    load = result["load"]
    print(f"\nPutFeatures {load['put_features_rows_per_s']:,.0f} rows/s, upserts "
          f"{load['upserts_per_s']:,.0f}/s", end="")  # fmt: skip
    if "materialize_rows_per_s" in load:
        print(f", materialization {load['materialize_rows_per_s']:,.0f} rows/s", end="")
    print(f"; load average {result['machine']['load_average_1_5_15']}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
