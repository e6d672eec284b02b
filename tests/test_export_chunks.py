"""Replication exports (catch-up, anti-entropy) cut into chunks that fit one
gRPC message, by count and by bytes (`shard_server.export_chunks`): at 2,000
records whatever their size, a family of dimension 16,384 made 125 MiB
chunks, every export failed RESOURCE_EXHAUSTED and a replica never caught up
(found in review). Through the real `ReplicationServicer` over gRPC with the
options every shard uses."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from types import SimpleNamespace

import grpc
import numpy as np
import pytest

from core import runtime as serving
from core.domain import EntityKey, VersionRef
from protos.vecshard.v1.internal import replication_pb2 as pb
from protos.vecshard.v1.internal import replication_pb2_grpc
from shard_server import records as rec
from shard_server.export_chunks import CHUNK_BYTES, pair_size, sized_chunks
from shard_server.feature_store import FeatureShardStore, FeatureStore, column_family
from shard_server.replication import ReplicationServicer, export_records
from shard_server.storage import RECORDS, TOMBSTONES, ShardStore

REF = VersionRef("ix", "v1")
DIM = 16_384  # 64 KiB a vector: 1,100 of them are past the 64 MiB message limit
LIMIT = serving.MAX_MESSAGE_MB * 2**20


def _store(path: Path, n: int, dim: int, tombstones: int = 0) -> ShardStore:
    store = ShardStore(path / "db")
    vec = np.ones(dim, np.float32)
    keys = [EntityKey("t", "item", f"e{i}") for i in range(n + tombstones)]
    puts = [
        (RECORDS, rec.record_key(REF, k), rec.encode_record(rec.Record(k, vec, 1)))
        for k in keys[:n]
    ] + [(TOMBSTONES, rec.record_key(REF, k), rec.encode_tombstone(3)) for k in keys[n:]]
    store.write(puts=puts)
    return store


@pytest.fixture
def export_server(tmp_path: Path) -> Iterator[tuple[str, ShardStore]]:
    store = _store(tmp_path, 1_100, DIM, tombstones=5)
    part = SimpleNamespace(store=store, index=SimpleNamespace(ref=REF))
    node = SimpleNamespace(partition=lambda ref: part)
    server = grpc.server(futures.ThreadPoolExecutor(2), options=serving.grpc_options())
    servicer = ReplicationServicer(node, None)  # type: ignore[arg-type]  # ExportBuckets only
    replication_pb2_grpc.add_ReplicationServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", store
    finally:
        server.stop(0)
        store.close()


def test_a_high_dimension_export_reaches_the_peer_whole(
    export_server: tuple[str, ShardStore],
) -> None:
    address, _ = export_server
    with grpc.insecure_channel(address, options=serving.grpc_options()) as ch:
        stub = replication_pb2_grpc.ReplicationServiceStub(ch)
        req = pb.ExportRequest(index_name="ix", index_version="v1", buckets=[0])
        chunks = list(stub.ExportBuckets(req, timeout=60))
    assert sum(len(c.records) for c in chunks) == 1_100
    assert sum(len(c.tombstones) for c in chunks) == 5
    assert max(c.ByteSize() for c in chunks) <= CHUNK_BYTES * 2 < LIMIT
    assert len(chunks) >= 5  # 69 MiB of records in chunks of at most 16 MiB


def test_small_records_still_go_by_count_and_an_empty_export_is_one_chunk(
    tmp_path: Path,
) -> None:
    store = _store(tmp_path, 5, 4, tombstones=3)
    got = list(export_records(store, REF, {0}, chunk=2))
    assert [(len(r), len(t)) for r, t in got] == [(2, 0), (2, 0), (1, 2), (0, 1)]
    assert list(export_records(store, VersionRef("other", "v1"), {0})) == [([], [])]
    store.close()


def test_a_chunk_holds_at_least_one_entry_however_large() -> None:
    big, small = (b"k", b"x" * 100), (b"k", b"x")
    parts = list(sized_chunks([small, big, small, small], pair_size, 10, max_bytes=120))
    assert [len(p) for p in parts] == [1, 1, 2]
    assert list(sized_chunks([], pair_size, 10)) == []


def test_feature_rows_are_exported_in_sized_chunks(tmp_path: Path) -> None:
    """`FeatureStore.iter_raw` (ExportFeatureRows) cut at 2,048 rows only."""
    store = FeatureShardStore(tmp_path / "db")
    features = FeatureStore(store)
    cf = column_family(VersionRef("g", "v1"))
    store.ensure_column_family(cf)
    store.write(puts=[(cf, f"k{i}".encode(), b"v" * 10_000) for i in range(100)])
    sizes = [len(p) for p in features.iter_raw(VersionRef("g", "v1"), max_bytes=100_000)]
    assert sum(sizes) == 100 and max(sizes) <= 9
    store.close()
