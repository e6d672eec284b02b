"""What each public RPC needs, and how a request is bound to its caller's grant.

One table for every method the coordinator serves: the role it needs, how it
is audited (`read`: group commit; `write`: durable before the ack; `admin`:
a durable attempt record first, too) and where its `AccessContext`s are. The
auth interceptor applies it before a servicer sees the request, so servicers
stay translations: by then `access.tenant_id` and `access.purpose` are the
ones the grant allows and `access.principal` is the authenticated caller,
whatever the request claimed.

A method missing from the table is refused (fail closed); a test checks the
table covers every method of every public service.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from core.errors import PermissionDenied
from core.vouch import ERASURE_PURPOSE, Vouch
from protos.vecshard.v1 import common_pb2 as cpb
from registry.access_policy import ANY, Principal, Role, bind_purpose, bind_tenant

Binder = Callable[[Principal, Any], list[Vouch]]
Audit = Literal["read", "write", "admin"]


def bind_access(principal: Principal, access: cpb.AccessContext) -> Vouch:
    """Rewrites the request's AccessContext from the grant; PERMISSION_DENIED
    when it asks for a tenant or purpose the grant does not hold."""
    tenant = bind_tenant(principal, access.tenant_id)
    purpose = bind_purpose(principal, access.purpose)
    if purpose == ERASURE_PURPOSE:
        raise PermissionDenied(
            f"purpose {ERASURE_PURPOSE!r} is reserved for ErasureService (vecshard delete-subject)"
        )
    access.tenant_id, access.purpose, access.principal = tenant, purpose, principal.name
    return Vouch(principal.name, purpose, tenant)


def _access(principal: Principal, request: Any) -> list[Vouch]:
    return [bind_access(principal, request.access)]


def _batch(principal: Principal, request: Any) -> list[Vouch]:
    return [bind_access(principal, r.access) for r in request.requests]


def _cluster_wide(principal: Principal, request: Any) -> list[Vouch]:
    """Registry changes and reading grants are cluster-wide: they need an
    admin of every tenant. An admin of one tenant (erasures of its subjects)
    could otherwise apply a Principal granting itself every tenant (found in
    review), or switch the routes other tenants are served by."""
    if ANY not in principal.tenants:
        raise PermissionDenied(
            f"principal {principal.name!r} is an admin of tenant(s) {list(principal.tenants)} "
            "only; registry changes and grants are cluster-wide and need tenants: ['*']"
        )
    return []


def _who(principal: Principal, request: Any) -> list[Vouch]:
    """Registry changes record the authenticated principal as `who`."""
    _cluster_wide(principal, request)
    request.who = principal.name
    return []


def _grants_read(principal: Principal, request: Any) -> list[Vouch]:
    return _cluster_wide(principal, request) if request.kind == "Principal" else []


def _none(principal: Principal, request: Any) -> list[Vouch]:
    return []


def _erasure(principal: Principal, request: Any) -> list[Vouch]:
    subject = request.subject if hasattr(request, "subject") else request.erasure.subject
    return [Vouch(principal.name, ERASURE_PURPOSE, bind_tenant(principal, subject.tenant_id))]


def _kind_role(request: Any) -> Role:
    """Grants are not everyone's business: reading principals needs admin."""
    return Role.ADMIN if request.kind == "Principal" else Role.READER


@dataclass(frozen=True)
class RpcRule:
    role: Role
    audit: Audit = "read"
    bind: Binder = _none
    # A role that depends on the request (overrides `role` when set).
    role_of: Callable[[Any], Role] | None = None

    def needed(self, request: Any) -> Role:
        return self.role_of(request) if self.role_of is not None else self.role


_R = "/vecshard.v1.RetrievalService/"
_G = "/vecshard.v1.RegistryService/"
_E = "/vecshard.v1.ErasureService/"
_V = "/vecshard.v1.EvaluationService/"

RULES: dict[str, RpcRule] = {
    _R + "Search": RpcRule(Role.READER, bind=_access),
    _R + "SearchBatch": RpcRule(Role.READER, bind=_batch),
    _R + "SearchDebug": RpcRule(Role.READER, bind=_access),
    _R + "BatchGetEmbeddings": RpcRule(Role.READER, bind=_access),
    _R + "DescribeRoute": RpcRule(Role.READER),
    _R + "GetFeatures": RpcRule(Role.READER, bind=_access),
    _R + "Upsert": RpcRule(Role.WRITER, "write", _access),
    _R + "UpsertColumns": RpcRule(Role.WRITER, "write", _access),
    _R + "Delete": RpcRule(Role.WRITER, "write", _access),
    _R + "PutFeatures": RpcRule(Role.WRITER, "write", _access),
    _G + "Get": RpcRule(Role.READER, bind=_grants_read, role_of=_kind_role),
    _G + "List": RpcRule(Role.READER, bind=_grants_read, role_of=_kind_role),
    _G + "History": RpcRule(Role.READER),
    _G + "CheckCompat": RpcRule(Role.READER),
    _G + "Status": RpcRule(Role.READER),
    _G + "Apply": RpcRule(Role.ADMIN, "admin", _who),
    _G + "Promote": RpcRule(Role.ADMIN, "admin", _cluster_wide),
    _G + "SwitchRoute": RpcRule(Role.ADMIN, "admin", _who),
    _G + "Rollback": RpcRule(Role.ADMIN, "admin", _who),
    _G + "SetShardState": RpcRule(Role.ADMIN, "admin", _cluster_wide),
    _G + "TrainPlacement": RpcRule(Role.ADMIN, "admin", _cluster_wide),
    _G + "Retire": RpcRule(Role.ADMIN, "admin", _who),
    # Evaluation reads an index version without a route, across shards: an
    # operator's job (vecshard embeddings evaluate), so admin only.
    _V + "SearchIndex": RpcRule(Role.ADMIN, "admin", _access),
    _V + "CheckRecall": RpcRule(Role.ADMIN, "admin"),
    _V + "LookupIndex": RpcRule(Role.ADMIN, "admin", _access),
    _E + "PlanErasure": RpcRule(Role.ADMIN, "admin", _erasure),
    _E + "EraseSubject": RpcRule(Role.ADMIN, "admin", _erasure),
    _E + "PurgeSubject": RpcRule(Role.ADMIN, "admin", _erasure),
    _E + "VerifyErasure": RpcRule(Role.ADMIN, "admin", _erasure),
}
