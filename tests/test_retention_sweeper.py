"""The coordinators' retention sweepers (found in review): every
coordinator sweeps, and each one archiving the same version logged it and
counted it in vecshard_retention_archived_total — one archive, counted once
per coordinator, as archiving an archived version was a silent success."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from prometheus_client import REGISTRY

from coordinator.retention_sweeper import RetentionSweeper
from core.domain import Metric, VersionRef
from registry.change_writes import archive
from registry.memory_store import InMemoryStore
from registry.model import Bundle, EmbeddingFamily, EmbeddingVersion, IndexVersion, Route, Status
from registry.registry import Registry
from registry.snapshot import Snapshot

IX1 = VersionRef("ix", "v1")


@dataclass
class Watched:
    """A coordinator's watched snapshot (a watch lags the store)."""

    snapshot: Snapshot

    def reread(self) -> Snapshot:
        return self.snapshot


def retired_v1() -> Registry:
    reg = Registry(InMemoryStore(), "/t/")
    reg.put_family(EmbeddingFamily("items", "item", 4, Metric.L2, rollback_retention_seconds=0))
    for v in ("v1", "v2"):
        ref = VersionRef("items", v)
        reg.put_embedding_version(EmbeddingVersion("items", v))
        reg.create_index(IndexVersion("ix", v, ref, num_buckets=2), ["s0"])
        reg.put_bundle(Bundle(f"b{v}", ref, ref, VersionRef("ix", v)))
    reg.put_route(Route("r", "bv2"))
    reg.set_status("IndexVersion", IX1, Status.DEPRECATED)
    return reg


def archived_total() -> float:
    return REGISTRY.get_sample_value("vecshard_retention_archived_total") or 0.0


def test_two_sweepers_archive_a_version_once_and_count_it_once() -> None:
    reg = retired_v1()
    snap = reg.snapshot()  # both coordinators see it due
    a = RetentionSweeper(Watched(snap), reg, 30)
    b = RetentionSweeper(Watched(snap), reg, 30)
    before = archived_total()
    assert asyncio.run(a.sweep()) == [IX1]
    assert asyncio.run(b.sweep()) == []
    assert (reg.snapshot().indexes[IX1].status, archived_total() - before) == (
        Status.ARCHIVED,
        1.0,
    )


def test_archive_says_whether_it_archived() -> None:
    reg = retired_v1()
    assert archive(reg, IX1) is True
    assert archive(reg, IX1) is False
