"""How large a registry object may make the things built from it: buckets,
vector dimensions, results per search, a record's lifetime.

Why bounds at all: these numbers size allocations elsewhere. A placement
holds one entry per bucket, computed in the coordinator that applies the
index version (2**63 buckets took it to 24 GB and the kernel killed it); a
shard allocates `dimension` floats per vector and an index's graph for it;
a search may ask for up to `max_k` hits, each shard allocating as many. The
limits are far above what a deployment needs and checked only when an object
is written (stored ones are read as they are). A negative record
lifetime is a mistake, not a policy.
"""

from __future__ import annotations

from core.errors import InvalidArgument
from registry.model import EmbeddingFamily, IndexVersion

# One placement entry per bucket is stored in etcd (1.5 MiB per request).
MAX_BUCKETS = 4096
MAX_DIMENSION = 65_536
MAX_K = 100_000
# Record lifetimes (0: forever); past this a time in microseconds overflows.
MAX_DAYS = 36_500


def _check(what: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise InvalidArgument(f"{what} {value}; expected {low}..{high}")


def check_family(family: EmbeddingFamily) -> None:
    _check(f"family {family.name!r}: dimension", family.dimension, 1, MAX_DIMENSION)
    _check(f"family {family.name!r}: ttl_seconds", family.ttl_seconds, 0, MAX_DAYS * 86_400)
    _check(f"family {family.name!r}: retention_days", family.retention_days, 0, MAX_DAYS)


def check_index(index: IndexVersion) -> None:
    _check(f"index {index.ref}: num_buckets", index.num_buckets, 1, MAX_BUCKETS)
    _check(f"index {index.ref}: max_k", index.max_k, 1, MAX_K)
