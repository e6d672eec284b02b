"""What a route or a dual-write depends on stays live, and registry writes
racing each other are compare-and-swap (found in review, each with a
reproduction on plain data): a status move took a served index version out
from under its route; a route switch committed onto a version archived while
it was checked; a family's dimension changed under a racing write; a route
deleted and created again scrambled its history; a rollback inside the
retention window was refused; failing a dual-write's target failed every
write of the production version; a bundle could name a missing feature set."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from coordinator.dual_write import mirror_indexes
from core.domain import Metric, VersionRef
from core.errors import Conflict, FailedPrecondition, NotFound
from registry.change_writes import put_dual_write
from registry.memory_store import InMemoryStore
from registry.migration import DualWrite
from registry.model import Bundle, EmbeddingFamily, EmbeddingVersion, IndexVersion, Route, Status
from registry.registry import Registry
from registry.snapshot import resolve_route
from registry.store import Entry

V1, V2 = VersionRef("items", "v1"), VersionRef("items", "v2")
IX1, IX2 = VersionRef("ix", "v1"), VersionRef("ix", "v2")


class RacingStore(InMemoryStore):
    """Runs `hook` once, right after the next read of `key`: another
    operator's writes landing between this one's check and its commit."""

    def __init__(self) -> None:
        super().__init__()
        self.hook: Callable[[], object] | None = None
        self.key = ""

    def get(self, key: str) -> Entry | None:
        found = super().get(key)
        self._race(key)
        return found

    def list_prefix(self, prefix: str) -> tuple[list[Entry], int]:
        found = super().list_prefix(prefix)
        self._race(prefix)
        return found

    def _race(self, key: str) -> None:
        if self.hook is not None and key == self.key:
            hook, self.hook = self.hook, None
            hook()


def two_models(reg: Registry, retention: int = 3600, v2: Status = Status.READY) -> None:
    reg.put_family(
        EmbeddingFamily("items", "item", 4, Metric.L2, rollback_retention_seconds=retention)
    )
    reg.put_embedding_version(EmbeddingVersion("items", "v1"))
    reg.put_embedding_version(EmbeddingVersion("items", "v2", status=v2))
    reg.create_index(IndexVersion("ix", "v1", V1, num_buckets=2), ["s0"])
    reg.create_index(IndexVersion("ix", "v2", V2, num_buckets=2, status=v2), ["s0"])
    reg.put_bundle(Bundle("b1", V1, V1, IX1))
    reg.put_bundle(Bundle("b2", V2, V2, IX2))


def test_a_version_a_route_serves_cannot_leave_service() -> None:
    reg = Registry(InMemoryStore(), "/t/")
    two_models(reg)
    reg.put_route(Route("r", "b1", shadow_bundle="b2"))
    with pytest.raises(FailedPrecondition, match="route 'r' \\(primary bundle 'b1'\\) serves it"):
        reg.set_status("IndexVersion", IX1, Status.DEPRECATED)
    with pytest.raises(FailedPrecondition, match="route 'r' \\(shadow bundle 'b2'\\)"):
        reg.set_status("IndexVersion", IX2, Status.DEPRECATED)
    with pytest.raises(FailedPrecondition, match="route 'r'"):
        reg.put_embedding_version(EmbeddingVersion("items", "v1", status=Status.DEPRECATED))
    resolve_route(reg.snapshot(), "r")  # still serves
    reg.put_route(Route("r", "b2"))
    reg.set_status("IndexVersion", IX1, Status.DEPRECATED)  # served by nothing now


def test_a_switch_racing_an_archive_of_its_index_is_refused() -> None:
    store = RacingStore()
    a, b = Registry(store, "/t/"), Registry(store, "/t/")
    two_models(a, retention=0)
    a.put_route(Route("r", "b2"))

    def retire_v1() -> None:  # operator A (and the sweeper) retire ix@v1
        a.set_status("IndexVersion", IX1, Status.DEPRECATED)
        a.set_status("IndexVersion", IX1, Status.ARCHIVED)

    store.key, store.hook = a.keys.route("r"), retire_v1
    with pytest.raises(Conflict):
        b.put_route(Route("r", "b1"), why="back to v1")
    assert reg_route(a) == "b2"


def test_a_status_move_racing_a_switch_onto_its_version_is_refused() -> None:
    store = RacingStore()
    a, b = Registry(store, "/t/"), Registry(store, "/t/")
    two_models(a)
    a.put_route(Route("r", "b2"))
    # B checks a snapshot (ix@v1 serves nothing), A switches r onto it, B commits.
    store.key, store.hook = a.keys.prefix, lambda: a.put_route(Route("r", "b1"))
    with pytest.raises(Conflict):
        b.set_status("IndexVersion", IX1, Status.DEPRECATED)
    resolve_route(a.snapshot(), "r")
    assert reg_route(a) == "b1"


def reg_route(reg: Registry) -> str:
    return reg.snapshot().routes["r"].bundle


def test_racing_family_writes_cannot_change_its_dimension() -> None:
    store = RacingStore()
    a, b = Registry(store, "/t/"), Registry(store, "/t/")

    def operator_a() -> None:
        a.put_family(EmbeddingFamily("items", "item", 4, Metric.L2))
        a.put_embedding_version(EmbeddingVersion("items", "v1"))
        a.create_index(IndexVersion("ix", "v1", V1, num_buckets=2), ["s0"])

    store.key, store.hook = a.keys.family("items"), operator_a
    with pytest.raises(Conflict):
        b.put_family(EmbeddingFamily("items", "item", 8, Metric.L2))
    assert a.snapshot().families["items"].dimension == 4


def test_a_route_deleted_and_created_again_keeps_its_history_in_order() -> None:
    reg = Registry(InMemoryStore(), "/t/")
    two_models(reg)
    reg.put_route(Route("r", "b1"), who="a", why="create")
    reg.put_route(Route("r", "b2"), who="a", why="switch")
    reg.delete_route("r", who="a", why="delete")
    reg.put_route(Route("r", "b2"), who="b", why="re-create")
    assert [c.why for c in reg.history("r")] == ["create", "switch", "delete", "re-create"]
    with pytest.raises(FailedPrecondition, match="no earlier state"):
        reg.rollback("r", who="b", why="oops")


def test_a_rollback_inside_the_retention_serves_the_deprecated_version_again() -> None:
    reg = Registry(InMemoryStore(), "/t/")
    two_models(reg)
    reg.put_route(Route("r", "b1"))
    reg.put_route(Route("r", "b2"), why="new model")
    reg.set_status("IndexVersion", IX1, Status.DEPRECATED)
    reg.put_embedding_version(EmbeddingVersion("items", "v1", status=Status.DEPRECATED))
    assert IX1 in reg.snapshot().retention
    assert reg.rollback("r", why="ctr dropped").bundle == "b1"
    snap = reg.snapshot()
    assert snap.indexes[IX1].status is Status.PRODUCTION and IX1 not in snap.retention
    assert snap.embedding_versions[V1].status is Status.PRODUCTION
    resolve_route(snap, "r")


def retiring_v1(reg: Registry) -> None:
    """r switched from b1 to b2, ix@v1 deprecated: kept as the rollback target."""
    reg.put_route(Route("r", "b1"))
    reg.put_route(Route("r", "b2"), why="new model")
    reg.set_status("IndexVersion", IX1, Status.DEPRECATED)


def still_retiring(reg: Registry) -> tuple[Status, bool]:
    snap = reg.snapshot()
    return snap.indexes[IX1].status, IX1 in snap.retention


def test_a_rollback_that_loses_the_route_compare_changes_nothing() -> None:
    """The status moves committed before the switch: ix@v1 stayed production
    with no retention record (never archived) though the rollback failed."""
    store = RacingStore()
    a, b = Registry(store, "/t/"), Registry(store, "/t/")
    two_models(a)
    a.put_bundle(Bundle("b2-shadowed", V2, V2, IX2))
    retiring_v1(a)
    store.key = a.keys.prefix  # another operator switches r after B read its state
    store.hook = lambda: a.put_route(Route("r", "b2-shadowed"), why="other operator")
    with pytest.raises(Conflict):
        b.rollback("r", why="ctr dropped")
    assert still_retiring(a) == (Status.DEPRECATED, True)
    assert reg_route(a) == "b2-shadowed"


def test_a_rollback_to_a_bundle_that_no_longer_resolves_changes_nothing() -> None:
    """Items searched with a query tower's embeddings; the item family stops
    declaring the query family compatible after the switch."""
    reg = Registry(InMemoryStore(), "/t/")
    q1 = VersionRef("queries", "v1")
    reg.put_family(EmbeddingFamily("queries", "user", 4, Metric.L2))
    reg.put_embedding_version(EmbeddingVersion("queries", "v1"))
    items = EmbeddingFamily("items", "item", 4, Metric.L2, compatible_query_families=("queries",))
    reg.put_family(items)
    reg.put_embedding_version(EmbeddingVersion("items", "v1", compatible_query_versions=(q1,)))
    reg.put_embedding_version(EmbeddingVersion("items", "v2"))
    reg.create_index(IndexVersion("ix", "v1", V1, num_buckets=2), ["s0"])
    reg.create_index(IndexVersion("ix", "v2", V2, num_buckets=2), ["s0"])
    reg.put_bundle(Bundle("b1", q1, V1, IX1))
    reg.put_bundle(Bundle("b2", V2, V2, IX2))
    retiring_v1(reg)
    reg.put_family(dataclasses.replace(items, compatible_query_families=()))
    with pytest.raises(FailedPrecondition, match="not declared compatible"):
        reg.rollback("r")
    assert still_retiring(reg) == (Status.DEPRECATED, True)
    assert reg_route(reg) == "b2"


def test_an_embedding_version_is_archived_only_after_its_index_versions() -> None:
    """Archiving items@v1 right after its deprecation destroyed the rollback
    target inside ix@v1's retention, and writes to it were still accepted."""
    reg = Registry(InMemoryStore(), "/t/")
    two_models(reg, retention=48 * 3600)
    retiring_v1(reg)
    reg.set_status("EmbeddingVersion", V1, Status.DEPRECATED)
    with pytest.raises(FailedPrecondition) as refused:
        reg.set_status("EmbeddingVersion", V1, Status.ARCHIVED)
    kept = reg.snapshot().retention[IX1].keep_until
    assert all(s in refused.value.message for s in ("ix@v1 (deprecated", kept, "sweeper"))
    with pytest.raises(FailedPrecondition, match="cannot become archived"):  # apply's path
        reg.put_embedding_version(EmbeddingVersion("items", "v1", status=Status.ARCHIVED))
    assert reg.rollback("r").bundle == "b1"  # the rollback target is intact

    reg = Registry(InMemoryStore(), "/t/")
    two_models(reg, retention=0)
    retiring_v1(reg)
    reg.set_status("EmbeddingVersion", V1, Status.DEPRECATED)
    reg.set_status("IndexVersion", IX1, Status.ARCHIVED)  # its retention ended
    reg.set_status("EmbeddingVersion", V1, Status.ARCHIVED)


