"""RegistryService: the registry's admin API, hosted by the coordinator.

Translates between protobuf and `registry.admin` (which validates every
change); etcd calls block, so they run in a worker thread.
"""

from __future__ import annotations

import asyncio

import grpc.aio

from coordinator.snapshots import RegistryView
from core.domain import VersionRef
from core.errors import InvalidArgument
from core.vectors import from_bytes
from protos.vecshard.v1 import registry_pb2 as pb
from protos.vecshard.v1 import registry_pb2_grpc
from registry.admin import RegistryAdmin, parse_documents, to_json
from registry.model import ShardState
from registry.watcher import SnapshotCache


def _obj(obj: object, revision: int = 0) -> pb.RegistryObject:
    return pb.RegistryObject(kind=type(obj).__name__, spec_json=to_json(obj), mod_revision=revision)


class RegistryServicer(registry_pb2_grpc.RegistryServiceServicer):
    def __init__(self, admin: RegistryAdmin, cache: SnapshotCache, view: RegistryView) -> None:
        self.admin = admin
        self.cache = cache
        self.view = view

    async def Apply(
        self,
        request: pb.ApplyRequest,
        context: grpc.aio.ServicerContext[pb.ApplyRequest, pb.ApplyResponse],
    ) -> pb.ApplyResponse:
        docs = parse_documents(request.documents)
        changes = await asyncio.to_thread(
            self.admin.apply, docs, dry_run=request.dry_run, who=request.who, why=request.why
        )
        return pb.ApplyResponse(changes=changes, dry_run=request.dry_run)

    async def Get(
        self,
        request: pb.GetRequest,
        context: grpc.aio.ServicerContext[pb.GetRequest, pb.RegistryObject],
    ) -> pb.RegistryObject:
        obj, rev = await asyncio.to_thread(
            self.admin.get, request.kind, request.name, request.version
        )
        return _obj(obj, rev)

    async def List(
        self,
        request: pb.ListRequest,
        context: grpc.aio.ServicerContext[pb.ListRequest, pb.ListResponse],
    ) -> pb.ListResponse:
        found = await asyncio.to_thread(self.admin.list, request.kind)
        return pb.ListResponse(objects=[_obj(o, r) for o, r in found])

    async def Promote(
        self,
        request: pb.PromoteRequest,
        context: grpc.aio.ServicerContext[pb.PromoteRequest, pb.RegistryObject],
    ) -> pb.RegistryObject:
        obj = await asyncio.to_thread(
            self.admin.promote, request.kind, request.name, request.version, request.status
        )
        return _obj(obj, await asyncio.to_thread(self.admin.revision_written, obj))

    async def SwitchRoute(
        self,
        request: pb.SwitchRouteRequest,
        context: grpc.aio.ServicerContext[pb.SwitchRouteRequest, pb.RegistryObject],
    ) -> pb.RegistryObject:
        route = await asyncio.to_thread(
            lambda: self.admin.switch_route(
                request.route,
                request.bundle,
                canary_bundle=request.canary_bundle,
                canary_share=request.canary_share,
                shadow_bundle=request.shadow_bundle,
                expected_revision=request.expected_revision or None,
                who=request.who,
                why=request.why,
            )
        )
        return _obj(route, await asyncio.to_thread(self.admin.revision_written, route))

    async def Rollback(
        self,
        request: pb.RollbackRequest,
        context: grpc.aio.ServicerContext[pb.RollbackRequest, pb.RegistryObject],
    ) -> pb.RegistryObject:
        route = await asyncio.to_thread(
            self.admin.rollback, request.route, request.who, request.why
        )
        return _obj(route, await asyncio.to_thread(self.admin.revision_written, route))

    async def History(
        self,
        request: pb.HistoryRequest,
        context: grpc.aio.ServicerContext[pb.HistoryRequest, pb.HistoryResponse],
    ) -> pb.HistoryResponse:
        changes = await asyncio.to_thread(self.admin.history, request.route)
        return pb.HistoryResponse(
            changes=[
                pb.RouteChange(
                    revision=c.revision,
                    who=c.who,
                    when=c.when,
                    why=c.why,
                    before_json=to_json(c.before) if c.before else "",
                    after_json=to_json(c.after) if c.after else "",
                )
                for c in changes
            ]
        )

    async def CheckCompat(
        self,
        request: pb.CheckCompatRequest,
        context: grpc.aio.ServicerContext[pb.CheckCompatRequest, pb.CheckCompatResponse],
    ) -> pb.CheckCompatResponse:
        reason = await asyncio.to_thread(
            self.admin.check_compat, request.query_version, request.index_version
        )
        return pb.CheckCompatResponse(compatible=not reason, reason=reason)

    async def SetShardState(
        self,
        request: pb.SetShardStateRequest,
        context: grpc.aio.ServicerContext[pb.SetShardStateRequest, pb.SetShardStateResponse],
    ) -> pb.SetShardStateResponse:
        try:
            state = ShardState(request.state)
        except ValueError:
            raise InvalidArgument(
                f"state {request.state!r}: expected serving or draining"
            ) from None
        await asyncio.to_thread(
            self.admin.registry.set_shard_state, request.shard_id, state, request.reason
        )
        return pb.SetShardStateResponse()

    async def TrainPlacement(
        self,
        request: pb.TrainPlacementRequest,
        context: grpc.aio.ServicerContext[pb.TrainPlacementRequest, pb.TrainPlacementResponse],
    ) -> pb.TrainPlacementResponse:
        ref = VersionRef(request.index_name, request.index_version)
        snap, index = await self.view.fresh(lambda s: s.index(ref))
        dim = snap.family(index.embedding.name).dimension
        flat = from_bytes(request.sample, what="sample")
        if flat.size % dim:
            raise InvalidArgument(
                f"sample has {flat.size} values, not a multiple of the dimension {dim}"
            )
        buckets = await asyncio.to_thread(
            self.admin.registry.train_placement, ref, flat.reshape(-1, dim), request.seed
        )
        return pb.TrainPlacementResponse(buckets=buckets)

    async def Retire(
        self,
        request: pb.RetireRequest,
        context: grpc.aio.ServicerContext[pb.RetireRequest, pb.RetireResponse],
    ) -> pb.RetireResponse:
        record, effects = await asyncio.to_thread(
            lambda: self.admin.retire(
                request.kind,
                request.name,
                request.version,
                who=request.who,
                why=request.why,
                dry_run=request.dry_run,
            )
        )
        return pb.RetireResponse(retirement=_obj(record), effects=effects, dry_run=request.dry_run)

    async def Status(
        self,
        request: pb.StatusRequest,
        context: grpc.aio.ServicerContext[pb.StatusRequest, pb.StatusResponse],
    ) -> pb.StatusResponse:
        snap = self.cache.snapshot
        return pb.StatusResponse(
            revision=snap.revision,
            staleness_seconds=self.cache.staleness(),
            shards=[
                pb.ShardStatus(shard_id=m.shard_id, address=m.address, state=m.state.value)
                for m in sorted(snap.shards.values(), key=lambda m: m.shard_id)
            ],
            routes=sorted(snap.routes),
        )
