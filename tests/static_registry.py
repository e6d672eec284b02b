"""The registry as the in-memory shards (tests/inmemory.py) and the
coordinator's unit tests read it: `RegistryReader`, what a shard reads of
the registry; `StaticRegistry`, a snapshot built in the test that never
changes; and `registry_for`, the usual one: family `f` (`FAMILY`), index
version `INDEX`, tenants and feature objects, placed as the test says."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from core.domain import AttrType, Metric, VersionRef
from registry.features import FeatureObject
from registry.model import (
    EmbeddingFamily,
    EmbeddingVersion,
    IndexVersion,
    Placement,
    ShardMember,
    Tenant,
)
from registry.snapshot import Snapshot

INDEX = VersionRef("ix", "v1")
FAMILY = VersionRef("f", "v1")


class RegistryReader(Protocol):
    """What a shard reads of the registry (`registry.watcher.SnapshotCache`)."""

    @property
    def snapshot(self) -> Snapshot: ...

    def reread(self) -> Snapshot: ...


@dataclass
class StaticRegistry:
    """A registry that never changes: a snapshot built in the test."""

    snapshot: Snapshot

    def reread(self) -> Snapshot:
        return self.snapshot


def registry_for(
    shard_ids: Sequence[str],
    buckets: Sequence[Sequence[str]],
    *,
    dim: int = 4,
    metric: Metric = Metric.L2,
    placement: str = "hash",
    write_quorum: int = 0,
    centroids: str = "",
    tenants: Mapping[str, Tenant] | None = None,
    features: Sequence[FeatureObject] = (),
    feature_placements: Mapping[VersionRef, Placement] | None = None,
) -> StaticRegistry:
    """A registry holding family `f`, its version `v1` and index version
    `INDEX` placed on `buckets` (replica shard ids per bucket), and feature
    definitions, groups and sets with their placements. Tenants `t` and
    `u` and `acme` are registered unless `tenants` says otherwise."""
    index = IndexVersion(
        INDEX.name,
        INDEX.version,
        FAMILY,
        num_buckets=len(buckets),
        placement=placement,
        attributes={"price": AttrType.FLOAT},
        write_quorum=write_quorum,
    )
    snap = Snapshot(
        revision=1,
        families={FAMILY.name: EmbeddingFamily(FAMILY.name, "item", dim, metric)},
        embedding_versions={FAMILY: EmbeddingVersion(FAMILY.name, FAMILY.version)},
        indexes={INDEX: index},
        placements={
            INDEX: Placement(INDEX, tuple(tuple(b) for b in buckets), centroids),
            **(feature_placements or {}),
        },
        shards={s: ShardMember(s, f"mem://{s}") for s in shard_ids},
        tenants=dict(
            tenants if tenants is not None else {k: Tenant(k) for k in ("t", "u", "acme")}
        ),
        features={
            (type(o).__name__, getattr(o, "name", ""), getattr(o, "version", "")): o
            for o in features
        },
    )
    return StaticRegistry(snap)
