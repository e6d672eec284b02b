"""A tenant's buckets (`Tenant.buckets`) are fixed once the tenant exists.

Why: hash placement puts a key in a bucket of its tenant's buckets
(`placement.tenant_bucket`), and deletes, lookups and feature reads go to
the bucket the key hashes to under the tenant's buckets of the moment. The
records and feature rows written before a change stay in their old buckets,
so after it a delete of one was acknowledged by the replicas of its new
bucket while the record lived on, searchable, on the old one — and lookups
answered it missing. Nothing migrates a tenant's data between buckets, so
the registry refuses the change. Pure.
"""

from __future__ import annotations

from core.errors import FailedPrecondition
from registry.model import Tenant


def check_buckets_kept(current: Tenant | None, new: Tenant) -> None:
    """Refuses `new` where it changes the buckets of the stored `current`."""
    if current is None or current.buckets == new.buckets:
        return
    was = list(current.buckets) or "all buckets"
    asked = list(new.buckets) or "all buckets"
    raise FailedPrecondition(
        f"tenant {new.tenant_id!r}: buckets cannot change ({was} -> {asked}); its records and "
        "feature rows stay in the buckets they were written to, where deletes and lookups "
        "would no longer look. Keep the buckets; to place the tenant elsewhere, create a new "
        "tenant with the new buckets, write its data there, and delete it from this one"
    )
