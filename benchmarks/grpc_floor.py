"""The floor under a search through vecshard's process layout: `python -m benchmarks.grpc_floor`.

A search crosses a client → coordinator hop and a coordinator → shard hop to each of two
shards, in Python gRPC with mutual TLS between the servers. This builds that layout with
nothing else in it: a *front* process (a ``grpc.aio`` server, as the coordinator) answers
each call by calling two *backend* processes (sync gRPC servers with a thread pool, as the
shards) at once and joining their bytes — no protobuf, no search, no routing, no access
checks, no Python object per hit. Requests and answers are sized like a search's (a
128-d float32 query in, ten hits out per query), and a call carries ``--batch`` queries
as ``SearchBatch`` does.

Its server CPU per query (front + backends, from ``/proc``) is what the layout costs before
vecshard does any work, so it bounds from below what ``vecshard bench search`` can reach
with these processes and this language (issue 12: ≤ 1.0 ms per query with one query per
call, ≤ 0.4 ms with SearchBatch×16; unloaded p50 ≤ 1.5 ms). The same split as the search
benchmark's: QPS at ``--in-flight`` calls in flight, CPU per query per process, thread
switches per call, and the unloaded p50 (one call at a time).

    python -m benchmarks.grpc_floor [--batches 1,16] [--in-flight 16] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from benchmarks.process_cpu import CpuMeter
from cli.pki import LocalPki
from core.identity import ComponentRole
from core.runtime import announce_ready, grpc_options
from core.tls import server_credentials

FRONT_METHOD = "/vecshard.floor.Front/Call"
BACKEND_METHOD = "/vecshard.floor.Backend/Call"
QUERY_BYTES = 128 * 4  # one 128-d float32 query
# Ten hits of one query on the packed internal wire: float32 score, write
# sequence and an index into a key table, plus the keys (~8 bytes each).
HITS_BYTES = 10 * (4 + 8 + 4 + 8)


def _bytes_handler(method: str, behavior: Any) -> grpc.GenericRpcHandler:
    """A generic unary handler on raw bytes (no (de)serializer: no protobuf)."""
    service, name = method.lstrip("/").split("/")
    return grpc.method_handlers_generic_handler(
        service, {name: grpc.unary_unary_rpc_method_handler(behavior)}
    )


def _queries(request: bytes) -> int:
    return max(1, len(request) // QUERY_BYTES)


def serve_backend(pki: Path, workers: int) -> None:
    """A shard's shape: a sync server, a thread pool, mutual TLS."""
    files = LocalPki(pki).component(ComponentRole.SHARD)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=grpc_options())
    answer = bytes(HITS_BYTES)
    server.add_generic_rpc_handlers(
        (_bytes_handler(BACKEND_METHOD, lambda req, ctx: answer * _queries(req)),)
    )
    port = server.add_secure_port(
        "127.0.0.1:0", server_credentials(files, require_client_cert=True)
    )
    server.start()
    announce_ready(port=port)
    server.wait_for_termination()


