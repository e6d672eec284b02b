"""The registry's model-change rules on a real etcd (DESIGN §11): evaluation
gates on every promotion path, rollback retention and archiving, dual-write
settings; and the pure functions they rest on, on plain data."""

from __future__ import annotations

import dataclasses
import datetime

import numpy as np
import pytest

from core.domain import Metric, VersionRef
from core.errors import FailedPrecondition, InvalidArgument, NotFound
from core.recall import overlap_at_k, recall_at_k
from registry.admin import RegistryAdmin
from registry.change_writes import archive, put_canary_set, put_dual_write, put_evaluation
from registry.memory_store import InMemoryStore
from registry.migration import DualWrite, due_for_archive, mirror_version, utc_now
from registry.model import (
    Bundle,
    EmbeddingFamily,
    EmbeddingVersion,
    IndexVersion,
    QualityGates,
    Route,
    Status,
)
from registry.quality import (
    CanaryQuery,
    CanaryQuerySet,
    IndexEvaluation,
    check_gates_declared,
    encode_vector,
    gate_failures,
)
from registry.registry import Registry
from registry.snapshot import indexes_for_embedding

pytestmark = pytest.mark.integration

V1, V2 = VersionRef("items", "v1"), VersionRef("items", "v2")
GATES = QualityGates(k=10, canary_set="c@v1", min_canary_recall=0.9, min_recall_vs_exact=0.8)
SHARDS = ["s0", "s1"]


def evaluation(ref: VersionRef, **measured: object) -> IndexEvaluation:
    base: dict[str, object] = {
        "index": ref,
        "evaluated_at": "2026-01-01T00:00:00+00:00",
        "k": 10,
        "sample_size": 200,
        "canary_set": "c@v1",
        "canary_recall": 0.95,
        "recall_vs_exact": 0.9,
    }
    return IndexEvaluation(**{**base, **measured})  # type: ignore[arg-type]  # test data


def test_gate_failures_name_the_gate_the_measurement_and_the_requirement() -> None:
    ix = IndexVersion("ix", "v2", V2, gates=GATES)
    assert gate_failures(dataclasses.replace(ix, gates=None), None) == []
    assert gate_failures(ix, None) == ["never evaluated: run `vecshard embeddings evaluate ix@v2`"]
    assert gate_failures(ix, evaluation(ix.ref)) == []
    (failure,) = gate_failures(ix, evaluation(ix.ref, canary_recall=0.83))
    assert failure == "min_canary_recall: measured 0.830 < required 0.900"
    assert gate_failures(ix, evaluation(ix.ref, recall_vs_exact=None)) == [
        "min_recall_vs_exact: not measured (required ≥ 0.800)"
    ]
    assert (
        "canary_set: evaluated on c@v0"
        in gate_failures(ix, evaluation(ix.ref, canary_set="c@v0"))[0]
    )
    assert "k=5" in gate_failures(ix, evaluation(ix.ref, k=5))[0]


def test_a_recall_gate_needs_its_minimum_sample() -> None:
    """`--sample 1` measured recall on one stored vector per shard (a query
    finding itself) and passed any min_recall_vs_exact."""
    ix = IndexVersion("ix", "v2", V2, gates=QualityGates(k=10, min_recall_vs_exact=0.95))
    assert gate_failures(ix, evaluation(ix.ref, sample_size=2, recall_vs_exact=1.0)) == [
        "min_recall_vs_exact: measured on 2 queries, the gates need at least 100 "
        "(min_recall_sample): evaluate with a larger --sample (stored vectors per shard), or "
        "lower min_recall_sample for an index this small"
    ]
    assert gate_failures(ix, evaluation(ix.ref, sample_size=100, recall_vs_exact=1.0)) == []
    small = dataclasses.replace(
        ix, gates=QualityGates(min_recall_vs_exact=0.95, min_recall_sample=2)
    )
    assert gate_failures(small, evaluation(ix.ref, sample_size=2, recall_vs_exact=1.0)) == []
    ungated = dataclasses.replace(ix, gates=QualityGates(min_coverage=0.5))
    assert gate_failures(ungated, evaluation(ix.ref, sample_size=1, coverage=1.0)) == []
    with pytest.raises(InvalidArgument, match="min_recall_sample=-1"):
        check_gates_declared(dataclasses.replace(ix, gates=QualityGates(min_recall_sample=-1)))


