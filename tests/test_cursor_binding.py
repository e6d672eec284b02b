"""A cursor is plain data a caller could edit: the caller must be allowed
the family of the index version it names (the request was checked against
the route's family only), and a restricted filter needs its grant on that
version too (found in review: an edited cursor could point page 2 at any
index version of the registry). A route switched to another family between
pages still continues on page 1's version, for a caller allowed both."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from coordinator import cursor as cursors
from coordinator.model import Access, SearchQuery
from coordinator.search_request import plan_search
from core.domain import AttrType, EntityKey, Metric, VersionRef
from core.errors import InvalidArgument, PermissionDenied
from core.filters import Eq
from registry.model import Bundle, EmbeddingFamily, IndexVersion, Placement, Route, Tenant
from registry.snapshot import ResolvedRoute, Snapshot

ITEMS = EmbeddingFamily("items", "item", 4, Metric.L2)
SECRET = EmbeddingFamily("secret", "person", 4, Metric.L2, allowed_purposes=("fraud",))
IX = IndexVersion("ix", "v1", VersionRef("items", "v1"), num_buckets=2)
IX_OLD = IndexVersion(
    "ix",
    "v0",
    VersionRef("items", "v0"),
    num_buckets=2,
    attributes={"region": AttrType.STRING},
    restricted_attributes=("region",),
)
OTHER = IndexVersion("people", "v1", VersionRef("secret", "v1"), num_buckets=2)
SNAP = Snapshot(
    families={"items": ITEMS, "secret": SECRET},
    indexes={ix.ref: ix for ix in (IX, IX_OLD, OTHER)},
    placements={ix.ref: Placement(ix.ref, (("s0",), ("s0",))) for ix in (IX, IX_OLD, OTHER)},
    tenants={"t": Tenant("t")},
)
BUNDLE = Bundle("b", VersionRef("items", "v1"), VersionRef("items", "v1"), IX.ref)
RESOLVED = ResolvedRoute(Route("r", "b"), BUNDLE, IX, ITEMS, ITEMS, SNAP.placements[IX.ref])
ACCESS = Access("t", "ranking", principal="svc")
VECTOR = np.zeros(4, np.float32)


def _cursor(index: VersionRef, flt: Eq | None = None) -> str:
    return cursors.encode(
        cursors.Cursor(
            "r",
            "b",
            index,
            cursors.query_hash(VECTOR, 5, "t", flt),
            5,
            1.0,
            EntityKey("t", "item", "e4"),
            {"s0": ((0, 1), 7)},
        )
    )


def _query(cursor: str, flt: Eq | None = None) -> SearchQuery:
    return SearchQuery("r", ACCESS, VECTOR, 5, flt, cursor=cursor)


def test_a_cursor_of_the_route_family_continues_on_its_own_version() -> None:
    plan = plan_search(SNAP, _query(_cursor(IX_OLD.ref)), RESOLVED)
    assert plan.index == IX_OLD and plan.pins == {"s0": ((0, 1), 7)}


def test_a_cursor_naming_a_family_the_caller_may_not_read_is_refused() -> None:
    with pytest.raises(PermissionDenied, match="may not read embedding family 'secret'"):
        plan_search(SNAP, _query(_cursor(OTHER.ref)), RESOLVED)


def test_a_route_switched_to_another_family_between_pages_continues_on_page_one() -> None:
    moved = IndexVersion("ix2", "v1", VersionRef("items2", "v1"), num_buckets=2)
    families = {**SNAP.families, "items2": dataclasses.replace(ITEMS, name="items2")}
    snap = dataclasses.replace(SNAP, families=families, indexes={**SNAP.indexes, moved.ref: moved})
    now = dataclasses.replace(RESOLVED, index=moved)  # the route serves items2 now
    assert plan_search(snap, _query(_cursor(IX.ref)), now).index == IX
    wide = dataclasses.replace(ITEMS, dimension=8)
    with pytest.raises(InvalidArgument, match="8-d family 'items'; the query is 4-d"):
        plan_search(
            dataclasses.replace(snap, families={**families, "items": wide}),
            _query(_cursor(IX.ref)),
            now,
        )


def test_a_restricted_filter_needs_its_grant_on_the_cursor_version() -> None:
    flt = Eq("region", "eu")
    resolved = dataclasses.replace(
        RESOLVED, index=dataclasses.replace(IX, attributes={"region": AttrType.STRING})
    )
    with pytest.raises(PermissionDenied, match="region"):
        plan_search(SNAP, _query(_cursor(IX_OLD.ref, flt), flt), resolved)
