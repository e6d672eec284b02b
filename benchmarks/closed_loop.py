"""Throughput at a fixed number of requests in flight, for recall-vs-QPS curves.

Recall/QPS curves (ann-benchmarks, VectorDBBench) are measured closed-loop: N workers each
send a query, wait for its answer and send the next, so N is the concurrency and QPS is
what the system sustains at it. (Tail latency under a given *arrival rate* is the load
test's job — ``benchmarks.open_loop`` — because closed loops hide queueing.)

Two runners with one result type, so a cluster and an in-process index are measured the
same way: ``grpc_closed_loop`` drives a coordinator with grpc.aio and N concurrent calls on
one channel; ``threaded_closed_loop`` drives an in-process index with N threads, one query
per call, as the coordinator sends them. Each records the first answer to every query (for
recall) and keeps going past the measuring time until every query has one.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
import numpy as np
from numpy.typing import NDArray

from benchmarks.latency import summarize_ms
from benchmarks.retrieval_api import method_path
from client.credentials import Credentials
from client.search_results import hit_columns
from protos.vecshard.v1 import retrieval_pb2 as pb

# A run stops early once this many calls failed without a single success.
GIVE_UP_AFTER = 200


@dataclass(frozen=True)
class ClosedLoopResult:
    workers: int
    seconds: float
    # Queries answered in the measured window (a SearchBatch call answers several).
    completed: int
    errors: dict[str, int]
    latencies: NDArray[np.float64]
    # First answer per query, -1 padded to k columns: what recall is computed from.
    found_ids: NDArray[np.int64]
    # Queries answered in the whole run, warm-up included (for CPU cost per query).
    answered_total: int = 0
    # Which queries got an answer (all of them unless the run hit its time limit).
    answered: NDArray[np.bool_] | None = None

    @property
    def qps(self) -> float:
        return self.completed / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "workers": self.workers,
            "seconds": self.seconds,
            "completed": self.completed,
            "errors": self.errors,
            "qps": self.qps,
            "answered_total": self.answered_total,
            "latency": summarize_ms(self.latencies),
        }


@dataclass(frozen=True)
class Timing:
    """Warm-up, then at least ``duration`` seconds measured; at most ``limit`` in all.

    With ``cover_all`` the run goes on past ``duration`` until every query has an answer
    (recall needs them all); latency-only runs turn it off.
    """

    duration: float
    warmup: float = 1.0
    limit: float = 120.0
    cover_all: bool = True

    def done(self, now: float, measure_to: float, answered: int, total: int) -> bool:
        return now >= measure_to and (not self.cover_all or answered == total)


class _Answers:
    def __init__(self, n: int, k: int) -> None:
        self.found = np.full((n, k), -1, dtype=np.int64)
        self.seen = np.zeros(n, dtype=np.bool_)
        self.count = 0

    def note(self, i: int, ids: Sequence[int]) -> None:
        if not self.seen[i]:
            self.seen[i] = True
            self.count += 1
            row = list(ids)[: self.found.shape[1]]
            self.found[i, : len(row)] = row


def _search_calls(
    requests: Sequence[bytes], batch: int, packed_hits: bool = True
) -> list[tuple[bytes, list[int]]]:
    """(serialized call, query indexes it answers): one Search each, or SearchBatch groups
    (asking for packed hits, as the SDK's search_batch does, unless told not to)."""
    if batch <= 1:
        return [(r, [i]) for i, r in enumerate(requests)]
    out = []
    for start in range(0, len(requests), batch):
        members = list(range(start, min(start + batch, len(requests))))
        call = pb.SearchBatchRequest(
            requests=[pb.SearchRequest.FromString(requests[i]) for i in members],
            packed_hits=packed_hits,
        )
        out.append((call.SerializeToString(), members))
    return out


async def grpc_closed_loop(
    address: str,
    requests: Sequence[bytes],
    k: int,
    concurrency: int,
    timing: Timing,
    timeout: float = 10.0,
    batch: int = 1,
    *,
    credentials: Credentials | None = None,
    packed_hits: bool = True,
) -> ClosedLoopResult:
    """``concurrency`` concurrent calls through one grpc.aio channel.

    ``requests`` are serialized SearchRequests, one per query; hits' entity ids must be the
    decimal row numbers (``bench_cluster`` ingests them so). With ``batch > 1`` each call is
    one SearchBatch of that many queries (for callers that have several at once), its hits
    packed unless ``packed_hits`` is false; QPS then counts queries, and latency is per call.
    """
    # TLS, and the token as per-call metadata, as the SDK sends them (None: the
    # SDK's environment, VECSHARD_*).
    creds = credentials or Credentials.from_env()
    metadata = creds.call_metadata()
    async with grpc.aio.secure_channel(address, creds.channel_credentials()) as channel:
        await channel.channel_ready()
        # Bytes in; a SearchBatchResponse or a SearchResponse out, by `batch`.
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, Any]
        if batch > 1:
            call = channel.unary_unary(
                method_path("SearchBatch"), response_deserializer=pb.SearchBatchResponse.FromString
            )
        else:
            call = channel.unary_unary(
                method_path("Search"), response_deserializer=pb.SearchResponse.FromString
            )
        calls = _search_calls(requests, batch, packed_hits)
        n = len(requests)
        answers = _Answers(n, k)
        counter = itertools.count()
        latencies: list[float] = []
        completed = 0
        errors: Counter[str] = Counter()
        start = time.perf_counter()
        measure_from = start + timing.warmup
        measure_to = measure_from + timing.duration
        hard_stop = start + timing.limit

        failures = successes = 0

        async def worker() -> None:
            nonlocal completed, failures, successes
            while True:
                t0 = time.perf_counter()
                if t0 >= hard_stop or timing.done(t0, measure_to, answers.count, n):
                    return
                if failures >= GIVE_UP_AFTER and successes == 0:
                    return  # nothing ever succeeds (e.g. an RPC this server lacks): stop early
                body, members = calls[next(counter) % len(calls)]
                try:
                    resp = await call(body, timeout=timeout, metadata=metadata)
                except grpc.aio.AioRpcError as exc:
                    failures += 1
                    if t0 >= measure_from or successes == 0:
                        errors[exc.code().name] += 1
                    continue
                successes += len(members)
                t1 = time.perf_counter()
                if t0 >= measure_from:
                    latencies.append(t1 - t0)
                    completed += len(members)
                for i, one in zip(members, resp.responses if batch > 1 else [resp], strict=True):
                    if not answers.seen[i]:
                        answers.note(i, [int(eid) for eid in hit_columns(one).entity_ids])

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - measure_from
    return ClosedLoopResult(
        concurrency,
        seconds,
        completed,
        dict(errors),
        np.array(latencies),
        answers.found,
        successes,
        answers.seen.copy(),
    )


