"""Shard server settings (defaults → file → VECSHARD__SHARD__* → flags)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from registry.keys import DEFAULT_PREFIX


@dataclass(frozen=True)
class ShardConfig:
    shard_id: str
    data_dir: Path
    etcd: str = "127.0.0.1:2379"
    etcd_prefix: str = DEFAULT_PREFIX
    listen: str = "127.0.0.1:0"
    # Address coordinators dial; defaults to the bound listen address.
    advertise: str = ""
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    lease_ttl: int = 10
    max_workers: int = 16
    grace_seconds: float = 20.0
    log_level: str = "info"

    def __post_init__(self) -> None:
        if not self.shard_id or "/" in self.shard_id:
            raise ValueError(f"shard_id {self.shard_id!r} must be non-empty and contain no '/'")
        if self.lease_ttl < 2:
            raise ValueError(f"lease_ttl {self.lease_ttl} must be ≥ 2 seconds")
        if self.max_workers < 1:
            raise ValueError("max_workers must be ≥ 1")
