"""The authorization policy in the registry (DESIGN §10): principals, their
roles and grants, and the pure checks both planes make with them.

A *principal* is a calling service or person, named by its token's `sub`. Its
grant says what it may do (`role`: reader ⊂ writer ⊂ admin), for which
tenants, for which purposes, and which restricted attributes it may filter
on. The tenant and purpose of every request come from the grant: a caller may
name one of its granted tenants (it must, if it has several) but never
another. The coordinator checks a request against the grant and the shard
checks it again, with the same functions, on its own copy of the registry.

`"*"` in `tenants`, `purposes` or `restricted_attributes` grants every one;
it is meant for operators, and a request still has to name which.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from core.errors import InvalidArgument, PermissionDenied
from core.filters import And, Filter, Not, Or
from registry.model import EmbeddingFamily, IndexVersion, Tenant

ANY = "*"


class Role(StrEnum):
    READER = "reader"
    WRITER = "writer"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Role.READER: 0, Role.WRITER: 1, Role.ADMIN: 2}


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role = Role.READER
    tenants: tuple[str, ...] = ()
    purposes: tuple[str, ...] = ()
    # Attributes an index version marks restricted that this principal may
    # filter on (a filter on one is a side channel into the data).
    restricted_attributes: tuple[str, ...] = ()
    description: str = ""
    # A disabled principal's tokens are refused (revocation without key rotation).
    disabled: bool = False

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise InvalidArgument(f"principal name {self.name!r}: expected non-empty, no '/'")


def _granted(values: tuple[str, ...], value: str) -> bool:
    return value in values or ANY in values


def require_role(principal: Principal, needed: Role, what: str) -> None:
    if principal.disabled:
        raise PermissionDenied(f"principal {principal.name!r} is disabled")
    if principal.role.rank < needed.rank:
        raise PermissionDenied(
            f"{what} needs role {needed.value}; principal {principal.name!r} has "
            f"{principal.role.value}"
        )


def _bind(granted: tuple[str, ...], asked: str, principal: str, what: str, field: str) -> str:
    if asked:
        if not _granted(granted, asked):
            raise PermissionDenied(
                f"principal {principal!r} is not granted {what} {asked[:128]!r}; "
                f"granted: {list(granted)}"
            )
        return asked
    explicit = [g for g in granted if g != ANY]
    if len(explicit) == 1 and ANY not in granted:
        return explicit[0]
    if not granted:
        raise PermissionDenied(f"principal {principal!r} is granted no {what}")
    if ANY in granted:
        raise InvalidArgument(
            f"{field} is empty; principal {principal!r} may use any {what}, so the request "
            "must name one"
        )
    raise InvalidArgument(
        f"{field} is empty and principal {principal!r} is granted several; "
        f"name one of {list(granted)}"
    )


def bind_tenant(principal: Principal, asked: str) -> str:
    """The request's tenant: the one asked for if granted, or the grant's only one."""
    return _bind(principal.tenants, asked, principal.name, "tenant", "tenant_id")


def bind_purpose(principal: Principal, asked: str) -> str:
    return _bind(principal.purposes, asked, principal.name, "purpose", "purpose")


def check_grant(principal: Principal, tenant: str, purpose: str) -> None:
    """What a shard re-checks for a vouched (principal, tenant, purpose)."""
    bind_tenant(principal, tenant)
    bind_purpose(principal, purpose)


def check_purpose(
    purpose: str, tenant: Tenant | None, family: EmbeddingFamily | None = None
) -> None:
    """The tenant and the embedding family must both allow the purpose."""
    if family is not None and family.allowed_purposes and purpose not in family.allowed_purposes:
        raise PermissionDenied(
            f"purpose {purpose!r} may not read embedding family {family.name!r}; "
            f"allowed purposes: {list(family.allowed_purposes)}"
        )
    if tenant is not None and tenant.allowed_purposes and purpose not in tenant.allowed_purposes:
        raise PermissionDenied(
            f"tenant {tenant.tenant_id!r} does not allow purpose {purpose!r}; "
            f"allowed: {list(tenant.allowed_purposes)}"
        )


def filter_attributes(f: Filter | None) -> set[str]:
    """Every attribute a filter reads, at any depth."""
    out: set[str] = set()
    stack: list[Filter] = [] if f is None else [f]
    while stack:
        node = stack.pop()
        if isinstance(node, And | Or):
            stack.extend(node.filters)
        elif isinstance(node, Not):
            stack.append(node.filter)
        else:
            out.add(node.attribute)
    return out


def check_restricted_filter(
    allowed: Iterable[str], index: IndexVersion, attributes: Iterable[str], who: str
) -> None:
    """A filter on a restricted attribute is refused (never silently dropped:
    dropping it would change the answer) unless the caller is granted it."""
    granted = set(allowed)
    if ANY in granted:
        return
    refused = sorted(set(attributes) & set(index.restricted_attributes) - granted)
    if refused:
        raise PermissionDenied(
            f"{who} may not filter on restricted attribute(s) {refused} of index {index.ref}; "
            "a grant (Principal.restricted_attributes) is needed"
        )
