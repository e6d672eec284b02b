"""Defence in depth on the shard (DESIGN §10).

Mutual TLS lets only holders of a certificate from the cluster CA connect.
This interceptor then checks, for every call:

1. the peer's certificate names a cluster component allowed to call the
   method (coordinators call the data plane; shards call replication);
2. every query, key, record or feature row the call names is for the tenant
   the calling coordinator vouched for (`core.vouch`), and the vouch holds in
   this shard's own copy of the registry: the principal exists and has the
   role, the tenant and the purpose, the tenant and the embedding family allow
   the purpose, and a filter touches no restricted attribute it is not granted.

So a coordinator that forgets a check, or puts another tenant's key into a
request, is refused here with PERMISSION_DENIED, and so is any direct call
that does not come from a cluster peer. It sits inside `core.runtime`'s
interceptor, which turns its exceptions into statuses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from core.domain import VersionRef
from core.errors import NotFound, PermissionDenied
from core.identity import ComponentRole, peer_component
from core.runtime import PASSTHROUGH, wrap_handler
from core.vouch import ERASURE_PURPOSE, Vouch, from_metadata
from core.wire import filter_from_pb
from registry.access_policy import (
    Principal,
    Role,
    bind_tenant,
    check_grant,
    check_purpose,
    check_restricted_filter,
    filter_attributes,
    require_role,
)
from registry.snapshot import Snapshot
from shard_server.metrics import QUERIES_REFUSED


class SnapshotSource(Protocol):
    @property
    def snapshot(self) -> Snapshot: ...

    def reread(self) -> Snapshot: ...


Metadata = Sequence[tuple[str, str | bytes]] | None


@dataclass(frozen=True)
class Items:
    """What one request (or one message of a stream) names."""

    tenants: list[str]
    index: VersionRef | None = None
    # Per query: the filter proto (searches only).
    filters: list[Any] | None = None


def _index(ref: Any) -> VersionRef:
    return VersionRef(ref.name, ref.version)


def _search(req: Any) -> Items:
    return Items([q.tenant_id for q in req.queries], _index(req.index), list(req.queries))


def _keys(req: Any) -> Items:
    return Items([k.tenant_id for k in req.keys], _index(req.index))


def _lookup(req: Any) -> Items:
    """Keys per message, then ids of one tenant (`convert.lookup_keys`): the
    guard read only the first form, so a columnar BatchGet of another tenant
    passed on any vouch (found in review)."""
    columns = [req.tenant_id] if req.entity_ids else []
    return Items([k.tenant_id for k in req.keys] + columns, _index(req.index))


def _upsert(req: Any) -> Items:
    return Items([r.record.key.tenant_id for r in req.records], _index(req.index))


def _entities(req: Any) -> Items:
    return Items([e.tenant_id for e in req.entities])


def _rows(req: Any) -> Items:
    """Feature rows, per row and (when given) as columns of one tenant."""
    columns = [req.columns.tenant_id] if req.HasField("columns") else []
    return Items([r.entity.tenant_id for r in req.rows] + columns)


def _upsert_columns(req: Any) -> Items:
    """One tenant's rows as columns per message."""
    return Items([req.tenant_id], _index(req.index))


def _feature_columns(req: Any) -> Items:
    """Several groups' rows, all of the request's one tenant."""
    return Items([req.tenant_id])


def _whole_call(req: Any) -> Items:
    """Erasure maintenance (purge, scan): one vouch for the call, no items."""
    return Items([])


@dataclass(frozen=True)
class ShardRule:
    peers: frozenset[ComponentRole]
    # None: no vouch needed (Describe, Flush, replication: no tenant's data).
    items: Callable[[Any], Items] | None = None
    role: Role = Role.READER
    per_item: bool = False  # a vouch per item (searches), else one per call
    # Per-item refusals are answered per item (`refused_queries`): a batch
    # mixes callers, and one caller's refusal must not fail the others.
    partial: bool = False


_COORD = frozenset({ComponentRole.COORDINATOR})
_S = "/vecshard.v1.internal.ShardService/"
_F = "/vecshard.v1.internal.FeatureShardService/"
_X = "/vecshard.v1.internal.ShardErasureService/"