def threaded_closed_loop(
    search: Callable[[int], Sequence[int] | NDArray[np.int64]],
    n_queries: int,
    k: int,
    threads: int,
    timing: Timing,
) -> ClosedLoopResult:
    """``threads`` threads each calling ``search(query_index)`` one query at a time.

    The in-process indexes release the GIL while they search (numpy BLAS, hnswlib, faiss),
    so threads give the index the same cores the cluster's processes get.
    """
    answers = _Answers(n_queries, k)
    counter = itertools.count()
    per_thread: list[list[float]] = [[] for _ in range(threads)]
    lock = threading.Lock()
    start = time.perf_counter()
    measure_from = start + timing.warmup
    measure_to = measure_from + timing.duration
    hard_stop = start + timing.limit

    def worker(out: list[float]) -> None:
        while True:
            t0 = time.perf_counter()
            if t0 >= hard_stop or timing.done(t0, measure_to, answers.count, n_queries):
                return
            i = next(counter) % n_queries
            ids = search(i)
            t1 = time.perf_counter()
            if t0 >= measure_from:
                out.append(t1 - t0)
            if not answers.seen[i]:
                with lock:
                    answers.note(i, [int(x) for x in ids])

    pool = [threading.Thread(target=worker, args=(out,), daemon=True) for out in per_thread]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    seconds = time.perf_counter() - measure_from
    latencies = np.array([x for out in per_thread for x in out])
    total = next(counter)  # every index handed out was searched
    return ClosedLoopResult(
        threads, seconds, len(latencies), {}, latencies, answers.found, total, answers.seen.copy()
    )
