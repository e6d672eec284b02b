"""Fault injection against a real 2-shard local cluster: a shard is SIGKILLed mid-run and
restarted, and the load-test report must count exactly the errors and partial answers the
clients saw. "What the clients saw" is tallied independently by a gRPC client interceptor
on the same channel, not read back from the generator's own columns."""

from __future__ import annotations

import asyncio
from collections import Counter

import grpc
import grpc.aio
import numpy as np
import pytest

from benchmarks.bench_cluster import PURPOSE, TENANT, BenchCluster, IndexPlan, row_ids
from benchmarks.faults import FaultPlan, fault_report, shard_kill
from benchmarks.load_report import summarize
from benchmarks.open_loop import LoadRun, OpenLoopConfig, run_open_loop
from benchmarks.request_mix import (
    RequestKind,
    RequestMix,
    access_context,
    batch_get_requests,
    search_requests,
)
from benchmarks.retrieval_api import partial_flag_reader
from benchmarks.synthetic_data import gaussian_mixture
from cli.local_cluster import LocalCluster
from tests.conftest import ClusterFactory

pytestmark = pytest.mark.integration

N, DIM = 3000, 16
KILL_AT, RESTART_AFTER, DURATION, RATE = 1.0, 1.0, 4.0, 120.0


class ClientTally(grpc.aio.UnaryUnaryClientInterceptor):
    """Counts every call's final status and partial flag as the client receives them."""

    def __init__(self) -> None:
        self.codes: Counter[str] = Counter()
        self.partial = 0

    async def intercept_unary_unary(self, continuation, details, request):
        call = await continuation(details, request)
        code = await call.code()
        self.codes[code.name] += 1
        if code == grpc.StatusCode.OK:
            reader = partial_flag_reader(details.method.decode().rsplit("/", 1)[-1])
            if reader is not None and reader.FromString(await call).partial:  # type: ignore[attr-defined]  # class built at run time
                self.partial += 1
        return call


def mix_for(data_queries: np.ndarray) -> RequestMix:
    access = access_context(TENANT, PURPOSE)
    plan = IndexPlan("fault_flat", "flat")
    return RequestMix(
        (
            RequestKind("search", "Search", search_requests(plan.route, access, data_queries, 10)),
            RequestKind(
                "batch_get",
                "BatchGetEmbeddings",
                batch_get_requests(access, ("bench_items", "v1"), row_ids(N), 20, 50, seed=2),
            ),
        ),
        (3.0, 1.0),
    )


async def load_with_fault(cluster: LocalCluster, mix: RequestMix, tally: ClientTally) -> LoadRun:
    plan = FaultPlan("shard-1", kill_at=KILL_AT, restart_after=RESTART_AFTER)
    async with grpc.aio.secure_channel(
        cluster.coordinator_address,
        cluster.credentials().composite_credentials(),
        interceptors=[tally],
    ) as channel:
        await channel.channel_ready()
        return await run_open_loop(
            channel,
            mix,
            OpenLoopConfig(RATE, DURATION, "uniform", seed=1, timeout=2.0),
            side_tasks=[shard_kill(plan, cluster)],
        )


def test_report_counts_the_errors_and_partials_clients_saw(make_cluster: ClusterFactory) -> None:
    local = make_cluster(num_shards=2)
    data = gaussian_mixture(N, DIM, 8, 100, seed=0)
    with BenchCluster(local, dim=DIM, metric="l2", num_buckets=8) as bench:
        bench.add_index(IndexPlan("fault_flat", "flat"))
        bench.ingest(data.base)
        tally = ClientTally()
        run = asyncio.run(load_with_fault(local, mix_for(data.queries), tally))
    summary = summarize(run)
    fault = fault_report(run)

    # The report's counts are exactly what the client-side interceptor saw.
    assert summary["completed"] == summary["scheduled"] == sum(tally.codes.values())
    assert summary["ok"] == tally.codes["OK"]
    assert summary["errors_by_code"] == {c: n for c, n in tally.codes.items() if c != "OK"}
    assert summary["partial"] == tally.partial
    assert fault["failed"] == summary["errors"] and fault["partial"] == summary["partial"]

    # The fault happened on schedule and clients noticed it, never before it.
    assert [e.name for e in run.events] == ["kill", "restart", "ready"]
    kill, restart, ready = (e.at for e in run.events)
    assert kill == pytest.approx(KILL_AT, abs=0.2)
    assert restart - kill == pytest.approx(RESTART_AFTER, abs=0.2)
    assert summary["errors"] + summary["partial"] > 0
    assert fault["failed_or_partial_before_kill"] == 0
    assert fault["first_failure_after_kill_s"] is not None

    # The windows around the events partition the run and add up to the totals.
    windows = summary["windows"]
    assert [w["window"] for w in windows] == [
        "start → kill",
        "kill → restart",
        "restart → ready",
        "ready → end",
    ]
    assert sum(w["scheduled"] for w in windows) == summary["scheduled"]
    assert sum(w["partial"] for w in windows) == summary["partial"]
    assert sum(sum(w["errors_by_code"].values()) for w in windows) == summary["errors"]
    answered_before_kill = run.completed & (run.done < kill)
    assert answered_before_kill.sum() > 0 and (run.ok & ~run.partial)[answered_before_kill].all()
