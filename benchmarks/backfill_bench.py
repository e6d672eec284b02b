"""Backfill throughput: `python -m benchmarks.backfill_bench [--n 20000 --dim 64]`.

A local cluster (real etcd, shards and a coordinator), a Parquet dataset of
`--n` clustered vectors, and `offline.backfill` writing it into a flat index
version through the packed bulk path (`ClientVectorSink`: `upsert_matrix`), unthrottled:
prints one JSON line with rows/s, and the CPU seconds the job's own process
spent (validation, Parquet, the client) next to the wall time.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.bench_cluster import FAMILY, PURPOSE, TENANT, VERSION, BenchCluster, IndexPlan
from benchmarks.synthetic_data import gaussian_mixture
from core.domain import VersionRef
from offline.backfill import BackfillJob, ClientVectorSink, backfill, reference_from_file


def write_dataset(root: Path, vectors: np.ndarray, per_file: int) -> Path:
    src = root / "dataset"
    src.mkdir(parents=True)
    n, dim = vectors.shape
    for f, lo in enumerate(range(0, n, per_file)):
        rows = range(lo, min(lo + per_file, n))
        table = pa.table(
            {
                "tenant_id": [TENANT] * len(rows),
                "entity_type": ["item"] * len(rows),
                "entity_id": [f"item-{i:08d}" for i in rows],
                "vector": pa.FixedSizeListArray.from_arrays(
                    pa.array(vectors[lo : rows.stop].reshape(-1)), dim
                ),
                "source_version": pa.array([1 + i for i in rows], pa.int64()),
            }
        )
        pq.write_table(table, src / f"part-{f:04d}.parquet")
    return src


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--per-file", type=int, default=5000)
    args = p.parse_args(argv)
    vectors = gaussian_mixture(args.n, args.dim, 16, 1, seed=0).base.astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="vecshard-backfill-bench-") as tmp:
        root = Path(tmp)
        src = write_dataset(root, vectors, args.per_file)
        with BenchCluster.local(root / "cluster", args.shards, dim=args.dim, metric="l2") as bench:
            bench.add_index(IndexPlan("bf_flat", "flat", {}))
            job = BackfillJob(
                src,
                VersionRef(FAMILY, VERSION),
                args.dim,
                "item",
                args.batch_size,
                reference=reference_from_file(next(iter(sorted(src.glob("*.parquet")))), args.dim),
            )
            sink = ClientVectorSink(bench.address, purpose=PURPOSE, credentials=bench.credentials())
            cpu0 = resource.getrusage(resource.RUSAGE_SELF)
            t0 = time.perf_counter()
            try:
                report = backfill(job, sink, root / "ckpt.json", root / "dead", progress=None)
            finally:
                sink.close()
            wall = time.perf_counter() - t0
            cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    job_cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    print(
        json.dumps(
            {
                "rows": report.written,
                "dim": args.dim,
                "shards": args.shards,
                "batch_size": args.batch_size,
                "seconds": round(wall, 2),
                "rows_per_second": round(report.written / wall),
                "job_cpu_seconds": round(job_cpu, 2),
                "rejected": report.rejected,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
