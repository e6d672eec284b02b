"""Training a `centroid`-placed index version's stored placement, once.

Apart from `registry.placement` (pure functions every process runs) because
this reads and writes the store: compare-and-swap, so a second training is
refused — moving centroids would strand the data already placed."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from core.domain import VersionRef
from core.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound
from registry import codec
from registry.keys import Keys
from registry.placement import encode_centroids, train_centroids
from registry.store import ModRevisionIs, Put, RegistryStore


def train_stored_placement(
    store: RegistryStore, keys: Keys, ref: VersionRef, sample: Any, seed: int = 0
) -> int:
    """Returns the number of buckets trained."""
    entry = store.get(keys.index(ref.name, ref.version))
    if entry is None:
        raise NotFound(f"unknown index version {ref}")
    index = codec.decode(entry.value)
    if index.placement != "centroid":
        raise FailedPrecondition(
            f"index {ref} uses {index.placement!r} placement; training applies to 'centroid'"
        )
    family_entry = store.get(keys.family(index.embedding.name))
    assert family_entry is not None  # an index exists only on an existing family
    family = codec.decode(family_entry.value)
    vectors = np.asarray(sample, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != family.dimension:
        raise InvalidArgument(f"sample has shape {vectors.shape}, expected (n, {family.dimension})")
    if not np.isfinite(vectors).all():
        raise InvalidArgument("sample contains NaN or Inf")
    key = keys.placement(ref.name, ref.version)
    placed = store.get(key)
    if placed is None:
        raise NotFound(f"index {ref} has no placement")
    placement = codec.decode(placed.value)
    if placement.centroids:
        raise FailedPrecondition(f"index {ref} already has trained centroids; they are immutable")
    try:
        centroids = train_centroids(vectors, index.num_buckets, family.metric, seed=seed)
    except ValueError as exc:
        raise InvalidArgument(f"cannot train placement of {ref}: {exc}") from None
    updated = dataclasses.replace(placement, centroids=encode_centroids(centroids))
    if not store.txn([ModRevisionIs(key, placed.mod_revision)], [Put(key, codec.encode(updated))]):
        raise Conflict(f"placement of {ref} changed concurrently; re-read and retry")
    return int(index.num_buckets)
