"""What one shard call costs the shard, by batch size: `python -m benchmarks.shard_calls`.

The coordinator batches queries per shard (issue 12), so a shard's CPU per query is a
fixed cost per call (gRPC, TLS, thread hand-offs, the access guard, decoding) plus a cost
per query (index search, rerank, ranking, the packed answer). This calls one shard of a
local cluster directly, as a coordinator does (mutual TLS, a vouch per query), with
``SearchPacked`` batches of each size in turn, one call at a time, and reads the shard
process's CPU time and minor page faults from ``/proc`` around each run; a least-squares
line through CPU per call gives the two parts. Page faults are exact where CPU time is
noisy: the rerank of a 16-query batch once mapped and unmapped two 1 MiB temporaries on
every call (427 faults a call, ~30 % of the shard's CPU), which only this split showed.

    python -m benchmarks.shard_calls [--n 20000] [--batches 1,2,4,16] [--seconds 4]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from benchmarks.bench_cluster import PURPOSE, TENANT, VERSION, IndexPlan, serving_cluster
from benchmarks.process_cpu import CpuMeter
from benchmarks.synthetic_data import gaussian_mixture
from cli.local_cluster import ADMIN as PRINCIPAL
from coordinator.convert import shard_packed_pb
from coordinator.model import ShardQuery
from coordinator.vouching import search_metadata
from core.domain import VersionRef
from protos.vecshard.v1.internal import shard_pb2_grpc


def timed_calls(call: Callable[[], object], pid: int, seconds: float) -> dict[str, float]:
    """`call` repeated for `seconds`, one at a time; the process's counters per call."""
    for _ in range(5):  # warm the connection and the server's caches
        call()
    done = 0
    meter, start = CpuMeter({"shard": pid}).start(), time.perf_counter()
    while time.perf_counter() - start < seconds:
        call()
        done += 1
    wall = time.perf_counter() - start
    cpu, faults, switches = meter.stop()["shard"], meter.faults["shard"], meter.switches["shard"]
    if cpu is None or faults is None or switches is None:
        raise RuntimeError(f"process {pid} is gone (or /proc is not readable)")
    return {
        "calls": done,
        "wall_ms_per_call": wall * 1e3 / done,
        "shard_cpu_ms_per_call": cpu * 1e3 / done,
        "page_faults_per_call": faults / done,
        "context_switches_per_call": switches / done,
    }


def measure(
    stub: shard_pb2_grpc.ShardServiceStub,
    pid: int,
    index: VersionRef,
    queries: list[ShardQuery],
    batch: int,
    seconds: float,
) -> dict[str, float]:
    calls = itertools.cycle(
        [
            (
                shard_packed_pb(index, queries[i : i + batch]),
                search_metadata(queries[i : i + batch]),
            )
            for i in range(0, len(queries) - batch + 1, batch)
        ]
    )

    def one() -> object:
        request, metadata = next(calls)
        return stub.SearchPacked(request, metadata=metadata)

    run = timed_calls(one, pid, seconds)
    return {"batch": batch, **run, "shard_cpu_ms_per_query": run["shard_cpu_ms_per_call"] / batch}


def fixed_and_per_query(runs: list[dict[str, float]]) -> tuple[float, float] | None:
    """Least-squares CPU per call = fixed + per_query × batch (needs two batch sizes)."""
    sizes = np.array([r["batch"] for r in runs], dtype=np.float64)
    if len(set(sizes.tolist())) < 2:
        return None
    cpu = np.array([r["shard_cpu_ms_per_call"] for r in runs])
    per_query, fixed = np.polyfit(sizes, cpu, 1)
    return float(fixed), float(per_query)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.shard_calls",
        description="A shard's CPU per SearchPacked call by batch size, called directly as a "
        "coordinator (HNSW, clustered vectors, one call at a time): the fixed cost per call "
        "and the cost per query, and minor page faults per call.",
    )
    p.add_argument("--n", type=int, default=20_000, help="vectors loaded (2 shards)")
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--batches", default="1,2,4,16", help="batch sizes, comma-separated")
    p.add_argument("--seconds", type=float, default=4.0, help="per batch size")
    p.add_argument("--out", type=Path, help="also write the figures as JSON here")
    p.add_argument(
        "--cluster-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment for the cluster's processes (e.g. VECSHARD__SHARD__MAX_WORKERS=2)",
    )
    args = p.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    data = gaussian_mixture(args.n, args.dim, max(8, args.n // 1000), max(64, max(batches)), 1)
    plan = IndexPlan("calls", "hnsw", {"M": 16, "ef_construction": 100, "ef_search": 64})
    with tempfile.TemporaryDirectory(prefix="vecshard-calls-") as tmp:
        root = Path(tmp)
        env = dict(item.split("=", 1) for item in args.cluster_env)
        with serving_cluster(root, 2, plan, data.base, env) as bc:
            shard_id, child = sorted(bc.cluster.shards.items())[0]
            assert child.pid is not None and child.ready is not None
            queries = [
                ShardQuery(q.astype(np.float32), 10, TENANT, principal=PRINCIPAL, purpose=PURPOSE)
                for q in data.queries
            ]
            with bc.cluster.shard_channel(
                str(child.ready["grpc"]), principal=PRINCIPAL, purpose=PURPOSE
            ) as channel:
                stub = shard_pb2_grpc.ShardServiceStub(channel)
                index = VersionRef(plan.name, VERSION)
                runs = [measure(stub, child.pid, index, queries, b, args.seconds) for b in batches]
                # The floor: a call that does nothing (no guard, no work), same server.
                health_stub: Any = health_pb2_grpc.HealthStub(channel)  # stubs lack Check
                health = timed_calls(
                    lambda: health_stub.Check(health_pb2.HealthCheckRequest()),
                    child.pid,
                    args.seconds,
                )
    fit = fixed_and_per_query(runs)
    print(f"{shard_id}, {args.n // 2:,} vectors × {args.dim}, HNSW ef_search=64, k=10")
    print(
        f"{'batch':>6} {'CPU ms/call':>12} {'ms/query':>9} {'wall ms/call':>13} "
        f"{'faults/call':>12} {'switches/call':>14}"
    )
    rows: list[tuple[str, dict[str, float]]] = [(str(r["batch"]), r) for r in runs]
    rows.append(("health", {**health, "shard_cpu_ms_per_query": health["shard_cpu_ms_per_call"]}))
    for label, r in rows:
        print(
            f"{label:>6} {r['shard_cpu_ms_per_call']:>12.3f} "
            f"{r['shard_cpu_ms_per_query']:>9.3f} {r['wall_ms_per_call']:>13.3f} "
            f"{r['page_faults_per_call']:>12.1f} {r['context_switches_per_call']:>14.1f}"
        )
    if fit:
        print(f"fit: {fit[0]:.3f} ms fixed per call + {fit[1]:.3f} ms per query")
    if args.out:
        out: dict[str, Any] = {
            "runs": runs,
            "health_check": health,
            "fixed_ms": fit and fit[0],
            "per_query_ms": fit and fit[1],
        }
        args.out.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