def test_writes_to_an_archived_embedding_version_are_refused() -> None:
    """One archived before its index versions were (a registry from before
    that rule) still had its writes accepted into them."""
    import asyncio

    from coordinator.snapshots import RegistryView
    from registry.model import Tenant

    reg = Registry(InMemoryStore(), "/t/")
    two_models(reg)
    reg.put_tenant(Tenant("acme"))
    snap = reg.snapshot()
    archived = EmbeddingVersion("items", "v1", status=Status.ARCHIVED)
    old = dataclasses.replace(snap, embedding_versions={**snap.embedding_versions, V1: archived})

    class Source:
        snapshot = old

        def reread(self) -> object:
            return old

    with pytest.raises(FailedPrecondition, match="items@v1 is archived: it takes no writes"):
        asyncio.run(RegistryView(Source()).write_indexes(V1, "acme"))  # type: ignore[arg-type]


def test_the_last_index_of_a_dual_write_target_stays_live_while_it_is_on() -> None:
    reg = Registry(InMemoryStore(), "/t/")
    two_models(reg, v2=Status.VALIDATING)
    reg.put_route(Route("r", "b1"))
    put_dual_write(reg, DualWrite("items", "v1", "v2", why="migration"))
    with pytest.raises(FailedPrecondition, match="turn dual-write off first"):
        reg.set_status("IndexVersion", IX2, Status.FAILED)
    with pytest.raises(FailedPrecondition, match="turn dual-write off first"):
        reg.put_embedding_version(EmbeddingVersion("items", "v2", status=Status.FAILED))
    assert [ix.ref for ix in mirror_indexes(reg.snapshot(), V1)] == [IX2]
    put_dual_write(reg, DualWrite("items", "v1", "v2", enabled=False))
    reg.set_status("IndexVersion", IX2, Status.FAILED)
    assert mirror_indexes(reg.snapshot(), V1) == []


