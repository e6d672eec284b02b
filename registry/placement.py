"""Where an entity lives: stable hash → bucket → replica shards.

The hash must be identical in every process and every release (Python's
`hash()` is salted per process), so it is blake2b over a fixed encoding.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence

import numpy as np

from core.domain import Metric, VersionRef
from registry.model import Placement

FEATURE_BUCKETS = 16
# How an index version spreads rows over buckets: a hash of tenant and id, or
# the nearest of its trained centroids (`train_centroids`).
PLACEMENTS = ("hash", "centroid")


FEATURE_PLACEMENT_PREFIX = "features:"


def feature_placement_ref(group: str, version: str) -> VersionRef:
    """Feature groups are placed like index versions, under a reserved name."""
    return VersionRef(f"{FEATURE_PLACEMENT_PREFIX}{group}", version)


def feature_group_of(placement: VersionRef) -> VersionRef | None:
    """The feature group a placement places (None: an index version's)."""
    name = placement.name
    if not name.startswith(FEATURE_PLACEMENT_PREFIX):
        return None
    return VersionRef(name[len(FEATURE_PLACEMENT_PREFIX) :], placement.version)


def bucket_of(tenant_id: str, entity_id: str, num_buckets: int) -> int:
    digest = hashlib.blake2b(
        tenant_id.encode() + b"\x00" + entity_id.encode(), digest_size=8
    ).digest()
    return int.from_bytes(digest, "little") % num_buckets


def tenant_bucket(
    tenant_id: str, entity_id: str, num_buckets: int, tenant_buckets: Sequence[int] = ()
) -> int:
    """The bucket of an entity. A tenant with its own bucket set (the tenant
    routing map) lives only in those buckets, so its searches touch only the
    shards that hold them. The set must not change once the tenant has data."""
    own = [b for b in tenant_buckets if 0 <= b < num_buckets]
    if not own:
        return bucket_of(tenant_id, entity_id, num_buckets)
    return own[bucket_of(tenant_id, entity_id, len(own))]


def tenant_buckets_of(
    tenant_id: str,
    entity_ids: Sequence[str] | Sequence[bytes],
    num_buckets: int,
    tenant_buckets: Sequence[int] = (),
) -> np.ndarray:
    """`tenant_bucket` of many ids of one tenant (str, or UTF-8 bytes) at
    once, as an int64 array, the same bucket for each. blake2b is computed
    per id (it cannot be vectorized, and must stay the hash every release
    used); the digests are read as one uint64 array and everything after
    that is array arithmetic (a GetFeatures of 800 candidates hashes 800 ids)."""
    # The tenant prefix is hashed once and each id continues a copy of that
    # state: the same digest as hashing prefix + id, at half the cost of a
    # fresh blake2b per id (0.21 vs 0.39 ms for 800 ids).
    copy = hashlib.blake2b(tenant_id.encode() + b"\x00", digest_size=8).copy

    def digest(eid: bytes) -> bytes:
        h = copy()
        h.update(eid)
        return h.digest()

    digests = [digest(e if isinstance(e, bytes) else e.encode()) for e in entity_ids]
    h = np.frombuffer(b"".join(digests), dtype="<u8")
    own = np.array([b for b in tenant_buckets if 0 <= b < num_buckets], dtype=np.int64)
    if not own.size:
        return (h % np.uint64(num_buckets)).astype(np.int64)
    return own[(h % np.uint64(own.size)).astype(np.int64)]


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


def encode_centroids(centroids: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(centroids, dtype="<f4").tobytes()).decode()


def decode_centroids(text: str, dimension: int) -> np.ndarray:
    flat = np.frombuffer(base64.b64decode(text), dtype="<f4")
    return flat.reshape(-1, dimension)


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norms == 0, 1, norms)


def train_centroids(
    sample: np.ndarray, num_buckets: int, metric: Metric, *, iterations: int = 25, seed: int = 0
) -> np.ndarray:
    """k-means (spherical for cosine) over a sample: the coarse quantizer of
    `centroid` placement. Deterministic for a seed; empty clusters are
    re-seeded from the farthest points so every bucket gets data."""
    x = np.asarray(sample, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < num_buckets:
        raise ValueError(
            f"need at least {num_buckets} sample vectors (one per bucket), got {x.shape[0]}"
        )
    if metric is Metric.COSINE:
        x = _unit(x)
    rng = np.random.default_rng(seed)
    # k-means++ seeding: spread-out starting centroids avoid the local minima
    # (two centroids in one cluster, one straddling two) of random starts.
    c = np.empty((num_buckets, x.shape[1]))
    c[0] = x[rng.integers(x.shape[0])]
    d2 = ((x - c[0]) ** 2).sum(axis=1)
    for b in range(1, num_buckets):
        probs = d2 / d2.sum() if d2.sum() > 0 else None
        c[b] = x[rng.choice(x.shape[0], p=probs)]
        d2 = np.minimum(d2, ((x - c[b]) ** 2).sum(axis=1))
    for _ in range(iterations):
        assign = nearest(x, c, Metric.L2)
        for b in range(num_buckets):
            members = x[assign == b]
            if len(members):
                c[b] = members.mean(axis=0)
            else:
                far = np.argmax(((x - c[assign]) ** 2).sum(axis=1))
                c[b] = x[far]
        if metric is Metric.COSINE:
            c = _unit(c)
    return c.astype(np.float32)


def nearest(vectors: np.ndarray, centroids: np.ndarray, metric: Metric) -> np.ndarray:
    """Bucket per vector: the nearest centroid. Inner-product data is grouped
    by L2 proximity too: compact regions give tight score bounds, whereas
    argmax-dot would pile vectors onto the largest-norm centroid."""
    v = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    c = np.asarray(centroids, dtype=np.float64)
    buckets: np.ndarray  # numpy's stubs type argmax/argmin with an axis as Any
    if metric is Metric.COSINE:
        buckets = np.argmax(_unit(v) @ c.T, axis=1)
        return buckets
    d = (v**2).sum(axis=1)[:, None] - 2 * v @ c.T + (c**2).sum(axis=1)[None, :]
    buckets = np.argmin(d, axis=1)
    return buckets