async def _serve_front(pki: Path, backends: Sequence[str]) -> None:
    files = LocalPki(pki).component(ComponentRole.COORDINATOR)
    creds = files.read().channel_credentials()
    calls: list[grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]] = [
        grpc.aio.secure_channel(a, creds, options=grpc_options()).unary_unary(BACKEND_METHOD)
        for a in backends
    ]

    async def call(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        answers = await asyncio.gather(*(c(request, timeout=10) for c in calls))
        return b"".join(answers)

    server = grpc.aio.server(options=grpc_options())
    server.add_generic_rpc_handlers((_bytes_handler(FRONT_METHOD, call),))
    port = server.add_secure_port(
        "127.0.0.1:0", server_credentials(files, require_client_cert=False)
    )
    await server.start()
    announce_ready(port=port)
    await server.wait_for_termination()


class Layout:
    """A front and two backends in their own processes, on loopback."""

    def __init__(self, pki: Path, backends: int = 2, workers: int = 16) -> None:
        """`pki`: a `cli.pki.LocalPki` directory (certificates of both roles)."""
        self.pki = pki
        self.procs: dict[str, subprocess.Popen[str]] = {}
        ports = [
            self._start(f"backend-{i}", "backend", f"--workers={workers}") for i in range(backends)
        ]
        front = self._start(
            "front", "front", "--backends=" + ",".join(f"127.0.0.1:{p}" for p in ports)
        )
        self.address = f"localhost:{front}"

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


async def _load(
    address: str, pki: Path, batch: int, in_flight: int, seconds: float, pids: dict[str, int]
) -> dict[str, Any]:
    creds = grpc.ssl_channel_credentials((pki / "ca.pem").read_bytes())
    async with grpc.aio.secure_channel(address, creds, options=grpc_options()) as channel:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(FRONT_METHOD)
        request = bytes(QUERY_BYTES * batch)
        expected = 2 * HITS_BYTES * batch
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
    }


def run(batches: Sequence[int], in_flight: int, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="vecshard-floor-") as tmp:
        layout = Layout(LocalPki.ensure(Path(tmp) / "pki").root)
        try:
            points = [
                asyncio.run(_load(layout.address, layout.pki, b, in_flight, seconds, layout.pids))
                for b in batches
            ]
        finally:
            layout.stop()
    return {"in_flight": in_flight, "seconds": seconds, "points": points}


def report(result: dict[str, Any]) -> str:
    lines = [
        f"front (grpc.aio) + 2 backends (sync), mutual TLS, no work; {result['in_flight']} calls in flight",
        " batch       QPS  server CPU ms/query  front  backend-0  backend-1  client"
        "  switches/call front·backends  unloaded p50 ms",
    ]
    for p in result["points"]:
        c, s = p["cpu_ms_per_query"], p["context_switches_per_call"]
        lines.append(
            f"{p['batch']:>6} {p['qps']:>9,.0f} {p['server_cpu_ms_per_query']:>20.3f}"
            f" {c['front']:>6.3f} {c['backend-0']:>10.3f} {c['backend-1']:>10.3f} {c['client']:>7.3f}"
            f"  {s['front']:>10.1f} · {s['backend-0']:.1f} + {s['backend-1']:.1f}"
            f" {p['unloaded_p50_ms']:>16.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.grpc_floor",
        description=(
            "Server CPU per query and unloaded latency of vecshard's process layout "
            "(a grpc.aio front calling two sync gRPC backends, mutual TLS) with no work "
            "in it: the floor under `vecshard bench search`."
        ),
    )
    p.add_argument("--batches", default="1,16", help="queries per call, comma-separated")
    p.add_argument("--in-flight", type=int, default=16, help="calls in flight (default 16)")
    p.add_argument("--seconds", type=float, default=5.0, help="per batch size (default 5)")
    p.add_argument("--out", help="also write the figures as JSON here")
    p.add_argument(
        "--role", choices=["bench", "front", "backend"], default="bench", help=argparse.SUPPRESS
    )
    p.add_argument("--pki", help=argparse.SUPPRESS)
    p.add_argument("--backends", help=argparse.SUPPRESS)
    p.add_argument("--workers", type=int, default=16, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.role == "backend":
        serve_backend(Path(args.pki), args.workers)
        return 0
    if args.role == "front":
        asyncio.run(_serve_front(Path(args.pki), args.backends.split(",")))
        return 0
    batches = [int(b) for b in args.batches.split(",")]
    if not batches or min(batches) < 1 or args.in_flight < 1 or args.seconds <= 0:
        p.error("--batches must be positive integers, --in-flight ≥ 1 and --seconds > 0")
    result = run(batches, args.in_flight, args.seconds)
    result["load_average"] = list(os.getloadavg())
    print(report(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
