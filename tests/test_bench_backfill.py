"""The backfill benchmark end to end on a tiny data set (real processes, TLS
and tokens): every row reaches the cluster through the job's packed sink."""

from __future__ import annotations

import json

import pytest

from benchmarks import backfill_bench

pytestmark = pytest.mark.integration


def test_the_backfill_benchmark_writes_every_row(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--n", "3000", "--dim", "8", "--per-file", "1000", "--batch-size", "500"]
    assert backfill_bench.main(argv) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["rows"] == 3000 and not report["rejected"]
    assert report["rows_per_second"] > 0 and report["dim"] == 8
