"""`RemoteShard`: the `Shard` protocol over gRPC (asyncio) to a shard server.

It only translates: domain → request (`coordinator.convert`), one call, the
shard's status → the error tree (`coordinator.errors.shard_error`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import grpc
import grpc.aio
import numpy as np

from coordinator import convert, feature_convert
from coordinator.errors import shard_error
from coordinator.evaluation import ShardRecall
from coordinator.evaluation_convert import shard_recall
from coordinator.model import GroupFetch, ShardAnswer, ShardIndex, ShardQuery, WriteRecord
from coordinator.vouching import call_metadata, search_metadata
from core import runtime as serving
from core import tracing
from core.domain import EntityKey, VersionRef
from core.embedding_columns import EmbeddingColumns
from core.errors import Unavailable
from core.record_columns import RecordColumns
from protos.vecshard.v1.internal import features_pb2_grpc, shard_pb2_grpc
from protos.vecshard.v1.internal import shard_pb2 as spb
from registry.feature_batches import RowBatch

# Records per streamed message: big batches stay under gRPC's message limit.
UPSERT_BATCH = 1000
# Bytes per streamed message of rows as columns (each is one synced RocksDB batch).
UPSERT_COLUMNS_BYTES = 16 << 20
T = TypeVar("T")


def _call_md() -> tuple[tuple[str, str | bytes], ...]:
    """The vouch for the request this call serves, and the trace context.
    Computed in the calling task: the vouch lives in a context variable."""
    return (*call_metadata(), *tracing.outgoing_metadata())


def _search_md(queries: Sequence[ShardQuery]) -> tuple[tuple[str, str | bytes], ...]:
    """Searches name their callers per query (a batch mixes requests)."""
    return (*search_metadata(queries), *tracing.outgoing_metadata())


class RemoteShard:
    def __init__(
        self,
        shard_id: str,
        address: str,
        instance: str = "",
        summary_lease: float = 1.0,
        *,
        credentials: grpc.ChannelCredentials,
    ) -> None:
        self.shard_id = shard_id
        self.address = address
        # This coordinator's identity towards shards: its own summary leases
        # never delay its own writes (shard_server.summary_leases).
        self.instance = instance
        self.summary_lease = summary_lease
        # Mutual TLS: the shard admits only cluster components (core.identity),
        # and every call names its caller (coordinator.vouching).
        self.channel = grpc.aio.secure_channel(address, credentials, options=serving.grpc_options())
        self.stub = shard_pb2_grpc.ShardServiceStub(self.channel)
        self.features = features_pb2_grpc.FeatureShardServiceStub(self.channel)
        # Whether the shard serves SearchPacked (it does unless it predates it).
        self.packed = True

    async def _call(self, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except (grpc.RpcError, grpc.aio.UsageError) as exc:
            # UsageError: the channel was closed (the pool replaced a shard
            # that moved); like any unreachable shard, that is Unavailable.
            raise shard_error(self.shard_id, self.address, exc) from exc
        except asyncio.CancelledError:
            self._cancelled()
            raise

    def _cancelled(self) -> None:
        """A call cancelled though its task was not: its channel closed under
        it (a channel past its grace). grpc.aio says so with CancelledError,
        which no caller expects from a call it did not cancel — the request
        failed CANCELLED instead of failing over. Unavailable, as any shard
        that cannot be reached; a real cancellation goes on as one."""
        task = asyncio.current_task()
        if task is None or not task.cancelling():
            raise Unavailable(
                f"shard {self.shard_id} at {self.address}: the call was cancelled with its "
                "channel (the shard moved)"
            ) from None

    async def search(
        self, index: VersionRef, queries: Sequence[ShardQuery], timeout: float
    ) -> list[ShardAnswer]:
        if self.packed:
            req = convert.shard_packed_pb(index, queries)
            try:
                resp = await self.stub.SearchPacked(
                    req, timeout=timeout, metadata=_search_md(queries)
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() is not grpc.StatusCode.UNIMPLEMENTED:
                    raise shard_error(self.shard_id, self.address, exc) from exc
                # A shard from before SearchPacked (a rolling upgrade): ask it
                # the old way from now on.
                self.packed = False
            except grpc.aio.UsageError as exc:
                raise shard_error(self.shard_id, self.address, exc) from exc
            except asyncio.CancelledError:
                self._cancelled()
                raise
            else:
                return convert.shard_packed_answers(resp, self.shard_id, queries)
        legacy = convert.shard_search_pb(index, queries)
        old = await self._call(
            lambda: self.stub.Search(legacy, timeout=timeout, metadata=_search_md(queries))
        )
        return convert.shard_answers(old, self.shard_id, len(queries))

    async def upsert(
        self, index: VersionRef, records: Sequence[tuple[WriteRecord, int]], timeout: float
    ) -> tuple[int, int]:
        batches = convert.shard_upsert_batches(index, records, UPSERT_BATCH, self.instance)
        md = _call_md()
        ack = await self._call(
            lambda: self.stub.Upsert(iter(batches), timeout=timeout, metadata=md)
        )
        return ack.written, ack.ignored_stale

    async def upsert_columns(
        self,
        index: VersionRef,
        tenant_id: str,
        records: RecordColumns,
        buckets: np.ndarray,
        timeout: float,
    ) -> tuple[int, int]:
        batches = convert.shard_upsert_columns_batches(
            index, tenant_id, records, buckets, UPSERT_COLUMNS_BYTES, self.instance
        )
        md = _call_md()
        ack = await self._call(
            lambda: self.stub.UpsertColumns(iter(batches), timeout=timeout, metadata=md)
        )
        return ack.written, ack.ignored_stale

    async def delete(
        self, index: VersionRef, keys: Sequence[EntityKey], source_version: int, timeout: float
    ) -> int:
        req = convert.shard_delete_pb(index, keys, source_version)
        md = _call_md()
        ack = await self._call(lambda: self.stub.Delete(req, timeout=timeout, metadata=md))
        return int(ack.deleted)

    async def batch_get(
        self,
        index: VersionRef,
        keys: Sequence[EntityKey],
        include_vectors: bool,
        timeout: float,
        include_attributes: bool = False,
    ) -> EmbeddingColumns:
        req = convert.shard_lookup_pb(index, keys, include_vectors, include_attributes)
        md = _call_md()
        resp = await self._call(lambda: self.stub.BatchGet(req, timeout=timeout, metadata=md))
        return convert.shard_embeddings(resp, len(keys), self.shard_id)

    async def describe(self, timeout: float = 5.0) -> list[ShardIndex]:
        req = spb.DescribeRequest(
            include_summaries=True,
            summary_lease_seconds=self.summary_lease,
            holder=self.instance,
        )
        md = _call_md()
        resp = await self._call(lambda: self.stub.Describe(req, timeout=timeout, metadata=md))
        return convert.shard_indexes(resp)

    async def get_feature_columns(
        self,
        tenant_id: str,
        fetches: Sequence[GroupFetch],
        request_time: int,
        personalized: bool,
        timeout: float,
    ) -> list[object]:
        req = feature_convert.feature_columns_pb(tenant_id, fetches, request_time, personalized)
        md = _call_md()
        resp = await self._call(
            lambda: self.features.GetFeatureColumns(req, timeout=timeout, metadata=md)
        )
        # Kept in wire form: the coordinator only routes these (FeatureWire).
        return list(resp.groups)

    async def put_features(
        self, group: VersionRef, batch: RowBatch, timeout: float
    ) -> tuple[int, int]:
        batches = feature_convert.feature_batches_pb(group, batch)
        md = _call_md()
        ack = await self._call(
            lambda: self.features.PutFeatures(iter(batches), timeout=timeout, metadata=md)
        )
        return ack.written, ack.ignored_older

    async def check_recall(
        self, index: VersionRef, k: int, sample: int, seed: int, timeout: float
    ) -> ShardRecall:
        req = spb.CheckRecallRequest(
            index=convert.index_ref_pb(index), k=k, sample=sample, seed=seed
        )
        md = _call_md()
        return shard_recall(
            await self._call(lambda: self.stub.CheckRecall(req, timeout=timeout, metadata=md))
        )

    async def close(self, grace: float | None = None) -> None:
        """`grace`: how long calls in flight may finish (None: cancelled now)."""
        await self.channel.close(grace)