RULES: dict[str, ShardRule] = {
    _S + "SearchPacked": ShardRule(_COORD, _search, Role.READER, per_item=True, partial=True),
    _S + "Search": ShardRule(_COORD, _search, Role.READER, per_item=True),
    _S + "BatchGet": ShardRule(_COORD, _lookup, Role.READER),
    _S + "Upsert": ShardRule(_COORD, _upsert, Role.WRITER),
    _S + "UpsertColumns": ShardRule(_COORD, _upsert_columns, Role.WRITER),
    _S + "Delete": ShardRule(_COORD, _keys, Role.WRITER),
    _S + "Describe": ShardRule(_COORD),
    _S + "Flush": ShardRule(_COORD),
    # Recall against exact search over sampled stored vectors (evaluation
    # gates): answers counts, never a tenant's rows.
    _S + "CheckRecall": ShardRule(_COORD),
    _F + "GetFeatures": ShardRule(_COORD, _entities, Role.READER),
    _F + "GetFeatureColumns": ShardRule(_COORD, _feature_columns, Role.READER),
    _F + "PutFeatures": ShardRule(_COORD, _rows, Role.WRITER),
    _X + "DeleteFeatureRows": ShardRule(_COORD, _entities, Role.ADMIN),
    _X + "Purge": ShardRule(_COORD, _whole_call, Role.ADMIN),
    _X + "ScanFiles": ShardRule(_COORD, _whole_call, Role.ADMIN),
    "/vecshard.v1.internal.ReplicationService/ExportBuckets": ShardRule(
        frozenset({ComponentRole.SHARD})
    ),
    "/vecshard.v1.internal.ReplicationService/ExportFeatureRows": ShardRule(
        frozenset({ComponentRole.SHARD})
    ),
    "/vecshard.v1.internal.ReplicationService/BucketDigests": ShardRule(
        frozenset({ComponentRole.SHARD})
    ),
}


# The queries of the call being served that the guard refused, by position
# (a `partial` rule's call with some queries refused; None otherwise).
_REFUSED: ContextVar[Mapping[int, PermissionDenied] | None] = ContextVar(
    "vecshard_refused_queries", default=None
)


def refused_queries() -> Mapping[int, PermissionDenied]:
    """For the servicer of a `partial` rule: the queries of this call it
    must answer as refused, not search."""
    return _REFUSED.get() or {}


