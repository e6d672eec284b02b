"""`vecshard capacity`: shards, cores and memory for a deployment, derived
from the benchmarks' measurements (`cli.capacity_model`). Needs only the
JSON files the benchmarks wrote — no server, no extra."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli.capacity_measurements import MeasurementError, latest, load_measurements
from cli.capacity_model import GIB, Target, plan

RESULTS = Path("benchmarks") / "results"


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    c = sub.add_parser(
        "capacity",
        help="shards, cores and memory for a deployment, from measured benchmark figures",
        description=(
            "Plan a deployment from what the benchmarks measured on this code: bytes per "
            "vector and build rate (python -m benchmarks.ingest_bench), CPU per query at a "
            "recall (vecshard bench search, or the ingest benchmark's search pass). Prints "
            "the plan and every step of its derivation, with the measurement it used."
        ),
    )
    c.add_argument("--vectors", type=float, required=True, help="vectors to serve, e.g. 1e9")
    c.add_argument("--dim", type=int, required=True, help="dimension, e.g. 768")
    c.add_argument("--qps", type=float, required=True, help="queries per second to serve")
    c.add_argument("--recall", type=float, default=0.95, help="recall@10 to hold (default 0.95)")
    c.add_argument("--replicas", type=int, default=1, help="replicas per shard, at least")
    c.add_argument(
        "--upserts-per-second", type=float, default=0.0, help="sustained writes (default 0)"
    )
    c.add_argument("--shard-memory-gib", type=float, default=64.0, help="memory per shard")
    c.add_argument("--cores-per-shard", type=int, default=16, help="cores per shard process")
    c.add_argument("--utilization", type=float, default=0.6, help="target CPU use (0..1]")
    c.add_argument(
        "--feature-cache-mib",
        type=float,
        default=256.0,
        help="each shard's feature-row cache, as its `feature_cache_mib` setting "
        "(default 256; 0 for shards that serve no features)",
    )
    c.add_argument(
        "--ingest",
        type=Path,
        help=f"ingest benchmark JSON (default: the newest {RESULTS}/ingest-*.json)",
    )
    c.add_argument(
        "--search",
        type=Path,
        help=f"search benchmark JSON (default: {RESULTS}/search_bench.json if it exists)",
    )
    c.set_defaults(func=cmd_capacity)


def _gib(n: float) -> str:
    return f"{n / GIB:,.1f} GiB"


def cmd_capacity(args: argparse.Namespace) -> int:
    ingest = args.ingest or latest(RESULTS, "ingest-*.json")
    if ingest is None or not ingest.exists():
        print(
            f"error: no ingest measurement ({args.ingest or RESULTS / 'ingest-*.json'}); run "
            "`python -m benchmarks.ingest_bench` (it writes one) or pass --ingest FILE",
            file=sys.stderr,
        )
        return 2
    search = args.search
    if search is None and (RESULTS / "search_bench.json").exists():
        search = RESULTS / "search_bench.json"
    if (
        not 0 < args.utilization <= 1
        or args.replicas < 1
        or min(args.vectors, args.qps) <= 0
        or args.feature_cache_mib < 0
    ):
        print(
            "error: --utilization in (0, 1], --replicas ≥ 1, --vectors and --qps > 0, "
            "--feature-cache-mib ≥ 0",
            file=sys.stderr,
        )
        return 2
    target = Target(
        vectors=args.vectors,
        dim=args.dim,
        qps=args.qps,
        recall=args.recall,
        replicas=args.replicas,
        shard_memory_gib=args.shard_memory_gib,
        cores_per_shard=args.cores_per_shard,
        utilization=args.utilization,
        upserts_per_second=args.upserts_per_second,
        feature_cache_mib=args.feature_cache_mib,
    )
    try:
        measured = load_measurements(ingest, search, args.recall)
        p = plan(measured, target)
    except MeasurementError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"capacity for {args.vectors:,.0f} × {args.dim}-d vectors, {args.qps:,.0f} QPS at "
        f"recall@10 ≥ {args.recall}, ≥ {args.replicas} replica(s), kind {measured.kind}"
    )
    print(f"measured on: {measured.machine}")
    print("from: " + ", ".join(measured.files))
    print()
    print(f"  shards            {p.shards:>10,}   ({p.vectors_per_shard:,.0f} vectors each)")
    print(f"  replicas          {p.replicas:>10,}   per shard")
    print(
        f"  shard processes   {p.shard_processes:>10,}   × {args.cores_per_shard} cores, {_gib(p.shard_memory_bytes)} each"
    )
    print(f"  coordinators      {p.coordinators:>10,}")
    print(
        f"  cores needed      {p.total_cores:>10,.0f}   (queries on shards {p.shard_cores:,.0f}, "
        f"coordinators {p.coordinator_cores:,.0f}, ingest {p.ingest_cores:,.0f}; "
        f"at {args.utilization:.0%} utilization)"
    )
    print(f"  cores provisioned {p.shard_processes * args.cores_per_shard:>10,}   on shards")
    print(f"  memory            {_gib(p.total_memory_bytes):>14}   (all replicas)")
    print(
        f"  index build       {p.rebuild_shard_hours:>10.1f} h   one pass over a shard's rows "
        "(all shards build at once)"
    )
    print()
    print("derivation:")
    for line in p.derivation:
        print(f"  - {line}")
    return 0
