"""The registry on a real etcd: store verbs, atomic index creation, snapshots,
route resolution and compatibility, watches, and lease-bound membership."""

from __future__ import annotations

import threading
import time

import pytest

from core.domain import AttrType, Metric, VersionRef
from core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from registry import codec
from registry.membership import ShardRegistration
from registry.model import (
    Bundle,
    EmbeddingFamily,
    EmbeddingVersion,
    IndexVersion,
    Route,
    ShardMember,
    Status,
)
from registry.placement import assign_buckets, bucket_of, tenant_bucket, tenant_buckets_of
from registry.registry import Registry
from registry.snapshot import indexes_for_embedding, resolve_route
from registry.store import Delete, EtcdStore, ModRevisionIs, Put
from registry.watcher import SnapshotCache

pytestmark = pytest.mark.integration


def populate(reg: Registry, shards: list[str], status: Status = Status.READY) -> None:
    reg.put_family(
        EmbeddingFamily(
            "items", "item", 8, Metric.COSINE, normalize=True, compatible_query_families=("users",)
        )
    )
    reg.put_family(EmbeddingFamily("users", "user", 8, Metric.COSINE, normalize=True))
    reg.put_embedding_version(
        EmbeddingVersion("items", "v1", compatible_query_versions=(VersionRef("users", "v1"),))
    )
    reg.put_embedding_version(EmbeddingVersion("users", "v1"))
    reg.create_index(
        IndexVersion(
            "items-flat",
            "v1",
            VersionRef("items", "v1"),
            num_buckets=6,
            status=status,
            attributes={"c": AttrType.STRING},
        ),
        shards,
    )
    reg.put_bundle(
        Bundle(
            "b1",
            VersionRef("users", "v1"),
            VersionRef("items", "v1"),
            VersionRef("items-flat", "v1"),
        )
    )
    reg.put_route(Route("home", "b1"))


def test_store_verbs_and_compare_and_swap(store: EtcdStore, prefix: str) -> None:
    key = prefix + "k"
    assert store.get(key) is None
    store.put(key, b"1")
    entry = store.get(key)
    assert entry is not None and entry.value == b"1"
    assert store.txn(
        [ModRevisionIs(key, entry.mod_revision)], [Put(key, b"2"), Put(prefix + "k2", b"x")]
    )
    assert not store.txn(
        [ModRevisionIs(key, entry.mod_revision)], [Put(key, b"3")]
    )  # stale revision loses
    assert [(e.key, e.value) for e in store.list_prefix(prefix)[0]] == [
        (key, b"2"),
        (prefix + "k2", b"x"),
    ]
    assert store.txn([], [Delete(prefix + "k2")])
    assert store.delete(key) and not store.delete(key)
    assert store.list_prefix(prefix)[0] == []


def test_codec_round_trips_every_kind() -> None:
    objs = [
        EmbeddingFamily("f", "item", 4, Metric.L2, allowed_purposes=("a",)),
        EmbeddingVersion("f", "v1", Status.PRODUCTION),
        IndexVersion(
            "ix",
            "v1",
            VersionRef("f", "v1"),
            params={"m": 16},
            attributes={"c": AttrType.STRING_LIST},
        ),
        assign_buckets(VersionRef("ix", "v1"), 5, ["s1", "s0"], replicas=2),
        Bundle("b", VersionRef("f", "v1"), VersionRef("f", "v1"), VersionRef("ix", "v1")),
        Route("r", "b"),
        ShardMember("s0", "127.0.0.1:1"),
    ]
    for obj in objs:
        assert codec.decode(codec.encode(obj)) == obj
    with pytest.raises(InvalidArgument, match="metric"):
        codec.from_dict(
            EmbeddingFamily, {"name": "f", "entity_type": "i", "dimension": 4, "metric": "hamming"}
        )
    with pytest.raises(InvalidArgument, match="unknown field"):
        codec.from_dict(Route, {"name": "r", "bundle": "b", "colour": 1})


def test_placement_is_stable_and_replicas_are_distinct() -> None:
    assert bucket_of("t", "e1", 16) == bucket_of("t", "e1", 16)
    counts = [0] * 8
    for i in range(4000):
        counts[bucket_of("t", f"e{i}", 8)] += 1
    assert min(counts) > 400  # roughly uniform
    p = assign_buckets(VersionRef("ix", "v1"), 6, ["a", "b", "c"], replicas=2)
    assert all(len(set(r)) == 2 for r in p.buckets)
    assert p.buckets_of("a") == (0, 2, 3, 5)


def test_buckets_of_many_ids_are_each_ids_bucket() -> None:
    ids = [f"e{i}" for i in range(500)] + ["", "ü", "a\x00b"]
    for own in ((), (3, 5, 7), (1,), (99, 2)):
        want = [tenant_bucket("t", i, 16, own) for i in ids]
        assert tenant_buckets_of("t", ids, 16, own).tolist() == want
    assert tenant_buckets_of("t", [], 16).tolist() == []


