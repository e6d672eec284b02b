"""OpenTelemetry tracing (DESIGN §11), optional: with `opentelemetry-api`
absent every function here is a no-op, so the bare SDK (grpcio, protobuf,
numpy) is unchanged. `pip install 'vecshard[tracing]'` adds the API, the SDK
and the OTLP exporter.

Servers export spans only when configured (`[tracing] otlp_endpoint` or
`VECSHARD__TRACING__OTLP_ENDPOINT`; off by default), sampled parent-based at
`sample_ratio`. The trace context travels in gRPC metadata (W3C
`traceparent`): the SDK client injects it, every server's interceptor
extracts it (`server_span`), and the coordinator injects it again towards
the shards, so one trace shows client → coordinator → each shard. Log lines
carry the trace id (`TraceIdFilter`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace

    AVAILABLE = True
except ImportError:  # the bare SDK: tracing is a no-op
    AVAILABLE = False

log = logging.getLogger(__name__)
TRACER = "vecshard"
_active_seen = False
_inactive_until = 0.0
_RECHECK_SECONDS = 1.0


def active() -> bool:
    """Whether a tracer provider is installed (by `configure`, or by the
    application around the SDK). Until then every call here returns at once:
    the search path must not pay for spans nobody records. Asking
    OpenTelemetry reads the environment each time (1.2 % of a coordinator's
    CPU under SearchBatch, py-spy), so a negative answer is kept for a
    second: a provider installed later is seen within that."""
    global _active_seen, _inactive_until
    if _active_seen:
        return True
    if not AVAILABLE:
        return False
    now = time.monotonic()
    if now < _inactive_until:
        return False
    _active_seen = not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    _inactive_until = now + _RECHECK_SECONDS
    return _active_seen


def provider_changed() -> None:
    """A tracer provider was just installed: `active` looks again at once
    rather than within a second (`configure` calls this; so may an
    application that installs its own)."""
    global _inactive_until
    _inactive_until = 0.0


@dataclass(frozen=True)
class TracingConfig:
    # OTLP/gRPC collector address (host:port); empty = no exporter (off).
    otlp_endpoint: str = ""
    # Share of new traces sampled (a request with a sampled parent is always
    # sampled, so a trace is never cut in the middle).
    sample_ratio: float = 1.0
    # Send plaintext to the collector (in-cluster sidecars); TLS otherwise.
    insecure: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.sample_ratio <= 1.0:
            raise ValueError(f"sample_ratio {self.sample_ratio} must be in [0, 1]")


def configure(service: str, config: TracingConfig) -> bool:
    """Installs a tracer provider exporting to OTLP; returns whether tracing
    is on. Off without an endpoint, and (with a warning) without the SDK."""
    if not config.otlp_endpoint:
        return False
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
    except ImportError:
        log.warning(
            "tracing.otlp_endpoint is set but the OpenTelemetry SDK is not installed: "
            "pip install 'vecshard[tracing]'; tracing stays off"
        )
        return False
    provider = TracerProvider(
        resource=Resource.create({"service.name": service}),
        sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
    )
    exporter = OTLPSpanExporter(endpoint=config.otlp_endpoint, insecure=config.insecure)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    provider_changed()
    log.info("tracing to %s (sample ratio %s)", config.otlp_endpoint, config.sample_ratio)
    return True


def shutdown() -> None:
    """Exports the spans still buffered (a server exits with `os._exit`,
    which skips the SDK's own exit hook)."""
    provider = trace.get_tracer_provider() if AVAILABLE else None
    stop = getattr(provider, "shutdown", None)
    if callable(stop):
        stop()


def span(name: str, **attributes: Any) -> contextlib.AbstractContextManager[Any]:
    """A child span of the current one (a no-op without OpenTelemetry or
    without a configured provider)."""
    if not active():
        return contextlib.nullcontext()
    return trace.get_tracer(TRACER).start_as_current_span(name, attributes=attributes or None)


def outgoing_metadata() -> tuple[tuple[str, str], ...]:
    """The current trace context as gRPC metadata (empty when there is none)."""
    if not active():
        return ()
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return tuple(carrier.items())


class _HasMetadata(Protocol):
    def invocation_metadata(self) -> Iterable[Any] | None: ...


@contextlib.contextmanager
def server_span(name: str, context: _HasMetadata, **attributes: Any) -> Iterator[None]:
    """The span of one served RPC (`context`: the servicer context), a child
    of the caller's span when its metadata carries a trace context."""
    if not active():
        yield
        return
    metadata = context.invocation_metadata() or ()
    carrier = {str(k): v for k, v in metadata if isinstance(v, str)}
    token = otel_context.attach(propagate.extract(carrier))
    try:
        tracer = trace.get_tracer(TRACER)
        with tracer.start_as_current_span(
            name, kind=trace.SpanKind.SERVER, attributes=attributes or None
        ):
            yield
    finally:
        otel_context.detach(token)


def current_trace_id() -> str:
    if not active():
        return ""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""


class TraceIdFilter(logging.Filter):
    """Adds `trace` (" trace=<id>" inside a traced request, else "") to every
    record, for the log format's `%(trace)s`."""

    def filter(self, record: logging.LogRecord) -> bool:
        tid = current_trace_id()
        record.trace = f" trace={tid}" if tid else ""
        return True