def test_recall_and_overlap_at_k() -> None:
    assert recall_at_k(["a", "b", "c"], ["a", "c", "z"], 3) == pytest.approx(2 / 3)
    # More relevant items than k: finding k of them is perfect recall.
    assert recall_at_k(["a", "b"], ["a", "b", "c", "d"], 2) == 1.0
    assert recall_at_k([], [], 5) == 1.0
    # An id listed twice is one relevant item: a perfect answer is 1.0.
    assert recall_at_k(["a", "b", "c"], ["a", "a"], 10) == 1.0
    assert recall_at_k(["a", "b"], ["a", "a", "b", "b"], 2) == 1.0
    assert recall_at_k(["a", "x"], ["a", "a", "b"], 2) == 0.5
    assert overlap_at_k(["a", "b", "c", "d"], ["d", "c", "x", "y"], 4) == 0.5
    assert overlap_at_k([], [], 3) == 1.0
    with pytest.raises(ValueError):
        recall_at_k(["a"], ["a"], 0)


def test_a_canary_set_listing_a_relevant_id_twice_is_refused_naming_the_query() -> None:
    reg = Registry(InMemoryStore(), "/t/")
    reg.put_family(EmbeddingFamily("items", "item", 4, Metric.L2))
    reg.put_embedding_version(EmbeddingVersion("items", "v1"))
    vec = encode_vector(np.ones(4, np.float32))
    good = CanaryQuery("acme", vec, ("a", "b"))
    repeated = CanaryQuery("acme", vec, ("a", "b", "a"))
    canary = CanaryQuerySet("c", "v1", V1, (good, repeated))
    with pytest.raises(InvalidArgument, match=r"c@v1 query 1: relevant_ids lists 'a' more"):
        put_canary_set(reg, canary)
    assert VersionRef("c", "v1") not in reg.snapshot().canary_sets
    put_canary_set(reg, dataclasses.replace(canary, queries=(good,)))
    assert VersionRef("c", "v1") in reg.snapshot().canary_sets


def setup_family(reg: Registry, retention: int = 3600) -> None:
    reg.put_family(
        EmbeddingFamily("items", "item", 4, Metric.L2, rollback_retention_seconds=retention)
    )
    reg.put_embedding_version(EmbeddingVersion("items", "v1"))
    reg.put_embedding_version(EmbeddingVersion("items", "v2", status=Status.VALIDATING))
    reg.create_index(IndexVersion("ix", "v1", V1, num_buckets=2), SHARDS)
    reg.put_bundle(Bundle("b1", V1, V1, VersionRef("ix", "v1")))
    reg.put_route(Route("r", "b1"))


