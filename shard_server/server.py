"""Assembles a running shard server from its config."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass

import grpc
from grpc_health.v1.health import HealthServicer

from core import runtime as serving
from core.limits import DEFAULT_LIMITS, Limits
from core.timestamps import now_us
from core.tls import TlsSettings, server_credentials
from protos.vecshard.v1.internal import (
    erasure_pb2_grpc,
    features_pb2_grpc,
    replication_pb2_grpc,
    shard_pb2_grpc,
)
from registry.membership import ShardRegistration
from registry.model import ShardMember, ShardState
from registry.registry import Registry
from registry.store import ETCD_START_WAIT_SECONDS, EtcdStore
from registry.watcher import SnapshotCache
from shard_server.access_guard import ShardAccessGuard
from shard_server.anti_entropy import AntiEntropy
from shard_server.catch_up import catch_up, catch_up_fully
from shard_server.config import ShardConfig
from shard_server.data_dir_owner import claim_data_dir
from shard_server.erasure import ShardEraser
from shard_server.erasure_servicer import ErasureServicer
from shard_server.feature_service import FeatureNode
from shard_server.feature_servicer import FeatureServicer
from shard_server.feature_store import FeatureShardStore, FeatureStore
from shard_server.metrics import CATCH_UP_SECONDS, EXPIRY_SWEEPS
from shard_server.node_metrics import LEASE_LOSSES, watch_data_dir, watch_feature_cache
from shard_server.periodic import Periodic
from shard_server.read_gate import ReadGate
from shard_server.record_expiry import expire_records
from shard_server.replication import ReplicationServicer
from shard_server.service import ShardNode
from shard_server.servicer import ShardServicer

log = logging.getLogger(__name__)
SERVICE = "vecshard.v1.internal.ShardService"
FEATURE_SERVICE = "vecshard.v1.internal.FeatureShardService"


@dataclass
class RunningShard:
    server: grpc.Server
    port: int
    metrics_port: int
    address: str
    node: ShardNode
    registration: ShardRegistration
    cache: SnapshotCache
    health: HealthServicer
    # Timers: anti-entropy, expired feature rows (stopped before the store closes).
    background: Sequence[Periodic]
    health_server: grpc.Server | None = None

    def stop(self, grace: float) -> None:
        """Graceful: leave the registry first so no new queries arrive, then
        finish in-flight calls, then close storage."""
        serving.set_serving(self.health, [SERVICE], False)
        self.registration.close()
        for loop in self.background:
            loop.stop()
        self.server.stop(grace).wait()
        if self.health_server is not None:
            self.health_server.stop(0).wait()
        self.node.close()
        self.cache.stop()
        self.node.store.close()


def log_caught_up(shard_id: str, applied: int) -> None:
    if applied:
        log.info(
            "shard %s caught up %d records, tombstones and feature rows from peer replicas",
            shard_id,
            applied,
        )


def create_server(
    cfg: ShardConfig,
    tls: TlsSettings,
    limits: Limits = DEFAULT_LIMITS,
    stopping: Callable[[], bool] = lambda: False,
) -> RunningShard:
    """Serves mutual TLS only: every peer must present a certificate from the
    cluster CA, and `ShardAccessGuard` admits only cluster components."""
    claim_data_dir(cfg.data_dir, cfg.shard_id, cfg.etcd_prefix)  # before anything opens it
    files = tls.files()
    identity = files.read()
    credentials = server_credentials(files, require_client_cert=True)
    # FeatureShardStore is the ShardStore that also opens the feature groups'
    # column families already on disk (RocksDB refuses to open without them).
    store = FeatureShardStore(cfg.data_dir / "rocksdb", cfg.store_memory())
    etcd = EtcdStore(cfg.etcd, tls=tls.etcd_files().read())
    etcd.wait_reachable(ETCD_START_WAIT_SECONDS)
    registry = Registry(etcd, cfg.etcd_prefix)
    cache = SnapshotCache(registry)
    cache.start()
    node = ShardNode(
        cfg.shard_id,
        store,
        cache,
        cfg.data_dir / "segments",
        cfg.lifecycle_policy(),
        cfg.maintenance_interval_seconds,
        limits,
        cfg.recall_sample_rate,
        cfg.recall_sample_cpu_share,
    )
    cache.on_change(node.on_registry_change)
    watch_data_dir(cfg.data_dir)
    watch_feature_cache(store.row_cache)

    # Reads are refused until the shard has caught up (`read_gate`).
    gate = ReadGate(cfg.shard_id)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=cfg.max_workers, thread_name_prefix="shard-rpc"),
        interceptors=[serving.SyncServerInterceptor("shard"), gate, ShardAccessGuard(cache)],
        options=serving.grpc_options(),
    )
    shard_pb2_grpc.add_ShardServiceServicer_to_server(ShardServicer(node), server)
    features = FeatureStore(store)
    feature_node = FeatureNode(features, cache)
    feature_node.drop_retired(cache.snapshot)  # retired while this shard was down
    cache.on_change(feature_node.drop_retired)
    replication_pb2_grpc.add_ReplicationServiceServicer_to_server(
        ReplicationServicer(node, features), server
    )
    features_pb2_grpc.add_FeatureShardServiceServicer_to_server(
        FeatureServicer(feature_node), server
    )
    erasure_pb2_grpc.add_ShardErasureServiceServicer_to_server(
        ErasureServicer(ShardEraser(node, store, cfg.data_dir, features)), server
    )
    health = serving.add_health_and_reflection(server, [SERVICE, FEATURE_SERVICE])
    port = server.add_secure_port(cfg.listen, credentials)
    if port == 0:
        raise OSError(f"could not bind {cfg.listen}")
    host = cfg.listen.rsplit(":", 1)[0]
    address = cfg.advertise or f"{'127.0.0.1' if host in ('0.0.0.0', '[::]', '') else host}:{port}"
    metrics_port = serving.start_metrics(cfg.metrics_host, cfg.metrics_port)
    peer = identity.channel_credentials()
    registration = ShardRegistration(
        etcd,
        registry.keys,
        ShardMember(
            cfg.shard_id,
            address,
            state=ShardState.DRAINING,
            metrics_address=f"{cfg.metrics_host}:{metrics_port}",
        ),
        ttl=cfg.lease_ttl,
    )

    def lease_lost() -> None:
        LEASE_LOSSES.inc()
        gate.close()

    registration.on_lease_lost = lease_lost
    registration.catch_up = lambda: log_caught_up(
        cfg.shard_id, catch_up_fully(node, features, peer, lambda: registration.closed)
    )
    registration.on_serving = gate.open
    if etcd.get(registry.keys.shard(cfg.shard_id)) is not None:
        # The previous process's key (SERVING, perhaps this very address)
        # lingers until its lease expires: draining from now on, so
        # coordinators stop sending this shard queries before it listens —
        # kept alive from now on (a segment load may outlast the TTL).
        registration.register()
        registration.start()
    server.start()
    health_server = None
    if cfg.health_listen:
        probe, _ = serving.health_only_server(health, cfg.health_listen, aio=False)
        assert isinstance(probe, grpc.Server)
        probe.start()
        health_server = probe
    # Segments load before the shard says it is ready or registers.
    opened = node.load_all()
    node.start_maintenance()
    # Catch up from peer replicas before serving queries: index records first
    # in bulk while unregistered, then again once registered as draining
    # (coordinators send it writes but no queries), so nothing written in
    # between is missed. Feature rows only in the second pass: there one scan
    # of the peers covers everything written before the shard registered, and
    # every later write reaches it directly — a first pass would scan every
    # replicated row once more for nothing (a restart's cost is the scan).
    # The second pass asks each bucket's replicas in turn, and again, until
    # some replica answered for every bucket (`catch_up`): reads stay refused
    # and the shard DRAINING until then.
    caught_up_from = time.monotonic()
    applied = catch_up(node, features, peer, feature_rows=False)[0]
    registration.start()
    lease = registration.lease  # a loss from here on is the rejoin's to catch up
    applied += catch_up_fully(node, features, peer, lambda: registration.closed or stopping())
    CATCH_UP_SECONDS.set(time.monotonic() - caught_up_from)
    # Stopped while catching up (SIGTERM: it was ignored until the catch-up
    # ended, for ever while a registered peer kept failing): not served.
    if not stopping() and registration.serve(lease):
        log_caught_up(cfg.shard_id, applied)
    serving.set_serving(health, [SERVICE, FEATURE_SERVICE], True)

    # From here on, replicas that disagree (a write that reached only one of
    # them, with no one left to repair it) are reconciled in the background,
    # and records and feature rows past their lifetimes leave disk and memory.
    def expire() -> None:
        now = now_us()
        try:  # one side failing leaves the other's purge to run
            expire_records(node, now)
        finally:
            feature_node.purge_expired(now)
        EXPIRY_SWEEPS.inc()

    background = [
        AntiEntropy(node, features, peer, cfg.anti_entropy_interval_seconds).loop,
        Periodic("shard-expiry", expire, cfg.expiry_interval_seconds),
    ]
    for loop in background:
        loop.start()
    log.info("shard %s serving on %s with %d index partitions", cfg.shard_id, address, opened)
    return RunningShard(
        server,
        port,
        metrics_port,
        address,
        node,
        registration,
        cache,
        health,
        background,
        health_server,
    )
