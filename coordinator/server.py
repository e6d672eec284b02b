"""Assembles a running coordinator (grpc.aio) from its config."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

import grpc.aio
from grpc_health.v1.health import HealthServicer

from coordinator import metrics
from coordinator.config import CoordinatorConfig
from coordinator.feature_convert import ProtoFeatureWire
from coordinator.features import FeatureEngine
from coordinator.registry_servicer import RegistryServicer
from coordinator.service import Limits, RetrievalEngine
from coordinator.servicer import RetrievalServicer
from coordinator.shard_pool import ShardPool
from coordinator.snapshots import RegistryView
from coordinator.summaries import SummaryCache
from core import runtime as serving
from protos.vecshard.v1 import registry_pb2_grpc, retrieval_pb2_grpc
from registry.admin import RegistryAdmin
from registry.registry import Registry
from registry.store import EtcdStore
from registry.watcher import SnapshotCache

log = logging.getLogger(__name__)
SERVICE = "vecshard.v1.RetrievalService"
REGISTRY_SERVICE = "vecshard.v1.RegistryService"


@dataclass
class RunningCoordinator:
    server: grpc.aio.Server
    port: int
    metrics_port: int
    cache: SnapshotCache
    pool: ShardPool
    health: HealthServicer
    engine: RetrievalEngine

    async def stop(self, grace: float) -> None:
        serving.set_serving(self.health, [SERVICE, REGISTRY_SERVICE], False)
        await self.engine.drain_background()
        if self.engine.summaries is not None:
            await self.engine.summaries.stop()
        await self.server.stop(grace)
        await self.pool.close()
        self.cache.stop()


async def create_server(cfg: CoordinatorConfig) -> RunningCoordinator:
    registry = Registry(EtcdStore(cfg.etcd), cfg.etcd_prefix)
    cache = SnapshotCache(registry, reread_interval=cfg.registry_reread_interval)
    view = RegistryView(cache)
    cache.start()
    metrics.REGISTRY_STALENESS.labels("coordinator").set_function(cache.staleness)
    metrics.REGISTRY_REVISION.labels("coordinator").set_function(lambda: cache.snapshot.revision)
    instance = uuid.uuid4().hex[:12]
    pool = ShardPool(instance=instance, summary_lease=cfg.summary_lease_seconds)
    summaries = SummaryCache(
        cache,
        lambda sid, addr: pool.get(sid, addr).describe(),
        interval=cfg.summary_refresh_seconds,
        max_age=cfg.summary_lease_seconds,
    )
    summaries.start()
    engine = RetrievalEngine(
        cache,
        pool.get,
        Limits(max_batch_records=cfg.max_batch_records),
        summaries=summaries,
        registry=view,
    )
    server = grpc.aio.server(
        interceptors=[serving.AsyncServerInterceptor("coordinator")], options=serving.grpc_options()
    )
    retrieval_pb2_grpc.add_RetrievalServiceServicer_to_server(
        RetrievalServicer(
            engine,
            FeatureEngine(view, pool.get, engine.tracker, ProtoFeatureWire()),
            cfg.default_timeout,
        ),
        server,
    )
    registry_pb2_grpc.add_RegistryServiceServicer_to_server(
        RegistryServicer(RegistryAdmin(registry), cache, view), server
    )
    health = serving.add_health_and_reflection(server, [SERVICE, REGISTRY_SERVICE])
    port = server.add_insecure_port(cfg.listen)
    if port == 0:
        raise OSError(f"could not bind {cfg.listen}")
    await server.start()
    metrics_port = serving.start_metrics(cfg.metrics_host, cfg.metrics_port)
    serving.set_serving(health, [SERVICE, REGISTRY_SERVICE], True)
    log.info("coordinator serving on port %d (registry revision %d)", port, cache.snapshot.revision)
    return RunningCoordinator(server, port, metrics_port, cache, pool, health, engine)
