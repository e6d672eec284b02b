"""The vouch a coordinator sends with each call to a shard (`core.vouch`).

Searches carry their callers in the queries themselves (a batch mixes
callers, and the call to the shard is made by whichever request's task
happens to lead the batch). Every other shard call is made inside the task
of the one request it serves, so the interceptor's binding of that request is
kept in a context variable: tasks the request spawns (fanout, replicas,
background move-deletes) copy it when they are created.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar

from coordinator.model import ShardQuery
from core import vouch
from core.vouch import Vouch

CALLER: ContextVar[Vouch | None] = ContextVar("vecshard_caller", default=None)


def call_metadata() -> tuple[tuple[str, bytes], ...]:
    """The current request's vouch, or none: the shard then refuses any call
    that names a tenant (there is no default caller)."""
    caller = CALLER.get()
    return vouch.metadata([caller]) if caller is not None else ()


def search_metadata(queries: Sequence[ShardQuery]) -> tuple[tuple[str, bytes], ...]:
    return vouch.metadata([Vouch(q.principal, q.purpose, q.tenant_id) for q in queries])
