"""The thread-pool server's interceptor (`core.runtime.SyncServerInterceptor`)
on response-streaming methods (a shard's ExportBuckets, ExportFeatureRows):
the work of such a method runs while gRPC iterates its generator, after the
behaviour returned, so errors, counts and the in-flight gauge must follow the
iteration — a rollout restarts a shard once its in-flight gauge reads 0."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field

import grpc
import pytest
from prometheus_client import REGISTRY

from core.errors import NotFound
from core.runtime import SyncServerInterceptor

SERVICE = "vecshard.test.Streamer"
COMPONENT = "interceptor_test"


@dataclass
class Streams:
    target: str
    started: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


@pytest.fixture(scope="module")
def streams() -> Iterator[Streams]:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        interceptors=[SyncServerInterceptor(COMPONENT)],
    )
    state = Streams("")

    def fail(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        yield b"first"
        raise NotFound("unknown index version ix@nope; expected one the shard holds")

    def slow(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        state.started.set()
        state.release.wait(10)
        yield b"x"

    handlers: dict[str, grpc.RpcMethodHandler[bytes, bytes]] = {
        "Fail": grpc.unary_stream_rpc_method_handler(fail),
        "Slow": grpc.unary_stream_rpc_method_handler(slow),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    state.target = f"127.0.0.1:{port}"
    yield state
    state.release.set()
    server.stop(0)


def _labels(method: str) -> dict[str, str]:
    return {"component": COMPONENT, "service": SERVICE, "method": method}


def test_an_error_raised_mid_stream_reaches_the_caller_as_its_status(streams: Streams) -> None:
    with grpc.insecure_channel(streams.target) as ch:
        call: grpc.UnaryStreamMultiCallable[bytes, bytes] = ch.unary_stream(f"/{SERVICE}/Fail")
        received: list[bytes] = []
        with pytest.raises(grpc.RpcError) as err:
            for message in call(b"", timeout=5):
                received.append(message)
    assert received == [b"first"]
    assert err.value.code() == grpc.StatusCode.NOT_FOUND, err.value.details()
    assert "ix@nope" in (err.value.details() or "")
    counted = {
        code: REGISTRY.get_sample_value(
            "vecshard_grpc_requests_total", {**_labels("Fail"), "code": code}
        )
        for code in ("OK", "NOT_FOUND")
    }
    assert counted == {"OK": None, "NOT_FOUND": 1.0}


def test_a_running_stream_is_in_flight_until_it_ends(streams: Streams) -> None:
    gauge = "vecshard_grpc_in_flight"
    with grpc.insecure_channel(streams.target) as ch:
        slow: grpc.UnaryStreamMultiCallable[bytes, bytes] = ch.unary_stream(f"/{SERVICE}/Slow")
        responses = slow(b"", timeout=15)
        reader = threading.Thread(target=lambda: list(responses))
        reader.start()
        assert streams.started.wait(5)
        during = REGISTRY.get_sample_value(gauge, _labels("Slow"))
        streams.release.set()
        reader.join(10)
    assert during == 1
    assert REGISTRY.get_sample_value(gauge, _labels("Slow")) == 0
    assert (
        REGISTRY.get_sample_value("vecshard_grpc_requests_total", {**_labels("Slow"), "code": "OK"})
        == 1
    )
