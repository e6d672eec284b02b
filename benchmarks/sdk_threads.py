"""The SDK's `search` from many threads: coalesced into `SearchBatch` calls or not.

    python -m benchmarks.sdk_threads [--n 100000] [--threads 16] [--seconds 8] [--rounds 2]

A serving tier calls `RetrievalClient.search` (or `get_embeddings`, with ``--work lookups``:
``--keys`` ids each, one in ten never written) one request at a time from many threads. This
loads a Gaussian mixture (the search benchmark's data) into a local cluster (one HNSW index
version, 2 shards), then drives it from ``--threads`` threads sharing one client, each
sending one query per `search` and waiting for it, under each setting in turn — coalescing
off (`coalescing=None`: one `Search` call per query) and on with each ``--in-flight``
limit (`client.call_coalescing`) — alternating over ``--rounds`` rounds, since this
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_cluster import (
    FAMILY,
    PURPOSE,
    TENANT,
    VERSION,
    BenchCluster,
    IndexPlan,
    serving_cluster,
)
from benchmarks.latency import summarize_ms
from benchmarks.process_cpu import CpuMeter, per_query_ms
from benchmarks.synthetic_data import gaussian_mixture
from client.call_coalescing import Coalescing, CoalescingStats
from client.retrieval_client import RetrievalClient

Work = Callable[[RetrievalClient, int], Any]


def search_work(route: str, queries: np.ndarray, k: int) -> Work:
    """Request i: `search` of query i; its answer's fingerprint (keys, scores)."""

    def work(client: RetrievalClient, i: int) -> Any:
        return [(h.key.entity_id, h.score) for h in client.search(route, queries[i], k).hits]

    return work


def lookup_work(id_lists: list[list[str]]) -> Work:
    """Request i: `get_embeddings` of id list i; the statuses and vectors."""

    def work(client: RetrievalClient, i: int) -> Any:
        got = client.get_embeddings(FAMILY, VERSION, id_lists[i])
        return got.statuses(), got.vectors.tobytes()

    return work


def drive(
    client: RetrievalClient,
    work: Work,
    requests: int,
    stats: CoalescingStats | None,
    threads: int,
    seconds: float,
    pids: dict[str, int],
) -> dict[str, Any]:
    """`threads` closed loops on one client for `seconds`, request i being
    `work(client, i)`; each request's first answer kept."""
    stop = time.monotonic() + seconds
    order = itertools.count()
    answers: dict[int, Any] = {}
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def loop() -> None:
        mine: list[float] = []
        while time.monotonic() < stop:
            i = next(order) % requests
            t0 = time.perf_counter()
            try:
                answer = work(client, i)
            except Exception as exc:  # counted, the run goes on
                with lock:
                    errors.append(type(exc).__name__)
                continue
            mine.append(time.perf_counter() - t0)
            answers.setdefault(i, answer)
        with lock:
            latencies.extend(mine)

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
    p.add_argument(
        "--work",
        choices=("search", "lookups"),
        default="search",
        help="what each thread sends: one search, or get_embeddings of --keys ids",
    )
    p.add_argument("--keys", type=int, default=100, help="ids per lookup (100)")
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
        if args.work == "search":
            work, requests = search_work(plan.route, data.queries, args.k), len(data.queries)
        else:  # ids of stored rows, one in ten of them never written
            rng = np.random.default_rng(2)
            id_lists = [
                [str(j) for j in rng.integers(0, args.n + args.n // 10, args.keys)]
                for _ in range(args.queries)
            ]
            work, requests = lookup_work(id_lists), len(id_lists)
        with _client(cluster, None) as plain:
            expected = [work(plain, i) for i in range(requests)]
        for rnd in range(args.rounds):
            for name, setting in settings.items():
                with _client(cluster, setting) as client:
                    work(client, 0)  # the route and the channel are ready
                    coalesced = client.searches if args.work == "search" else client.lookups
                    stats = coalesced.stats if coalesced is not None else None
                    row = drive(client, work, requests, stats, args.threads, args.seconds, pids)
                got = row.pop("answers")
                row["answers_equal"] = all(expected[i] == answer for i, answer in got.items())
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