def test_enabling_dual_write_racing_a_failure_of_its_target_is_refused() -> None:
    store = RacingStore()
    a, b = Registry(store, "/t/"), Registry(store, "/t/")
    two_models(a, v2=Status.VALIDATING)
    store.key = a.keys.dual_write("items")
    store.hook = lambda: a.set_status("IndexVersion", IX2, Status.FAILED)
    with pytest.raises(Conflict):
        put_dual_write(b, DualWrite("items", "v1", "v2"))
    assert "items" not in a.snapshot().dual_writes


def test_a_route_to_a_bundle_naming_a_missing_feature_set_is_refused() -> None:
    reg = Registry(InMemoryStore(), "/t/")
    two_models(reg)
    reg.put_bundle(Bundle("bf", V1, V1, IX1, feature_set=VersionRef("ranker_fetures", "v1")))
    with pytest.raises(NotFound, match="feature set ranker_fetures@v1 does not exist"):
        reg.put_route(Route("r", "bf"))
    assert "r" not in reg.snapshot().routes


def test_apply_does_not_overwrite_a_switch_made_after_it_read_the_route() -> None:
    """apply printed a diff against the route it read, then wrote without
    that revision: bob's switch in between was silently reverted."""
    from registry.admin import RegistryAdmin

    store = RacingStore()
    a, b = Registry(store, "/t/"), Registry(store, "/t/")
    two_models(a)
    a.put_route(Route("r", "b1"))
    doc = {"kind": "Route", "spec": {"name": "r", "bundle": "b1", "shadow_bundle": "b2"}}
    store.key = a.keys.route("r")
    store.hook = lambda: RegistryAdmin(b).switch_route("r", "b2", who="bob", why="incident")
    with pytest.raises(Conflict):
        RegistryAdmin(a).apply([doc], who="alice", why="add shadow")
    assert reg_route(a) == "b2"


