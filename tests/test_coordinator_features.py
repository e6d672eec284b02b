"""The coordinator's feature engine (coordinator/features.py) on plain data,
with in-memory shards: one fetch per shard and group, values in request
order, every missing reason (entity_not_found, not_computed, privacy_disabled
without a fetch, stale, timeout when a shard does not answer), and the first
write of a group announcing it to every shard of its placement."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import cast

import pytest
from prometheus_client import REGISTRY

from coordinator.buckets import key_bucket
from coordinator.feature_convert import ProtoFeatureWire
from coordinator.features import FeatureEngine
from coordinator.model import Access, FeatureResult
from coordinator.replicas import ReplicaTracker
from coordinator.shard import Shard
from coordinator.snapshots import RegistryView
from core.column_wire import resolved_from_pb
from core.domain import EntityKey, VersionRef
from core.errors import InvalidArgument, Unavailable
from protos.vecshard.v1.common_pb2 import ResolvedFeatureColumns
from registry.feature_values import FeatureValue, resolved_values
from registry.features import GroupRow
from registry.placement import FEATURE_BUCKETS, assign_buckets, feature_placement_ref
from registry.snapshot import Snapshot
from tests.feature_catalog import (
    ACTIVITY,
    DAY,
    DEFINITIONS,
    GROUPS,
    HOUR,
    ITEM,
    MINUTE,
    PROFILE,
    RANKER,
    T0,
    item,
    row,
    user,
)
from tests.inmemory import InMemoryShard
from tests.static_registry import StaticRegistry, registry_for

ME = Access("acme", "ranking")
SHARDS = ("s0", "s1")


def feature_cluster(
    ids: Sequence[str] = SHARDS,
    replicas: int = 1,
    write_quorum: int = 0,
    replicas_of: Mapping[str, int] | None = None,
) -> tuple[FeatureEngine, dict[str, InMemoryShard], StaticRegistry]:
    """Every group's buckets round-robin over `ids` (by default even buckets
    on s0, odd on s1), each bucket's replicas on the shards after its first;
    `replicas_of` names groups with another number of replicas."""
    groups = [replace(g, write_quorum=write_quorum) for g in GROUPS]
    placements = {
        ref: assign_buckets(ref, FEATURE_BUCKETS, ids, (replicas_of or {}).get(g.name, replicas))
        for g in groups
        for ref in [feature_placement_ref(g.name, g.version)]
    }
    reg = registry_for(
        ids,
        [tuple(ids)],
        features=[*DEFINITIONS, *groups, RANKER],
        feature_placements=placements,
    )
    shards = {s: InMemoryShard(s, registry=reg) for s in ids}

    def factory(shard_id: str, address: str) -> Shard:
        return shards[shard_id]

    return (
        FeatureEngine(RegistryView(reg), factory, ReplicaTracker(), ProtoFeatureWire()),
        shards,
        reg,
    )


def home(reg: StaticRegistry, key: EntityKey) -> str:
    return SHARDS[key_bucket(reg.snapshot, FEATURE_BUCKETS, key) % 2]


def spread(reg: StaticRegistry, keys: Sequence[EntityKey]) -> tuple[list[EntityKey], ...]:
    """The entities each shard holds, so a request surely touches both."""
    return tuple([k for k in keys if home(reg, k) == s] for s in SHARDS)


def users(reg: StaticRegistry) -> tuple[list[EntityKey], ...]:
    return spread(reg, [user(f"u{i}") for i in range(12)])


def items(reg: StaticRegistry) -> tuple[list[EntityKey], ...]:
    return spread(reg, [item(f"i{i}") for i in range(12)])


class Answer:
    """A FeatureResult read back by entity position and feature name: its
    blocks (columns in wire form) decoded and put back in request order."""

    def __init__(self, result: FeatureResult, entities: Sequence[EntityKey]) -> None:
        self.result, self.entities = result, entities
        self.cells: dict[tuple[str, int], dict[str, tuple[object, ...]]] = {}
        for b in result.blocks:
            resolved = resolved_from_pb(cast(ResolvedFeatureColumns, b.columns))
            for r, values in zip(b.rows.tolist(), resolved_values(resolved), strict=True):
                cell = self.cells.setdefault((b.entity_type, r), {})
                assert not set(b.outputs) & set(cell), "an entity answered twice"
                cell.update(zip(b.outputs, map(plain, values), strict=True))

    def __getitem__(self, n: int) -> dict[str, tuple[object, ...]]:
        etype = self.entities[n].entity_type
        row = sum(1 for k in self.entities[:n] if k.entity_type == etype)
        cell = self.cells[(etype, row)]
        assert set(cell) == set(self.result.names_by_type[etype])  # every value, once
        return cell


def plain(v: FeatureValue) -> tuple[object, ...]:
    return (
        v.value,
        v.missing_reason.value if v.missing_reason else None,
        v.default_applied.value if v.default_applied else None,
        v.staleness_us,
        v.feature_timestamp,
    )


def get(
    engine: FeatureEngine,
    entities: Sequence[EntityKey],
    personalized: bool = True,
    timeout: float = 5.0,
) -> Answer:
    ranker = VersionRef(RANKER.name, RANKER.version)
    result = asyncio.run(engine.get(ME, ranker, entities, T0 + MINUTE, personalized, timeout))
    return Answer(result, entities)


def put(engine: FeatureEngine, group: VersionRef, rows: Sequence[GroupRow]) -> tuple[int, int]:
    return asyncio.run(engine.put(ME, group, rows, 5.0))


def test_values_come_back_in_request_order_with_one_fetch_per_shard_and_group() -> None:
    engine, shards, reg = feature_cluster()
    users0, users1 = users(reg)
    items0, items1 = items(reg)
    written = [*users0[:2], *users1[:2]]
    assert put(
        engine, PROFILE, [row(u, T0, age_bucket=u.entity_id, account_days=7) for u in written]
    ) == (4, 0)
    assert put(
        engine, ITEM, [row(i, T0, popularity=0.9, category="books") for i in (items0[0], items1[0])]
    ) == (2, 0)

    ask = [users1[0], items0[0], users0[0], items1[0], user("nobody"), users0[1]]
    result = get(engine, ask)
    assert result.result.shards == 2
    u = result[0]
    assert u["user_profile__age_bucket"] == (users1[0].entity_id, None, None, MINUTE, T0)
    assert u["user_profile__account_days"] == (7, None, None, MINUTE, T0)
    assert u["user_profile__premium"][:3] == (False, "no_history", "feature_default")
    assert result[2]["user_profile__age_bucket"][0] == users0[0].entity_id
    assert result[5]["user_profile__age_bucket"][0] == users0[1].entity_id
    assert result[4]["user_profile__age_bucket"][:3] == (
        "unknown",
        "entity_not_found",
        "feature_default",
    )
    # Never written anywhere: the shards have no partition for these groups.
    assert result[0]["user_ctr"][:2] == (0.0, "not_computed")
    assert result[1]["item_quality__quality"][:2] == (0.25, "not_computed")
    assert result[3]["item_stats__popularity"] == (0.9, None, None, MINUTE, T0)
    # One call per shard and group read, never one per entity.
    for s in shards.values():
        reads = [ref for op, ref in s.log if op == "get_features"]
        assert len(reads) == len(set(reads))
    assert result.result.missing_by_reason["not_computed"] == 4 * 3 + 2 * 1


def test_behavioural_groups_are_refused_without_a_fetch_when_not_personalized() -> None:
    engine, shards, reg = feature_cluster()
    users0, users1 = users(reg)
    put(engine, ACTIVITY, [row(users0[0], T0, ctr_7d=0.5, taste=[1.0, 2.0])])
    result = get(engine, [users0[0], users1[0]], personalized=False)
    for n in (0, 1):
        v = result[n]
        assert v["user_ctr"][:3] == (0.0, "privacy_disabled", "feature_default")
        assert v["session__session_clicks"][:2] == (0, "privacy_disabled")
    asked = {ref for s in shards.values() for op, ref in s.log if op == "get_features"}
    assert (
        asked
        and ACTIVITY not in asked
        and all(ref is not None and ref.name != "session" for ref in asked)
    )
    assert result.result.missing_by_reason["privacy_disabled"] == 2 * 3


def test_a_shard_that_refuses_or_answers_late_costs_its_entities_not_the_request() -> None:
    engine, shards, reg = feature_cluster()
    users0, users1 = users(reg)
    put(engine, PROFILE, [row(u, T0, age_bucket="25-34") for u in (users0[0], users1[0])])
    shards["s1"].error = Unavailable("shard s1 is down")
    result = get(engine, [users0[0], users1[0]])
    assert result[0]["user_profile__age_bucket"][:2] == ("25-34", None)
    down = result[1]
    assert all(v[1] == "unavailable" for v in down.values())
    assert down["user_profile__age_bucket"][:3] == ("unknown", "unavailable", "feature_default")
    assert result.result.missing_by_reason["unavailable"] == len(down)
    shards["s1"].error, shards["s1"].delay = None, 2.0
    late = get(engine, [users0[0], users1[0]], timeout=0.3)
    assert late[0]["user_profile__age_bucket"][:2] == ("25-34", None)
    assert all(v[1] == "timeout" for v in late[1].values())
    assert late.result.missing_by_reason == {"timeout": len(late[1])} | {
        r: n for r, n in late.result.missing_by_reason.items() if r != "timeout"
    }
    shards["s1"].delay = 0.0
    shards["s1"].error = InvalidArgument("group user_profile@v1: no feature(s) ['x']")
    with pytest.raises(InvalidArgument):  # about the request: every shard would say it
        get(engine, [users0[0], users1[0]])


def test_entities_of_a_bucket_without_a_serving_replica_are_unavailable() -> None:
    engine, shards, reg = feature_cluster()
    users0, users1 = users(reg)
    put(engine, PROFILE, [row(u, T0, age_bucket="25-34") for u in (users0[0], users1[0])])
    reg.snapshot = replace(
        reg.snapshot, shards={"s0": reg.snapshot.shards["s0"]}
    )  # s1's lease ended
    result = get(engine, [users0[0], users1[0]])
    assert result[0]["user_profile__age_bucket"][:2] == ("25-34", None)
    assert result[1]["user_profile__age_bucket"][:2] == ("unknown", "unavailable")
    assert not [op for op, _ in shards["s1"].log if op.startswith("get_feature")]


def test_a_bucket_without_a_replica_costs_its_entities_alone_while_etcd_is_down() -> None:
    """A bucket with no serving replica sends the request to re-read the
    registry (one may be re-registering); with etcd unreachable the re-read
    raised and failed the whole request (found in review)."""
    engine, _, reg = feature_cluster()
    users0, users1 = users(reg)
    put(engine, PROFILE, [row(u, T0, age_bucket="25-34") for u in (users0[0], users1[0])])
    reg.snapshot = replace(reg.snapshot, shards={"s0": reg.snapshot.shards["s0"]})

    def unreachable() -> Snapshot:
        raise Unavailable("etcd at 127.0.0.1:2379 is unreachable")

    reg.reread = unreachable  # type: ignore[method-assign]
    result = get(engine, [users0[0], users1[0]])
    assert result[0]["user_profile__age_bucket"][:2] == ("25-34", None)
    assert result[1]["user_profile__age_bucket"][:2] == ("unknown", "unavailable")


def test_stale_values_are_counted_and_served() -> None:
    engine, _, reg = feature_cluster()
    items0, _ = items(reg)
    put(engine, ITEM, [row(items0[0], T0 - HOUR, popularity=0.7, category="toys")])
    result = get(engine, [items0[0]])
    popularity = result[0]["item_stats__popularity"]
    assert popularity[:3] == (0.7, "stale", None)  # past its 10 min SLA, still served
    assert result.result.stale == 1 and result.result.missing_by_reason["stale"] == 1


def test_the_first_write_of_a_group_announces_it_to_every_shard() -> None:
    engine, shards, reg = feature_cluster()
    users0, users1 = users(reg)
    put(engine, PROFILE, [row(users0[0], T0, age_bucket="18-24")])  # lands on s0 only
    assert [ref for op, ref in shards["s1"].log if op == "put_features"] == [PROFILE]
    result = get(engine, [users1[0]])
    assert result[0]["user_profile__age_bucket"][:2] == ("unknown", "entity_not_found")
    put(engine, PROFILE, [row(users0[1], T0, age_bucket="18-24")])
    assert [ref for op, ref in shards["s1"].log if op == "put_features"] == [PROFILE]


def test_writes_keep_the_newest_row_and_count_what_they_ignored() -> None:
    engine, _, reg = feature_cluster()
    users0, _ = users(reg)
    u = users0[0]
    assert put(engine, PROFILE, [row(u, T0, age_bucket="a")]) == (1, 0)
    assert put(engine, PROFILE, [row(u, T0 - 1, age_bucket="older")]) == (0, 1)
    assert put(engine, PROFILE, [row(u, T0, T0 + 1, age_bucket="rerun")]) == (1, 0)
    assert get(engine, [u])[0]["user_profile__age_bucket"][0] == "rerun"


def asked(shard: InMemoryShard) -> int:
    return shard.ops["get_feature_columns"]


def test_a_replica_that_refuses_is_covered_by_the_other_replicas() -> None:
    """Two replicas per bucket over three shards: a shard that refuses (down,
    still registered) costs nothing — its rows are asked of the replicas
    after it, and it is avoided for its cool-down; with a second shard down
    only the buckets both held are unavailable. Writes need every replica."""
    ids = ("s0", "s1", "s2")
    engine, shards, reg = feature_cluster(ids, replicas=2)
    placement = reg.snapshot.placement(feature_placement_ref(PROFILE.name, PROFILE.version))
    people = [user(f"u{i}") for i in range(24)]
    put(engine, PROFILE, [row(u, T0, age_bucket=u.entity_id) for u in people])
    get(engine, people)  # healthy: each bucket's first replica, so every shard is read
    assert all(asked(shard) == 1 for shard in shards.values())
    shards["s1"].error = Unavailable("shard s1 is down")
    before = asked(shards["s1"])
    result = get(engine, people)
    assert asked(shards["s1"]) > before  # s1 was the first choice of some buckets
    assert [result[n]["user_profile__age_bucket"][:2] for n in range(len(people))] == [
        (u.entity_id, None) for u in people
    ]
    assert "unavailable" not in result.result.missing_by_reason
    before = asked(shards["s1"])
    assert [get(engine, people)[n]["user_profile__age_bucket"][0] for n in range(24)] == [
        u.entity_id for u in people
    ]
    assert asked(shards["s1"]) == before  # in its cool-down: not asked first again

    shards["s2"].error = Unavailable("shard s2 is down")
    result = get(engine, people)
    lost = {b for b, replicas in enumerate(placement.buckets) if set(replicas) == {"s1", "s2"}}
    got = [result[n]["user_profile__age_bucket"][:2] for n in range(len(people))]
    want = [
        ("unknown", "unavailable")
        if key_bucket(reg.snapshot, FEATURE_BUCKETS, u) in lost
        else (u.entity_id, None)
        for u in people
    ]
    assert got == want
    assert {r for _, r in want} == {None, "unavailable"}  # both kinds of bucket were asked
    with pytest.raises(Unavailable):  # a write needs every replica of its bucket
        put(engine, PROFILE, [row(u, T0 + 1, age_bucket="new") for u in people])


def test_a_write_quorum_below_the_replicas_acknowledges_with_a_replica_down() -> None:
    """write_quorum 1 of 2: a write goes on while one replica refuses (or is
    not registered), counts each row once, and is read back from the replica
    that has it; with no replica of a bucket left it is refused."""
    ids = ("s0", "s1", "s2")
    engine, shards, reg = feature_cluster(ids, replicas=2, write_quorum=1)
    people = [user(f"u{i}") for i in range(24)]
    shards["s1"].error = Unavailable("shard s1 is down")
    assert put(engine, PROFILE, [row(u, T0, age_bucket=u.entity_id) for u in people]) == (24, 0)
    assert put(engine, PROFILE, [row(u, T0 - 1, age_bucket="old") for u in people]) == (0, 24)
    result = get(engine, people)
    assert [result[n]["user_profile__age_bucket"][:2] for n in range(24)] == [
        (u.entity_id, None) for u in people
    ]
    reg.snapshot = replace(reg.snapshot, shards={"s0": reg.snapshot.shards["s0"]})
    with pytest.raises(Unavailable, match=r"not registered; writes need 1 of 2"):
        put(engine, PROFILE, [row(u, T0 + 1, age_bucket="new") for u in people])


def hedges(outcome: str) -> float:
    return REGISTRY.get_sample_value("vecshard_feature_hedges_total", {"outcome": outcome}) or 0.0


def warmed(engine: FeatureEngine, people: list[EntityKey], ids: Sequence[str]) -> None:
    """Enough feature calls to every shard that each one's p95 is known."""
    for _ in range(25):
        get(engine, people)
    assert all(engine.fetcher.hedges.delay(s, 5.0) is not None for s in ids)


