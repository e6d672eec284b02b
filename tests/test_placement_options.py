"""A placed document's `shards` and `replicas` (registry/placement_options.py),
through the admin's apply on an in-memory registry: wrong ones are refused
before anything is written (dry run included), a feature group gets the
replicas it asks for, and a version's replicas cannot change afterwards."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from core.domain import VersionRef
from core.errors import FailedPrecondition, InvalidArgument, NotFound, VecshardError
from registry.admin import RegistryAdmin, parse_documents
from registry.memory_store import InMemoryStore
from registry.placement import FEATURE_BUCKETS, feature_placement_ref
from registry.registry import Registry
from tests.specs import admin_with_shards, route_spec

GROUP_DOCS = """
kind: FeatureDefinition
spec: {name: ctr, version: v1, entity_type: item, dtype: float64, privacy_class: public, owner: t}
---
kind: FeatureGroup
spec: {name: stats, version: v1, entity_type: item, features: [{name: ctr, version: v1}]}
"""


def fresh() -> tuple[Registry, RegistryAdmin]:
    reg = Registry(InMemoryStore())
    return reg, admin_with_shards(reg)


def index_docs(**fields: Any) -> list[dict[str, Any]]:
    docs = parse_documents(route_spec(dim=4))
    assert docs[2]["kind"] == "IndexVersion"
    docs[2].pop("replicas")
    docs[2].update(fields)
    return docs


def group_docs(**fields: Any) -> list[dict[str, Any]]:
    docs = parse_documents(GROUP_DOCS)
    docs[1].update(fields)
    return docs


BAD: list[tuple[dict[str, Any], type[VecshardError], str]] = [
    ({"shards": "shard-0"}, InvalidArgument, "shards 'shard-0'; expected a list of shard ids"),
    ({"shards": [1, 2]}, InvalidArgument, "expected a list of shard ids"),
    ({"shards": []}, InvalidArgument, "expected a list of shard ids"),
    ({"shards": ["shard-0", "shard-0"]}, InvalidArgument, "names a shard twice"),
    ({"shards": ["shard-9"]}, NotFound, r"shard\(s\) \['shard-9'\] are not registered"),
    ({"replicas": 0}, InvalidArgument, "replicas 0; expected a whole number of at least 1"),
    ({"replicas": "2"}, InvalidArgument, "replicas '2'; expected a whole number"),
    ({"replicas": True}, InvalidArgument, "replicas True; expected a whole number"),
    ({"replicas": 1.5}, InvalidArgument, "replicas 1.5; expected a whole number"),
    ({"replicas": 3}, InvalidArgument, r"replicas 3, but it is placed on 2 shard\(s\)"),
    (
        {"shards": ["shard-1"], "replicas": 2},
        InvalidArgument,
        r"replicas 2, but it is placed on 1 shard\(s\)",
    ),
    ({"replica": 2}, InvalidArgument, r"unknown field\(s\) \['replica'\]; a document has"),
]


@pytest.mark.parametrize("make", [index_docs, group_docs], ids=["index", "feature group"])
@pytest.mark.parametrize(("fields", "error", "match"), BAD, ids=[repr(b[0]) for b in BAD])
def test_a_wrong_placement_is_refused_before_anything_is_written(
    make: Any, fields: dict[str, Any], error: type[VecshardError], match: str
) -> None:
    reg, admin = fresh()
    for dry_run in (True, False):
        with pytest.raises(error, match=match):
            admin.apply(make(**fields), dry_run=dry_run)
    assert not reg.snapshot().placements and not reg.snapshot().features


def test_placement_fields_on_a_kind_that_is_not_placed_are_refused() -> None:
    _, admin = fresh()
    docs = index_docs()
    docs[0]["replicas"] = 2  # the EmbeddingFamily
    with pytest.raises(InvalidArgument, match="a EmbeddingFamily is not placed"):
        admin.apply(docs)
    docs = group_docs()
    docs[0]["shards"] = ["shard-0"]  # the FeatureDefinition
    with pytest.raises(InvalidArgument, match="shards place an IndexVersion or a FeatureGroup"):
        admin.apply(docs)


def test_a_feature_group_gets_the_replicas_and_shards_it_asks_for() -> None:
    reg, admin = fresh()
    admin.apply(group_docs(replicas=2))
    placement = reg.snapshot().placement(feature_placement_ref("stats", "v1"))
    assert len(placement.buckets) == FEATURE_BUCKETS
    assert all(sorted(b) == ["shard-0", "shard-1"] for b in placement.buckets)
    # The first replicas alternate: reads (first replica first) spread evenly.
    assert {b[0] for b in placement.buckets} == {"shard-0", "shard-1"}

    reg, admin = fresh()
    docs = group_docs(shards=["shard-1"])
    admin.apply(docs)
    placement = reg.snapshot().placement(feature_placement_ref("stats", "v1"))
    assert set(placement.buckets) == {("shard-1",)}
    assert admin.apply(copy.deepcopy(docs)) == [
        "FeatureDefinition ctr@v1 unchanged",
        "FeatureGroup stats@v1 unchanged",
    ]


@pytest.mark.parametrize("make", [index_docs, group_docs], ids=["index", "feature group"])
def test_replicas_cannot_change_on_an_existing_version(make: Any) -> None:
    reg, admin = fresh()
    admin.apply(make(replicas=1))
    before = reg.snapshot().placements
    for dry_run in (True, False):
        with pytest.raises(
            FailedPrecondition, match=r"placed with 1 replica\(s\); replicas cannot"
        ):
            admin.apply(make(replicas=2), dry_run=dry_run)
    assert reg.snapshot().placements == before
    admin.apply(make(replicas=1))  # the same: fine
    admin.apply(make())  # not given: fine


@pytest.mark.parametrize(
    ("fields", "spec", "match"),
    [
        ({"replicas": 2}, {"write_quorum": 3}, r"write_quorum 3, but it has 2 replica\(s\)"),
        ({}, {"write_quorum": 2}, r"write_quorum 2, but it has 1 replica\(s\)"),
        ({"replicas": 2}, {"write_quorum": -1}, "write_quorum -1; expected 0"),
        ({"replicas": 2}, {"write_quorum": True}, "write_quorum: expected int, got True"),
    ],
)
def test_a_feature_group_write_quorum_its_replicas_cannot_meet_is_refused(
    fields: dict[str, Any], spec: dict[str, Any], match: str
) -> None:
    reg, admin = fresh()
    docs = group_docs(**fields)
    docs[1]["spec"].update(spec)
    for dry_run in (True, False):
        with pytest.raises(InvalidArgument, match=match):
            admin.apply(docs, dry_run=dry_run)
    assert not reg.snapshot().placements
    docs[1]["spec"]["write_quorum"] = 1
    admin.apply(docs)
    group = reg.snapshot().feature_catalog.groups[VersionRef("stats", "v1")]
    assert group.group.write_quorum == 1
