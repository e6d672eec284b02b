"""Retiring feature group and set versions in the registry (in memory):
what blocks a retirement, what it removes, and that a retired version
stays retired (`registry.retirement`). The shards' side — dropping the
rows — is in test_feature_retirement_e2e.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

from core.domain import VersionRef
from core.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound
from registry import retirement
from registry.admin import RegistryAdmin
from registry.memory_store import InMemoryStore
from registry.model import Bundle
from registry.placement import feature_placement_ref
from registry.registry import Registry
from registry.retired_versions import guard_object
from tests.specs import admin_with_shards, example_docs

ITEM_V1 = VersionRef("item_stats", "v1")
RANKER_V1 = VersionRef("home_ranker", "v1")


def _docs(*kinds: str) -> list[dict[str, Any]]:
    return [d for d in example_docs() if d["kind"] in kinds]


def _item_v2() -> list[dict[str, Any]]:
    """item_stats@v2 and home_ranker@v2 reading it (a model change)."""
    group = next(d for d in _docs("FeatureGroup") if d["spec"]["name"] == "item_stats")
    ranker = next(d for d in _docs("FeatureSet") if d["spec"]["name"] == "home_ranker")
    group2 = json.loads(json.dumps(group))
    group2["spec"]["version"] = "v2"
    ranker2 = json.loads(json.dumps(ranker))
    ranker2["spec"]["version"] = "v2"
    for f in ranker2["spec"]["features"]:
        if f["group"] == "item_stats":
            f["group_version"] = "v2"
    return [group2, ranker2]


@pytest.fixture
def admin() -> RegistryAdmin:
    a = admin_with_shards(Registry(InMemoryStore()))
    a.apply(example_docs())
    a.apply(_item_v2())
    return a


def test_a_group_read_by_a_set_is_not_retired(admin: RegistryAdmin) -> None:
    with pytest.raises(FailedPrecondition, match=r"feature set home_ranker@v1.*retire those"):
        admin.retire("FeatureGroup", "item_stats", "v1")
    snap = admin.registry.snapshot()
    assert ITEM_V1 in snap.feature_catalog.groups and not snap.retired


def test_retiring_the_set_then_the_group_removes_both_and_the_placement(
    admin: RegistryAdmin,
) -> None:
    placed = feature_placement_ref("item_stats", "v1")
    assert placed in admin.registry.snapshot().placements
    record, effects = admin.retire("FeatureSet", "home_ranker", "v1", who="ana", why="v2 live")
    assert record.who == "ana" and record.why == "v2 live" and record.when
    record, effects = admin.retire("FeatureGroup", "item_stats", "v1", who="ana")
    assert any("shard-0, shard-1 drop its rows" in e for e in effects)
    snap = admin.registry.snapshot()
    assert ITEM_V1 not in snap.feature_catalog.groups
    assert RANKER_V1 not in snap.feature_catalog.feature_sets
    assert placed not in snap.placements
    assert snap.retired_groups == {ITEM_V1}
    # The current versions are untouched.
    assert VersionRef("item_stats", "v2") in snap.feature_catalog.groups
    # Reads name the retirement, and the versions that remain.
    with pytest.raises(NotFound, match=r"FeatureSet home_ranker@v1 was retired at .* by ana: "
                       r"v2 live; its current versions: home_ranker@v2"):  # fmt: skip
        snap.feature_catalog.feature_set(RANKER_V1)
    with pytest.raises(NotFound, match=r"FeatureGroup item_stats@v1 was retired"):
        snap.feature_catalog.schema(ITEM_V1)


def test_a_dry_run_writes_nothing(admin: RegistryAdmin) -> None:
    before = admin.registry.snapshot()
    _, effects = admin.retire("FeatureSet", "home_ranker", "v1", dry_run=True)
    assert effects and all(e.endswith("(dry run)") for e in effects)
    after = admin.registry.snapshot()
    assert after.revision == before.revision and RANKER_V1 in after.feature_catalog.feature_sets


def test_retiring_again_answers_the_record_and_changes_nothing(admin: RegistryAdmin) -> None:
    first, _ = admin.retire("FeatureSet", "home_ranker", "v1", who="ana")
    revision = admin.registry.snapshot().revision
    again, effects = admin.retire("FeatureSet", "home_ranker", "v1", who="bob")
    assert again == first and "already" in effects[0]
    assert admin.registry.snapshot().revision == revision


def test_a_retired_version_is_never_applied_again(admin: RegistryAdmin) -> None:
    ranker = next(d for d in _docs("FeatureSet") if d["spec"]["version"] == "v1")
    admin.retire("FeatureSet", "home_ranker", "v1")
    for dry_run in (True, False):
        with pytest.raises(FailedPrecondition, match="cannot be applied again"):
            admin.apply([ranker], dry_run=dry_run)
    # Nor through the registry's own write, which the apply calls.
    obj = admin.registry.snapshot().feature_catalog  # the set is gone from it
    assert RANKER_V1 not in obj.feature_sets


def test_a_new_set_cannot_read_a_retired_group(admin: RegistryAdmin) -> None:
    admin.retire("FeatureSet", "home_ranker", "v1")
    admin.retire("FeatureGroup", "item_stats", "v1")
    ranker = next(d for d in _docs("FeatureSet") if d["spec"]["version"] == "v1")
    ranker["spec"]["version"] = "v3"
    with pytest.raises(NotFound, match=r"FeatureGroup item_stats@v1 was retired"):
        admin.apply([ranker])


def _route_to(admin: RegistryAdmin, feature_set: VersionRef) -> str:
    """A route whose bundle names `feature_set` (the example's bundle, copied)."""
    snap = admin.registry.snapshot()
    name, bundle = next(iter(snap.bundles.items()))
    admin.registry.put_bundle(Bundle(f"{name}_fs", bundle.query_embedding,
                                     bundle.item_embedding, bundle.index, feature_set))  # fmt: skip
    return f"{name}_fs"


def test_a_set_a_route_serves_or_rolls_back_to_is_not_retired(admin: RegistryAdmin) -> None:
    snap = admin.registry.snapshot()
    route = next(iter(snap.routes.values()))
    plain = route.bundle
    with_set = _route_to(admin, RANKER_V1)
    admin.switch_route(route.name, with_set, who="ana", why="features")
    with pytest.raises(FailedPrecondition, match=rf"route {route.name} \(primary bundle"):
        admin.retire("FeatureSet", "home_ranker", "v1")
    admin.switch_route(route.name, plain, who="ana", why="back")
    # Still the rollback target.
    with pytest.raises(FailedPrecondition, match="rollback target's primary bundle"):
        admin.retire("FeatureSet", "home_ranker", "v1")
    admin.switch_route(route.name, plain, canary_bundle=with_set, canary_share=0.1, who="ana")
    with pytest.raises(FailedPrecondition, match=r"\(canary bundle"):
        admin.retire("FeatureSet", "home_ranker", "v1")
    admin.switch_route(route.name, plain, who="ana")
    admin.switch_route(route.name, plain, shadow_bundle=with_set, who="ana")
    with pytest.raises(FailedPrecondition, match=r"\(shadow bundle"):
        admin.retire("FeatureSet", "home_ranker", "v1")
    admin.switch_route(route.name, plain, who="ana")
    admin.switch_route(route.name, plain, canary_bundle=plain, canary_share=0.5, who="ana")
    admin.retire("FeatureSet", "home_ranker", "v1")  # released
    # And no route may point at the bundle now.
    with pytest.raises(FailedPrecondition, match="home_ranker@v1 was retired"):
        admin.switch_route(route.name, with_set, who="ana")


def test_a_set_created_while_its_group_is_retired_loses(admin: RegistryAdmin) -> None:
    """The race the transaction closes: the set read its group before the
    retirement committed; its write must then fail, not leave a set whose
    group is gone (every feature read would fail on the catalog)."""
    reg = admin.registry
    admin.retire("FeatureSet", "home_ranker", "v1")
    v1 = next(d for d in _docs("FeatureSet") if d["spec"]["version"] == "v1")
    v1["spec"]["version"] = "v9"
    from registry import codec
    from registry.features import FeatureSet

    new_set = codec.from_dict(FeatureSet, v1["spec"])
    held, touched = guard_object(reg.store, reg.keys, new_set)  # read before the retirement
    admin.retire("FeatureGroup", "item_stats", "v1")
    key = reg.key_of(new_set)
    assert not reg.store.txn([*held], [*touched])  # what put_object commits
    assert reg.store.get(key) is None
    with pytest.raises((NotFound, Conflict)):
        reg.put_object(new_set)


def test_a_group_retirement_racing_a_new_set_loses(
    admin: RegistryAdmin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other order: a set commits after the retirement found no user of
    the group. The set's write moved the group's revision, so the
    retirement's transaction fails and the group stays."""
    admin.retire("FeatureSet", "home_ranker", "v1")
    v9 = next(d for d in _docs("FeatureSet") if d["spec"]["version"] == "v1")
    v9["spec"]["version"] = "v9"

    def a_set_commits_meanwhile(*args: Any) -> list[str]:
        admin.apply([v9])
        return []

    monkeypatch.setattr(retirement, "users", a_set_commits_meanwhile)
    with pytest.raises(FailedPrecondition, match="changed while it was being retired"):
        admin.retire("FeatureGroup", "item_stats", "v1")
    snap = admin.registry.snapshot()
    assert ITEM_V1 in snap.feature_catalog.groups and not snap.retired_groups


@pytest.mark.parametrize(
    ("kind", "name", "version", "error", "match"),
    [
        ("IndexVersion", "x", "v1", InvalidArgument, "cannot be retired"),
        ("FeatureDefinition", "item_ctr", "v1", InvalidArgument, "cannot be retired"),
        ("FeatureGroup", "nope", "v1", NotFound, "no FeatureGroup nope@v1"),
        ("FeatureSet", "home_ranker", "", InvalidArgument, "both are required"),
    ],
)
def test_wrong_requests(
    admin: RegistryAdmin, kind: str, name: str, version: str, error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        admin.retire(kind, name, version)
