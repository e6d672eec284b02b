"""Which bucket a key or record lives in, and which buckets a tenant uses.

Hash placement: a stable hash of tenant and entity id, inside the tenant's
own buckets when the registry gives it some. Centroid placement: the nearest
of the index's trained centroids among the tenant's buckets, so the bucket of
a record depends on its vector (and a key alone does not say where it is).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence

import numpy as np

from coordinator.model import WriteRecord
from core.domain import EntityKey
from core.errors import FailedPrecondition
from core.record_columns import RecordColumns, batch_winners
from registry.model import IndexVersion, Tenant
from registry.placement import decode_centroids, nearest, tenant_bucket, tenant_buckets_of
from registry.snapshot import Snapshot


def tenant_buckets(index: IndexVersion, tenant: Tenant | None) -> list[int]:
    """The tenant's own buckets of the index, or all of them when it has none."""
    own = [b for b in (tenant.buckets if tenant else ()) if 0 <= b < index.num_buckets]
    return own or list(range(index.num_buckets))


def key_bucket(snap: Snapshot, num_buckets: int, key: EntityKey) -> int:
    """The hash bucket of a key (index versions with hash placement, feature groups)."""
    tenant = snap.tenants.get(key.tenant_id)
    return tenant_bucket(
        key.tenant_id, key.entity_id, num_buckets, tenant.buckets if tenant else ()
    )


def require_trained(snap: Snapshot, index: IndexVersion) -> None:
    """A centroid-placed index can take writes only once its centroids exist."""
    if index.placement == "centroid" and not snap.placement(index.ref).centroids:
        raise FailedPrecondition(
            f"index {index.ref} uses centroid placement but its centroids are not trained; "
            "train them first (RegistryService TrainPlacement / `vecshard registry train-placement`)"
        )


def _centroids(snap: Snapshot, index: IndexVersion) -> np.ndarray:
    placement = snap.placement(index.ref)
    require_trained(snap, index)
    family = snap.family(index.embedding.name)
    return decode_centroids(placement.centroids, family.dimension)


def column_buckets(
    snap: Snapshot, index: IndexVersion, tenant_id: str, records: RecordColumns
) -> np.ndarray:
    """`record_buckets` for records of one tenant as columns, as an array:
    the hash of every id in one pass, or one nearest-centroid matrix product."""
    tenant = snap.tenants.get(tenant_id)
    if index.placement != "centroid":
        return tenant_buckets_of(
            tenant_id,
            records.entity_ids.raw_list(),
            index.num_buckets,
            tenant.buckets if tenant else (),
        )
    centroids = _centroids(snap, index)
    family = snap.family(index.embedding.name)
    allowed = np.array(tenant_buckets(index, tenant), dtype=np.int64)
    picked: np.ndarray = allowed[nearest(records.vectors, centroids[allowed], family.metric)]
    _with_the_winner(records.entity_ids.raw_list(), records.source_versions.tolist(), picked)
    return picked


def record_buckets(
    snap: Snapshot, index: IndexVersion, records: Sequence[WriteRecord]
) -> list[int]:
    """Each record's bucket: hash of tenant and id, or nearest centroid."""
    if index.placement != "centroid":
        return [key_bucket(snap, index.num_buckets, r.key) for r in records]
    centroids = _centroids(snap, index)
    family = snap.family(index.embedding.name)
    out = [0] * len(records)
    by_tenant: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        by_tenant[r.key.tenant_id].append(i)
    for tenant_id, rows in by_tenant.items():
        allowed = tenant_buckets(index, snap.tenants.get(tenant_id))
        picks = nearest(
            np.stack([records[i].vector for i in rows]), centroids[allowed], family.metric
        )
        for i, p in zip(rows, picks, strict=True):
            out[i] = allowed[int(p)]
    _with_the_winner([r.key for r in records], [r.source_version for r in records], out)
    return out


def _with_the_winner(
    keys: Sequence[Hashable], versions: Sequence[int], buckets: list[int] | np.ndarray
) -> None:
    """Rows of one key in one batch all go to the bucket of the row that
    wins, as the shard keeps it (`core.record_columns.batch_winners`). Under
    centroid placement each row's vector picks its own bucket: two rows of a
    key landed on two shards, and neither move-delete (a version below)
    removed the other, so the key lived twice (found in review)."""
    best = batch_winners(keys, versions)
    if best is None:
        return
    for i, key in enumerate(keys):
        buckets[i] = buckets[best[key]]
