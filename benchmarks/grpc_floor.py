"""The floor under a request through vecshard's process layout: `python -m benchmarks.grpc_floor`.

A search crosses a client → coordinator hop and a coordinator → shard hop to each of two
shards (a GetFeatures of 800 items to each of three), in Python gRPC with mutual TLS
between the servers. This builds that layout with nothing else in it: a *front* process (a
``grpc.aio`` server, as the coordinator) answers each call by calling its *backend*
processes (sync gRPC servers with a thread pool, as the shards) at once and joining their
bytes — no protobuf, no search, no routing, no access checks, no Python object per hit.
Requests and answers are sized like the real ones (``--shape search``: a 128-d float32
query in, ten hits out of each shard; ``--shape features``: an 800-item GetFeatures), and a
call carries ``--batch`` queries as ``SearchBatch`` does.

Its server CPU per query (front + backends, from ``/proc``) and its unloaded latency are what
the layout costs before vecshard does any work, so they bound from below what ``vecshard bench
search`` and ``benchmarks.features_bench`` can reach with these processes and this language
(issue 12: ≤ 1.0 ms per query with one query per call, ≤ 0.4 ms with SearchBatch×16,
unloaded p50 ≤ 1.5 ms; issue 13: GetFeatures p95 ≤ 10 ms). Printed: QPS at ``--in-flight``
calls in flight, CPU per query per process, thread switches per call, and the unloaded p50
and p95 (one call at a time).

    python -m benchmarks.grpc_floor [--shape search|features] [--batches 1,16] [--in-flight 16] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from benchmarks.process_cpu import CpuMeter
from cli.pki import LocalPki
from core.identity import ComponentRole
from core.runtime import announce_ready, grpc_options
from core.tls import server_credentials

FRONT_METHOD = "/vecshard.floor.Front/Call"
BACKEND_METHOD = "/vecshard.floor.Backend/Call"


@dataclass(frozen=True)
class Shape:
    """The sizes of one query's messages, and how many backends it fans out to."""

    name: str
    request_bytes: int  # one query in the request
    answer_bytes: int  # one backend's answer to one query
    backends: int


SHAPES = {
    # A 128-d float32 query in; ten packed hits (score, sequence, key index,
    # ~8-byte key) out of each of two shards.
    "search": Shape("search", 128 * 4, 10 * (4 + 8 + 4 + 8), 2),
    # GetFeatures of 800 items × 2 groups + 1 user (`features_bench`): 6.8 KB
    # of entity ids in; 57 KB of resolved columns out, a third from each of
    # three shards (captured from a real request and answer).
    "features": Shape("features", 6_824, 19_179, 3),
}


def _bytes_handler(method: str, behavior: Any) -> grpc.GenericRpcHandler:
    """A generic unary handler on raw bytes (no (de)serializer: no protobuf)."""
    service, name = method.lstrip("/").split("/")
    return grpc.method_handlers_generic_handler(
        service, {name: grpc.unary_unary_rpc_method_handler(behavior)}
    )


# How a backend serves (issue 12: "measure the sync server against grpc.aio
# for the shard"): the shards' own kind (sync server, thread pool); grpc.aio
# answering on its event loop; grpc.aio handing sync handlers to a pool.
BACKEND_SERVERS = ("sync", "aio", "aio-pool")


