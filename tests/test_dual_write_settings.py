"""Dual-write settings the registry used to accept and every write of the
serving version then failed on (found in review, reproduced on plain data;
`tests/test_dual_write_settings_e2e.py` runs the same through real
processes): a target index typing an attribute otherwise, and a
centroid-placed target index with no trained centroids."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from coordinator.dual_write import mirror_indexes
from coordinator.model import Access, WriteRecord
from coordinator.records import checked_records
from coordinator.snapshots import RegistryView
from core.domain import AttrType, EntityKey, Metric, VersionRef
from core.errors import FailedPrecondition, InvalidArgument
from core.limits import Limits
from registry.change_writes import add_index_attributes, put_dual_write
from registry.memory_store import InMemoryStore
from registry.migration import DualWrite
from registry.model import (
    EmbeddingFamily,
    EmbeddingVersion,
    IndexVersion,
    Status,
    Tenant,
    frozen_map,
)
from registry.registry import Registry
from registry.snapshot import Snapshot

V1, V2 = VersionRef("items", "v1"), VersionRef("items", "v2")
IX1, IX2 = VersionRef("ix", "v1"), VersionRef("ix", "v2")


def migration(v2_attributes: dict[str, AttrType], placement: str = "hash") -> Registry:
    reg = Registry(InMemoryStore(), "/t/")
    reg.put_family(EmbeddingFamily("items", "item", 4, Metric.L2))
    reg.put_embedding_version(EmbeddingVersion("items", "v1"))
    reg.put_embedding_version(EmbeddingVersion("items", "v2", status=Status.BUILDING))
    v1_attributes = frozen_map({"cat": AttrType.STRING, "price": AttrType.INT})
    reg.create_index(IndexVersion("ix", "v1", V1, attributes=v1_attributes), ["s0"])
    v2 = IndexVersion(
        "ix",
        "v2",
        V2,
        status=Status.BUILDING,
        attributes=frozen_map(v2_attributes),
        placement=placement,
    )
    reg.create_index(v2, ["s0"])
    return reg


def test_dual_write_into_a_version_typing_an_attribute_otherwise_is_refused() -> None:
    reg = migration({"cat": AttrType.INT})
    with pytest.raises(FailedPrecondition) as refused:
        put_dual_write(reg, DualWrite("items", "v1", "v2"))
    assert all(s in refused.value.message for s in ("'cat'", "string", "ix@v1", "int", "ix@v2"))
    assert "items" not in reg.snapshot().dual_writes
    # An int is a valid float: v1's ints land in a v2 that types them float.
    reg = migration({"price": AttrType.FLOAT, "new": AttrType.INT})
    put_dual_write(reg, DualWrite("items", "v1", "v2"))
    # Once on, neither side may add the attribute with a type the other refuses.
    with pytest.raises(FailedPrecondition, match="'cat' is string in index ix@v1"):
        add_index_attributes(reg, IX2, {"cat": AttrType.STRING_LIST})
    with pytest.raises(FailedPrecondition, match="'new' is float in index ix@v1"):
        add_index_attributes(reg, IX1, {"new": AttrType.FLOAT})
    add_index_attributes(reg, IX2, {"cat": AttrType.STRING})


def test_a_write_the_dual_write_copy_refuses_names_the_copy_and_the_setting() -> None:
    """An attribute only the new version declares cannot be checked in
    advance: the write fails, but saying it is dual-write's copy that failed."""
    reg = migration({"new": AttrType.INT})
    put_dual_write(reg, DualWrite("items", "v1", "v2"))
    snap = reg.snapshot()
    mirrored = mirror_indexes(snap, V1)
    record = WriteRecord(
        EntityKey("", "item", "k"), np.ones(4, np.float32), attributes={"new": "x"}
    )
    access = Access("", "recommendation")
    family, own = snap.families["items"], [snap.indexes[IX1]]
    checked_records(access, family, own, [record], Limits(), 1)  # valid for v1 itself
    with pytest.raises(FailedPrecondition) as refused:
        checked_records(access, family, own, [record], Limits(), 1, mirrored)
    assert all(s in refused.value.message for s in ("dual-write", "ix@v2", "'new'", "--off"))
    with pytest.raises(InvalidArgument):  # v1's own rules stay INVALID_ARGUMENT
        bad = WriteRecord(record.key, record.vector, attributes={"cat": 3})
        checked_records(access, family, own, [bad], Limits(), 1, mirrored)


def test_dual_write_into_an_untrained_centroid_index_waits_for_its_training() -> None:
    reg = migration({}, placement="centroid")
    with pytest.raises(FailedPrecondition) as refused:
        put_dual_write(reg, DualWrite("items", "v1", "v2"))
    assert all(s in refused.value.message for s in ("ix@v2", "not trained", "train-placement"))
    assert "items" not in reg.snapshot().dual_writes
    reg.train_placement(IX2, np.random.default_rng(0).normal(size=(40, 4)))
    put_dual_write(reg, DualWrite("items", "v1", "v2"))
    assert [ix.ref for ix in mirror_indexes(reg.snapshot(), V1)] == [IX2]
    # A centroid index of the target created while it is on cannot be trained
    # before it exists: writes fail until it is, saying why and what to do.
    late = IndexVersion("ix", "v3", V2, status=Status.BUILDING, placement="centroid")
    reg.create_index(late, ["s0"])
    with pytest.raises(FailedPrecondition) as failing:
        mirror_indexes(reg.snapshot(), V1)
    assert all(s in failing.value.message for s in ("dual-write", "ix@v3", "train", "--off"))


class Lagging:
    """A coordinator's watched snapshot from before a change, and the registry."""

    def __init__(self, reg: Registry) -> None:
        self.reg, self.snapshot = reg, reg.snapshot()

    def reread(self) -> Snapshot:
        self.snapshot = self.reg.snapshot()
        return self.snapshot


def test_a_write_reads_its_dual_write_targets_again_when_their_centroids_are_not_here_yet() -> None:
    """Like the write's own indexes: trained a moment ago through another
    coordinator, they are re-read, not refused."""
    reg = migration({})
    reg.put_tenant(Tenant("acme"))
    put_dual_write(reg, DualWrite("items", "v1", "v2"))
    late = IndexVersion("ix", "v3", V2, status=Status.BUILDING, placement="centroid")
    reg.create_index(late, ["s0"])
    source = Lagging(reg)  # sees ix@v3 untrained
    reg.train_placement(late.ref, np.random.default_rng(0).normal(size=(40, 4)))
    snap, _, own, mirrored = asyncio.run(RegistryView(source).write_indexes(V1, "acme"))
    assert ([ix.ref for ix in own], [ix.ref for ix in mirrored]) == ([IX1], [IX2, late.ref])
    assert snap.placement(late.ref).centroids
