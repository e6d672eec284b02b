"""Anti-entropy's pure parts (`shard_server.bucket_digests`,
`shard_server.replica_peers`, `version_rules.copy_applies`), on
plain data: digests that agree exactly when the rows do, whatever order they
are read in; the peer each bucket is compared with, turn by turn; and the
copy rule that makes two replicas converge whichever copies from which."""

from __future__ import annotations

from random import Random
from types import SimpleNamespace

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from core.domain import EntityKey, Metric, VersionRef
from registry.model import (
    EmbeddingFamily,
    IndexKind,
    IndexVersion,
    Placement,
    Retirement,
    ShardMember,
    Status,
)
from registry.placement import feature_placement_ref
from registry.snapshot import Snapshot
from shard_server import records as rec
from shard_server.anti_entropy import AntiEntropy
from shard_server.bucket_digests import BucketDigest, differing, digests_of
from shard_server.replica_peers import FEATURE_ROWS, RECORDS, live_placements, peer_plan
from shard_server.version_rules import copy_applies

rows_st = st.lists(
    st.tuples(st.integers(0, 3), st.binary(min_size=1, max_size=8), st.binary(max_size=16)),
    unique_by=lambda r: r[1],
    max_size=40,
)


@given(rows_st, st.randoms())
def test_a_digest_does_not_depend_on_the_order_rows_are_read(
    rows: list[tuple[int, bytes, bytes]], rnd: object
) -> None:
    shuffled = list(rows)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert digests_of(rows, range(4)) == digests_of(shuffled, range(4))
    counts = {b: sum(1 for r in rows if r[0] == b) for b in range(4)}
    assert {b: d.rows for b, d in digests_of(rows, range(4)).items()} == counts


@given(rows_st.filter(bool), st.data())
def test_any_changed_missing_or_extra_row_changes_its_buckets_digest_only(
    rows: list[tuple[int, bytes, bytes]], data: st.DataObject
) -> None:
    i = data.draw(st.integers(0, len(rows) - 1))
    bucket, key, value = rows[i]
    changed = [*rows[:i], (bucket, key, value + b"!"), *rows[i + 1 :]]
    missing = rows[:i] + rows[i + 1 :]
    base = digests_of(rows, range(4))
    for other in (changed, missing):
        assert differing(base, digests_of(other, range(4))) == [bucket]
    # The same bytes split differently between key and value are another row.
    if len(key) > 1:
        moved = [*rows[:i], (bucket, key[:-1], key[-1:] + value), *rows[i + 1 :]]
        assert differing(base, digests_of(moved, range(4))) == [bucket]


def test_empty_buckets_agree_and_rows_outside_the_asked_buckets_are_ignored() -> None:
    got = digests_of([(7, b"k", b"v"), (1, b"a", b"b")], [0, 1])
    assert got[0] == BucketDigest(0, 0)
    assert got[1].rows == 1 and got[1].digest != 0
    assert 7 not in got
    # A bucket only one side reported is not shared: nothing to compare.
    assert differing({0: BucketDigest(1, 1)}, {1: BucketDigest(2, 1)}) == []


def test_each_turn_compares_a_bucket_with_the_next_registered_peer() -> None:
    shards = {s: ShardMember(s, f"{s}:1") for s in ("a", "b", "c")}
    snap = Snapshot(shards=shards)
    buckets = [["a", "b", "c"], ["b", "c"], ["c", "a"], ["a", "gone"]]
    assert peer_plan(snap, "a", buckets, 0) == {"b": [0], "c": [2]}
    assert peer_plan(snap, "a", buckets, 1) == {"c": [0, 2]}
    # Bucket 1 is not this shard's; bucket 3's peer is not registered.
    assert peer_plan(snap, "b", buckets, 0) == {"a": [0], "c": [1]}
    assert peer_plan(Snapshot(), "a", buckets, 0) == {}


def test_only_live_placements_are_copied() -> None:
    """An archived index version's and a retired group version's data is
    being dropped: catch-up and anti-entropy leave them alone (a shard
    restarted after an archive opened the archived partition to copy into it
    and failed to start)."""
    family = EmbeddingFamily("v", "item", 4, Metric.L2)
    live, archived = VersionRef("ix", "v1"), VersionRef("ix", "v2")
    indexes = {
        live: IndexVersion("ix", "v1", VersionRef("v", "v1"), IndexKind.FLAT),
        archived: IndexVersion(
            "ix", "v2", VersionRef("v", "v1"), IndexKind.FLAT, status=Status.ARCHIVED
        ),
    }
    groups = {"live": VersionRef("g", "v1"), "retired": VersionRef("g", "v2")}
    refs = [live, archived] + [feature_placement_ref(g.name, g.version) for g in groups.values()]
    placements = {r: Placement(r, (("a", "b"),)) for r in refs}
    retired = {
        ("FeatureGroup", "g", "v2"): Retirement(
            "FeatureGroup", "g", "v2", "ana", "2026-11-28T00:00:00Z"
        )
    }
    snap = Snapshot(families={"v": family}, indexes=indexes, placements=placements, retired=retired)
    assert [(kind, ref) for kind, ref, _ in live_placements(snap)] == [
        (RECORDS, live),
        (FEATURE_ROWS, groups["live"]),
    ]


