"""The in-process baseline of `features_bench`: the same rows in one RocksDB
in this process, read and resolved by the shard's own functions into the
result the SDK hands a model — for GetFeatures, every group's resolved
columns in request order; for BatchGetEmbeddings, the float32 matrix and
its arrays. What the cluster adds to it is the distribution: routing,
three gRPC hops, serialization and the fan-out over shards."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from core.domain import EntityKey, VersionRef
from core.embedding_columns import EmbeddingColumns
from core.feature_columns import FeatureColumn, ResolvedColumns
from registry.feature_batches import RowBatch
from registry.feature_catalog import FeatureCatalog, GroupRead
from registry.feature_values import resolve_columns
from registry.features import FeatureSet
from shard_server.feature_store import FeatureShardStore, FeatureStore
from shard_server.lookup_columns import read_embeddings, record_keys
from shard_server.records import Record, encode_record, entity_keys, record_key
from shard_server.storage import RECORDS, StoreMemory

Columns = dict[str, FeatureColumn]


class InProcess:
    def __init__(
        self,
        path: Path,
        catalog: FeatureCatalog,
        fs: FeatureSet,
        tenant: str,
        memory: StoreMemory | None = None,
    ) -> None:
        """`memory`: the store's bounds — give its feature cache what the
        cluster's shards have together, or rows they read from memory are
        read from RocksDB here."""
        self.storage = FeatureShardStore(path, memory)
        self.store = FeatureStore(self.storage)
        self.plan: tuple[GroupRead, ...] = catalog.plan(fs)
        self.tenant = tenant

    def put(
        self, group: VersionRef, etype: str, ids: Sequence[str], ts: int, columns: Columns
    ) -> None:
        stamps = np.full(len(ids), ts, dtype=np.int64)
        keys = [EntityKey(self.tenant, etype, i) for i in ids]
        schema = next(r.schema for r in self.plan if r.schema.ref == group)
        self.store.put_batch(schema, RowBatch(keys, stamps, stamps, columns))

    def put_vectors(self, index: VersionRef, ids: Sequence[str], vectors: np.ndarray) -> None:
        self.storage.write(
            puts=[
                (
                    RECORDS,
                    record_key(index, EntityKey(self.tenant, "item", i)),
                    encode_record(Record(EntityKey(self.tenant, "item", i), v, 1)),
                )
                for i, v in zip(ids, vectors, strict=True)
            ]
        )

    def get_features(self, ids_by_type: dict[str, list[str]], at: int) -> list[ResolvedColumns]:
        """What one GetFeatures computes: per group, its features for the
        entities of its type, read and resolved, in request order."""
        out = []
        for read in self.plan:
            etype = read.schema.group.entity_type
            keys = entity_keys(self.tenant, etype, ids_by_type[etype])
            out.append(resolve_columns(read, self.store.read(read.schema, keys), at, True))
        return out

    def get_embeddings(self, index: VersionRef, ids: Sequence[str], dim: int) -> EmbeddingColumns:
        keys = [EntityKey(self.tenant, "item", i) for i in ids]
        return read_embeddings(self.storage, record_keys(index, keys), dim, True, False)

    def close(self) -> None:
        self.storage.close()


def timed(call: Callable[[], object]) -> float:
    t = time.perf_counter()
    call()
    return time.perf_counter() - t


# Requests of each kind made, untimed, before the timed ones: on both sides.
WARMUP_REQUESTS = 50


def warm_up(request: Callable[[int], object], requests: int) -> None:
    """Makes the first `WARMUP_REQUESTS` of `requests` requests, untimed. The
    cluster side (connections, the shards' caches) and the in-process side
    (RocksDB's block cache, the feature-row cache, the allocator) are warmed
    by the same requests: only the cluster was, so the in-process p95 carried
    its cold start and p95_ratio came out flattered."""
    for r in range(min(WARMUP_REQUESTS, requests)):
        request(r)
