"""Bulk-write throughput and shard memory per vector, cluster against the
shard's own write path in process, at one or more dimensions.

For each dimension: the in-process baseline (the shard's `IndexPartition`
writing the same batches to RocksDB in this process, then building the
index), then a local cluster: rows through `RetrievalClient.upsert_matrix`
(and per-record `upsert` for comparison), the index build (Flush), each
shard's RSS when empty / after Flush / after a search pass, and the search
pass's recall@10 and CPU per query. Prints a table and writes JSON
(`benchmarks/results/ingest-<UTC>.json`; `vecshard capacity` reads it).

    python -m benchmarks.ingest_bench                      # 100,000 rows, 128-d and 384-d, 2 shards
    python -m benchmarks.ingest_bench --shards 1 --dims 128  # memory with 100,000 vectors on one shard
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import ingest_runs
from benchmarks.bench_cluster import shared_etcd
from benchmarks.blas_threads import set_blas_threads
from benchmarks.run_record import RESULTS_DIR, machine, scratch_directory, write_json
from benchmarks.synthetic_data import gaussian_mixture

PARAMS = {
    "hnsw": {"M": 16, "ef_construction": 100, "ef_search": 64},
    "flat": {},
    "ivfpq": {"nlist": 256, "m": 16, "nbits": 8, "nprobe": 16, "refine_factor": 10},
}


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    params = PARAMS[args.kind]
    out: dict[str, Any] = {
        "benchmark": "ingest",
        "machine": machine(),
        "config": {
            "n": args.n,
            "dims": args.dims,
            "shards": args.shards,
            "batch": args.batch,
            "in_flight": args.in_flight,
            "kind": args.kind,
            "params": params,
            "queries": args.queries,
            "metric": "l2",
            "seals_during_ingest": False,
        },
        "runs": [],
    }
    with (
        scratch_directory("ingest-bench-", args.data_dir) as tmp,
        shared_etcd(Path(tmp) / "etcd") as etcd,
    ):
        for dim in args.dims:
            data = gaussian_mixture(
                args.n, dim, max(10, args.n // 1000), args.queries, seed=args.seed
            )
            run_: dict[str, Any] = {"dim": dim, "n": args.n, "dataset": data.name}
            run_["inprocess"] = ingest_runs.in_process(data, args.kind, params, args.batch, say)
            run_["cluster"] = ingest_runs.cluster(
                data,
                args.kind,
                params,
                args.shards,
                args.batch,
                args.in_flight,
                not args.no_records,
                Path(tmp),
                say,
                etcd,
            )
            run_["ratio_to_inprocess"] = (
                run_["cluster"]["columns"]["rows_per_s"] / run_["inprocess"]["rows_per_s"]
            )
            out["runs"].append(run_)
    out["load_average_at_end"] = list(os.getloadavg())
    return out


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def table(report: dict[str, Any]) -> str:
    head = (
        f"{'dim':>4} {'in-process rows/s':>17} {'cluster rows/s':>14} {'ratio':>6} "
        f"{'per-record rows/s':>17} {'build rows/s/shard':>18} {'B/vector flush':>14} "
        f"{'B/vector search':>15} {'Describe B/vec':>14} {'recall@10':>9}"
    )
    lines = [head, "-" * len(head)]
    for r in report["runs"]:
        c = r["cluster"]
        mem = c["memory"].values()
        per_flush = _mean([m["bytes_per_vector_after_flush"].get("rss", 0) for m in mem])
        per_search = _mean([m["bytes_per_vector_after_search"].get("rss", 0) for m in mem])
        described = _mean([m["describe"].get("bytes_per_vector") or 0 for m in mem])
        build = _mean([b["rows_per_s"] or 0 for b in c["build"].values()])
        records = c.get("records", {}).get("rows_per_s")
        lines.append(
            f"{r['dim']:>4} {r['inprocess']['rows_per_s']:>17,.0f} "
            f"{c['columns']['rows_per_s']:>14,.0f} {r['ratio_to_inprocess']:>6.2f} "
            f"{records if records is not None else float('nan'):>17,.0f} {build:>18,.0f} "
            f"{per_flush:>14,.0f} {per_search:>15,.0f} {described:>14,.0f} "
            f"{c['search']['recall_at_10']:>9.3f}"
        )
        cpu = c["columns"]["cpu_us_per_row"]
        servers = sum(v for k, v in cpu.items() if k != "client" and v is not None)
        lines.append(
            "     CPU µs per row: "
            + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items() if v is not None)
            + f"; servers {servers:.1f} (in process {r['inprocess']['cpu_us_per_row']:.1f})"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.ingest_bench", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--n", type=int, default=100_000, help="rows per dimension (default 100000)")
    p.add_argument(
        "--dims",
        type=lambda s: [int(x) for x in s.split(",") if x.strip()],
        default=[128, 384],
        help="dimensions, comma-separated (default 128,384)",
    )
    p.add_argument("--shards", type=int, default=2, help="shards in the cluster (default 2)")
    p.add_argument("--batch", type=int, default=5000, help="rows per request (default 5000)")
    p.add_argument("--in-flight", type=int, default=2, help="requests in flight (default 2)")
    p.add_argument("--kind", choices=sorted(PARAMS), default="hnsw", help="index kind")
    p.add_argument("--queries", type=int, default=500, help="queries of the search pass")
    p.add_argument("--seed", type=int, default=12)
    p.add_argument(
        "--no-records", action="store_true", help="skip the per-record upsert comparison"
    )
    p.add_argument("--data-dir", type=Path, help="where the clusters keep their data")
    p.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/ingest-*.json)")
    args = p.parse_args(argv)
    if args.n < 1000 or not args.dims or args.shards < 1:
        p.error("--n must be ≥ 1000, --dims non-empty, --shards ≥ 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    set_blas_threads(1)  # as in the shards: one BLAS thread per call
    report = run(args)
    print(table(report))
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = write_json(args.out or RESULTS_DIR / f"ingest-{stamp}.json", report)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
