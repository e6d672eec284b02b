"""What every vecshard server has: error mapping, request metrics, health,
reflection and a Prometheus endpoint — written once for the sync shard server
and the asyncio coordinator alike.

Servicers stay thin: they raise `core.errors.VecshardError` subclasses and
the interceptor turns them into statuses whose message says what was expected.
"""

from __future__ import annotations

import faulthandler
import gc
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, NoReturn, TypeAlias

import grpc
import grpc.aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from core import tracing
from core.errors import VecshardError

log = logging.getLogger(__name__)

REQUESTS = Counter(
    "vecshard_grpc_requests_total",
    "gRPC requests handled, by service, method and status code",
    ["component", "service", "method", "code"],
)
IN_FLIGHT = Gauge(
    "vecshard_grpc_in_flight",
    "gRPC requests being handled now (a drained server waits for this to reach 0)",
    ["component", "service", "method"],
)
LATENCY = Histogram(
    "vecshard_grpc_request_duration_seconds",
    "gRPC request handling time, by service and method",
    ["component", "service", "method"],
    buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)


def _split(full_method: str) -> tuple[str, str]:
    _, service, method = full_method.split("/", 2)
    return service, method


def _status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, VecshardError):
        return exc.code, exc.message
    if isinstance(exc, _InjectedFault):
        return exc.code, str(exc)
    log.exception("unhandled error in handler", exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}"


# A string: grpc's classes are generic only in their stubs, not at run time.
_Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


