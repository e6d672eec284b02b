"""`RemoteShard`: the `Shard` protocol over gRPC (asyncio) to a shard server.

It only translates: domain → request (`coordinator.convert`), one call, the
shard's status → the error tree (`coordinator.errors.shard_error`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import grpc
import grpc.aio

from coordinator import convert
from coordinator.errors import shard_error
from coordinator.model import Lookup, ShardAnswer, ShardIndex, ShardQuery, WriteRecord
from coordinator.vouching import call_metadata, search_metadata
from core import runtime as serving
from core.domain import EntityKey, VersionRef
from core.wire import feature_row_to_pb, key_to_pb
from protos.vecshard.v1 import common_pb2 as cpb
from protos.vecshard.v1.internal import features_pb2 as fpb
from protos.vecshard.v1.internal import features_pb2_grpc, shard_pb2_grpc
from protos.vecshard.v1.internal import shard_pb2 as spb
from registry.features import GroupRow

# Records per streamed message: big batches stay under gRPC's message limit.
UPSERT_BATCH = 1000
T = TypeVar("T")


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

    async def search(
        self, index: VersionRef, queries: Sequence[ShardQuery], timeout: float
    ) -> list[ShardAnswer]:
        if self.packed:
            req = convert.shard_packed_pb(index, queries)
            try:
                resp = await self.stub.SearchPacked(
                    req, timeout=timeout, metadata=search_metadata(queries)
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() is not grpc.StatusCode.UNIMPLEMENTED:
                    raise shard_error(self.shard_id, self.address, exc) from exc
                # A shard from before SearchPacked (a rolling upgrade): ask it
                # the old way from now on.
                self.packed = False
            except grpc.aio.UsageError as exc:
                raise shard_error(self.shard_id, self.address, exc) from exc
            else:
                return convert.shard_packed_answers(resp, self.shard_id, queries)
        legacy = convert.shard_search_pb(index, queries)
        old = await self._call(
            lambda: self.stub.Search(legacy, timeout=timeout, metadata=search_metadata(queries))
        )
        return convert.shard_answers(old, self.shard_id, len(queries))

    async def upsert(
        self, index: VersionRef, records: Sequence[tuple[WriteRecord, int]], timeout: float
    ) -> tuple[int, int]:
        batches = convert.shard_upsert_batches(index, records, UPSERT_BATCH, self.instance)
        md = call_metadata()
        ack = await self._call(
            lambda: self.stub.Upsert(iter(batches), timeout=timeout, metadata=md)
        )
        return ack.written, ack.ignored_stale

    async def delete(
        self, index: VersionRef, keys: Sequence[EntityKey], source_version: int, timeout: float
    ) -> int:
        req = convert.shard_delete_pb(index, keys, source_version)
        md = call_metadata()
        ack = await self._call(lambda: self.stub.Delete(req, timeout=timeout, metadata=md))
        return int(ack.deleted)

    async def batch_get(
        self, index: VersionRef, keys: Sequence[EntityKey], include_vectors: bool, timeout: float
    ) -> list[Lookup]:
        req = convert.shard_batch_get_pb(index, keys, include_vectors)
        md = call_metadata()
        resp = await self._call(lambda: self.stub.BatchGet(req, timeout=timeout, metadata=md))
        return convert.shard_lookups(resp)

    async def describe(self, timeout: float = 5.0) -> list[ShardIndex]:
        req = spb.DescribeRequest(
            include_summaries=True,
            summary_lease_seconds=self.summary_lease,
            holder=self.instance,
        )
        resp = await self._call(lambda: self.stub.Describe(req, timeout=timeout))
        return convert.shard_indexes(resp)

    async def get_features(
        self,
        group: VersionRef,
        features: Sequence[str],
        keys: Sequence[EntityKey],
        request_time: int,
        personalized: bool,
        timeout: float,
    ) -> list[Sequence[cpb.FeatureValue]]:
        req = fpb.GetFeaturesRequest(
            group=group.name,
            group_version=group.version,
            features=list(features),
            entities=[key_to_pb(k) for k in keys],
            request_time_us=request_time,
            personalized=personalized,
        )
        md = call_metadata()
        resp = await self._call(
            lambda: self.features.GetFeatures(req, timeout=timeout, metadata=md)
        )
        # Kept in wire form: the coordinator only routes these (FeatureWire).
        return [e.values for e in resp.entities]

    async def put_features(
        self, group: VersionRef, rows: Sequence[GroupRow], timeout: float
    ) -> tuple[int, int]:
        batch = fpb.FeatureBatch(
            group=group.name,
            group_version=group.version,
            rows=[feature_row_to_pb(*r) for r in rows],
        )
        md = call_metadata()
        ack = await self._call(
            lambda: self.features.PutFeatures(iter([batch]), timeout=timeout, metadata=md)
        )
        return ack.written, ack.ignored_older

    async def close(self) -> None:
        await self.channel.close()
