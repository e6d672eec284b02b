"""The idle-gap probe measures both round trips at every gap it is given."""

from __future__ import annotations

import json

import pytest

from benchmarks import idle_latency


def test_idle_latency_reports_each_transport_at_each_gap(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert idle_latency.main(["--gaps-ms", "0,2", "--calls", "20"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(report) == {"socket", "grpc_sync"}
    for by_gap in report.values():
        assert set(by_gap) == {"0ms", "2ms"} and all(v > 0 for v in by_gap.values())
