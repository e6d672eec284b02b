"""The `Shard` protocol: everything the coordinator asks of a shard.

Coordinator logic sees shards only through this protocol, so it runs the same
against in-memory shards (`tests/inmemory.py`) and real processes
(`coordinator.remote_shard`), and one contract suite
(`tests/test_shard_contract_*.py`) holds both to the same behaviour.
Implementations: `RemoteShard` (gRPC), `BatchingShard` (micro-batches the
searches of any inner shard).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from coordinator.model import (
    GroupFetch,
    ShardAnswer,
    ShardIndex,
    ShardQuery,
    WriteRecord,
)
from core.domain import EntityKey, VersionRef
from core.embedding_columns import EmbeddingColumns
from core.record_columns import RecordColumns
from registry.feature_batches import RowBatch


class Shard(Protocol):
    """One shard server. Every call may raise a `core.errors.VecshardError`:
    `Unavailable` when the shard cannot be reached (retry elsewhere), the
    shard's own status otherwise (`coordinator.partial` decides which ones a
    request survives). `timeout` is in seconds."""

    shard_id: str
    address: str

    async def search(
        self, index: VersionRef, queries: Sequence[ShardQuery], timeout: float
    ) -> list[ShardAnswer]:
        """One answer per query, in order; hits in the global order with
        canonical scores (unless a query asked `skip_rerank`)."""
        ...

    async def upsert(
        self, index: VersionRef, records: Sequence[tuple[WriteRecord, int]], timeout: float
    ) -> tuple[int, int]:
        """Writes (record, bucket) pairs; returns (written, ignored_stale).

        Version rules (`shard_server.version_rules.applies`): a record older than
        the stored one, or not newer than the key's tombstone, is ignored and
        counted; an equal version replaces, so a retried batch is idempotent.
        Within one call the highest source_version of a key wins (the last on
        a tie). Acknowledged means durable."""
        ...

    async def upsert_columns(
        self,
        index: VersionRef,
        tenant_id: str,
        records: RecordColumns,
        buckets: np.ndarray,
        timeout: float,
    ) -> tuple[int, int]:
        """`upsert` of rows of one tenant as columns, `buckets[i]` the bucket
        of row i (`records.entity_type` and every source_version are set).
        The same rules, answered the same way; no object per record."""
        ...

    async def delete(
        self, index: VersionRef, keys: Sequence[EntityKey], source_version: int, timeout: float
    ) -> int:
        """Tombstones the keys at `source_version` (or the newer version the
        key already had) and removes their records; returns how many records
        were removed. Later writes of that version or older are ignored."""
        ...

    async def batch_get(
        self,
        index: VersionRef,
        keys: Sequence[EntityKey],
        include_vectors: bool,
        timeout: float,
        include_attributes: bool = False,
    ) -> EmbeddingColumns:
        """One answer per key, in request order: found, deleted (tombstoned)
        or missing, as arrays. Without `include_vectors` the vectors have no
        columns; attributes (JSON) only with `include_attributes`."""
        ...

    async def describe(self, timeout: float = 5.0) -> list[ShardIndex]:
        """The index versions this shard holds, with the summaries that let
        the coordinator bound its scores and exclude buckets."""
        ...

    async def get_feature_columns(
        self,
        tenant_id: str,
        fetches: Sequence[GroupFetch],
        request_time: int,
        personalized: bool,
        timeout: float,
    ) -> list[object]:
        """Per fetch (in order), its features for its entities (in order),
        resolved on the shard with the same functions as the offline joins,
        as columns in wire form (`ResolvedFeatureColumns`).

        Why wire form: the coordinator only routes and counts these values
        (`coordinator.features.FeatureWire`); decoding the thousands of values
        of one request to encode them again would cost more than the lookup."""
        ...

    async def put_features(
        self, group: VersionRef, batch: RowBatch, timeout: float
    ) -> tuple[int, int]:
        """Stores rows; returns (written, ignored_older). Precedence is
        `GroupRow.supersedes`: an older (feature_timestamp, generated_at)
        never replaces a newer one; equal times replace (idempotent replay).
        An empty batch creates the group's partition (see features.put)."""
        ...

    async def close(self) -> None:
        """Releases the connection; the shard is not used afterwards."""
        ...


# (shard_id, address) → the shard; a pool returns the same one while the
# address stays the same.
ShardFactory = Callable[[str, str], Shard]
