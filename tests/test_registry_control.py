"""The control plane on a real etcd: immutability, status moves, atomic route
switches with history and rollback, declarative apply with diff and dry-run,
and the example specs."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from core.domain import Metric, VersionRef
from core.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound
from registry import codec
from registry.admin import RegistryAdmin
from registry.model import EmbeddingFamily, EmbeddingVersion, Route, ShardState, Status
from registry.registry import Registry
from tests.specs import admin_with_shards, example_docs

pytestmark = pytest.mark.integration


@pytest.fixture
def admin(registry: Registry) -> RegistryAdmin:
    return admin_with_shards(registry)


def test_examples_apply_then_reapply_unchanged(admin: RegistryAdmin) -> None:
    dry = admin.apply(example_docs(), dry_run=True)
    assert all(line.endswith("created (dry run)") for line in dry), dry
    assert admin.registry.snapshot().routes == {}  # a dry run writes nothing
    lines = admin.apply(example_docs(), who="ci", why="bootstrap")
    assert len(lines) == len(example_docs()) and all(line.endswith("created") for line in lines)
    snap = admin.registry.snapshot()
    assert snap.routes["home_feed"].canary_bundle == "home_2026_11"
    assert set(snap.tenants) == {"acme", "globex"}
    assert snap.placement(VersionRef("items_flat", "2026-10")).shards() == ("shard-0", "shard-1")
    assert all(line.endswith("unchanged") for line in admin.apply(example_docs()))


def test_switch_to_an_incompatible_bundle_fails_and_leaves_the_route(admin: RegistryAdmin) -> None:
    admin.apply(example_docs())
    before, rev = admin.registry.route_with_revision("home_feed")
    with pytest.raises(
        FailedPrecondition,
        match="dimension differs: query family 'user_tower' has dimension=64, item family 'item_tower_xl' has dimension=128",
    ):
        admin.switch_route("home_feed", "home_xl_broken", who="alice", why="try xl")
    assert admin.registry.route_with_revision("home_feed") == (before, rev)
    assert "dimension differs" in admin.check_compat("user_tower@2026-11", "items_xl_flat@2026-11")
    assert admin.check_compat("user_tower@2026-11", "items_flat@2026-11") == ""
    assert "not declared compatible" in admin.check_compat(
        "user_tower@2026-10", "items_flat@2026-11"
    )


def test_a_switch_neither_creates_a_route_nor_leaves_one_without_a_bundle(
    admin: RegistryAdmin,
) -> None:
    """A mistyped route name used to create a second route (the real one
    unchanged, the operator told OK); an empty bundle left the route with
    nothing to serve."""
    admin.apply(example_docs())
    before = admin.registry.snapshot().routes
    with pytest.raises(NotFound, match="route 'home_fed' does not exist"):
        admin.switch_route("home_fed", "home_2026_11", who="alice", why="typo")
    with pytest.raises(InvalidArgument, match="bundle is empty"):
        admin.switch_route("home_feed", "", who="alice", why="empty")
    with pytest.raises(InvalidArgument, match="bundle is empty"):
        admin.apply([{"kind": "Route", "spec": {"name": "bare", "bundle": ""}}])
    assert admin.registry.snapshot().routes == before


def test_apply_prints_a_diff_and_refuses_semantic_changes(admin: RegistryAdmin) -> None:
    admin.apply(example_docs())
    changed = [dict(d) for d in example_docs() if d["kind"] == "Route"]
    changed[0]["spec"] = {**changed[0]["spec"], "canary_share": 0.5}
    (line,) = admin.apply(changed, dry_run=True)
    assert line == "Route home_feed updated: canary_share: 0.1 → 0.5 (dry run)"
    assert admin.registry.snapshot().routes["home_feed"].canary_share == 0.1
    admin.apply(changed, who="bob", why="widen canary")
    assert admin.registry.snapshot().routes["home_feed"].canary_share == 0.5
    frozen = {
        "kind": "EmbeddingVersion",
        "spec": {
            "name": "user_tower",
            "version": "2026-10",
            "status": "ready",
            "model_version": "other",
        },
    }
    with pytest.raises(FailedPrecondition, match="immutable; only its status may change"):
        admin.apply([frozen])
    family = {
        "kind": "EmbeddingFamily",
        "spec": {
            "name": "item_tower",
            "entity_type": "item",
            "dimension": 32,
            "metric": "inner_product",
        },
    }
    with pytest.raises(FailedPrecondition, match="dimension cannot change"):
        admin.apply([family], dry_run=True)
    with pytest.raises(InvalidArgument, match="kind 'Nope'"):
        admin.apply([{"kind": "Nope", "spec": {}}])


def test_status_moves_follow_the_state_machine(registry: Registry) -> None:
    registry.put_family(EmbeddingFamily("f", "item", 4, Metric.L2))
    registry.put_embedding_version(EmbeddingVersion("f", "v1", Status.BUILDING))
    admin = RegistryAdmin(registry)
    for status in ("validating", "ready", "production", "deprecated", "production"):
        assert admin.promote("EmbeddingVersion", "f", "v1", status).status.value == status
    with pytest.raises(FailedPrecondition, match="cannot move from production to building"):
        admin.promote("EmbeddingVersion", "f", "v1", "building")
    with pytest.raises(InvalidArgument, match="expected one of"):
        admin.promote("EmbeddingVersion", "f", "v1", "shipped")


def test_concurrent_switches_exactly_one_wins(admin: RegistryAdmin) -> None:
    admin.apply(example_docs())
    _, rev = admin.registry.route_with_revision("home_feed")
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def switch(bundle: str, who: str) -> None:
        barrier.wait()
        try:
            admin.switch_route("home_feed", bundle, expected_revision=rev, who=who, why="race")
            outcomes.append(f"won:{bundle}")
        except Conflict as exc:
            assert "re-read and retry" in exc.message
            outcomes.append("conflict")

    threads = [
        threading.Thread(target=switch, args=a)
        for a in (("home_2026_11", "alice"), ("home_2026_10", "bob"))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(o.split(":")[0] for o in outcomes) == ["conflict", "won"]
    winner = next(o.split(":")[1] for o in outcomes if o.startswith("won"))
    assert admin.registry.route_with_revision("home_feed")[0].bundle == winner


def test_history_and_rollback(admin: RegistryAdmin) -> None:
    admin.apply(example_docs(), who="ci", why="bootstrap")
    admin.switch_route("home_feed", "home_2026_11", who="alice", why="promote november")
    history = admin.history("home_feed")
    assert [(c.who, c.why) for c in history] == [("ci", "bootstrap"), ("alice", "promote november")]
    last = history[-1]
    assert last.before is not None and last.after is not None
    assert (last.before.bundle, last.after.bundle) == ("home_2026_10", "home_2026_11")
    assert last.when.endswith("+00:00")
    route = admin.rollback("home_feed", who="bob", why="ctr dropped")
    assert route == Route("home_feed", "home_2026_10", "home_2026_11", 0.1, "home_2026_11")
    last = admin.history("home_feed")[-1]
    assert last.after is not None and (last.who, last.after.bundle) == ("bob", "home_2026_10")


def test_feature_definitions_groups_and_sets(admin: RegistryAdmin) -> None:
    admin.apply(example_docs())
    snap = admin.registry.snapshot()
    fs = snap.feature_catalog.feature_set(VersionRef("home_ranker", "v1"))
    assert [r.output_name for r in fs.features][-1] == "price"
    assert snap.placement(VersionRef("features:item_stats", "v1")).shards() == (
        "shard-0",
        "shard-1",
    )
    # owner may change in place; the dtype may not (a new version is needed)
    owner: dict[str, Any] = {
        "kind": "FeatureDefinition",
        "spec": {
            "name": "item_price",
            "version": "v1",
            "entity_type": "item",
            "dtype": "float64",
            "privacy_class": "public",
            "owner": "pricing",
        },
    }
    assert admin.apply([owner]) == [
        'FeatureDefinition item_price@v1 updated: owner: "catalog" → "pricing"'
    ]
    dtype = {"kind": "FeatureDefinition", "spec": {**owner["spec"], "dtype": "int64"}}
    with pytest.raises(FailedPrecondition, match="dtype"):
        admin.apply([dtype])
    dangling = {
        "kind": "FeatureSet",
        "spec": {
            "name": "bad",
            "version": "v1",
            "features": [{"group": "nope", "group_version": "v1", "feature": "x"}],
        },
    }
    with pytest.raises(Exception, match="nope"):
        admin.apply([dangling])
    assert VersionRef("bad", "v1") not in admin.registry.snapshot().feature_catalog.feature_sets


def test_bad_index_parameters_are_refused_at_creation(admin: RegistryAdmin) -> None:
    admin.apply(example_docs())
    bad = {
        "kind": "IndexVersion",
        "spec": {
            "name": "items_hnsw",
            "version": "v1",
            "embedding": {"name": "item_tower", "version": "2026-11"},
            "kind": "hnsw",
            "params": {"M": -1},
        },
    }
    with pytest.raises(InvalidArgument, match="M=-1, expected 2..256"):
        admin.apply([bad])
    quorum = {
        "kind": "IndexVersion",
        "spec": {
            "name": "items_q",
            "version": "v1",
            "embedding": {"name": "item_tower", "version": "2026-11"},
            "write_quorum": 3,
        },
    }
    with pytest.raises(InvalidArgument, match="write_quorum 3"):
        admin.apply([quorum])


def test_route_history_is_capped_and_rollback_still_works() -> None:
    """A long-lived cluster's registry must not grow with every switch (issue 14)."""
    from registry.memory_store import InMemoryStore

    store = InMemoryStore()
    try:
        registry = Registry(store, "/capped/", route_history_limit=3)
        admin = admin_with_shards(registry)
        admin.apply(example_docs(), who="ci", why="bootstrap")
        for i in range(10):
            bundle = "home_2026_11" if i % 2 == 0 else "home_2026_10"
            admin.switch_route("home_feed", bundle, who="alice", why=f"switch {i}")
        history = admin.history("home_feed")
        assert [c.why for c in history] == ["switch 7", "switch 8", "switch 9"]
        assert len(store.list_prefix(registry.keys.route_history("home_feed"))[0]) == 3
        assert admin.registry.route_with_revision("home_feed")[0].bundle == "home_2026_10"
        assert admin.rollback("home_feed", who="bob").bundle == "home_2026_11"
        assert len(admin.history("home_feed")) == 3
        with pytest.raises(ValueError, match="route_history_limit"):
            Registry(store, route_history_limit=0)
    finally:
        store.close()


