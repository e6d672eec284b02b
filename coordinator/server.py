"""Assembles a running coordinator (grpc.aio) from its config."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc.aio
from grpc_health.v1.health import HealthServicer

from coordinator import metrics
from coordinator.audit import AuditTrail
from coordinator.audit_anchor import EtcdHeadAnchor
from coordinator.audit_records import Hasher, SnapshotTypes
from coordinator.auth_interceptor import AuthInterceptor
from coordinator.authn import TokenVerifier, refuse_cluster_ca
from coordinator.canary_runner import CanaryRunner
from coordinator.config import AuditSettings, AuthSettings, CoordinatorConfig
from coordinator.erasure import ErasureEngine
from coordinator.erasure_servicer import ErasureServicer
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
from core.audit_chain import ChainWriter, derive_keys, read_secret
from core.errors import NotFound, PermissionDenied
from core.limits import DEFAULT_LIMITS
from core.limits import Limits as InputLimits
from core.tls import TlsSettings, server_credentials
from protos.vecshard.v1 import (
    erasure_pb2_grpc,
    evaluation_pb2_grpc,
    registry_pb2_grpc,
    retrieval_pb2_grpc,
)
from registry.access_policy import Principal
from registry.admin import RegistryAdmin
from registry.registry import Registry
from registry.snapshot import Snapshot
from registry.store import ETCD_START_WAIT_SECONDS, EtcdStore
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
    audit: AuditTrail
    health_server: grpc.aio.Server | None = None
    # Scheduled work (canary queries, retention sweeps), cancelled on stop.
    jobs: list[asyncio.Task[None]] = field(default_factory=list)

    async def stop(self, grace: float) -> None:
        serving.set_serving(self.health, [SERVICE, REGISTRY_SERVICE], False)
        for job in self.jobs:
            job.cancel()
        self.engine.repair.close()  # a restart's catch-up covers what it would retry
        await self.engine.drain_background()
        if self.engine.summaries is not None:
            await self.engine.summaries.stop()
        await self.server.stop(grace)
        if self.health_server is not None:
            await self.health_server.stop(0)
        await self.pool.close()
        self.cache.stop()
        self.audit.close()


def _grants(view: RegistryView) -> Callable[[str], Awaitable[Principal]]:
    """The caller's grant; a principal created a moment ago through another
    coordinator is found by one re-read."""

    def lookup(snap: Snapshot, name: str) -> Principal:
        principal = snap.principals.get(name)
        if principal is None:
            raise NotFound(name)
        return principal

    async def grants(name: str) -> Principal:
        found = view.snapshot.principals.get(name)
        if found is not None:  # the common case: no re-read machinery
            return found
        try:
            _, principal = await view.fresh(lambda s: lookup(s, name))
        except NotFound:
            raise PermissionDenied(
                f"principal {name[:128]!r} has no grant in the registry (kind: Principal)"
            ) from None
        return principal

    return grants


async def create_server(
    cfg: CoordinatorConfig,
    tls: TlsSettings,
    auth: AuthSettings,
    audit_settings: AuditSettings,
    input_limits: InputLimits = DEFAULT_LIMITS,
) -> RunningCoordinator:
    """TLS on the public port (callers authenticate with bearer tokens),
    mutual TLS to shards and etcd, an audit trail of every call."""
    files = tls.files()
    identity = files.read()
    public_credentials = server_credentials(files, require_client_cert=False)
    etcd_identity = tls.etcd_files().read()
    client_ca = auth.client_ca_file.read_bytes() if auth.client_ca_file else None
    if client_ca is not None:  # etcd's CA (if its own) trusts its clients too
        refuse_cluster_ca(client_ca, identity.ca + b"\n" + etcd_identity.ca)
    verifier = TokenVerifier(
        auth.jwks_file,
        client_ca,
        issuer=auth.issuer,
        leeway=auth.leeway_seconds,
        cache_size=auth.token_cache_size,
    )
    etcd = EtcdStore(cfg.etcd, tls=etcd_identity)
    etcd.wait_reachable(ETCD_START_WAIT_SECONDS)
    registry = Registry(etcd, cfg.etcd_prefix)
    assert audit_settings.dir is not None and audit_settings.key_file is not None
    chain_key, id_salt = derive_keys(read_secret(audit_settings.key_file))
    anchor = EtcdHeadAnchor(registry.store, registry.keys.audit_head(cfg.name))
    audit = AuditTrail(
        ChainWriter(audit_settings.dir / cfg.name, chain_key, audit_settings.rotate_bytes),
        flush_interval=audit_settings.flush_interval,
        max_backlog=audit_settings.max_backlog,
        anchor=anchor,
    )
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
        credentials=identity.channel_credentials(),
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
        interceptors=[
            serving.AsyncServerInterceptor("coordinator"),
            AuthInterceptor(
                verifier,
                _grants(view),
                audit,
                Hasher(id_salt),
                cfg.name,
                SnapshotTypes(lambda: view.snapshot),
            ),
        ],
        options=serving.grpc_options(),
    )
    retrieval_pb2_grpc.add_RetrievalServiceServicer_to_server(
        RetrievalServicer(
            engine,
            FeatureEngine(
                view,
                pool.get,
                engine.tracker,
                ProtoFeatureWire(),
                background=engine.background,
                repair=engine.repair,
                limits=engine.limits.input,
            ),
            cfg.default_timeout,
        ),
        server,
    )
    registry_pb2_grpc.add_RegistryServiceServicer_to_server(
        RegistryServicer(RegistryAdmin(registry), cache, view), server
    )
    evaluation_pb2_grpc.add_EvaluationServiceServicer_to_server(
        EvaluationServicer(
            Evaluator(view, engine.executor, pool.remote, engine.lookups), cfg.default_timeout
        ),
        server,
    )
    erasure_pb2_grpc.add_ErasureServiceServicer_to_server(
        ErasureServicer(ErasureEngine(view, pool.get, identity.channel_credentials())), server
    )
    health = serving.add_health_and_reflection(server, [SERVICE, REGISTRY_SERVICE])
    port = server.add_secure_port(cfg.listen, public_credentials)
    if port == 0:
        raise OSError(f"could not bind {cfg.listen}")
    await server.start()
    health_server = None
    if cfg.health_listen:
        probe, _ = serving.health_only_server(health, cfg.health_listen, aio=True)
        assert isinstance(probe, grpc.aio.Server)
        await probe.start()
        health_server = probe
    metrics_port = serving.start_metrics(cfg.metrics_host, cfg.metrics_port)
    loop = asyncio.get_running_loop()

    def audit_failed(exc: BaseException) -> None:
        # Every request is refused now (fail closed): say so to probes.
        log.error("audit trail failed (%s): reporting NOT_SERVING until restarted", exc)
        loop.call_soon_threadsafe(serving.set_serving, health, [SERVICE, REGISTRY_SERVICE], False)

    def shards_changed(snap: Snapshot) -> None:
        # Called on the registry watch's thread; a closed loop: the coordinator is stopping.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(pool.keep_only, frozenset(snap.shards))

    cache.on_change(shards_changed)
    metrics.SHARD_CLIENTS.set_function(lambda: len(pool))
    audit.on_failure = audit_failed
    metrics.AUDIT_CHAIN_BYTES.set_function(audit.writer.disk_bytes)
    serving.set_serving(health, [SERVICE, REGISTRY_SERVICE], True)
    if audit.failure is not None:  # failed before the callback was set (its first record)
        audit_failed(audit.failure)
    log.info("coordinator serving on port %d (registry revision %d)", port, cache.snapshot.revision)
    jobs = []
    if cfg.canary_interval_seconds > 0:
        canary = CanaryRunner(
            view,
            engine.executor,
            cfg.canary_interval_seconds,
            cfg.canary_purpose,
            principal=cfg.canary_principal,
        )
        jobs.append(asyncio.ensure_future(canary.run_forever()))
    if cfg.retention_sweep_seconds > 0:
        sweeper = RetentionSweeper(cache, registry, cfg.retention_sweep_seconds)
        jobs.append(asyncio.ensure_future(sweeper.run_forever()))
    return RunningCoordinator(
        server, port, metrics_port, cache, pool, health, engine, audit, health_server, jobs
    )