def _record(version: int, value: float, created_at: int = 0) -> bytes:
    return rec.encode_record(
        rec.Record(
            EntityKey("t", "item", "k"), np.full(4, value, np.float32), version, "", created_at
        )
    )


def test_copies_converge_whichever_replica_copies_from_which() -> None:
    """Two replicas that kept different records of one version and time end
    on the same one (the greater bytes) in either order; a newer version
    wins and a delete of its version or later keeps it out, as for client
    writes."""
    one, two = _record(5, 1.0), _record(5, 2.0)
    high, low = max(one, two), min(one, two)
    assert copy_applies(high, low, None) and not copy_applies(low, high, None)
    assert not copy_applies(one, one, None)  # already there: nothing to write
    newer = _record(6, 0.5)
    assert copy_applies(newer, high, None) and not copy_applies(high, newer, None)
    assert copy_applies(one, None, None)
    assert not copy_applies(newer, None, rec.encode_tombstone(6))
    assert copy_applies(newer, None, rec.encode_tombstone(5))


def test_of_two_writes_of_one_version_the_later_created_wins_a_copy() -> None:
    """created_at 255 and 256 as header bytes (little-endian: ff 00 / 00 01)
    put the earlier write last, so copying rolled the later acknowledged
    one back (found in review); the numbers come first."""
    earlier, later = _record(5, 2.0, created_at=255), _record(5, 1.0, created_at=256)
    assert earlier > later  # the bytes' order
    assert copy_applies(later, earlier, None) and not copy_applies(earlier, later, None)
    assert not copy_applies(_record(4, 9.0, created_at=10**6), later, None)


@given(
    st.lists(
        st.tuples(
            st.integers(1, 3),
            st.sampled_from([0, 255, 256, 65_535, 65_536, 2**40]),
            st.integers(0, 3),
        ),
        min_size=1,
        max_size=6,
    ),  # fmt: skip
    st.randoms(use_true_random=False),
)
def test_copies_in_any_order_settle_on_the_latest_version_then_time(
    writes: list[tuple[int, int, int]], rnd: Random
) -> None:
    """Replicas each holding one write, copying from one another in any
    order (anti-entropy), all end on the same record: the greatest
    (source_version, created_at) — whatever its bytes."""
    held: list[bytes | None] = [_record(v, float(x), c) for v, c, x in writes]
    for _ in range(3 * len(held) ** 2):
        src, dst = rnd.randrange(len(held)), rnd.randrange(len(held))
        value = held[src]
        if value is not None and copy_applies(value, held[dst], None):
            held[dst] = value
    for src in range(len(held)):  # one full round: every pair once
        for dst in range(len(held)):
            value = held[src]
            if value is not None and copy_applies(value, held[dst], None):
                held[dst] = value
    assert len(set(held)) == 1
    (final,) = set(held)
    assert final is not None
    assert (rec.source_version_of(final), rec.created_at_of(final)) == max(
        (v, c) for v, c, _ in writes
    )


def test_one_placement_whose_digests_fail_does_not_end_the_round() -> None:
    """A digest scan that fails (a group dropped mid-scan) skips that
    placement, counted failed; the round goes on to the others."""
    family = EmbeddingFamily("v", "item", 4, Metric.L2)
    first, second = VersionRef("ix", "v1"), VersionRef("ix", "v2")
    indexes = {
        r: IndexVersion("ix", r.version, VersionRef("v", "v1"), IndexKind.FLAT)
        for r in (first, second)
    }
    shards = {s: ShardMember(s, f"{s}:1") for s in ("a", "b")}
    placements = {r: Placement(r, (("a", "b"),)) for r in (first, second)}
    snap = Snapshot(families={"v": family}, indexes=indexes, placements=placements, shards=shards)
    node = SimpleNamespace(registry=SimpleNamespace(snapshot=snap), shard_id="a")
    ae = AntiEntropy(node, None, None, 0)  # type: ignore[arg-type]  # only what a round reads
    reconciled: list[VersionRef] = []

    def digests(
        kind: str, ref: VersionRef, buckets: list[int], s: Snapshot
    ) -> dict[int, BucketDigest]:
        if ref == first:
            raise KeyError("features:g:v1")
        return {}

    ae._digests = digests  # type: ignore[method-assign,assignment]
    ae._reconcile = lambda kind, ref, *rest: reconciled.append(ref)  # type: ignore[method-assign]
    report = ae.run_once()
    assert (report.failed, reconciled) == (1, [second])