def test_a_promotion_racing_a_new_evaluation_is_refused() -> None:
    """The promotion judged the evaluation it read; one replacing it before
    the commit (a failing one) left the version ready on a record that fails
    its gates (found in review)."""
    import dataclasses

    from registry.change_writes import put_evaluation
    from tests.test_model_change_rules import GATES, evaluation

    store = RacingStore()
    a, b = Registry(store, "/t/"), Registry(store, "/t/")
    two_models(a, v2=Status.VALIDATING)
    gated = IndexVersion("ix", "v3", V2, num_buckets=2, status=Status.VALIDATING, gates=GATES)
    a.create_index(gated, ["s0"])
    put_evaluation(a, evaluation(gated.ref))
    store.key = a.keys.evaluation("ix", "v3")
    store.hook = lambda: put_evaluation(a, evaluation(gated.ref, canary_recall=0.1))
    with pytest.raises(Conflict):
        b.set_status("IndexVersion", gated.ref, Status.READY)
    assert a.snapshot().indexes[gated.ref] == dataclasses.replace(gated)


def _ix1(status: str) -> dict[str, object]:
    spec = {"name": "ix", "version": "v1", "embedding": {"name": "items", "version": "v1"}}
    return {"kind": "IndexVersion", "spec": {**spec, "num_buckets": 2, "status": status}}


def test_one_apply_switches_the_route_then_deprecates_what_it_served() -> None:
    """README's model change steps 5 and 6 as one reviewed document: versions
    were written before routes, so the deprecation was refused half-way
    through (after a clean dry run) with the route still on the old bundle.
    A version leaving service is now written last, and the dry run judges it
    against the routes as the apply leaves them (found in review)."""
    from registry.admin import RegistryAdmin

    reg = Registry(InMemoryStore(), "/t/")
    two_models(reg)
    reg.put_route(Route("r", "b1"))
    admin = RegistryAdmin(reg)
    kept: list[dict[str, object]] = [
        _ix1("deprecated"),
        {"kind": "Route", "spec": {"name": "r", "bundle": "b1"}},
    ]
    for dry_run in (True, False):
        with pytest.raises(
            FailedPrecondition, match="route 'r' \\(primary bundle 'b1'\\) serves it"
        ):
            admin.apply(kept, dry_run=dry_run)
    assert reg.snapshot().indexes[IX1].status is Status.READY
    docs: list[dict[str, object]] = [
        _ix1("deprecated"),
        {"kind": "Route", "spec": {"name": "r", "bundle": "b2"}},
    ]
    assert all(line.endswith("(dry run)") for line in admin.apply(docs, dry_run=True))
    admin.apply(docs, who="op", why="november model")
    snap = reg.snapshot()
    assert snap.routes["r"].bundle == "b2" and snap.indexes[IX1].status is Status.DEPRECATED
