"""Coordinator settings (defaults → file → VECSHARD__COORDINATOR__* → flags)."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

from core.identity import DEFAULT_ISSUER
from core.limits import DEFAULT_LIMITS, MAX_SUMMARY_LEASE_SECONDS
from core.limits import Limits as InputLimits
from registry.keys import DEFAULT_PREFIX


@dataclass(frozen=True)
class CoordinatorConfig:
    etcd: str = "127.0.0.1:2379"
    etcd_prefix: str = DEFAULT_PREFIX
    listen: str = "127.0.0.1:0"
    # A plaintext port with gRPC health only (Kubernetes probes cannot do
    # TLS); empty: none.
    health_listen: str = ""
    # This coordinator's name in the audit trail; its chain lives in
    # <audit dir>/<name>, so every coordinator needs its own (default: host name).
    name: str = field(default_factory=socket.gethostname)
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    # Used when the caller sets no deadline.
    default_timeout: float = 10.0
    grace_seconds: float = 20.0
    # Re-reads of the registry on a miss begin at least this far apart (seconds).
    registry_reread_interval: float = 0.05
    # Shard summaries (bounded fanout, bucket exclusion): asked for this often,
    # used for at most the lease, counted from the request. A write through
    # another coordinator that a summary misses is acknowledged only after the
    # lease expired, so a longer lease delays such writes longer.
    summary_refresh_seconds: float = 0.3
    summary_lease_seconds: float = 1.0
    log_level: str = "info"
    # Adaptive batching per shard and index version (coordinator.batcher):
    # calls out at once; queries arriving meanwhile queue and leave together
    # when one returns, or as soon as this many are queued.
    shard_calls_in_flight: int = 1
    shard_max_batch: int = 64
    # Model changes (DESIGN §11): how often each route's canary query set runs
    # (0 = never) and under which purpose; how often deprecated index versions
    # past their rollback retention are archived (0 = never).
    canary_interval_seconds: float = 60.0
    canary_purpose: str = "monitoring"
    # The principal the scheduled canary queries run as: a grant in the
    # registry with the reader role, the canary sets' tenants and the purpose
    # above (shards check it like any caller's). `vecshard up` grants "admin".
    canary_principal: str = "admin"
    retention_sweep_seconds: float = 30.0
    # Container objects allocated between collections of the garbage
    # collector's youngest generation (CPython's default: 700, at which a
    # busy coordinator spent 5–6 % of its CPU re-scanning requests in flight;
    # core.runtime.freeze_startup_heap). Garbage cycles live that much longer.
    gc_young_threshold: int = 50_000

    def __post_init__(self) -> None:
        if self.default_timeout <= 0:
            raise ValueError(f"default_timeout {self.default_timeout} must be > 0 seconds")
        if self.registry_reread_interval < 0:
            raise ValueError(
                f"registry_reread_interval {self.registry_reread_interval} must be >= 0 seconds"
            )
        if not 0 < self.summary_refresh_seconds < self.summary_lease_seconds:
            raise ValueError(
                f"summary_refresh_seconds {self.summary_refresh_seconds} must be > 0 and below "
                f"summary_lease_seconds {self.summary_lease_seconds} (else no summary is ever fresh)"
            )
        if self.summary_lease_seconds > MAX_SUMMARY_LEASE_SECONDS:
            raise ValueError(
                f"summary_lease_seconds {self.summary_lease_seconds}: at most "
                f"{MAX_SUMMARY_LEASE_SECONDS:g} (a write a summary misses waits out its lease)"
            )
        if self.shard_calls_in_flight < 1 or self.shard_max_batch < 1:
            raise ValueError("shard_calls_in_flight and shard_max_batch must be ≥ 1")
        if self.canary_interval_seconds < 0 or self.retention_sweep_seconds < 0:
            raise ValueError(
                "canary_interval_seconds and retention_sweep_seconds must be ≥ 0 (0 = off)"
            )
        if self.gc_young_threshold < 1:
            raise ValueError(
                f"gc_young_threshold {self.gc_young_threshold} must be ≥ 1 (collection stays on)"
            )
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ValueError(f"name {self.name!r} must be non-empty, without '/', not hidden")


@dataclass(frozen=True)
class AuthSettings:
    """Section `[auth]`: how callers' bearer tokens are verified (DESIGN §10)."""

    # Public keys of token issuers (JWKS); re-read when the file changes.
    jwks_file: Path | None = None
    # CA whose certificates may sign a principal's own (x5c) tokens: the principals
    # CA, never tls.ca_file (etcd trusts that one; the server refuses it here).
    client_ca_file: Path | None = None
    issuer: str = DEFAULT_ISSUER
    # Clock skew tolerated on exp/nbf (seconds).
    leeway_seconds: float = 30.0
    token_cache_size: int = 10_000

    def __post_init__(self) -> None:
        if self.jwks_file is None and self.client_ca_file is None:
            raise ValueError(
                "auth.jwks_file or auth.client_ca_file is required: every public call is "
                "authenticated (VECSHARD__AUTH__JWKS_FILE; `vecshard up` makes one)"
            )
        if not 0 <= self.leeway_seconds <= 300:
            raise ValueError(f"leeway_seconds {self.leeway_seconds} must be in 0..300")


@dataclass(frozen=True)
class AuditSettings:
    """Section `[audit]`: where the coordinator writes its audit trail."""

    dir: Path | None = None
    # The audit secret: keys the hash chain and salts the hashed ids.
    key_file: Path | None = None
    # Reads are group-committed at least this often (seconds); mutations
    # wait for their fsync.
    flush_interval: float = 0.1
    rotate_bytes: int = 64 * 1024 * 1024
    max_backlog: int = 200_000

    def __post_init__(self) -> None:
        if self.dir is None or self.key_file is None:
            raise ValueError(
                "audit.dir and audit.key_file are required: every coordinator keeps an audit "
                "trail (VECSHARD__AUDIT__DIR, VECSHARD__AUDIT__KEY_FILE)"
            )
        if not 0 < self.flush_interval <= 5:
            raise ValueError(f"flush_interval {self.flush_interval} must be in (0, 5] seconds")


@dataclass(frozen=True)
class Limits:
    """What one request may ask for (`input`: key, record and batch sizes,
    refused with INVALID_ARGUMENT naming the limit) and how much the
    coordinator holds at once (beyond it, RESOURCE_EXHAUSTED: shed)."""

    input: InputLimits = DEFAULT_LIMITS
    # Requests (searches count one each) in flight before new ones are shed.
    max_in_flight_requests: int = 512
