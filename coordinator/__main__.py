"""`vecshard coordinator`: run one coordinator until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from coordinator.config import AuditSettings, AuthSettings, CoordinatorConfig
from coordinator.server import create_server
from core import runtime as serving
from core import tracing
from core.limits import Limits
from core.settings import load_settings, run_server
from core.tls import TlsSettings
from core.tracing import TracingConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="vecshard coordinator",
        description="Run a coordinator: the public RetrievalService. Resolves routes in the "
        "etcd registry, fans searches out to shards and merges the results. Serves TLS only; "
        "callers authenticate with bearer tokens, every call is audited. Settings also come "
        "from --config (TOML: [coordinator], [tls], [auth], [audit] tables) and "
        "VECSHARD__<TABLE>__<KEY> variables, e.g. VECSHARD__TLS__CERT_FILE, "
        "VECSHARD__AUTH__JWKS_FILE, VECSHARD__AUDIT__DIR, VECSHARD__AUDIT__KEY_FILE.",
    )
    p.add_argument("--config", type=Path, help="TOML file with a [coordinator] table")
    p.add_argument("--etcd", help="etcd endpoint HOST:PORT (default 127.0.0.1:2379)")
    p.add_argument("--etcd-prefix", help="registry key prefix (default /vecshard/v1/)")
    p.add_argument("--listen", help="gRPC listen address (default 127.0.0.1:0 = any free port)")
    p.add_argument("--name", help="this coordinator's audit chain name (default: host name)")
    p.add_argument(
        "--health-listen", help="plaintext gRPC health-only address for probes (default: none)"
    )
    p.add_argument("--metrics-host", help="Prometheus HTTP host (default 127.0.0.1)")
    p.add_argument("--metrics-port", type=int, help="Prometheus HTTP port (default 0 = any free)")
    p.add_argument(
        "--default-timeout", type=float, help="seconds, when the caller sets no deadline"
    )
    p.add_argument("--log-level", help="debug|info|warning|error (default info)")
    return p.parse_args(argv)


async def serve(
    cfg: CoordinatorConfig,
    limits: Limits,
    tls: TlsSettings,
    auth: AuthSettings,
    audit: AuditSettings,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    running = await create_server(cfg, tls, auth, audit, limits)
    host = cfg.listen.rsplit(":", 1)[0]
    host = "127.0.0.1" if host in ("0.0.0.0", "[::]", "") else host
    serving.freeze_startup_heap(cfg.gc_young_threshold)
    serving.announce_ready(
        role="coordinator", grpc=f"{host}:{running.port}", metrics=running.metrics_port
    )
    await stop.wait()
    serving.arm_stop_watchdog(cfg.grace_seconds)
    await running.stop(cfg.grace_seconds)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k != "config"}
    cfg = load_settings(CoordinatorConfig, "coordinator", file=args.config, overrides=overrides)
    limits = load_settings(Limits, "limits", file=args.config)
    tls = load_settings(TlsSettings, "tls", file=args.config)
    auth = load_settings(AuthSettings, "auth", file=args.config)
    audit = load_settings(AuditSettings, "audit", file=args.config)
    serving.configure_logging(cfg.log_level)
    tracing.configure(
        "vecshard-coordinator", load_settings(TracingConfig, "tracing", file=args.config)
    )
    asyncio.run(serve(cfg, limits, tls, auth, audit))
    serving.exit_after_stop(0)


if __name__ == "__main__":
    raise SystemExit(run_server(main, "coordinator"))