def test_a_replica_slower_than_its_p95_is_hedged_to_the_others() -> None:
    """A replica that hangs (a stall, not a refusal) would hold its rows
    until the deadline: past its p95 they are asked of the other replicas,
    and the first answer wins — every value, in a fraction of the delay."""
    ids = ("s0", "s1", "s2")
    engine, shards, _ = feature_cluster(ids, replicas=2)
    people = [user(f"u{i}") for i in range(24)]
    put(engine, PROFILE, [row(u, T0, age_bucket=u.entity_id) for u in people])
    warmed(engine, people, ids)
    fired, won = hedges("fired"), hedges("won")
    shards["s1"].delay = 3.0
    start = time.monotonic()
    result = get(engine, people, timeout=5.0)
    took = time.monotonic() - start
    assert [result[n]["user_profile__age_bucket"][:2] for n in range(24)] == [
        (u.entity_id, None) for u in people
    ]
    assert not result.result.missing_by_reason.get("timeout")
    assert took < 1.0, took
    assert hedges("fired") == fired + 1 and hedges("won") == won + 1
    shards["s1"].delay = 0.0
    get(engine, people)  # answered in time: no hedge
    assert hedges("fired") == fired + 1


def test_a_replica_its_hedges_keep_outrunning_is_not_asked_first_during_a_cool_down() -> None:
    """A stalled replica whose lease is still live was asked first by every
    request, each waiting its p95 before the hedge: after three hedges in a
    row answered for it, its buckets go to the other replicas for a while."""
    ids = ("s0", "s1", "s2")
    engine, shards, _ = feature_cluster(ids, replicas=2)
    people = [user(f"u{i}") for i in range(24)]
    put(engine, PROFILE, [row(u, T0, age_bucket=u.entity_id) for u in people])
    warmed(engine, people, ids)
    fired = hedges("fired")
    asked = shards["s1"].ops["get_feature_columns"]
    shards["s1"].delay = 3.0
    for _ in range(8):
        start = time.monotonic()
        result = get(engine, people, timeout=5.0)
        assert time.monotonic() - start < 1.0
        assert [result[n]["user_profile__age_bucket"][:2] for n in range(24)] == [
            (u.entity_id, None) for u in people
        ]
    assert shards["s1"].ops["get_feature_columns"] - asked == 3
    assert hedges("fired") == fired + 3


