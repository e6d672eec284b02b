"""Traces through real processes (issue 16): one search from the SDK makes
one trace whose spans cover the client, the coordinator (resolve, the fanout
to each shard, merge) and every shard it searched (the served RPC, the
search, each segment). The client's spans land in an in-memory exporter; the
servers export theirs over OTLP to an in-memory collector in this process.
And: without OpenTelemetry configured, tracing costs nothing and says so."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass

import grpc
import numpy as np
import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as tpb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from client.registry_client import RegistryClient
from client.retrieval_client import Record, RetrievalClient
from core import tracing
from tests.conftest import ClusterFactory
from tests.specs import route_spec

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class ServerSpan:
    service: str
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    attributes: dict[str, str]


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP trace receiver that keeps what it is sent."""

    def __init__(self) -> None:
        self.spans: list[ServerSpan] = []
        self.lock = threading.Lock()

    def Export(
        self, request: tpb.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> tpb.ExportTraceServiceResponse:
        got = []
        for rs in request.resource_spans:
            service = next(
                (a.value.string_value for a in rs.resource.attributes if a.key == "service.name"),
                "",
            )
            for ss in rs.scope_spans:
                for s in ss.spans:
                    attrs = {
                        a.key: str(a.value.string_value or a.value.int_value) for a in s.attributes
                    }
                    got.append(
                        ServerSpan(
                            service,
                            s.trace_id.hex(),
                            s.span_id.hex(),
                            s.parent_span_id.hex(),
                            s.name,
                            attrs,
                        )
                    )
        with self.lock:
            self.spans.extend(got)
        return tpb.ExportTraceServiceResponse()

    def of_trace(self, trace_id: str) -> list[ServerSpan]:
        with self.lock:
            return [s for s in self.spans if s.trace_id == trace_id]


@pytest.fixture
def collector() -> Iterator[tuple[Collector, int]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    c = Collector()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(c, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield c, port
    server.stop(0)


@pytest.fixture(scope="module")
def memory() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    tracing.provider_changed()
    return exporter


def test_one_search_traces_every_shard_it_touched(
    make_cluster: ClusterFactory, collector: tuple[Collector, int], memory: InMemorySpanExporter
) -> None:
    received, port = collector
    cluster = make_cluster(
        num_shards=3,
        num_coordinators=1,
        extra_env={
            "VECSHARD__TRACING__OTLP_ENDPOINT": f"127.0.0.1:{port}",
            "OTEL_BSP_SCHEDULE_DELAY": "50",
        },
    )
    with RegistryClient(cluster.coordinator_target) as reg:
        reg.apply(route_spec(dim=8, num_buckets=6))
    rng = np.random.default_rng(0)
    with RetrievalClient(cluster.coordinator_target, tenant_id="t", purpose="p") as c:
        c.upsert("v", "v1", [Record(f"e{i}", rng.normal(size=8)) for i in range(300)])
        memory.clear()
        res = c.search("r", rng.normal(size=8), k=20)
    (client_span,) = [s for s in memory.get_finished_spans() if s.name == "vecshard.client/Search"]
    trace_id = format(client_span.context.trace_id, "032x")
    searched = int(res.diagnostics["shards_searched"])
    assert searched >= 1

    def shard_spans() -> list[ServerSpan]:
        return [s for s in received.of_trace(trace_id) if s.name == "shard.segment"]

    tick = threading.Event()
    for _ in range(400):  # up to 20 s for the batch processors to export
        spans = received.of_trace(trace_id)
        shards = {s.attributes.get("shard_id") for s in spans if s.name == "shard.search"}
        if (
            len(shards) >= searched
            and shard_spans()
            and any(s.name == "coordinator.merge" for s in spans)
        ):
            break
        tick.wait(0.05)
    spans = received.of_trace(trace_id)
    names = {s.name for s in spans}
    assert {
        "/vecshard.v1.RetrievalService/Search",
        "coordinator.resolve",
        "coordinator.shard",
        "coordinator.shard_call",
        "coordinator.merge",
        "/vecshard.v1.internal.ShardService/SearchPacked",
        "shard.search",
        "shard.segment",
    } <= names, names
    by_id = {s.span_id: s for s in spans}
    (server,) = [s for s in spans if s.name == "/vecshard.v1.RetrievalService/Search"]
    assert server.parent_id == format(client_span.context.span_id, "016x")  # client → coordinator
    fanned = {s.attributes["shard_id"] for s in spans if s.name == "coordinator.shard"}
    searched_on = {s.attributes["shard_id"] for s in spans if s.name == "shard.search"}
    assert len(fanned) == searched and searched_on == fanned
    assert {h.shard_id for h in res.hits} <= searched_on
    for s in spans:
        if s.name == "shard.search":
            # shard.search ← the shard's RPC span ← the coordinator's call to it
            rpc = by_id[s.parent_id]
            assert (
                rpc.service == "vecshard-shard"
                and by_id[rpc.parent_id].name == "coordinator.shard_call"
            )


def test_log_lines_carry_the_trace_id(memory: InMemorySpanExporter) -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    tracing.TraceIdFilter().filter(record)
    assert record.trace == ""  # type: ignore[attr-defined]  # set by the filter
    with tracing.span("outer") as span:
        tracing.TraceIdFilter().filter(record)
        assert record.trace == f" trace={format(span.get_span_context().trace_id, '032x')}"  # type: ignore[attr-defined]
    assert tracing.outgoing_metadata() == ()
    with tracing.span("outer"):
        ((key, value),) = tracing.outgoing_metadata()
        assert key == "traceparent" and value.startswith("00-")


def test_tracing_is_off_without_an_endpoint() -> None:
    assert tracing.configure("x", tracing.TracingConfig()) is False
    with pytest.raises(ValueError, match="sample_ratio"):
        tracing.TracingConfig(sample_ratio=2.0)


def test_without_a_provider_the_environment_is_read_once_a_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`active` is on every shard call's path: with no provider installed it
    asks OpenTelemetry (an environment read) at most once a second, and a
    provider installed meanwhile is seen at once through `provider_changed`."""
    asked: list[int] = []
    proxy = trace.ProxyTracerProvider()
    installed: list[object] = [proxy]

    def provider() -> object:
        asked.append(1)
        return installed[0]

    monkeypatch.setattr(tracing, "_active_seen", False)
    monkeypatch.setattr(tracing, "_inactive_until", 0.0)
    monkeypatch.setattr(trace, "get_tracer_provider", provider)
    assert [tracing.active() for _ in range(100)] == [False] * 100
    assert len(asked) == 1
    installed[0] = TracerProvider()
    assert tracing.active() is False  # not looked at again yet
    tracing.provider_changed()
    assert tracing.active() is True and len(asked) == 2
