"""Online feature partitions on a real RocksDB: round trips of every dtype,
out-of-order protection, idempotent replays, TTL at read time and purge,
restart with runtime column families, and durability across SIGKILL."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from core.column_wire import row_columns_to_pb
from core.errors import InvalidArgument
from core.feature_columns import from_values
from core.wire import feature_row_to_pb
from protos.vecshard.v1.internal import features_pb2 as pb
from registry.feature_values import resolve_group
from registry.features import GroupRow, PutAck
from registry.placement import FEATURE_BUCKETS, tenant_bucket
from registry.snapshot import Snapshot
from shard_server.feature_replication import rows_in_buckets
from shard_server.feature_service import FeatureNode
from shard_server.feature_servicer import FeatureServicer
from shard_server.feature_store import (
    FeatureShardStore,
    FeatureStore,
    column_family,
    parse_entity_key,
)
from shard_server.storage import StoreMemory
from tests.feature_catalog import (
    ACTIVITY,
    CATALOG,
    MINUTE,
    PROFILE,
    RANKER,
    SESSION,
    T0,
    row,
    user,
)

PROFILE_S = CATALOG.schema(PROFILE)
ACTIVITY_S = CATALOG.schema(ACTIVITY)
SESSION_S = CATALOG.schema(SESSION)


@pytest.fixture(params=["row cache", "rocksdb only"])
def shard(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[FeatureShardStore, FeatureStore]]:
    """Every test here runs against both read paths: rows served from the
    in-memory copy (the default) and from RocksDB (a budget of 0)."""
    budget = StoreMemory().feature_cache_bytes if request.param == "row cache" else 0
    storage = FeatureShardStore(tmp_path / "shard", StoreMemory(feature_cache_bytes=budget))
    yield storage, FeatureStore(storage)
    storage.close()


def values(rows: list[GroupRow | None]) -> list[dict | None]:
    return [dict(r.values) if r is not None else None for r in rows]


def test_every_dtype_round_trips_in_request_order(shard: tuple) -> None:
    _, fs = shard
    rows = [
        row(user("a"), T0, age_bucket="18-24", account_days=2**62, premium=True),
        row(user("b"), T0 + 1, gen=T0 + 7, age_bucket="", premium=False),
    ]
    assert fs.put(PROFILE_S, rows) == PutAck(2, 0)
    assert fs.put(ACTIVITY_S, [row(user("a"), T0, ctr_7d=0.1 + 0.2, taste=[1, -2.5e-300])]).written
    got = fs.multi_get(PROFILE_S, [user("b"), user("zz"), user("a")])
    assert values(got) == [
        {"age_bucket": "", "account_days": None, "premium": False},
        None,
        {"age_bucket": "18-24", "account_days": 2**62, "premium": True},
    ]
    assert (got[0].feature_timestamp, got[0].generated_at, got[0].entity) == (
        T0 + 1,
        T0 + 7,
        user("b"),
    )
    (act,) = fs.multi_get(ACTIVITY_S, [user("a")])
    assert act.values == {"ctr_7d": 0.1 + 0.2, "taste": (1.0, -2.5e-300)}  # float64 exact


def test_older_rows_never_overwrite_newer_and_replays_are_idempotent(shard: tuple) -> None:
    _, fs = shard
    k = user("u")
    assert fs.put(PROFILE_S, [row(k, T0, account_days=5)]) == PutAck(1, 0)
    assert fs.put(PROFILE_S, [row(k, T0 - 1, gen=T0 + 99, account_days=4)]) == PutAck(0, 1)
    assert fs.put(PROFILE_S, [row(k, T0, account_days=5)]) == PutAck(1, 0)  # replay
    # Same event recomputed later wins; an earlier computation arriving late loses.
    assert fs.put(PROFILE_S, [row(k, T0, gen=T0 + 10, account_days=6)]) == PutAck(1, 0)
    assert fs.put(PROFILE_S, [row(k, T0, gen=T0 + 5, account_days=7)]) == PutAck(0, 1)
    # Within a batch the newest row per entity wins, whatever its position.
    batch = [row(k, T0 + 3, account_days=9), row(k, T0 + 2, account_days=8)]
    assert fs.put(PROFILE_S, batch) == PutAck(1, 1)
    assert values(fs.multi_get(PROFILE_S, [k])) == [
        {"age_bucket": None, "account_days": 9, "premium": None}
    ]


def test_final_state_does_not_depend_on_arrival_order(shard: tuple) -> None:
    _, fs = shard
    rng = random.Random(7)
    rows = [
        row(user(f"u{i % 5}"), T0 + rng.randrange(20), gen=T0 + rng.randrange(20), account_days=i)
        for i in range(200)
    ]
    newest: dict = {}
    # Rows equal in (ts, gen) may land in any order across threads, so only
    # the winning times are compared.
    for r in rows:
        if r.entity not in newest or r.supersedes(
            newest[r.entity].feature_timestamp, newest[r.entity].generated_at
        ):
            newest[r.entity] = r
    shuffled = rows[:]
    rng.shuffle(shuffled)

    def writer(part: list[GroupRow]) -> None:
        for i in range(0, len(part), 7):
            fs.put(PROFILE_S, part[i : i + 7])

    threads = [threading.Thread(target=writer, args=(shuffled[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    keys = sorted(newest)
    got = fs.multi_get(PROFILE_S, keys)
    want = [(newest[k].feature_timestamp, newest[k].generated_at) for k in keys]
    assert [(g.feature_timestamp, g.generated_at) for g in got] == want


def test_bad_rows_reject_the_whole_batch(shard: tuple) -> None:
    _, fs = shard
    good = row(user("a"), T0, account_days=1)
    with pytest.raises(InvalidArgument, match="account_days"):
        fs.put(PROFILE_S, [good, row(user("b"), T0, account_days=1.5)])
    with pytest.raises(InvalidArgument, match="entity_id is empty"):
        fs.put(PROFILE_S, [good, row(user(""), T0)])
    assert fs.multi_get(PROFILE_S, [user("a")]) == [None]


def test_tenants_are_separate_and_scan_by_tenant(shard: tuple) -> None:
    _, fs = shard
    fs.put(
        PROFILE_S,
        [row(user("u", "t1"), T0, account_days=1), row(user("u", "t2"), T0, account_days=2)],
    )
    assert [
        r.values["account_days"]
        for r in fs.multi_get(PROFILE_S, [user("u", "t2"), user("u", "t1")])
    ] == [2, 1]
    assert [r.entity for r in fs.scan(PROFILE_S, "t1")] == [user("u", "t1")]
    assert len(list(fs.scan(PROFILE_S))) == 2


def test_groups_without_data_are_not_computed_until_created(shard: tuple) -> None:
    _, fs = shard
    assert not fs.has_group(SESSION)
    assert fs.multi_get(SESSION_S, [user("a")]) == [None]
    fs.ensure_group(SESSION)
    assert fs.has_group(SESSION) and not fs.has_group(PROFILE)
    assert fs.multi_get(SESSION_S, [user("a")]) == [None]


def test_ttl_at_read_time_and_purge_do_not_change_answers(shard: tuple) -> None:
    _, fs = shard
    now = T0 + 31 * MINUTE
    fs.put(
        SESSION_S,
        [
            row(user("old"), T0, session_clicks=3),
            row(user("new"), T0 + 2 * MINUTE, session_clicks=4),
        ],
    )
    keys = [user("old"), user("new"), user("none")]
    assert values(fs.multi_get(SESSION_S, keys, request_time=now)) == [
        None,
        {"session_clicks": 4},
        None,
    ]
    assert fs.multi_get(SESSION_S, keys)[0] is not None  # raw read keeps it
    (read,) = [r for r in CATALOG.plan(RANKER) if r.schema.ref == SESSION]

    def answers() -> list:
        return [resolve_group(read, r, now, True) for r in fs.multi_get(SESSION_S, keys)]

    before = answers()
    assert fs.purge_expired(SESSION_S, now) == 1
    assert fs.multi_get(SESSION_S, keys)[0] is None
    assert answers() == before
    assert fs.purge_expired(PROFILE_S, now) == 0  # no TTL, nothing purged


def test_runtime_column_families_survive_a_restart(tmp_path: Path) -> None:
    storage = FeatureShardStore(tmp_path)
    FeatureStore(storage).put(PROFILE_S, [row(user("a"), T0, account_days=1)])
    FeatureStore(storage).put(SESSION_S, [row(user("a"), T0, session_clicks=2)])
    seq = storage.sequence
    storage.close()
    storage = FeatureShardStore(tmp_path)
    fs = FeatureStore(storage)
    assert storage.sequence == seq
    assert fs.has_group(PROFILE) and fs.has_group(SESSION)
    assert values(fs.multi_get(PROFILE_S, [user("a")])) == [
        {"age_bucket": None, "account_days": 1, "premium": None}
    ]
    assert column_family(SESSION) == "features:session:v1"
    storage.close()


def test_acknowledged_rows_survive_sigkill(tmp_path: Path) -> None:
    """A child process writes, prints the ack, and is SIGKILLed before any
    clean close: the synced WAL must hold every acknowledged row."""
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        from pathlib import Path
        from shard_server.feature_store import FeatureShardStore, FeatureStore
        from tests.feature_catalog import CATALOG, PROFILE, T0, row, user
        fs = FeatureStore(FeatureShardStore(Path({str(tmp_path)!r})))
        for i in range(20):
            ack = fs.put(CATALOG.schema(PROFILE), [row(user(f"u{{i}}"), T0 + i, account_days=i)])
            print(ack.written, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert proc.stdout.split() == ["1"] * 20
    storage = FeatureShardStore(tmp_path)
    got = FeatureStore(storage).multi_get(PROFILE_S, [user(f"u{i}") for i in range(20)])
    assert [r.values["account_days"] if r else None for r in got] == list(range(20))
    storage.close()


def test_copied_rows_follow_the_write_rule_and_only_their_buckets(
    shard: tuple, tmp_path: Path
) -> None:
    """Replica catch-up (`shard_server.feature_replication`): a peer's rows of
    some buckets, copied as stored, land only where newer than the copy's own
    (an older row stays; of two equally old ones the greater bytes win, so
    replicas copying from each other converge), and copying again changes
    nothing."""
    _, mine = shard
    peer_storage = FeatureShardStore(tmp_path / "peer")
    peer = FeatureStore(peer_storage)
    people = [user(f"u{i}") for i in range(40)]
    buckets = {tenant_bucket(u.tenant_id, u.entity_id, FEATURE_BUCKETS) for u in people[:10]}
    wanted = [
        u for u in people if tenant_bucket(u.tenant_id, u.entity_id, FEATURE_BUCKETS) in buckets
    ]
    assert len(wanted) < len(people)
    peer.put(PROFILE_S, [row(u, T0 + 5, age_bucket="peer") for u in people])
    newer, same = wanted[0], wanted[1]
    mine.put(
        PROFILE_S, [row(newer, T0 + 9, age_bucket="mine"), row(same, T0 + 5, age_bucket="mine")]
    )

    copied = [r for part in rows_in_buckets(peer, Snapshot(), PROFILE, buckets) for r in part]
    assert len(copied) == len(wanted)
    mine_same = dict(
        r for part in rows_in_buckets(mine, Snapshot(), PROFILE, buckets) for r in part
    )
    peer_same = dict(copied)
    same_key = next(k for k in mine_same if parse_entity_key(k) == same)
    peer_wins = peer_same[same_key] > mine_same[same_key]
    assert mine.apply_raw(PROFILE, copied) == len(wanted) - 2 + peer_wins
    assert mine.apply_raw(PROFILE, copied) == 0
    # The other way round, the equally old row goes to the peer if it is mine
    # that wins: either way both now hold the same bytes.
    back = [(same_key, mine_same[same_key])]
    assert peer.apply_raw(PROFILE, back) == (not peer_wins)
    assert mine.multi_get(PROFILE_S, [same]) == peer.multi_get(PROFILE_S, [same])
    got = values(mine.multi_get(PROFILE_S, people))
    for u, v in zip(people, got, strict=True):
        if u == newer:
            assert v is not None and v["age_bucket"] == "mine"
        elif u == same:
            assert v is not None and v["age_bucket"] == ("peer" if peer_wins else "mine")
        elif u in wanted:
            assert v is not None and v["age_bucket"] == "peer"
        else:
            assert v is None  # another bucket: not copied
    peer_storage.close()


def test_a_key_part_past_its_length_prefix_is_invalid_argument() -> None:
    """A shard does not trust its caller's limits: an id past the 2-byte
    length prefix raised struct.error (INTERNAL, and the coordinator counted
    every entity of that shard `unavailable`)."""
    from core.domain import EntityKey
    from core.errors import InvalidArgument
    from shard_server.records import entity_key, entity_keys

    long = "x" * 70_000
    with pytest.raises(InvalidArgument, match="key part of 70000 bytes; expected at most 65535"):
        entity_keys("acme", "user", ["u1", long])
    with pytest.raises(InvalidArgument, match="key part of 70000 bytes"):
        entity_key(EntityKey("acme", "user", long))
    assert parse_entity_key(entity_keys("acme", "user", ["é"])[0]) == EntityKey("acme", "user", "é")


def test_a_bad_columns_part_writes_nothing_of_its_message(tmp_path: Path) -> None:
    """A FeatureBatch's rows were written (synced) before its columns were
    looked at: refused INVALID_ARGUMENT, its rows stayed (found in review)."""
    storage = FeatureShardStore(tmp_path / "s")
    fs = FeatureStore(storage)
    reg = SimpleNamespace(snapshot=SimpleNamespace(feature_catalog=CATALOG))
    reg.reread = lambda: reg.snapshot
    servicer = FeatureServicer(FeatureNode(fs, reg))  # type: ignore[arg-type]
    good_row = feature_row_to_pb(user("u1"), T0, T0, {"account_days": 7})
    bad_columns = row_columns_to_pb(
        "acme",
        ["u2"],
        np.array([T0]),
        np.array([T0]),
        {"no_such_feature": from_values("int64", [1])},
    )
    batch = pb.FeatureBatch(
        group=PROFILE.name, group_version=PROFILE.version, rows=[good_row], columns=bad_columns
    )
    try:
        with pytest.raises(InvalidArgument):
            servicer.PutFeatures(iter([batch]), None)  # type: ignore[arg-type]
        stored = fs.multi_get(CATALOG.schema(PROFILE), [user("u1")])
        assert stored == [None], f"refused message left {stored[0]} written"
    finally:
        storage.close()
