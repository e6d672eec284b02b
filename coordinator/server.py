"""Assembles a running coordinator (grpc.aio) from its config."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field

import grpc.aio
from grpc_health.v1.health import HealthServicer

from coordinator import metrics
from coordinator.canary_runner import CanaryRunner
from coordinator.config import CoordinatorConfig
from coordinator.evaluation import Evaluator
from coordinator.evaluation_servicer import EvaluationServicer
from coordinator.feature_convert import ProtoFeatureWire
from coordinator.features import FeatureEngine
from coordinator.registry_servicer import RegistryServicer
from coordinator.retention_sweeper import RetentionSweeper
from coordinator.service import Limits, RetrievalEngine
from coordinator.servicer import RetrievalServicer
from coordinator.shard_pool import ShardPool
from coordinator.snapshots import RegistryView
from coordinator.summaries import SummaryCache
from core import runtime as serving
from core.limits import DEFAULT_LIMITS
from core.limits import Limits as InputLimits
from protos.vecshard.v1 import evaluation_pb2_grpc, registry_pb2_grpc, retrieval_pb2_grpc
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
    # Scheduled work (canary queries, retention sweeps), cancelled on stop.
    jobs: list[asyncio.Task[None]] = field(default_factory=list)

    async def stop(self, grace: float) -> None:
        serving.set_serving(self.health, [SERVICE, REGISTRY_SERVICE], False)
        for job in self.jobs:
            job.cancel()
        await self.engine.drain_background()
        if self.engine.summaries is not None:
            await self.engine.summaries.stop()
        await self.server.stop(grace)
        await self.pool.close()
        self.cache.stop()


async def create_server(
    cfg: CoordinatorConfig, input_limits: InputLimits = DEFAULT_LIMITS
) -> RunningCoordinator:
    registry = Registry(EtcdStore(cfg.etcd), cfg.etcd_prefix)
    cache = SnapshotCache(registry, reread_interval=cfg.registry_reread_interval)
    view = RegistryView(cache)
    cache.start()
    metrics.REGISTRY_STALENESS.labels("coordinator").set_function(cache.staleness)
    metrics.REGISTRY_REVISION.labels("coordinator").set_function(lambda: cache.snapshot.revision)
    instance = uuid.uuid4().hex[:12]
    pool = ShardPool(
        max_batch=cfg.shard_max_batch,
        calls_in_flight=cfg.shard_calls_in_flight,
        instance=instance,
        summary_lease=cfg.summary_lease_seconds,
    )
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
        Limits(input=input_limits),
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
    evaluation_pb2_grpc.add_EvaluationServiceServicer_to_server(
        EvaluationServicer(Evaluator(view, engine.executor, pool.remote), cfg.default_timeout),
        server,
    )
    health = serving.add_health_and_reflection(server, [SERVICE, REGISTRY_SERVICE])
    port = server.add_insecure_port(cfg.listen)
    if port == 0:
        raise OSError(f"could not bind {cfg.listen}")
    await server.start()
    metrics_port = serving.start_metrics(cfg.metrics_host, cfg.metrics_port)
    serving.set_serving(health, [SERVICE, REGISTRY_SERVICE], True)
    log.info("coordinator serving on port %d (registry revision %d)", port, cache.snapshot.revision)
    jobs = []
    if cfg.canary_interval_seconds > 0:
        canary = CanaryRunner(
            view, engine.executor, cfg.canary_interval_seconds, cfg.canary_purpose
        )
        jobs.append(asyncio.ensure_future(canary.run_forever()))
    if cfg.retention_sweep_seconds > 0:
        sweeper = RetentionSweeper(cache, registry, cfg.retention_sweep_seconds)
        jobs.append(asyncio.ensure_future(sweeper.run_forever()))
    return RunningCoordinator(server, port, metrics_port, cache, pool, health, engine, jobs)
