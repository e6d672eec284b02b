"""The SDK's `search` from many threads: coalesced into `SearchBatch` calls or not.

    python -m benchmarks.sdk_threads [--n 100000] [--threads 16] [--seconds 8] [--rounds 2]

A serving tier calls `RetrievalClient.search` one query at a time from many threads. This
loads a Gaussian mixture (the search benchmark's data) into a local cluster (one HNSW index
version, 2 shards), then drives it from ``--threads`` threads sharing one client, each
sending one query per `search` and waiting for it, under each setting in turn — coalescing
off (`coalescing=None`: one `Search` call per query) and on with each ``--in-flight``
limit (`client.search_coalescing`) — alternating over ``--rounds`` rounds, since this
machine's speed drifts. Per setting: QPS, latency from the caller's side (p50 / p99), CPU
milliseconds per query of the client process and of each server process (`/proc`), the
mean queries per batch call, and whether every query's hits (keys and scores) equal the
uncoalesced ones. JSON goes to ``--out``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_cluster import PURPOSE, TENANT, BenchCluster, IndexPlan, serving_cluster
from benchmarks.latency import summarize_ms
from benchmarks.process_cpu import CpuMeter, per_query_ms
from benchmarks.synthetic_data import gaussian_mixture
from client.retrieval_client import RetrievalClient
from client.search_coalescing import Coalescing


def _hits(client: RetrievalClient, route: str, queries: np.ndarray, k: int) -> list[Any]:
    return [[(h.key.entity_id, h.score) for h in client.search(route, q, k).hits] for q in queries]


def drive(
    client: RetrievalClient,
    route: str,
    queries: np.ndarray,
    k: int,
    threads: int,
    seconds: float,
    pids: dict[str, int],
) -> dict[str, Any]:
    """`threads` closed loops on one client for `seconds`; each query's first answer kept."""
    stop = time.monotonic() + seconds
    order = itertools.count()
    answers: dict[int, list[tuple[str, float]]] = {}
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def loop() -> None:
        mine: list[float] = []
        while time.monotonic() < stop:
            i = next(order) % len(queries)
            t0 = time.perf_counter()
            try:
                hits = client.search(route, queries[i], k).hits
            except Exception as exc:  # counted, the run goes on
                with lock:
                    errors.append(type(exc).__name__)
                continue
            mine.append(time.perf_counter() - t0)
            if i not in answers:
                answers[i] = [(h.key.entity_id, h.score) for h in hits]
        with lock:
            latencies.extend(mine)

    stats = client.searches.stats if client.searches is not None else None
    before = (stats.batches, stats.batched_queries) if stats else (0, 0)
    meter = CpuMeter(pids).start()
    t0 = time.perf_counter()
    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - t0
    cpu = meter.stop()
    done = len(latencies)
    batches = (stats.batches - before[0], stats.batched_queries - before[1]) if stats else (0, 0)
    return {
        "queries": done,
        "errors": len(errors),
        "qps": done / wall,
        "latency": {k: v for k, v in summarize_ms(latencies).items() if k != "histogram"},
        "cpu_ms_per_query": per_query_ms(cpu, done),
        "batch_calls": batches[0],
        "mean_batch": batches[1] / batches[0] if batches[0] else 0.0,
        "answers": answers,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.sdk_threads", description=__doc__)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--ef-search", type=int, default=32)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--threads", type=int, default=16)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument(
        "--in-flight", default="1,2,4", help="coalescing max_in_flight values to compare"
    )
    p.add_argument("--out", default="benchmarks/results/sdk_threads.json")
    args = p.parse_args(argv)
    data = gaussian_mixture(args.n, args.dim, max(8, args.n // 1000), args.queries, 1)
    plan = IndexPlan("sdk", "hnsw", {"M": 16, "ef_construction": 100, "ef_search": args.ef_search})
    settings: dict[str, Coalescing | None] = {"off": None}
    for limit in (int(x) for x in args.in_flight.split(",") if x):
        settings[f"in_flight={limit}"] = Coalescing(max_in_flight=limit)
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in settings}
    with (
        tempfile.TemporaryDirectory(prefix="vecshard-sdk-") as tmp,
        serving_cluster(Path(tmp), args.shards, plan, data.base) as cluster,
    ):
        pids = cluster.server_pids
        with _client(cluster, None) as plain:
            expected = dict(enumerate(_hits(plain, plan.route, data.queries, args.k)))
        for rnd in range(args.rounds):
            for name, setting in settings.items():
                with _client(cluster, setting) as client:
                    client.search(plan.route, data.queries[0], args.k)  # route cached
                    row = drive(
                        client, plan.route, data.queries, args.k, args.threads, args.seconds, pids
                    )
                got = row.pop("answers")
                row["answers_equal"] = all(expected[i] == hits for i, hits in got.items())
                rows[name].append(row)
                print(_line(rnd, name, row), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"settings": vars(args), "runs": rows}, indent=2))
    print(f"wrote {out}")
    return 0 if all(r["answers_equal"] for runs in rows.values() for r in runs) else 1


def _client(cluster: BenchCluster, coalescing: Coalescing | None) -> RetrievalClient:
    return RetrievalClient(
        cluster.address,
        tenant_id=TENANT,
        purpose=PURPOSE,
        timeout=10.0,
        credentials=cluster.credentials(),
        coalescing=coalescing,
    )


def _line(rnd: int, name: str, row: dict[str, Any]) -> str:
    cpu = row["cpu_ms_per_query"]
    servers = sum(v for k, v in cpu.items() if k not in ("client", "total") and v is not None)
    lat = row["latency"]
    return (
        f"round {rnd + 1} {name:>12}: {row['qps']:7,.0f} QPS  p50 {lat.get('p50_ms', 0):5.2f}"
        f" / p99 {lat.get('p99_ms', 0):6.2f} ms  CPU ms/query client {cpu['client']:.3f}"
        f" servers {servers:.3f}  mean batch {row['mean_batch']:4.1f}"
        f"  errors {row['errors']}  answers equal: {row['answers_equal']}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