def test_gated_index_is_created_building_and_promoted_only_after_passing(
    registry: Registry,
) -> None:
    setup_family(registry)
    with pytest.raises(FailedPrecondition, match="declares quality gates"):
        registry.create_index(IndexVersion("ix", "v2", V2, num_buckets=2, gates=GATES), SHARDS)
    with pytest.raises(InvalidArgument, match="needs canary_set"):
        bad = QualityGates(min_canary_recall=0.5)
        registry.create_index(
            IndexVersion("ix", "v9", V2, status=Status.BUILDING, gates=bad), SHARDS
        )
    ix = IndexVersion("ix", "v2", V2, num_buckets=2, status=Status.VALIDATING, gates=GATES)
    registry.create_index(ix, SHARDS)
    admin = RegistryAdmin(registry)
    with pytest.raises(FailedPrecondition, match="never evaluated"):
        admin.promote("IndexVersion", "ix", "v2", "ready")
    put_evaluation(registry, evaluation(ix.ref, canary_recall=0.5))
    with pytest.raises(FailedPrecondition, match="min_canary_recall: measured 0.500"):
        admin.promote("IndexVersion", "ix", "v2", "ready")
    # apply is gated too: it promotes through the same status move.
    doc = {"kind": "IndexVersion", "spec": {**_spec(ix), "status": "ready"}}
    with pytest.raises(FailedPrecondition, match="failed gate"):
        admin.apply([doc])
    put_evaluation(registry, evaluation(ix.ref))
    admin.promote("IndexVersion", "ix", "v2", "ready")
    assert registry.snapshot().indexes[ix.ref].status is Status.READY
    # Once it served, its evaluation is its promotion record.
    with pytest.raises(FailedPrecondition, match="while it is building or validating"):
        put_evaluation(registry, evaluation(ix.ref, canary_recall=0.1))


def _spec(ix: IndexVersion) -> dict[str, object]:
    import json

    from registry import codec

    spec: dict[str, object] = json.loads(codec.encode(ix))["spec"]
    return spec


def test_deprecated_index_is_kept_then_archived_and_rollback_to_it_is_refused(
    registry: Registry,
) -> None:
    setup_family(registry, retention=0)
    registry.put_embedding_version(EmbeddingVersion("items", "v2"))
    registry.create_index(IndexVersion("ix", "v2", V2, num_buckets=2), SHARDS)
    registry.put_bundle(Bundle("b2", V2, V2, VersionRef("ix", "v2")))
    registry.put_route(Route("r", "b2"), why="new model")
    old = VersionRef("ix", "v1")
    assert due_for_archive(registry.snapshot(), utc_now()) == []
    registry.set_status("IndexVersion", old, Status.DEPRECATED)
    snap = registry.snapshot()
    assert snap.retention[old].keep_until <= utc_now().isoformat()
    assert due_for_archive(snap, utc_now()) == [old]
    archive(registry, old)
    snap = registry.snapshot()
    assert snap.indexes[old].status is Status.ARCHIVED and snap.retention[old].archived_at
    with pytest.raises(FailedPrecondition, match="no index version"):
        indexes_for_embedding(snap, V1)  # writes to v1 no longer reach the archived index
    with pytest.raises(FailedPrecondition, match="archived at .*rollback retention ended"):
        registry.rollback("r")
    with pytest.raises(FailedPrecondition, match="cannot move from archived"):
        registry.set_status("IndexVersion", old, Status.PRODUCTION)


def test_archive_is_refused_while_the_retention_lasts(registry: Registry) -> None:
    setup_family(registry, retention=3600)
    registry.put_embedding_version(EmbeddingVersion("items", "v2"))
    registry.create_index(IndexVersion("ix", "v2", V2, num_buckets=2), SHARDS)
    registry.put_bundle(Bundle("b2", V2, V2, VersionRef("ix", "v2")))
    registry.put_route(Route("r", "b2"), why="new model")  # v1 serves no route now
    old = VersionRef("ix", "v1")
    registry.set_status("IndexVersion", old, Status.DEPRECATED)
    later = utc_now() + datetime.timedelta(hours=2)
    assert due_for_archive(registry.snapshot(), utc_now()) == []
    assert due_for_archive(registry.snapshot(), later) == [old]
    with pytest.raises(FailedPrecondition, match="kept as a rollback target until"):
        archive(registry, old)
    # A rollback re-promotes it: it is no longer retiring.
    registry.set_status("IndexVersion", old, Status.PRODUCTION)
    assert old not in registry.snapshot().retention