def serve_backend(pki: Path, workers: int, shape: Shape, kind: str = "sync") -> None:
    """A shard's kind of server (`kind`: one of BACKEND_SERVERS), mutual TLS."""
    files = LocalPki(pki).component(ComponentRole.SHARD)
    answer = bytes(shape.answer_bytes)

    def behavior(request: bytes, context: Any) -> bytes:
        return answer * max(1, len(request) // shape.request_bytes)

    if kind != "sync":
        asyncio.run(_serve_aio_backend(files, workers, behavior, kind == "aio-pool"))
        return
    _serve_sync(files, BACKEND_METHOD, behavior, workers, require_client_cert=True)


def _serve_sync(
    files: Any, method: str, behavior: Any, workers: int, require_client_cert: bool
) -> None:
    """A sync gRPC server (a thread pool) answering `method`, until killed."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=grpc_options())
    server.add_generic_rpc_handlers((_bytes_handler(method, behavior),))
    port = server.add_secure_port(
        "127.0.0.1:0", server_credentials(files, require_client_cert=require_client_cert)
    )
    server.start()
    announce_ready(port=port)
    server.wait_for_termination()


async def _serve_aio_backend(files: Any, workers: int, behavior: Any, pooled: bool) -> None:
    async def inline(request: bytes, context: Any) -> bytes:
        return bytes(behavior(request, context))

    server = grpc.aio.server(
        migration_thread_pool=futures.ThreadPoolExecutor(max_workers=workers) if pooled else None,
        options=grpc_options(),
    )
    server.add_generic_rpc_handlers(
        (_bytes_handler(BACKEND_METHOD, behavior if pooled else inline),)
    )
    port = server.add_secure_port(
        "127.0.0.1:0", server_credentials(files, require_client_cert=True)
    )
    await server.start()
    announce_ready(port=port)
    await server.wait_for_termination()


# How the front serves and calls its backends: the coordinator's own kind
# (grpc.aio both ways, one event loop); grpc.aio serving but calling through a
# sync channel's futures bridged back to the loop (a shard client "off the
# event loop"); a sync server whose handler threads call sync futures.
FRONTS = ("aio", "aio-sync-client", "sync")


def _serve_sync_front(pki: Path, backends: Sequence[str]) -> None:
    files = LocalPki(pki).component(ComponentRole.COORDINATOR)
    creds = files.read().channel_credentials()
    calls: list[grpc.UnaryUnaryMultiCallable[bytes, bytes]] = [
        grpc.secure_channel(a, creds, options=grpc_options()).unary_unary(BACKEND_METHOD)
        for a in backends
    ]

    def call(request: bytes, context: Any) -> bytes:
        pending = [c.future(request, timeout=10) for c in calls]
        return b"".join(f.result() for f in pending)

    _serve_sync(files, FRONT_METHOD, call, 16, require_client_cert=False)


async def _serve_front(pki: Path, backends: Sequence[str], kind: str = "aio") -> None:
    files = LocalPki(pki).component(ComponentRole.COORDINATOR)
    creds = files.read().channel_credentials()
    loop = asyncio.get_running_loop()

    def bridged(c: grpc.UnaryUnaryMultiCallable[bytes, bytes], request: bytes) -> Any:
        """A sync-channel future's outcome, handed back to the event loop."""
        out: asyncio.Future[bytes] = loop.create_future()

        def done(f: Any) -> None:
            try:
                loop.call_soon_threadsafe(out.set_result, f.result())
            except Exception as exc:  # noqa: BLE001 - the caller's to see, not the callback's
                loop.call_soon_threadsafe(out.set_exception, exc)

        c.future(request, timeout=10).add_done_callback(done)
        return out

    if kind == "aio-sync-client":
        sends = [
            functools.partial(
                bridged,
                grpc.secure_channel(a, creds, options=grpc_options()).unary_unary(BACKEND_METHOD),
            )
            for a in backends
        ]
    else:
        sends = [
            functools.partial(
                grpc.aio.secure_channel(a, creds, options=grpc_options()).unary_unary(
                    BACKEND_METHOD
                ),
                timeout=10,
            )
            for a in backends
        ]

    async def call(request: bytes, context: Any) -> bytes:
        return b"".join(await asyncio.gather(*(send(request) for send in sends)))

    server = grpc.aio.server(options=grpc_options())
    server.add_generic_rpc_handlers((_bytes_handler(FRONT_METHOD, call),))
    port = server.add_secure_port(
        "127.0.0.1:0", server_credentials(files, require_client_cert=False)
    )
    await server.start()
    announce_ready(port=port)
    await server.wait_for_termination()


class Layout:
    """A front and its backends in their own processes, on loopback."""

    def __init__(
        self,
        pki: Path,
        shape: Shape = SHAPES["search"],
        workers: int = 16,
        backend_server: str = "sync",
        front: str = "aio",
    ) -> None:
        """`pki`: a `cli.pki.LocalPki` directory (certificates of both roles)."""
        self.pki = pki
        self.shape = shape
        self.procs: dict[str, subprocess.Popen[str]] = {}
        ports = [
            self._start(
                f"backend-{i}",
                "backend",
                f"--workers={workers}",
                f"--shape={shape.name}",
                f"--backend-server={backend_server}",
            )
            for i in range(shape.backends)
        ]
        port = self._start(
            "front",
            "front",
            "--backends=" + ",".join(f"127.0.0.1:{p}" for p in ports),
            f"--front={front}",
        )
        self.address = f"localhost:{port}"

    def _start(self, name: str, role: str, *args: str) -> int:
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.grpc_floor",
            f"--role={role}",
            f"--pki={self.pki}",
            *args,
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        self.procs[name] = proc
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            self.stop()
            raise RuntimeError(f"{name} exited before it was ready (exit code {proc.wait()})")
        return int(json.loads(line)["port"])

    @property
    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.procs.items()}

    def stop(self) -> None:
        for p in self.procs.values():
            p.terminate()
        for p in self.procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if p.stdout is not None:
                p.stdout.close()


