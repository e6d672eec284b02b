"""Who may read and write what: a request's purpose and tenant against the
registry's policy, and ownership of the keys it names.

Pure functions over the registry's objects: the shard checks the same grants
again, so these are the first line, not the only one.
"""

from __future__ import annotations

from collections.abc import Sequence

from coordinator.model import Access
from core.domain import EntityKey, key_of
from core.errors import InvalidArgument, NotFound, PermissionDenied
from core.filters import Filter
from core.limits import Limits
from registry.access_policy import check_purpose, check_restricted_filter, filter_attributes
from registry.model import EmbeddingFamily, IndexVersion, Tenant
from registry.snapshot import Snapshot


def require_tenant(snap: Snapshot, tenant_id: str) -> Tenant:
    """Every request names a registered tenant: an unknown one would bypass
    its tenant's purpose rules and bucket routing (issue 14, defect 5)."""
    tenant = snap.tenants.get(tenant_id)
    if tenant is not None:
        return tenant
    if not tenant_id:
        raise InvalidArgument(
            "tenant_id is empty; expected a registered tenant id "
            "(global data lives under a tenant registered for it)"
        )
    raise NotFound(
        f"tenant {tenant_id[:128]!r} is not registered; expected one of the registry's tenants "
        "(kind: Tenant, `vecshard registry apply`)"
    )


def check_access(access: Access, family: EmbeddingFamily | None, snap: Snapshot) -> Tenant:
    """The tenant must be registered, and the family (feature reads and
    writes: none) and the tenant must both allow the request's purpose."""
    tenant = require_tenant(snap, access.tenant_id)
    check_purpose(access.purpose, tenant, family)
    return tenant


def check_filter_grant(
    access: Access, f: Filter | None, index: IndexVersion, snap: Snapshot
) -> None:
    """A filter on an attribute the index version marks restricted needs the
    caller's grant; without it the search is refused, never answered as if
    the filter were not there."""
    if f is None or not index.restricted_attributes:
        return
    principal = snap.principals.get(access.principal)
    allowed = principal.restricted_attributes if principal is not None else ()
    check_restricted_filter(allowed, index, filter_attributes(f), f"principal {access.principal!r}")


def own_key(key: EntityKey, access: Access, family: EmbeddingFamily, where: str) -> EntityKey:
    """Fills an empty tenant/type from the caller and family; refuses others'."""
    tenant = key.tenant_id or access.tenant_id
    if tenant != access.tenant_id:
        raise PermissionDenied(
            f"{where}: tenant {key.tenant_id!r} differs from the caller's tenant {access.tenant_id!r}"
        )
    etype = key.entity_type or family.entity_type
    if etype != family.entity_type:
        raise InvalidArgument(
            f"{where}: entity_type {key.entity_type!r}, expected {family.entity_type!r} "
            f"for family {family.name!r}"
        )
    if not key.entity_id:
        raise InvalidArgument(f"{where}: entity_id is empty, expected a non-empty id")
    return EntityKey(tenant, etype, key.entity_id)


def own_keys(
    keys: Sequence[EntityKey], access: Access, family: EmbeddingFamily, what: str, limits: Limits
) -> list[EntityKey]:
    """The keys of a delete or lookup, owned by the caller, within the limits."""
    limits.check_count(f"{what} keys", len(keys), "max_keys_per_request")
    tenant, etype = access.tenant_id, family.entity_type
    max_id = limits.max_entity_id_bytes
    # A key naming the caller's tenant and the family's type (or neither),
    # with an id short enough whatever its characters (UTF-8: at most 4
    # bytes each), is owned as it is: no message built and no id encoded
    # for the hundreds of keys of a lookup. Any other key takes the full
    # checks, which name what is wrong.
    fast = (
        len(tenant.encode()) <= limits.max_tenant_id_bytes
        and len(etype.encode()) <= limits.max_entity_type_bytes
    )
    out = []
    for i, k in enumerate(keys):
        eid = k.entity_id
        if (
            fast
            and (k.tenant_id == tenant or not k.tenant_id)
            and (k.entity_type == etype or not k.entity_type)
            and eid
            and (4 * len(eid) <= max_id or len(eid.encode()) <= max_id)
        ):
            out.append(key_of((tenant, etype, eid)))
            continue
        where = f"keys[{i}]"
        owned = own_key(k, access, family, where)
        limits.check_key(owned, where)
        out.append(owned)
    return out


def own_entities(keys: Sequence[EntityKey], access: Access) -> list[EntityKey]:
    """Feature entities: any entity type, but the caller's tenant, and complete."""
    out = []
    for i, k in enumerate(keys):
        tenant = k.tenant_id or access.tenant_id
        if tenant != access.tenant_id:
            raise PermissionDenied(
                f"entities[{i}]: tenant {k.tenant_id!r} differs from the caller's {access.tenant_id!r}"
            )
        if not k.entity_type or not k.entity_id:
            raise InvalidArgument(
                f"entities[{i}]: entity_type and entity_id are required, got {tuple(k)}"
            )
        out.append(EntityKey(tenant, k.entity_type, k.entity_id))
    return out
