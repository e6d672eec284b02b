"""Feature and embedding lookup latency through a local 3-shard cluster,
beside a direct in-process RocksDB multi-get of the same keys (the ratio is
the figure).

    python -m benchmarks.features_bench --entities 1000000 --requests 2000

One GetFeatures call = 800 items × 2 item feature groups + 1 user (3 groups
in all); one BatchGetEmbeddings call = 100 keys. Requests are issued one at a
time (closed loop, one client): this measures service latency, not
throughput. Writes JSON to benchmarks/results/features_bench.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from cli.local_cluster import LocalCluster
from client.registry_client import RegistryClient
from client.retrieval_client import Record, RetrievalClient
from core.domain import EntityKey, VersionRef
from registry.feature_catalog import FeatureCatalog
from registry.feature_values import resolve_group
from registry.features import (
    FeatureDefinition,
    FeatureDType,
    FeatureGroup,
    FeatureObject,
    FeatureRef,
    FeatureSet,
    GroupRow,
    PrivacyClass,
)
from shard_server.feature_store import FeatureShardStore, FeatureStore
from shard_server.records import decode_record, record_key
from shard_server.storage import RECORDS

RESULTS = Path(__file__).resolve().parent / "results"
TENANT = "bench"
DIM = 32
T0 = 1_800_000_000_000_000


def _defs() -> tuple[list[FeatureObject], FeatureSet]:
    defs = [
        FeatureDefinition(
            "ctr",
            "v1",
            "item",
            FeatureDType.FLOAT64,
            PrivacyClass.PUBLIC,
            "bench",
            default_value=0.0,
        ),
        FeatureDefinition(
            "price",
            "v1",
            "item",
            FeatureDType.FLOAT64,
            PrivacyClass.PUBLIC,
            "bench",
            default_value=0.0,
        ),
        FeatureDefinition(
            "category",
            "v1",
            "item",
            FeatureDType.STRING,
            PrivacyClass.PUBLIC,
            "bench",
            default_value="?",
        ),
        FeatureDefinition(
            "age", "v1", "user", FeatureDType.INT64, PrivacyClass.PUBLIC, "bench", default_value=0
        ),
    ]
    groups = [
        FeatureGroup(
            "item_stats", "v1", "item", (VersionRef("ctr", "v1"), VersionRef("price", "v1"))
        ),
        FeatureGroup("item_meta", "v1", "item", (VersionRef("category", "v1"),)),
        FeatureGroup("user_profile", "v1", "user", (VersionRef("age", "v1"),)),
    ]
    fs = FeatureSet(
        "ranker",
        "v1",
        (
            FeatureRef("item_stats", "v1", "ctr"),
            FeatureRef("item_stats", "v1", "price"),
            FeatureRef("item_meta", "v1", "category"),
            FeatureRef("user_profile", "v1", "age"),
        ),
    )
    return [*defs, *groups, fs], fs


def _docs(objs: list[FeatureObject]) -> list[dict[str, Any]]:
    from registry import codec

    return [
        {"kind": d["kind"], "spec": d["spec"]} for d in (json.loads(codec.encode(o)) for o in objs)
    ]


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


def run(entities: int, requests: int, users: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    objs, fs = _defs()
    with tempfile.TemporaryDirectory(prefix="vecshard-featbench-") as tmp:
        cluster = LocalCluster(Path(tmp) / "cluster", num_shards=3)
        cluster.start()
        try:
            creds = cluster.credentials()
            with RegistryClient(cluster.coordinator_address, credentials=creds) as reg:
                reg.apply(_docs(objs))
                reg.apply(EMBED_SPEC)
            client = RetrievalClient(
                cluster.coordinator_address,
                tenant_id=TENANT,
                purpose="bench",
                timeout=60,
                credentials=creds,
            )
            item_ids = [f"i{n}" for n in range(entities)]
            vectors = rng.normal(size=(entities, DIM)).astype(np.float32)
            ctr = rng.random(entities)
            price = rng.uniform(1, 100, entities)
            start = time.perf_counter()
            batch = 5000
            for lo in range(0, entities, batch):
                ids = item_ids[lo : lo + batch]
                client.put_features(
                    "item_stats",
                    "v1",
                    [
                        (
                            ("item", i),
                            T0,
                            {"ctr": float(ctr[lo + n]), "price": float(price[lo + n])},
                        )
                        for n, i in enumerate(ids)
                    ],
                    batch_size=batch,
                )
                client.put_features(
                    "item_meta",
                    "v1",
                    [(("item", i), T0, {"category": "books"}) for i in ids],
                    batch_size=batch,
                )
                client.upsert(
                    "bench_vec",
                    "v1",
                    [Record(i, vectors[lo + n], source_version=1) for n, i in enumerate(ids)],
                    batch_size=batch,
                )
                progress(
                    "loading items (2 feature groups + embedding)", lo + len(ids), entities, start
                )
            client.put_features(
                "user_profile", "v1", [(("user", f"u{n}"), T0, {"age": 30}) for n in range(users)]
            )
            load_s = time.perf_counter() - start
            print(file=sys.stderr)

            feat_lat, emb_lat = [], []
            for r in range(requests):
                pick = rng.choice(entities, 800, replace=False)
                ents = [("user", f"u{r % users}")] + [("item", item_ids[p]) for p in pick]
                t = time.perf_counter()
                res = client.get_features("ranker", "v1", ents, request_time_us=T0 + 1)
                feat_lat.append(time.perf_counter() - t)
                assert not res.missing_by_reason, res.missing_by_reason
                keys = [item_ids[p] for p in rng.choice(entities, 100, replace=False)]
                t = time.perf_counter()
                got = client.batch_get("bench_vec", "v1", keys)
                emb_lat.append(time.perf_counter() - t)
                assert all(g.status == "found" for g in got)
                if r % 100 == 0:
                    progress("requests", r, requests, start)
            print(file=sys.stderr)
            client.close()
        finally:
            cluster.stop()

        # In-process baseline: the same rows in one RocksDB, multi-get + resolve.
        local = FeatureShardStore(Path(tmp) / "inprocess")
        store = FeatureStore(local)
        catalog = FeatureCatalog.build(objs)
        plan = catalog.plan(fs)
        schemas = {r.schema.ref: r.schema for r in plan}
        for lo in range(0, entities, 20_000):
            ids = item_ids[lo : lo + 20_000]
            store.put(
                schemas[VersionRef("item_stats", "v1")],
                [
                    GroupRow(
                        EntityKey(TENANT, "item", i),
                        T0,
                        T0,
                        {"ctr": float(ctr[lo + n]), "price": float(price[lo + n])},
                    )
                    for n, i in enumerate(ids)
                ],
            )
            store.put(
                schemas[VersionRef("item_meta", "v1")],
                [
                    GroupRow(EntityKey(TENANT, "item", i), T0, T0, {"category": "books"})
                    for i in ids
                ],
            )
            from shard_server.records import Record as StoredRecord
            from shard_server.records import encode_record

            local.write(
                puts=[
                    (
                        RECORDS,
                        record_key(VersionRef("bench_ix", "v1"), EntityKey(TENANT, "item", i)),
                        encode_record(
                            StoredRecord(EntityKey(TENANT, "item", i), vectors[lo + n], 1)
                        ),
                    )
                    for n, i in enumerate(ids)
                ]
            )
        store.put(
            schemas[VersionRef("user_profile", "v1")],
            [
                GroupRow(EntityKey(TENANT, "user", f"u{n}"), T0, T0, {"age": 30})
                for n in range(users)
            ],
        )
        base_feat, base_emb = [], []
        for r in range(requests):
            pick = rng.choice(entities, 800, replace=False)
            t = time.perf_counter()
            for read in plan:
                et = read.schema.group.entity_type
                keys = (
                    [EntityKey(TENANT, "user", f"u{r % users}")]
                    if et == "user"
                    else [EntityKey(TENANT, "item", item_ids[p]) for p in pick]
                )
                rows = store.multi_get(read.schema, keys, T0 + 1)
                [resolve_group(read, row, T0 + 1, True) for row in rows]
            base_feat.append(time.perf_counter() - t)
            keys = [
                EntityKey(TENANT, "item", item_ids[p])
                for p in rng.choice(entities, 100, replace=False)
            ]
            t = time.perf_counter()
            raws = local.multi_get(
                RECORDS, [record_key(VersionRef("bench_ix", "v1"), k) for k in keys]
            )
            # The shard's check too: a key with no row is a miss, not a record to decode.
            [
                decode_record(k, raw) if raw is not None else None
                for k, raw in zip(keys, raws, strict=True)
            ]
            base_emb.append(time.perf_counter() - t)
        local.close()

    out: dict[str, Any] = {
        "entities": entities,
        "requests": requests,
        "load_seconds": load_s,
        "get_features_800x2+1": {
            "cluster": percentiles(feat_lat),
            "in_process": percentiles(base_feat),
        },
        "batch_get_embeddings_100": {
            "cluster": percentiles(emb_lat),
            "in_process": percentiles(base_emb),
        },
    }
    for name in ("get_features_800x2+1", "batch_get_embeddings_100"):
        c, b = out[name]["cluster"], out[name]["in_process"]
        out[name]["p95_ratio"] = c["p95"] / b["p95"]
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
    p.add_argument("--out", type=Path, default=RESULTS / "features_bench.json")
    args = p.parse_args(argv)
    result = run(args.entities, args.requests, args.users, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"\n{'call':<28} {'':>10} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for name in ("get_features_800x2+1", "batch_get_embeddings_100"):
        for where in ("cluster", "in_process"):
            r = result[name][where]
            print(f"{name:<28} {where:>10} {r['p50']:>8.2f} {r['p95']:>8.2f} {r['p99']:>8.2f}")
        print(f"{'':<28} {'p95 ratio':>10} {result[name]['p95_ratio']:>8.1f}×")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
