"""Where an entity lives: stable hash → bucket → replica shards.

The hash must be identical in every process and every release (Python's
`hash()` is salted per process), so it is blake2b over a fixed encoding.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from registry.model import Placement, VersionRef


def bucket_of(tenant_id: str, entity_id: str, num_buckets: int) -> int:
    digest = hashlib.blake2b(
        tenant_id.encode() + b"\x00" + entity_id.encode(), digest_size=8
    ).digest()
    return int.from_bytes(digest, "little") % num_buckets


def tenant_bucket(tenant_id: str, entity_id: str, num_buckets: int, tenant_buckets: Sequence[int] = ()) -> int:
    """The bucket of an entity. A tenant with its own bucket set (the tenant
    routing map) lives only in those buckets, so its searches touch only the
    shards that hold them. The set must not change once the tenant has data."""
    own = [b for b in tenant_buckets if 0 <= b < num_buckets]
    if not own:
        return bucket_of(tenant_id, entity_id, num_buckets)
    return own[bucket_of(tenant_id, entity_id, len(own))]


def assign_buckets(
    index: VersionRef, num_buckets: int, shard_ids: Sequence[str], replicas: int = 1
) -> Placement:
    """Round-robin buckets over shards; replicas of a bucket are distinct shards."""
    shards = sorted(set(shard_ids))
    if not shards:
        raise ValueError("cannot place buckets: no shards given")
    if not 1 <= replicas <= len(shards):
        raise ValueError(f"replicas={replicas} must be between 1 and the {len(shards)} shards")
    buckets = tuple(
        tuple(shards[(b + r) % len(shards)] for r in range(replicas)) for b in range(num_buckets)
    )
    return Placement(index=index, buckets=buckets)
