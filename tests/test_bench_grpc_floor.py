"""The layout-floor benchmark runs end to end (a front — grpc.aio, grpc.aio
calling through sync futures, or sync — and its backends — sync, grpc.aio, or
grpc.aio with a pool — in their own processes, mutual TLS) and accounts every
process's CPU to the queries it answered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import grpc_floor


@pytest.mark.parametrize(
    "shape, backends, server, front",
    [
        ("search", 2, "sync", "aio"),
        ("features", 3, "sync", "aio"),
        ("search", 2, "aio", "aio"),
        ("search", 2, "aio-pool", "aio"),
        ("search", 2, "sync", "aio-sync-client"),
        ("features", 3, "sync", "sync"),
    ],
)
def test_floor_reports_each_batch_size_with_every_process(
    shape: str,
    backends: int,
    server: str,
    front: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "floor.json"
    argv = ["--shape", shape, "--batches", "1,4", "--in-flight", "2", "--seconds", "0.3"]
    argv += ["--backend-server", server, "--front", front, "--out", str(out)]
    assert grpc_floor.main(argv) == 0
    figures = json.loads(out.read_text())
    assert figures["shape"]["name"] == shape and figures["shape"]["backends"] == backends
    assert figures["backend_server"] == server and figures["front"] == front
    points = figures["points"]
    assert [p["batch"] for p in points] == [1, 4]
    servers = ["front", *(f"backend-{i}" for i in range(backends))]
    for p in points:
        cpu = p["cpu_ms_per_query"]
        assert set(cpu) == {"client", *servers}
        # Every server did work for the calls (answers of the wrong size fail the run).
        assert p["calls"] > 0 and min(cpu[s] for s in servers) > 0
        assert p["server_cpu_ms_per_query"] == pytest.approx(sum(cpu[s] for s in servers))
        assert p["qps"] > 0 and 0 < p["unloaded_p50_ms"] <= p["unloaded_p95_ms"]
    printed = capsys.readouterr().out
    assert "unloaded p50 / p95" in printed and f"backends ({server})" in printed
    assert f"front ({front})" in printed


def test_a_backend_that_cannot_start_is_reported(tmp_path: Path) -> None:
    # No certificates: the first backend exits before it is ready, and the
    # run says so instead of waiting for a port.
    with pytest.raises(RuntimeError, match="backend-0 exited before it was ready"):
        grpc_floor.Layout(tmp_path / "no-pki")
