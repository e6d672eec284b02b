"""What a shard's background work costs per row, to size its intervals:
an anti-entropy digest of replicated feature rows and of index records
(`shard_server.bucket_digests`: each round reads every replicated row of the
shard once, and answers a peer's request by reading them again), and the
expiry scan of a family with a lifetime (`shard_server.record_expiry`).

    python -m benchmarks.digest_cost [--rows 200000] [--dim 128] [--out FILE]

Loads the rows into a fresh RocksDB (the shard's own store classes), then
times each scan in process CPU seconds; prints microseconds per row and the
share of one core each costs at the default intervals (anti-entropy 300 s,
twice per round; expiry 600 s).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.run_record import write_json
from core.domain import EntityKey, VersionRef
from registry.feature_catalog import FeatureCatalog
from registry.features import (
    FeatureDefinition,
    FeatureDType,
    FeatureGroup,
    GroupRow,
    PrivacyClass,
)
from registry.placement import FEATURE_BUCKETS
from registry.snapshot import Snapshot
from shard_server import records as rec
from shard_server.bucket_digests import feature_digests, index_digests
from shard_server.feature_store import FeatureShardStore, FeatureStore
from shard_server.record_expiry import expired_keys
from shard_server.storage import RECORDS, ShardStore

CHUNK = 5000
ANTI_ENTROPY_INTERVAL = 300.0
EXPIRY_INTERVAL = 600.0


def _cpu(work: Callable[[], object]) -> float:
    start = time.process_time()
    work()
    return time.process_time() - start


def feature_cost(directory: Path, rows: int) -> dict[str, float]:
    # Two features, the shape of the features benchmark's item groups.
    catalog = FeatureCatalog.build(
        (
            FeatureDefinition("ctr", "v1", "item", FeatureDType.FLOAT64, PrivacyClass.PUBLIC, "b"),
            FeatureDefinition("label", "v1", "item", FeatureDType.STRING, PrivacyClass.PUBLIC, "b"),
            FeatureGroup(
                "stats", "v1", "item", (VersionRef("ctr", "v1"), VersionRef("label", "v1"))
            ),
        )
    )
    group = VersionRef("stats", "v1")
    schema = catalog.schema(group)
    storage = FeatureShardStore(directory)
    store = FeatureStore(storage)
    values = {"ctr": 0.25, "label": "x"}
    for start in range(0, rows, CHUNK):
        store.put(
            schema,
            [
                GroupRow(EntityKey("t", "item", f"e{i}"), 1, 1, values)
                for i in range(start, min(rows, start + CHUNK))
            ],
        )
    seconds = _cpu(lambda: feature_digests(store, Snapshot(), group, range(FEATURE_BUCKETS), 2))
    storage.close()
    return {"feature_digest_us_per_row": seconds / rows * 1e6}


def record_cost(directory: Path, rows: int, dim: int) -> dict[str, float]:
    store = ShardStore(directory)
    index = VersionRef("ix", "v1")
    rng = np.random.default_rng(0)
    for start in range(0, rows, CHUNK):
        puts = []
        for i in range(start, min(rows, start + CHUNK)):
            key = EntityKey("t", "item", f"e{i}")
            record = rec.Record(
                key, rng.random(dim, dtype=np.float32), 1, created_at=i, bucket=i % 8
            )
            puts.append((RECORDS, rec.record_key(index, key), rec.encode_record(record)))
        store.write(puts=puts)
    digest = _cpu(lambda: index_digests(store, index, range(8), 1))
    expiry = _cpu(lambda: expired_keys(store, rec.index_prefix(index), rows // 10))
    store.close()
    return {
        "record_digest_us_per_row": digest / rows * 1e6,
        "expiry_scan_us_per_row": expiry / rows * 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.rows < 1 or args.dim < 1:
        parser.error("--rows and --dim must be ≥ 1")
    with tempfile.TemporaryDirectory() as tmp:
        found: dict[str, Any] = {"rows": args.rows, "dim": args.dim}
        found.update(feature_cost(Path(tmp) / "features", args.rows))
        found.update(record_cost(Path(tmp) / "records", args.rows, args.dim))
    # A round reads the shard's rows once and a peer's request reads them again.
    per_round = 2 * args.rows / 1e6
    found["anti_entropy_core_share_features"] = (
        found["feature_digest_us_per_row"] * per_round / ANTI_ENTROPY_INTERVAL
    )
    found["anti_entropy_core_share_records"] = (
        found["record_digest_us_per_row"] * per_round / ANTI_ENTROPY_INTERVAL
    )
    found["expiry_core_share"] = found["expiry_scan_us_per_row"] * args.rows / 1e6 / EXPIRY_INTERVAL
    print(
        f"{args.rows:,} rows: feature digest {found['feature_digest_us_per_row']:.2f} µs/row, "
        f"record digest ({args.dim}-d) {found['record_digest_us_per_row']:.2f} µs/row, "
        f"expiry scan {found['expiry_scan_us_per_row']:.2f} µs/row"
    )
    print(
        f"share of one core at the default intervals: anti-entropy "
        f"{100 * found['anti_entropy_core_share_features']:.2f} % (feature rows), "
        f"{100 * found['anti_entropy_core_share_records']:.2f} % (records); expiry "
        f"{100 * found['expiry_core_share']:.2f} %"
    )
    if args.out is not None:
        print(f"wrote {write_json(args.out, found)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
