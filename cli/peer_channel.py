"""A channel to a shard for tools that act as a coordinator (benchmarks,
soak checks, tests of the shard itself).

Shards answer only cluster components over mutual TLS, and every call that
names a tenant must carry a coordinator's vouch (`core.vouch`). This channel
presents a coordinator certificate and vouches, for a principal and purpose,
for the tenants each request names — what a coordinator does after checking
the principal's grant. The principal must still hold the grant in the
registry: the shard checks the vouch there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc

from core import runtime as serving
from core import vouch
from core.vouch import Vouch


def request_tenants(request: Any) -> tuple[list[str], bool]:
    """(tenants the request names, whether one vouch per item is expected)."""
    if hasattr(request, "queries"):
        return [q.tenant_id for q in request.queries], True
    # Columnar forms name their one tenant once.
    for holder in (request, getattr(request, "columns", None)):
        tenant = getattr(holder, "tenant_id", "")
        if isinstance(tenant, str) and tenant:
            return [tenant], False
    for field in ("keys", "entities"):
        if hasattr(request, field):
            return [k.tenant_id for k in getattr(request, field)], False
    if hasattr(request, "records"):
        return [r.record.key.tenant_id for r in request.records], False
    if hasattr(request, "rows"):
        return [r.entity.tenant_id for r in request.rows], False
    return [], False


class _Vouching(grpc.UnaryUnaryClientInterceptor, grpc.StreamUnaryClientInterceptor):
    def __init__(self, principal: str, purpose: str) -> None:
        self.principal = principal
        self.purpose = purpose

    def _details(self, details: Any, request: Any) -> Any:
        tenants, per_item = request_tenants(request)
        vouches = (
            [Vouch(self.principal, self.purpose, t) for t in tenants]
            if per_item
            else [Vouch(self.principal, self.purpose, tenants[0] if tenants else "")]
        )
        md = [*(details.metadata or ()), *vouch.metadata(vouches)]
        return _Details(details.method, details.timeout, md, details.credentials)

    def intercept_unary_unary(
        self, continuation: Callable[[Any, Any], Any], details: Any, request: Any
    ) -> Any:
        return continuation(self._details(details, request), request)

    def intercept_stream_unary(
        self, continuation: Callable[[Any, Any], Any], details: Any, request_iterator: Iterator[Any]
    ) -> Any:
        messages = list(request_iterator)
        first = messages[0] if messages else None
        return continuation(self._details(details, first), iter(messages))


class _Details(grpc.ClientCallDetails):
    def __init__(self, method: str, timeout: float | None, metadata: Any, credentials: Any) -> None:
        self.method = method
        self.timeout = timeout
        self.metadata = metadata
        self.credentials = credentials


def shard_channel(
    address: str,
    credentials: grpc.ChannelCredentials,
    *,
    principal: str,
    purpose: str,
) -> grpc.Channel:
    channel = grpc.secure_channel(address, credentials, options=serving.grpc_options())
    return grpc.intercept_channel(channel, _Vouching(principal, purpose))
