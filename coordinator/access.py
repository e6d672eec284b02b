"""Who may read and write what: a request's purpose and tenant against the
registry's policy, and ownership of the keys it names.

Pure functions over the registry's objects: the shard checks the same grants
again, so these are the first line, not the only one.
"""

from __future__ import annotations

from collections.abc import Sequence

from coordinator.model import Access
from core.domain import EntityKey
from core.errors import InvalidArgument, PermissionDenied
from registry.model import EmbeddingFamily
from registry.snapshot import Snapshot


def check_access(access: Access, family: EmbeddingFamily, snap: Snapshot) -> None:
    """The family must allow the request's purpose, and so must its tenant."""
    if family.allowed_purposes and access.purpose not in family.allowed_purposes:
        raise PermissionDenied(
            f"purpose {access.purpose!r} may not read embedding family {family.name!r}; "
            f"allowed purposes: {list(family.allowed_purposes)}"
        )
    tenant = snap.tenants.get(access.tenant_id)
    if (
        tenant is not None
        and tenant.allowed_purposes
        and access.purpose not in tenant.allowed_purposes
    ):
        raise PermissionDenied(
            f"tenant {tenant.tenant_id!r} does not allow purpose {access.purpose!r}; "
            f"allowed: {list(tenant.allowed_purposes)}"
        )


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
    keys: Sequence[EntityKey], access: Access, family: EmbeddingFamily, what: str, limit: int
) -> list[EntityKey]:
    """The keys of a delete or lookup, owned by the caller, at most `limit`."""
    if len(keys) > limit:
        raise InvalidArgument(f"{what}: {len(keys)} keys, expected at most {limit}")
    return [own_key(k, access, family, f"keys[{i}] {tuple(k)}") for i, k in enumerate(keys)]


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