def test_rows_with_one_replica_still_wait_for_their_shard() -> None:
    """Only groups another replica holds are hedged: in a call that also
    carries a one-replica group, those rows come from the slow shard when
    it answers (or `timeout`), the replicated ones from the hedge."""
    ids = ("s0", "s1", "s2")
    engine, shards, _ = feature_cluster(ids, replicas=1, replicas_of={PROFILE.name: 2})
    people = [user(f"u{i}") for i in range(24)]
    put(engine, PROFILE, [row(u, T0, age_bucket=u.entity_id) for u in people])
    put(engine, ACTIVITY, [row(u, T0, ctr_7d=0.5) for u in people])
    warmed(engine, people, ids)
    fired = hedges("fired")
    shards["s1"].delay = 0.6
    start = time.monotonic()
    result = get(engine, people, timeout=5.0)
    assert time.monotonic() - start >= 0.6  # s1's own rows of the activity group
    assert hedges("fired") == fired + 1
    assert [result[n]["user_profile__age_bucket"][0] for n in range(24)] == [
        u.entity_id for u in people
    ]
    assert [result[n]["user_ctr"][:2] for n in range(24)] == [(0.5, None)] * 24
    # With no time for it, the slow shard's one-replica rows time out; the rest come back.
    shards["s1"].delay = 3.0
    result = get(engine, people, timeout=1.0)
    reasons = {result[n]["user_ctr"][1] for n in range(24)}
    assert reasons == {None, "timeout"}
    assert [result[n]["user_profile__age_bucket"][0] for n in range(24)] == [
        u.entity_id for u in people
    ]


