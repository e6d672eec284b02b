"""What a feature read or write is checked for before any shard is asked:
the feature set and entity types, the tenant and its purposes, sizes (the
number of entities and types, key lengths), times and values."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace

import numpy as np
import pytest

from coordinator.model import Access, EntityColumns
from core.domain import EntityKey, VersionRef
from core.errors import InvalidArgument, NotFound, PermissionDenied
from registry.model import Tenant
from tests.feature_catalog import PROFILE, RANKER, T0, row, user
from tests.test_coordinator_features import ME, asked, feature_cluster, get, put


def test_requests_are_checked_before_any_shard_is_asked() -> None:
    engine, shards, _ = feature_cluster()
    with pytest.raises(NotFound):
        asyncio.run(engine.get(ME, VersionRef("nope", "v1"), [user("u")], T0, True, 5.0))
    with pytest.raises(InvalidArgument, match="no features for entity type"):
        get(engine, [EntityKey("acme", "shop", "s1")])
    with pytest.raises(PermissionDenied):
        get(engine, [user("u", tenant="other")])
    with pytest.raises(InvalidArgument, match="expected at most"):
        get(engine, [user(f"u{i}") for i in range(engine.max_entities + 1)])
    with pytest.raises(InvalidArgument, match="at most 256"):
        get(engine, [EntityKey("acme", f"type{i}", "x") for i in range(257)])
    with pytest.raises(InvalidArgument):  # a value of the wrong type
        put(engine, PROFILE, [row(user("u"), T0, account_days="seven")])
    ranker = VersionRef(RANKER.name, RANKER.version)
    for bad in (-1, T0 * 1000, 2**63 - 1, -(2**63)):  # before 1970, nanoseconds, int64 ends
        with pytest.raises(InvalidArgument, match=f"request_time_us {bad}; expected micro"):
            asyncio.run(engine.get(ME, ranker, [user("u")], bad, True, 5.0))
        with pytest.raises(InvalidArgument, match=re.escape(f"'u'): feature_timestamp {bad}; ")):
            put(engine, PROFILE, [row(user("u"), bad, age_bucket="a")])
        with pytest.raises(InvalidArgument, match=f"row 1 .*: generated_at {bad}; expected"):
            asyncio.run(
                engine.put(
                    ME,
                    PROFILE,
                    [],
                    5.0,
                    columns=("", "", ["u", "v"], np.array([T0, T0]), np.array([T0, bad]), {}),
                )
            )
    with pytest.raises(InvalidArgument, match="reads as nanoseconds"):
        put(engine, PROFILE, [row(user("u"), T0 * 1000, age_bucket="a")])
    # Found in review: feature ids had no length limit; one past 65,535 bytes
    # failed its shard's call, and every entity on that shard read
    # `unavailable`, or a write answered INTERNAL.
    long = "é" * 257  # 257 characters, 514 bytes: past the 512-byte limit
    with pytest.raises(InvalidArgument, match=r"entities \[1\]: entity_id is 514 bytes"):
        get(engine, [user("u"), user(long)])
    with pytest.raises(InvalidArgument, match=r"entity_id is 514 bytes"):
        asyncio.run(
            engine.get(
                ME, ranker, EntityColumns(["user"], np.zeros(1, np.uint8), [long]), T0, True, 5.0
            )
        )
    with pytest.raises(InvalidArgument, match=r"rows \[0\]: entity_id is 514 bytes"):
        put(engine, PROFILE, [row(user(long), T0, age_bucket="a")])
    with pytest.raises(InvalidArgument, match=r"feature columns \[1\]: entity_id is 514"):
        asyncio.run(
            engine.put(
                ME,
                PROFILE,
                [],
                5.0,
                columns=("", "", ["u", long], np.array([T0, T0]), np.array([T0, T0]), {}),
            )
        )
    assert all(not s.log for s in shards.values())
    get(engine, [user("é" * 128)])  # 256 bytes: within the limit


def test_the_tenant_must_allow_the_purpose_of_a_feature_read_or_write() -> None:
    """Searches and lookups checked it; feature reads and writes checked only
    that the tenant exists (found in review: with no shard asked — behavioural
    groups of a request that is not personalized — the answer was OK)."""
    engine, shards, reg = feature_cluster()
    put(engine, PROFILE, [row(user("u1"), T0, age_bucket="25-34")])
    tenant = Tenant("acme", allowed_purposes=("ranking",))
    reg.snapshot = replace(reg.snapshot, tenants={**reg.snapshot.tenants, "acme": tenant})
    other = Access("acme", "analytics")
    ranker = VersionRef(RANKER.name, RANKER.version)
    asked_before = [asked(s) for s in shards.values()]
    for personalized in (True, False):
        with pytest.raises(PermissionDenied, match="does not allow purpose 'analytics'"):
            asyncio.run(engine.get(other, ranker, [user("u1")], T0 + 60, personalized, 5.0))
    with pytest.raises(PermissionDenied, match="does not allow purpose 'analytics'"):
        asyncio.run(engine.put(other, PROFILE, [row(user("u2"), T0, age_bucket="x")], 5.0))
    assert [asked(s) for s in shards.values()] == asked_before
    get(engine, [user("u1")])  # the allowed purpose reads as before
