"""Coordinator settings (defaults → file → VECSHARD__COORDINATOR__* → flags)."""

from __future__ import annotations

from dataclasses import dataclass

from core.limits import DEFAULT_LIMITS
from core.limits import Limits as InputLimits
from registry.keys import DEFAULT_PREFIX


@dataclass(frozen=True)
class CoordinatorConfig:
    etcd: str = "127.0.0.1:2379"
    etcd_prefix: str = DEFAULT_PREFIX
    listen: str = "127.0.0.1:0"
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
    retention_sweep_seconds: float = 30.0

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
        if self.shard_calls_in_flight < 1 or self.shard_max_batch < 1:
            raise ValueError("shard_calls_in_flight and shard_max_batch must be ≥ 1")
        if self.canary_interval_seconds < 0 or self.retention_sweep_seconds < 0:
            raise ValueError(
                "canary_interval_seconds and retention_sweep_seconds must be ≥ 0 (0 = off)"
            )


@dataclass(frozen=True)
class Limits:
    """What one request may ask for (`input`: key, record and batch sizes,
    refused with INVALID_ARGUMENT naming the limit) and how much the
    coordinator holds at once (beyond it, RESOURCE_EXHAUSTED: shed)."""

    input: InputLimits = DEFAULT_LIMITS
    # Requests (searches count one each) in flight before new ones are shed.
    max_in_flight_requests: int = 512