def test_a_hedge_that_fails_leaves_the_slow_replica_to_answer() -> None:
    """One replica slow, the other refusing (a restart): the hedge fails at
    once, and the values come from the slow replica — a failed hedge never
    turns a slow answer into `unavailable`."""
    ids = ("s0", "s1", "s2")
    engine, shards, _ = feature_cluster(ids, replicas=2)
    people = [user(f"u{i}") for i in range(24)]
    put(engine, PROFILE, [row(u, T0, age_bucket=u.entity_id) for u in people])
    warmed(engine, people, ids)
    shards["s1"].delay = 0.5
    shards["s2"].error = Unavailable("shard s2 is restarting")
    result = get(engine, people, timeout=5.0)
    assert [result[n]["user_profile__age_bucket"][:2] for n in range(24)] == [
        (u.entity_id, None) for u in people
    ]


def test_an_older_backfill_does_not_move_the_freshness_gauge_back() -> None:
    """vecshard_feature_last_timestamp_seconds is the newest written: it was
    the last request's newest, so a backfill of week-old rows (all ignored as
    older) moved it back a week — a false freshness alert (found in review)."""
    engine, _, _ = feature_cluster()

    async def go() -> None:
        await engine.put(ME, ITEM, [row(item("i1"), T0, popularity=0.5)], 5.0)
        await engine.put(ME, ITEM, [row(item("i1"), T0 - 7 * DAY, popularity=0.1)], 5.0)
        await engine.put(ME, ITEM, [row(item("i2"), T0 - 7 * DAY, popularity=0.1)], 5.0)

    asyncio.run(go())
    got = REGISTRY.get_sample_value("vecshard_feature_last_timestamp_seconds", {"group": ITEM.name})
    assert got == T0 / 1e6, f"gauge {got} s; the newest written is {T0 / 1e6} s"