def test_bucket_hash_is_the_one_every_release_used() -> None:
    """Golden values (blake2b-64 of `tenant NUL id`, little-endian): stored
    entities live in the bucket this hash gave them, so a faster way to
    compute it must give the same numbers."""
    want = [1154236296267813177, 25647077677801930, 856030565556796602, 2093414458003094713]
    ids = ["e1", "", "é", "item-42"]
    assert [bucket_of("t", e, 2**61 - 1) for e in ids] == want
    assert tenant_buckets_of("t", ids, 2**61 - 1).tolist() == want
    assert tenant_buckets_of("t", [e.encode() for e in ids], 2**61 - 1).tolist() == want
    assert tenant_buckets_of("acme", ["e1", "x"], 1000).tolist() == [695, 944]


def test_index_versions_are_created_atomically_and_never_overwritten(registry: Registry) -> None:
    populate(registry, ["s0", "s1"])
    snap = registry.snapshot()
    ix = snap.index(VersionRef("items-flat", "v1"))
    assert snap.placement(ix.ref).shards() == ("s0", "s1")
    with pytest.raises(AlreadyExists):
        registry.create_index(
            IndexVersion("items-flat", "v1", VersionRef("items", "v1"), num_buckets=99), ["s0"]
        )
    assert registry.snapshot().index(ix.ref).num_buckets == 6
    with pytest.raises(NotFound, match="unknown embedding version"):
        registry.create_index(IndexVersion("x", "v1", VersionRef("items", "v9")), ["s0"])
    # A misspelt placement would have been hashed without a word: refused, named.
    with pytest.raises(InvalidArgument, match="placement 'centroids'; expected one of"):
        registry.create_index(
            IndexVersion("x", "v1", VersionRef("items", "v1"), placement="centroids"), ["s0"]
        )
    assert VersionRef("x", "v1") not in registry.snapshot().indexes


def test_route_resolution_and_compatibility(registry: Registry) -> None:
    populate(registry, ["s0"])
    snap = registry.snapshot()
    r = resolve_route(snap, "home")
    assert (r.query_family.name, r.item_family.name, r.index.name) == (
        "users",
        "items",
        "items-flat",
    )
    assert [ix.name for ix in indexes_for_embedding(snap, VersionRef("items", "v1"))] == [
        "items-flat"
    ]
    with pytest.raises(NotFound, match="unknown route 'nope'; known routes: home"):
        resolve_route(snap, "nope")
    # a query family not declared compatible is refused, never silently served
    registry.put_family(EmbeddingFamily("ads", "ad", 8, Metric.COSINE, normalize=True))
    registry.put_embedding_version(EmbeddingVersion("ads", "v1"))
    registry.put_bundle(
        Bundle(
            "b2", VersionRef("ads", "v1"), VersionRef("items", "v1"), VersionRef("items-flat", "v1")
        )
    )
    with pytest.raises(
        FailedPrecondition, match="'ads' is not declared compatible with item family 'items'"
    ):
        registry.put_route(Route("ads", "b2"))
    assert "ads" not in registry.snapshot().routes
    # what vectors mean cannot change under a live route
    with pytest.raises(FailedPrecondition, match="dimension cannot change"):
        registry.put_family(EmbeddingFamily("users", "user", 16, Metric.COSINE, normalize=True))
    assert resolve_route(registry.snapshot(), "home").query_family.dimension == 8


def test_index_that_is_not_ready_is_not_routed_to(registry: Registry) -> None:
    with pytest.raises(FailedPrecondition, match="building, expected ready or production"):
        populate(registry, ["s0"], status=Status.BUILDING)
    assert "home" not in registry.snapshot().routes


def test_watch_brings_changes_to_a_cache(registry: Registry) -> None:
    cache = SnapshotCache(registry, poll_interval=30)
    seen = threading.Event()
    cache.on_change(lambda s: seen.set() if "home" in s.routes else None)
    cache.start()
    try:
        assert "home" not in cache.snapshot.routes
        t0 = time.monotonic()
        populate(registry, ["s0"])
        assert seen.wait(5), "a registry change did not reach the cache through the watch"
        assert time.monotonic() - t0 < 5
        assert cache.staleness() == 0.0
    finally:
        cache.stop()


def test_membership_is_lease_bound(registry: Registry) -> None:
    reg = ShardRegistration(registry.store, registry.keys, ShardMember("s9", "127.0.0.1:9"), ttl=2)
    reg.start()
    assert registry.snapshot().serving_shard("s9") is not None
    reg.close()  # graceful: the lease is revoked, the member disappears at once
    assert "s9" not in registry.snapshot().shards

    # A lease that is not kept alive expires on its own (a SIGKILLed shard).
    lease = registry.store.lease(2)
    registry.store.put(
        registry.keys.shard("s8"), codec.encode(ShardMember("s8", "x:1")), lease=lease
    )
    gone = threading.Event()
    cache = SnapshotCache(registry, poll_interval=30)
    cache.on_change(lambda snap: gone.set() if "s8" not in snap.shards else None)
    cache.start()  # the watch reports the key's deletion when the lease expires
    try:
        assert "s8" in cache.snapshot.shards
        assert gone.wait(10), "lease did not expire"
    finally:
        cache.stop()
