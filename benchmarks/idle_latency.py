"""What an idle gap before a call costs: `python -m benchmarks.idle_latency`.

Open-loop traffic (requests arriving on their own schedule) finds gRPC's
threads asleep; a closed loop keeps them hot. This measures one round trip
back to back and after idle gaps, for a raw loopback socket ping-pong (the
machine's own thread wake-up) and for a trivial in-process sync gRPC call
(the health check: no work), so the difference between the search
benchmark's closed-loop p50 and the load test's open-loop p50 can be told
apart from the server's work.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import threading
import time
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc


def _p50_ms(call: Callable[[], object], gap: float, n: int) -> float:
    samples = []
    for _ in range(n):
        if gap:
            time.sleep(gap)
        t = time.perf_counter()
        call()
        samples.append((time.perf_counter() - t) * 1e3)
    return statistics.median(samples)


def _socket_ping() -> tuple[Callable[[], object], Callable[[], None]]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def echo() -> None:
        conn, _ = server.accept()
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while data := conn.recv(64):
                conn.sendall(data)

    echo_thread = threading.Thread(target=echo, daemon=True)
    echo_thread.start()
    client = socket.create_connection(server.getsockname())
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def ping() -> object:
        client.sendall(b"x")
        return client.recv(64)

    def close() -> None:
        client.close()  # the echo loop sees EOF and closes its end
        echo_thread.join(5)
        server.close()

    return ping, close


def _grpc_ping() -> tuple[Callable[[], object], Callable[[], None]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    # grpcio-health-checking ships no stub types.
    stub: Any = health_pb2_grpc.HealthStub(channel)
    request = health_pb2.HealthCheckRequest()

    def close() -> None:
        channel.close()
        server.stop(None)

    return lambda: stub.Check(request, timeout=5), close


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--gaps-ms", default="0,5,20", help="idle gaps before each call (ms)")
    p.add_argument("--calls", type=int, default=300, help="calls per gap")
    args = p.parse_args(argv)
    gaps = [float(g) / 1e3 for g in args.gaps_ms.split(",")]
    out: dict[str, dict[str, float]] = {}
    for name, make in (("socket", _socket_ping), ("grpc_sync", _grpc_ping)):
        call, close = make()
        try:
            for _ in range(50):
                call()
            out[name] = {f"{g * 1e3:g}ms": _p50_ms(call, g, args.calls) for g in gaps}
        finally:
            close()
        row = "  ".join(f"gap {k}: p50 {v:.3f} ms" for k, v in out[name].items())
        print(f"{name:10s} {row}", flush=True)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
