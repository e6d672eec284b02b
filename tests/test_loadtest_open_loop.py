"""The open-loop generator against a trivial in-test gRPC server: it keeps the target rate,
and its report (rates, codes, percentiles, timeline) agrees with what was recorded and with
what the server itself counted."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
import numpy as np
import pytest

from benchmarks.arrivals import arrival_offsets
from benchmarks.load_report import summarize
from benchmarks.open_loop import OK, LoadRun, OpenLoopConfig, run_open_loop
from benchmarks.request_mix import (
    RequestKind,
    RequestMix,
    access_context,
    batch_get_requests,
    build_mix,
    parse_mix,
    search_requests,
)
from protos.vecshard.v1 import retrieval_pb2 as pb
from protos.vecshard.v1 import retrieval_pb2_grpc

RATE = 300.0
DURATION = 3.0
REJECT_EVERY = 7  # the server answers every 7th search with RESOURCE_EXHAUSTED


class TrivialRetrieval(retrieval_pb2_grpc.RetrievalServiceServicer):
    """Answers at once; counts what it received and what it refused."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.rejected = 0

    def Search(self, request: pb.SearchRequest, context: grpc.ServicerContext) -> pb.SearchResponse:
        with self.lock:
            self.calls["Search"] += 1
            reject = self.calls["Search"] % REJECT_EVERY == 0
            self.rejected += reject
        if reject:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "shed by the test server")
        return pb.SearchResponse(route=request.route)

    def BatchGetEmbeddings(
        self, request: pb.BatchGetEmbeddingsRequest, context: grpc.ServicerContext
    ) -> pb.BatchGetEmbeddingsResponse:
        with self.lock:
            self.calls["BatchGetEmbeddings"] += 1
        return pb.BatchGetEmbeddingsResponse()


@dataclass
class TrivialServer:
    address: str
    servicer: TrivialRetrieval


@pytest.fixture(scope="module")
def trivial_server() -> Iterator[TrivialServer]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer = TrivialRetrieval()
    retrieval_pb2_grpc.add_RetrievalServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield TrivialServer(f"127.0.0.1:{port}", servicer)
    server.stop(None)


def small_mix() -> RequestMix:
    access = access_context("t0", "test")
    queries = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    kinds = {
        "search": RequestKind("search", "Search", search_requests("r", access, queries, 10)),
        "batch_get": RequestKind(
            "batch_get",
            "BatchGetEmbeddings",
            batch_get_requests(access, ("e", "v1"), ["a", "b", "c"], 2, 20, seed=1),
        ),
    }
    return build_mix(parse_mix("search=3,batch_get=1"), kinds)


async def load(address: str, config: OpenLoopConfig) -> LoadRun:
    async with grpc.aio.insecure_channel(address) as channel:
        await channel.channel_ready()
        return await run_open_loop(channel, small_mix(), config)


@dataclass
class Observed:
    run: LoadRun
    summary: dict[str, Any]
    calls: Counter[str]
    rejected: int


@pytest.fixture(scope="module")
def observed(trivial_server: TrivialServer) -> Observed:
    servicer = trivial_server.servicer
    run = asyncio.run(
        load(trivial_server.address, OpenLoopConfig(RATE, DURATION, "uniform", seed=3))
    )
    with servicer.lock:
        return Observed(run, summarize(run), Counter(servicer.calls), servicer.rejected)


def test_generator_keeps_the_target_rate(observed: Observed) -> None:
    run, summary = observed.run, observed.summary
    assert summary["scheduled"] == int(RATE * DURATION)
    assert summary["sent"] == summary["completed"] == summary["scheduled"]
    # The rate the sender sustained (inverse slope of its send times; a momentary stall of
    # a loaded machine barely moves it, a sender that keeps falling behind would) ...
    assert summary["send_rate"] == pytest.approx(RATE, rel=0.05)
    # ... every scheduled request went out and came back, and typically on time.
    assert summary["scheduled"] / run.scheduled[-1] == pytest.approx(RATE, rel=0.01)
    assert float(np.median(run.sent - run.scheduled)) < 0.02


def test_codes_and_kinds_match_what_the_server_counted(observed: Observed) -> None:
    run, summary = observed.run, observed.summary
    assert observed.rejected > 0
    assert summary["errors_by_code"] == {"RESOURCE_EXHAUSTED": observed.rejected}
    assert summary["ok"] + summary["errors"] == summary["completed"]
    by_kind = summary["by_kind"]
    assert by_kind["search"]["scheduled"] == observed.calls["Search"]
    assert by_kind["batch_get"]["scheduled"] == observed.calls["BatchGetEmbeddings"]
    assert by_kind["batch_get"]["codes"] == {OK: observed.calls["BatchGetEmbeddings"]}
    assert summary["partial"] == 0  # this build's SearchResponse has no partial flag yet
    assert (run.done >= run.sent).all() and (run.sent >= run.scheduled).all()


def test_report_percentiles_match_numpy_on_the_recorded_samples(observed: Observed) -> None:
    run, summary = observed.run, observed.summary
    samples = (run.done - run.scheduled)[run.ok]
    latency = summary["latency"]
    assert latency["count"] == len(samples) == summary["ok"]
    error = latency["histogram"]["relative_error"] * (1 + 1e-9)
    for p in (50, 90, 99, 99.9):
        want = float(np.percentile(samples, p, method="higher")) * 1e3
        assert abs(latency[f"p{p:g}_ms"] - want) <= error * want, p
    assert latency["max_ms"] == pytest.approx(samples.max() * 1e3, rel=1e-12)
    service = (run.done - run.sent)[run.ok]
    want = float(np.percentile(service, 99, method="higher")) * 1e3
    assert abs(summary["service_latency"]["p99_ms"] - want) <= error * want


def test_timeline_adds_up_to_the_totals(observed: Observed) -> None:
    summary = observed.summary
    rows = summary["timeline"]
    assert [r["t_s"] for r in rows] == [0.0, 1.0, 2.0]
    assert sum(r["scheduled"] for r in rows) == summary["scheduled"]
    assert sum(r["ok"] for r in rows) == summary["ok"]
    assert sum(sum(r["errors_by_code"].values()) for r in rows) == summary["errors"]


def test_uniform_and_poisson_schedules() -> None:
    uniform = arrival_offsets(250.0, 2.0, "uniform")
    assert len(uniform) == 500 and uniform[0] == 0.0
    np.testing.assert_allclose(np.diff(uniform), 1 / 250.0)
    poisson = arrival_offsets(1000.0, 50.0, "poisson", seed=5)
    assert (np.diff(poisson) > 0).all() and poisson[-1] < 50.0
    assert len(poisson) == pytest.approx(50_000, rel=0.02)  # 7 standard deviations
    gaps = np.diff(poisson)
    assert gaps.std() == pytest.approx(gaps.mean(), rel=0.05)  # exponential: std == mean
    np.testing.assert_array_equal(poisson, arrival_offsets(1000.0, 50.0, "poisson", seed=5))


@pytest.mark.parametrize("text", ["", "search", "search=0", "search=-1", "search=1,search=2"])
def test_bad_mix_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_mix(text)


def test_mix_naming_an_unavailable_kind_lists_what_is_available() -> None:
    with pytest.raises(ValueError, match="available kinds"):
        build_mix({"features": 1.0}, {})