async def _load(layout: Layout, batch: int, in_flight: int, seconds: float) -> dict[str, Any]:
    address, pki, pids, shape = layout.address, layout.pki, layout.pids, layout.shape
    creds = grpc.ssl_channel_credentials((pki / "ca.pem").read_bytes())
    async with grpc.aio.secure_channel(address, creds, options=grpc_options()) as channel:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(FRONT_METHOD)
        request = bytes(shape.request_bytes * batch)
        expected = shape.backends * shape.answer_bytes * batch
        for _ in range(20):  # connections, TLS sessions, the servers' threads
            await call(request, timeout=10)
        unloaded = []
        for _ in range(200):
            t = time.perf_counter()
            await call(request, timeout=10)
            unloaded.append((time.perf_counter() - t) * 1e3)
        done = 0
        stop_at = 0.0

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop_at:
                answer = await call(request, timeout=10)
                if len(answer) != expected:
                    raise RuntimeError(f"{len(answer)} bytes answered; expected {expected}")
                done += 1

        meter = CpuMeter(pids).start()
        start = time.perf_counter()
        stop_at = start + seconds
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        wall = time.perf_counter() - start
        used = meter.stop()
    queries = done * batch
    cpu = {name: (s or 0.0) * 1e3 / queries for name, s in used.items()}
    server = sum(v for name, v in cpu.items() if name != "client")
    return {
        "batch": batch,
        "in_flight": in_flight,
        "calls": done,
        "qps": queries / wall,
        "cpu_ms_per_query": cpu,
        "server_cpu_ms_per_query": server,
        "context_switches_per_call": {name: (n or 0) / done for name, n in meter.switches.items()},
        "unloaded_p50_ms": statistics.median(unloaded),
        "unloaded_p95_ms": float(np.percentile(unloaded, 95)),
    }


def run(
    batches: Sequence[int],
    in_flight: int,
    seconds: float,
    shape: Shape = SHAPES["search"],
    backend_server: str = "sync",
    front: str = "aio",
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="vecshard-floor-") as tmp:
        pki = LocalPki.ensure(Path(tmp) / "pki").root
        layout = Layout(pki, shape, backend_server=backend_server, front=front)
        try:
            points = [asyncio.run(_load(layout, b, in_flight, seconds)) for b in batches]
        finally:
            layout.stop()
    return {
        "shape": dataclasses.asdict(shape),
        "backend_server": backend_server,
        "front": front,
        "in_flight": in_flight,
        "seconds": seconds,
        "points": points,
    }