def test_dual_write_setting(registry: Registry) -> None:
    setup_family(registry)
    with pytest.raises(FailedPrecondition, match="has no index version"):
        put_dual_write(registry, DualWrite("items", "v1", "v2"))
    with pytest.raises(NotFound, match="unknown embedding version items@v3"):
        put_dual_write(registry, DualWrite("items", "v1", "v3"))
    registry.create_index(IndexVersion("ix", "v2", V2, num_buckets=2), SHARDS)
    put_dual_write(registry, DualWrite("items", "v1", "v2", why="november model"))
    snap = registry.snapshot()
    assert mirror_version(snap, V1) == V2
    assert mirror_version(snap, V2) is None
    put_dual_write(registry, DualWrite("items", "v1", "v2", enabled=False))
    assert mirror_version(registry.snapshot(), V1) is None


def test_attributes_may_be_added_to_a_serving_index_version_never_removed_or_retyped(
    registry: Registry,
) -> None:
    from core.domain import AttrType
    from registry.change_writes import attributes_added

    setup_family(registry)
    admin = RegistryAdmin(registry)
    current = registry.snapshot().indexes[VersionRef("ix", "v1")]
    spec = _spec(current)
    added = {**spec, "attributes": {"region": "string"}}
    admin.apply([{"kind": "IndexVersion", "spec": added}])
    assert registry.snapshot().indexes[current.ref].attributes == {"region": AttrType.STRING}
    retyped = {**spec, "attributes": {"region": "int"}}
    with pytest.raises(FailedPrecondition, match="cannot be removed or retyped"):
        admin.apply([{"kind": "IndexVersion", "spec": retyped}])
    with pytest.raises(FailedPrecondition, match="only attributes may be added"):
        attributes_added(current, dataclasses.replace(current, num_buckets=3))


def test_canary_plan_picks_the_gated_set_and_its_promotion_baseline() -> None:
    import numpy as np

    from coordinator.canary_runner import canary_plan
    from registry.model import Placement
    from registry.quality import CanaryQuery, CanaryQuerySet, encode_vector
    from registry.snapshot import Snapshot, resolve_route

    fam = EmbeddingFamily("items", "item", 4, Metric.L2)
    q = (CanaryQuery("t", encode_vector(np.ones(4)), ("a",)),)
    gated = IndexVersion("ix", "v2", V2, gates=QualityGates(k=5, canary_set="c@v2"))
    sets = {
        VersionRef("c", "v1"): CanaryQuerySet("c", "v1", V2, q),
        VersionRef("c", "v2"): CanaryQuerySet("c", "v2", V2, q),
        VersionRef("d", "v9"): CanaryQuerySet("d", "v9", V1, q),
    }
    snap = Snapshot(
        families={"items": fam},
        embedding_versions={V2: EmbeddingVersion("items", "v2")},
        indexes={gated.ref: gated},
        placements={gated.ref: Placement(gated.ref, (("s0",),))},
        bundles={"b": Bundle("b", V2, V2, gated.ref)},
        routes={"r": Route("r", "b")},
        canary_sets=sets,
        evaluations={gated.ref: evaluation(gated.ref, canary_set="c@v2", canary_recall=0.93)},
    )
    plan = canary_plan(snap, resolve_route(snap, "r"))
    assert (
        plan is not None and plan.canary.label == "c@v2" and plan.k == 5 and plan.baseline == 0.93
    )
    # Without gates: the latest set of the route's query embedding, no baseline.
    plain = dataclasses.replace(gated, gates=None)
    snap2 = dataclasses.replace(snap, indexes={plain.ref: plain}, evaluations={})
    plan2 = canary_plan(snap2, resolve_route(snap2, "r"))
    assert plan2 is not None and plan2.canary.label == "c@v2" and plan2.baseline is None
    snap3 = dataclasses.replace(
        snap2, canary_sets={VersionRef("d", "v9"): sets[VersionRef("d", "v9")]}
    )
    assert canary_plan(snap3, resolve_route(snap3, "r")) is None  # sets for another model only
