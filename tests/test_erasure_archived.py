"""Erasure after a model change (found in review): an archived index
version keeps its IndexVersion and Placement in the registry while the
shards drop its data, and a shard refuses every call naming it — so an
erasure that targeted it (lookups at plan, deletes, the purge's flush)
failed for every subject of the entity type, for good. Archived versions
are no longer targets; the live ones still are."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

from coordinator.erasure import ErasureEngine
from core.domain import Metric, VersionRef
from registry.model import EmbeddingFamily, EmbeddingVersion, IndexVersion, Placement, Status
from registry.snapshot import Snapshot
from shard_server.erasure import ShardEraser
from shard_server.feature_store import FeatureShardStore, FeatureStore
from shard_server.service import ShardNode

FAMILY = EmbeddingFamily("f", "user", 4, Metric.L2)
LIVE = IndexVersion("ix", "v2", VersionRef("f", "v1"), num_buckets=1)
ARCHIVED = dataclasses.replace(
    IndexVersion("ix", "v1", VersionRef("f", "v1"), num_buckets=1), status=Status.ARCHIVED
)


def _snapshot() -> Snapshot:
    return Snapshot(
        families={"f": FAMILY},
        embedding_versions={VersionRef("f", "v1"): EmbeddingVersion("f", "v1")},
        indexes={ix.ref: ix for ix in (ARCHIVED, LIVE)},
        placements={ix.ref: Placement(ix.ref, (("s1",),)) for ix in (ARCHIVED, LIVE)},
    )


def test_the_coordinator_targets_live_index_versions_only() -> None:
    versions, indexes = ErasureEngine._targets(_snapshot(), "user")
    assert versions == [VersionRef("f", "v1")]
    assert [ix.ref for ix in indexes] == [LIVE.ref]


def test_the_shard_purge_flushes_live_index_versions_only(tmp_path: Path) -> None:
    snap = _snapshot()
    registry = SimpleNamespace(snapshot=snap, refresh=lambda: snap)
    store = FeatureShardStore(tmp_path / "db")
    node = ShardNode("s1", store, registry, tmp_path / "segments")  # type: ignore[arg-type]
    node.drop_archived(snap)  # what the shard does on the archive
    eraser = ShardEraser(node, store, tmp_path / "db", FeatureStore(store))
    assert eraser.purge() == 1  # the live version; the archived one refused every call
    store.close()
