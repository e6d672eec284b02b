"""`vecshard shard`: run one shard server until SIGTERM/SIGINT."""

from __future__ import annotations

import os

# One BLAS thread per call: the gRPC thread pool already runs queries in
# parallel, and OpenBLAS starting a thread per core for every matrix-vector
# product made exact search 10–30× slower on 2 cores (benchmarks/README.md).
# Set before numpy is imported; an explicit environment value still wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import signal
from pathlib import Path

from core import runtime as serving
from core import tracing
from core.limits import Limits
from core.settings import load_settings, run_server
from core.signal_waiter import SignalWaiter
from core.tls import TlsSettings
from core.tracing import TracingConfig
from shard_server.config import ShardConfig
from shard_server.memory import configure_allocator
from shard_server.server import create_server


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="vecshard shard",
        description="Run a shard server: holds buckets of index versions in RocksDB and "
        "answers searches, lookups and writes from coordinators, over mutual TLS only. Settings "
        "also come from --config (TOML, [shard] and [tls] tables) and VECSHARD__SHARD__<KEY> / "
        "VECSHARD__TLS__<KEY> environment variables (TLS: CA_FILE, CERT_FILE, KEY_FILE).",
    )
    p.add_argument("--config", type=Path, help="TOML file with a [shard] table")
    p.add_argument("--shard-id", help="stable id of this shard (e.g. shard-0)")
    p.add_argument("--data-dir", help="directory for RocksDB and segment files")
    p.add_argument("--etcd", help="etcd endpoint HOST:PORT (default 127.0.0.1:2379)")
    p.add_argument("--etcd-prefix", help="registry key prefix (default /vecshard/v1/)")
    p.add_argument("--listen", help="gRPC listen address (default 127.0.0.1:0 = any free port)")
    p.add_argument("--advertise", help="address coordinators dial (default: the bound address)")
    p.add_argument(
        "--health-listen", help="plaintext gRPC health-only address for probes (default: none)"
    )
    p.add_argument("--metrics-host", help="Prometheus HTTP host (default 127.0.0.1)")
    p.add_argument("--metrics-port", type=int, help="Prometheus HTTP port (default 0 = any free)")
    p.add_argument("--lease-ttl", type=int, help="membership lease TTL in seconds (default 10)")
    p.add_argument("--log-level", help="debug|info|warning|error (default info)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k != "config"}
    cfg = load_settings(ShardConfig, "shard", file=args.config, overrides=overrides)
    limits = load_settings(Limits, "limits", file=args.config)
    tls = load_settings(TlsSettings, "tls", file=args.config)
    serving.configure_logging(cfg.log_level)
    tracing.configure("vecshard-shard", load_settings(TracingConfig, "tracing", file=args.config))
    configure_allocator()
    signals = SignalWaiter((signal.SIGTERM, signal.SIGINT))
    running = create_server(cfg, tls, limits, stopping=signals.pending)
    serving.freeze_startup_heap()
    serving.announce_ready(
        role="shard", id=cfg.shard_id, grpc=running.address, metrics=running.metrics_port
    )
    signals.wait()
    serving.arm_stop_watchdog(cfg.grace_seconds)
    running.stop(cfg.grace_seconds)
    serving.exit_after_stop(0)


if __name__ == "__main__":
    raise SystemExit(run_server(main, "shard"))
