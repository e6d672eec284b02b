"""Assembles a running coordinator (grpc.aio) from its config."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc.aio

from coordinator.config import CoordinatorConfig
from coordinator.service import Limits, RetrievalEngine
from coordinator.servicer import RetrievalServicer
from coordinator.shards import ShardPool
from protos import serving
from protos.vecshard.v1 import retrieval_pb2_grpc
from registry.registry import Registry
from registry.store import EtcdStore
from registry.watcher import SnapshotCache

log = logging.getLogger(__name__)
SERVICE = "vecshard.v1.RetrievalService"


@dataclass
class RunningCoordinator:
    server: grpc.aio.Server
    port: int
    metrics_port: int
    cache: SnapshotCache
    pool: ShardPool
    health: object

    async def stop(self, grace: float) -> None:
        serving.set_serving(self.health, [SERVICE], False)  # type: ignore[arg-type]
        await self.server.stop(grace)
        await self.pool.close()
        self.cache.stop()


async def create_server(cfg: CoordinatorConfig) -> RunningCoordinator:
    registry = Registry(EtcdStore(cfg.etcd), cfg.etcd_prefix)
    cache = SnapshotCache(registry)
    cache.start()
    pool = ShardPool()
    engine = RetrievalEngine(cache, pool.get, Limits(max_batch_records=cfg.max_batch_records))
    server = grpc.aio.server(
        interceptors=[serving.AsyncServerInterceptor("coordinator")], options=serving.grpc_options()
    )
    retrieval_pb2_grpc.add_RetrievalServiceServicer_to_server(
        RetrievalServicer(engine, cfg.default_timeout), server
    )
    health = serving.add_health_and_reflection(server, [SERVICE])
    port = server.add_insecure_port(cfg.listen)
    if port == 0:
        raise OSError(f"could not bind {cfg.listen}")
    await server.start()
    metrics_port = serving.start_metrics(cfg.metrics_host, cfg.metrics_port)
    serving.set_serving(health, [SERVICE], True)
    log.info("coordinator serving on port %d (registry revision %d)", port, cache.snapshot.revision)
    return RunningCoordinator(server, port, metrics_port, cache, pool, health)
