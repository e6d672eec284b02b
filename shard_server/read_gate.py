"""Refuses a shard's reads (UNAVAILABLE) until it has caught up.

A shard that starts, or comes back after losing its lease, holds data that
may miss what its peers acknowledged without it, or still hold what they
deleted. It registers as DRAINING so coordinators send it no queries, but a
coordinator on an older snapshot — or the previous process's SERVING key,
lingering until its lease expires, on a stable address — still may. So the
reads themselves are refused until catch-up is done: coordinators fail over
to another replica on UNAVAILABLE. Writes and replication pass: catching up
needs both.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import grpc

from core.errors import Unavailable
from core.runtime import wrap_handler

READS = frozenset(
    {
        "/vecshard.v1.internal.ShardService/Search",
        "/vecshard.v1.internal.ShardService/SearchPacked",
        "/vecshard.v1.internal.ShardService/BatchGet",
        "/vecshard.v1.internal.FeatureShardService/GetFeatures",
        "/vecshard.v1.internal.FeatureShardService/GetFeatureColumns",
    }
)


class ReadGate(grpc.ServerInterceptor):
    """Closed at first; `open` once caught up, `close` when the shard's
    registration was lost (it catches up again)."""

    def __init__(self, shard_id: str) -> None:
        self.shard_id = shard_id
        self._open = threading.Event()

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    def open(self) -> None:
        self._open.set()

    def close(self) -> None:
        self._open.clear()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method not in READS:
            return handler
        return wrap_handler(handler, self._wrap)

    def _wrap(self, behavior: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
            if not self._open.is_set():
                raise Unavailable(
                    f"shard {self.shard_id} is catching up from its peer replicas; "
                    "ask another replica"
                )
            return behavior(request, context)

        return wrapped