def _rebuild(handler: _Handler, wrap: Callable[[Any], Any]) -> _Handler:
    # One handler serves both servers: the asyncio server keeps coroutine functions
    # in the same slots, so the behaviour's type is left open here.
    factory: Callable[..., _Handler]
    behavior: Callable[..., Any] | None
    if handler.unary_unary:
        factory, behavior = grpc.unary_unary_rpc_method_handler, handler.unary_unary
    elif handler.stream_unary:
        factory, behavior = grpc.stream_unary_rpc_method_handler, handler.stream_unary
    elif handler.unary_stream:
        factory, behavior = grpc.unary_stream_rpc_method_handler, handler.unary_stream
    else:
        factory, behavior = grpc.stream_stream_rpc_method_handler, handler.stream_stream
    return factory(
        wrap(behavior),
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def wrap_handler(handler: _Handler, wrap: Callable[[Any], Any]) -> _Handler:
    """The same handler with its behaviour wrapped (for other interceptors)."""
    return _rebuild(handler, wrap)


# Health and reflection answer without credentials (probes, service discovery);
# they reveal only the API's shape, never data.
PASSTHROUGH = ("/grpc.health.v1.", "/grpc.reflection.")

FAULTS_ENV = "VECSHARD_FAULTS"


def parse_faults(text: str) -> dict[str, tuple[str, str]]:
    """Fault injection for resilience tests and game days, e.g.
    `VECSHARD_FAULTS="Search=delay:2.0,BatchGet=error:UNAVAILABLE"`: a method
    name, then `delay:SECONDS` (answer late) or `error:CODE` (fail). Off
    unless the variable is set; a malformed value stops the server at start."""
    faults: dict[str, tuple[str, str]] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        method, _, action = item.partition("=")
        kind, _, arg = action.partition(":")
        if not method or kind not in ("delay", "error") or not arg:
            raise ValueError(
                f"{FAULTS_ENV}: {item!r}; expected METHOD=delay:SECONDS or METHOD=error:CODE"
            )
        if kind == "delay":
            float(arg)
        elif arg not in grpc.StatusCode.__members__:
            raise ValueError(f"{FAULTS_ENV}: unknown status code {arg!r}")
        faults[method] = (kind, arg)
    return faults


def _inject(fault: tuple[str, str] | None) -> None:
    if fault is None:
        return
    kind, arg = fault
    if kind == "delay":
        time.sleep(float(arg))
    else:
        raise _InjectedFault(grpc.StatusCode[arg])


class _InjectedFault(Exception):
    def __init__(self, code: grpc.StatusCode) -> None:
        super().__init__(f"injected fault: {code.name} ({FAULTS_ENV})")
        self.code = code


# The health and reflection services are not wrapped: their streams must not be
# counted as requests, and they never raise domain errors.
_PASSTHROUGH = PASSTHROUGH


@contextmanager
def _served(
    component: str, name: str, context: grpc.ServicerContext, fault: tuple[str, str] | None
) -> Iterator[None]:
    """One request of the thread-pool server, around its handling: the
    injected fault, the span, the in-flight gauge, the status its error maps
    to, its count and its duration."""
    service, method = _split(name)
    start = time.perf_counter()
    code = grpc.StatusCode.OK
    gauge = IN_FLIGHT.labels(component, service, method)
    gauge.inc()
    try:
        _inject(fault)
        with tracing.server_span(name, context, component=component):
            yield
    except GeneratorExit:  # a stream closed before its end: the caller went away
        code = grpc.StatusCode.CANCELLED
        raise
    except Exception as exc:
        aborted = context.code()  # type: ignore[attr-defined]  # grpc has it, its stub not
        if aborted is not None:  # the servicer aborted on its own
            code = aborted
            raise
        code, message = _status_of(exc)
        context.abort(code, message)
    finally:
        gauge.dec()
        REQUESTS.labels(component, service, method, code.name).inc()
        LATENCY.labels(component, service, method).observe(time.perf_counter() - start)


class SyncServerInterceptor(grpc.ServerInterceptor):
    """Errors → statuses and request metrics for the thread-pool server."""

    def __init__(self, component: str) -> None:
        import os

        self.component = component
        self.faults = parse_faults(os.environ.get(FAULTS_ENV, ""))
        if self.faults:
            log.warning("fault injection is ON: %s", self.faults)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], _Handler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> _Handler | None:
        handler = continuation(handler_call_details)
        name = handler_call_details.method
        if handler is None or name.startswith(_PASSTHROUGH):
            return handler
        _, method = _split(name)
        component = self.component
        # SearchPacked is the packed form of Search: a fault named for Search
        # (what game days and tests name) reaches both.
        fault = self.faults.get(method) or (
            self.faults.get("Search") if method == "SearchPacked" else None
        )

        def served(context: grpc.ServicerContext) -> AbstractContextManager[None]:
            return _served(component, name, context, fault)

        def wrap(behavior: Callable[..., Any]) -> Callable[..., Any]:
            def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
                with served(context):
                    return behavior(request, context)

            # A response-streaming behaviour only makes its generator when
            # called: the work (and its errors) happen while gRPC iterates it,
            # after `wrapped` returned. So the iteration is what is wrapped —
            # or errors reach the caller as UNKNOWN, the request counts OK at
            # ~0 s, and the in-flight gauge (which a rollout waits to read 0
            # before restarting a shard) drops while the stream still runs.
            def streamed(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                with served(context):
                    yield from behavior(request, context)

            return streamed if handler.response_streaming else wrapped

        return _rebuild(handler, wrap)


class AsyncServerInterceptor(grpc.aio.ServerInterceptor):
    """Errors → statuses and request metrics for the asyncio server."""

    def __init__(self, component: str) -> None:
        self.component = component

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[_Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> _Handler | None:
        handler = await continuation(handler_call_details)
        name = handler_call_details.method
        if handler is None or name.startswith(_PASSTHROUGH):
            return handler
        service, method = _split(name)
        component = self.component

        def wrap(behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            async def wrapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                start = time.perf_counter()
                code = grpc.StatusCode.OK
                gauge = IN_FLIGHT.labels(component, service, method)
                gauge.inc()
                try:
                    with tracing.server_span(name, context, component=component):
                        return await behavior(request, context)
                except grpc.aio.AbortError:
                    code = context.code() or grpc.StatusCode.UNKNOWN
                    raise
                except Exception as exc:
                    code, message = _status_of(exc)
                    await context.abort(code, message)
                finally:
                    gauge.dec()
                    REQUESTS.labels(component, service, method, code.name).inc()
                    LATENCY.labels(component, service, method).observe(time.perf_counter() - start)

            return wrapped

        return _rebuild(handler, wrap)


def add_health_and_reflection(
    server: grpc.Server | grpc.aio.Server, service_names: Iterable[str]
) -> health.HealthServicer:
    """Registers health (every service starts NOT_SERVING) and reflection.

    The caller flips services to SERVING once they can answer correctly (a shard
    only after its segments are loaded), so a readiness probe never sees a
    half-started server as ready.
    """
    names = list(service_names)
    servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    for name in ["", *names]:
        servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    reflection.enable_server_reflection(
        [*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    return servicer


def set_serving(
    servicer: health.HealthServicer, service_names: Iterable[str], serving: bool
) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ["", *service_names]:
        servicer.set(name, status)


def health_only_server(
    servicer: health.HealthServicer, listen: str, *, aio: bool
) -> tuple[grpc.Server | grpc.aio.Server, int]:
    """A plaintext port serving gRPC health and nothing else, for Kubernetes'
    gRPC probes, which cannot speak TLS (KEP-2727): it reveals only whether
    each service is SERVING, never data, and takes no credentials. Shares the
    main server's health servicer, so both ports always agree. Not started."""
    server: grpc.Server | grpc.aio.Server
    if aio:
        server = grpc.aio.server()
    else:
        from concurrent import futures

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="health"))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port(listen)
    if port == 0:
        raise OSError(f"could not bind the health port {listen}")
    return server, port


def start_metrics(host: str, port: int) -> int:
    """Serves Prometheus metrics over HTTP; port 0 picks a free one. Returns the port."""
    server, _thread = start_http_server(port, addr=host)
    return int(server.server_port)


# The largest message a server takes or sends (requests and answers alike).
MAX_MESSAGE_MB = 64


def grpc_options(max_message_mb: int = MAX_MESSAGE_MB) -> list[tuple[str, int]]:
    size = max_message_mb * 1024 * 1024
    return [
        ("grpc.max_send_message_length", size),
        ("grpc.max_receive_message_length", size),
        ("grpc.so_reuseport", 0),
    ]


def announce_ready(**fields: object) -> None:
    """One JSON line on stdout once serving: how a parent process (`vecshard up`,
    tests) learns the ports a server bound with port 0, without guessing."""
    import json
    import os
    import sys

    print(json.dumps({"event": "ready", "pid": os.getpid(), **fields}), flush=True)
    sys.stdout.flush()


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s%(trace)s: %(message)s",
        stream=__import__("sys").stderr,
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(tracing.TraceIdFilter())


# What a graceful stop may take beyond the gRPC grace period (closing storage,
# leaving the registry) before the watchdog gives up on it.
STOP_MARGIN_SECONDS = 15.0


def arm_stop_watchdog(grace: float) -> None:
    """Bounds a graceful stop: past grace + margin, every thread's stack goes
    to the log and the process exits 1. A stop that hangs then says where,
    instead of being SIGKILLed by its supervisor without a trace."""
    faulthandler.dump_traceback_later(grace + STOP_MARGIN_SECONDS, exit=True)


def exit_after_stop(code: int = 0) -> NoReturn:
    """Ends a server whose graceful stop is done (storage closed, registry
    left). Library threads — gRPC pollers, etcd watch and keep-alive — can
    keep the interpreter from exiting, which once made a drained shard miss
    its supervisor's deadline; nothing is left to lose, so exit at once."""
    faulthandler.cancel_dump_traceback_later()
    tracing.shutdown()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def freeze_startup_heap(young_threshold: int | None = None) -> None:
    """Moves everything alive once the server is ready (modules, settings,
    the registry snapshot, compiled protobuf classes) out of the garbage
    collector's reach: it is never garbage, and scanning it in every full
    collection made a coordinator pause 20–70 ms at a time under load.

    `young_threshold`: container objects allocated (net) between two
    collections of the youngest generation (CPython's default is 700). At
    700 a coordinator collects several times per SearchBatch, each time
    scanning the live objects of every request in flight — the same ones
    again and again — which perf measured at 5–6 % of its CPU; the
    collection itself is what is rare, not what it frees (cycles are)."""
    gc.collect()
    gc.freeze()
    if young_threshold is not None:
        if young_threshold < 1:
            raise ValueError(f"young_threshold {young_threshold} must be ≥ 1")
        _, older, oldest = gc.get_threshold()
        gc.set_threshold(young_threshold, older, oldest)