def report(result: dict[str, Any]) -> str:
    shape = result["shape"]
    backends = [f"backend-{i}" for i in range(shape["backends"])]
    lines = [
        f"{shape['name']}: front ({result.get('front', 'aio')}) + {len(backends)} backends "
        f"({result.get('backend_server', 'sync')}), mutual TLS, "
        f"no work; {shape['request_bytes']:,} B in and {shape['answer_bytes']:,} B out of each "
        f"backend per query; {result['in_flight']} calls in flight",
        " batch       QPS  server CPU ms/query  front  "
        + "  ".join(f"{b:>9}" for b in backends)
        + "  client  switches/call front · backends  unloaded p50 / p95 ms",
    ]
    for p in result["points"]:
        c, s = p["cpu_ms_per_query"], p["context_switches_per_call"]
        lines.append(
            f"{p['batch']:>6} {p['qps']:>9,.0f} {p['server_cpu_ms_per_query']:>20.3f}"
            f" {c['front']:>6.3f}  "
            + "  ".join(f"{c[b]:>9.3f}" for b in backends)
            + f" {c['client']:>7.3f}  {s['front']:>13.1f} · "
            + " + ".join(f"{s[b]:.1f}" for b in backends)
            + f"  {p['unloaded_p50_ms']:>10.2f} / {p['unloaded_p95_ms']:.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.grpc_floor",
        description=(
            "Server CPU per query and unloaded latency of vecshard's process layout "
            "(a grpc.aio front calling sync gRPC backends at once, mutual TLS) with no "
            "work in it: the floor under `vecshard bench search` (--shape search) and "
            "`benchmarks.features_bench` (--shape features)."
        ),
    )
    p.add_argument("--batches", default="1,16", help="queries per call, comma-separated")
    p.add_argument("--in-flight", type=int, default=16, help="calls in flight (default 16)")
    p.add_argument("--seconds", type=float, default=5.0, help="per batch size (default 5)")
    p.add_argument(
        "--shape",
        choices=sorted(SHAPES),
        default="search",
        help="message sizes and backends: a search (2 shards) or an 800-item GetFeatures "
        "(3 shards); default search",
    )
    p.add_argument(
        "--backend-server",
        choices=BACKEND_SERVERS,
        default="sync",
        help="how the backends serve: sync (the shards' server: a thread pool; default), aio "
        "(grpc.aio answering on its event loop) or aio-pool (grpc.aio handing the sync "
        "handler to a thread pool)",
    )
    p.add_argument(
        "--front",
        choices=FRONTS,
        default="aio",
        help="how the front serves and calls the backends: aio (the coordinator's kind: "
        "grpc.aio both ways; default), aio-sync-client (grpc.aio serving, backends called "
        "through sync-channel futures bridged to the event loop) or sync (a sync server "
        "whose handler threads call sync-channel futures)",
    )
    p.add_argument("--out", help="also write the figures as JSON here")
    p.add_argument(
        "--role", choices=["bench", "front", "backend"], default="bench", help=argparse.SUPPRESS
    )
    p.add_argument("--pki", help=argparse.SUPPRESS)
    p.add_argument("--backends", help=argparse.SUPPRESS)
    p.add_argument("--workers", type=int, default=16, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.role == "backend":
        serve_backend(Path(args.pki), args.workers, SHAPES[args.shape], args.backend_server)
        return 0
    if args.role == "front":
        if args.front == "sync":
            _serve_sync_front(Path(args.pki), args.backends.split(","))
        else:
            asyncio.run(_serve_front(Path(args.pki), args.backends.split(","), args.front))
        return 0
    batches = [int(b) for b in args.batches.split(",")]
    if not batches or min(batches) < 1 or args.in_flight < 1 or args.seconds <= 0:
        p.error("--batches must be positive integers, --in-flight ≥ 1 and --seconds > 0")
    result = run(
        batches, args.in_flight, args.seconds, SHAPES[args.shape], args.backend_server, args.front
    )
    result["load_average"] = list(os.getloadavg())
    print(report(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