def test_admin_calls_with_a_mistyped_name_or_an_oversized_note_are_refused(
    admin: RegistryAdmin,
) -> None:
    """Each used to answer OK or INTERNAL (found feeding mutated admin
    requests to a real coordinator, tests/test_admin_api_fuzz.py): a shard
    state for a shard that does not exist was stored and drained nothing; a
    mistyped route's history read as "never changed"; a negative expected
    revision read as someone else's change; a 2 MB reason or why passed
    etcd's request size and answered INTERNAL."""
    admin.apply(example_docs(), who="ci", why="bootstrap")
    registry = admin.registry
    with pytest.raises(NotFound, match=r"unknown shard 'shard-O'; known shards: \['shard-0'"):
        registry.set_shard_state("shard-O", ShardState.DRAINING, "typo")
    assert registry.snapshot().intents == {}
    # A known shard may be drained though down (its registration gone) ...
    registry.store.delete(registry.keys.shard("shard-1"))
    registry.set_shard_state("shard-1", ShardState.DRAINING, "restart")
    assert registry.snapshot().intents["shard-1"].reason == "restart"
    registry.set_shard_state("shard-1", ShardState.SERVING)
    with pytest.raises(NotFound, match="route 'home_fed' does not exist and has no history"):
        admin.history("home_fed")
    assert [c.why for c in admin.history("home_feed")] == ["bootstrap"]
    with pytest.raises(InvalidArgument, match="expected_revision -1"):
        admin.switch_route("home_feed", "home_2026_11", expected_revision=-1)
    big = "x" * (codec.MAX_TEXT + 1)
    with pytest.raises(InvalidArgument, match=r"shard 'shard-0'.reason: text of 65537"):
        registry.set_shard_state("shard-0", ShardState.DRAINING, big)
    with pytest.raises(InvalidArgument, match=r"route 'home_feed'.why: text of 65537"):
        admin.switch_route("home_feed", "home_2026_11", why=big)
    with pytest.raises(InvalidArgument, match=r"apply.who: text of 65537"):
        admin.apply([{"kind": "Tenant", "spec": {"tenant_id": "initech"}}], who=big)
    assert "initech" not in registry.snapshot().tenants
    with pytest.raises(InvalidArgument, match=r"route 'home_feed'.why: text with a NUL"):
        registry.delete_route("home_feed", why="\x00")
    assert registry.snapshot().intents == {}
    assert [c.why for c in admin.history("home_feed")] == ["bootstrap"]