class ShardAccessGuard(grpc.ServerInterceptor):
    def __init__(self, registry: SnapshotSource) -> None:
        self.registry = registry

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(PASSTHROUGH):
            return handler
        rule = RULES.get(method)
        streaming = bool(handler.request_streaming)
        return wrap_handler(handler, lambda behavior: self._wrap(behavior, method, rule, streaming))

    def _wrap(
        self,
        behavior: Callable[..., Any],
        method: str,
        rule: ShardRule | None,
        streaming: bool,
    ) -> Callable[..., Any]:
        def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
            if rule is None:
                raise PermissionDenied(f"{method} has no access policy on the shard; refused")
            role = peer_component(context.peer_identities())
            if role not in rule.peers:
                raise PermissionDenied(
                    f"{method} answers {sorted(p.value for p in rule.peers)} only; the caller's "
                    f"certificate names {role.value if role else 'no cluster component'}"
                )
            if rule.items is not None:
                md = context.invocation_metadata()
                if streaming:
                    request = self._checked_stream(request, rule, md)
                else:
                    # Only a caller that reads per-query refusals gets them.
                    partial = rule.partial and bool(request.accepts_refusals)
                    refused = self.check(rule, rule.items(request), md, partial)
                    if refused:
                        token = _REFUSED.set(refused)
                        try:
                            return behavior(request, context)
                        finally:
                            _REFUSED.reset(token)
            return behavior(request, context)

        return wrapped

    def _checked_stream(
        self, requests: Iterator[Any], rule: ShardRule, md: Metadata
    ) -> Iterator[Any]:
        assert rule.items is not None
        for message in requests:
            self.check(rule, rule.items(message), md)
            yield message

    # -- the checks ----------------------------------------------------------

    def check(
        self, rule: ShardRule, items: Items, md: Metadata, partial: bool = False
    ) -> dict[int, PermissionDenied]:
        """Raises when the call is refused. With `partial` (a `partial` rule
        whose caller reads per-query refusals), items are refused one by one:
        those refused come back by position while others pass (the call fails
        only when every item is refused)."""
        vouches = from_metadata(md, len(items.tenants) if rule.per_item else 1)
        if not rule.per_item:
            for i, tenant in enumerate(items.tenants):
                if tenant != vouches[0].tenant:
                    raise PermissionDenied(
                        f"item {i} is for tenant {tenant[:128]!r}, but the coordinator vouched "
                        f"for {vouches[0].tenant[:128]!r}"
                    )
            self._check_vouch(vouches[0], rule.role, items.index)
            return {}
        refused: dict[int, PermissionDenied] = {}
        checked: dict[Vouch, Principal | PermissionDenied] = {}
        for i, (tenant, v) in enumerate(zip(items.tenants, vouches, strict=True)):
            if tenant != v.tenant:  # no position: a batch mixes callers
                refused[i] = PermissionDenied(
                    f"a query is for tenant {tenant[:128]!r}, but the coordinator vouched "
                    f"for {v.tenant[:128]!r}"
                )
                continue
            if v not in checked:
                try:
                    checked[v] = self._check_vouch(v, rule.role, items.index)
                except PermissionDenied as exc:
                    checked[v] = exc
            found = checked[v]
            if isinstance(found, PermissionDenied):
                refused[i] = found
        if items.filters is not None and items.index is not None:
            self._check_filters(items, vouches, checked, refused)
        if refused and (not partial or len(refused) == len(items.tenants)):
            raise refused[min(refused)]
        if refused:
            QUERIES_REFUSED.inc(len(refused))
        return refused

    def _lookup(self, pick: Callable[[Snapshot], Any], what: str) -> tuple[Snapshot, Any]:
        """A principal or tenant unknown here is refused; an unknown index is
        NOT_FOUND, as the shard would answer it anyway."""
        snap = self.registry.snapshot
        try:
            return snap, pick(snap)
        except (KeyError, NotFound):
            # Created a moment ago through a coordinator: read once more.
            snap = self.registry.reread()
            try:
                return snap, pick(snap)
            except KeyError:
                raise PermissionDenied(f"the shard's registry has no {what}") from None

    def _check_vouch(self, v: Vouch, role: Role, index: VersionRef | None) -> Principal:
        snap, principal = self._lookup(
            lambda s: s.principals[v.principal], f"principal {v.principal[:128]!r}"
        )
        if v.purpose == ERASURE_PURPOSE:
            # Erasure crosses purposes; only an admin of the tenant may.
            require_role(principal, Role.ADMIN, "erasure")
            bind_tenant(principal, v.tenant)
            return principal
        require_role(principal, role, "this call")
        check_grant(principal, v.tenant, v.purpose)
        snap, tenant = self._lookup(lambda s: s.tenants[v.tenant], f"tenant {v.tenant[:128]!r}")
        family = None
        if index is not None:
            snap, family = self._lookup(
                lambda s: s.family(s.index(index).embedding.name), f"index {index}"
            )
        check_purpose(v.purpose, tenant, family)
        return principal

    def _check_filters(
        self,
        items: Items,
        vouches: list[Vouch],
        checked: dict[Vouch, Principal | PermissionDenied],
        refused: dict[int, PermissionDenied],
    ) -> None:
        """Adds to `refused` each query filtering on a restricted attribute
        its principal is not granted."""
        assert items.index is not None and items.filters is not None
        index = self.registry.snapshot.indexes.get(items.index)
        if index is None or not index.restricted_attributes:
            return
        for i, (q, v) in enumerate(zip(items.filters, vouches, strict=True)):
            principal = checked.get(v)
            if i in refused or not isinstance(principal, Principal) or not q.HasField("filter"):
                continue
            attrs = filter_attributes(filter_from_pb(q.filter))
            try:
                check_restricted_filter(
                    principal.restricted_attributes, index, attrs, f"principal {v.principal!r}"
                )
            except PermissionDenied as exc:
                refused[i] = exc
