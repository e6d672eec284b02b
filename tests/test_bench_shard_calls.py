"""The shard-call benchmark runs end to end on tiny data (a real cluster) and
its fit separates the fixed cost per call from the cost per query."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import shard_calls


def test_fit_recovers_fixed_and_per_query_cost() -> None:
    runs = [{"batch": float(b), "shard_cpu_ms_per_call": 0.7 + 0.1 * b} for b in (1, 2, 4, 16)]
    fit = shard_calls.fixed_and_per_query(runs)
    assert fit is not None
    fixed, per_query = fit
    assert abs(fixed - 0.7) < 1e-9 and abs(per_query - 0.1) < 1e-9
    assert shard_calls.fixed_and_per_query(runs[:1]) is None


def test_shard_calls_reports_each_batch_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "calls.json"
    argv = ["--n", "3000", "--batches", "1,4", "--seconds", "0.5", "--out", str(out)]
    assert shard_calls.main(argv) == 0
    figures = json.loads(out.read_text())
    assert [r["batch"] for r in figures["runs"]] == [1, 4]
    assert all(r["calls"] > 0 and r["shard_cpu_ms_per_call"] > 0 for r in figures["runs"])
    assert "fit:" in capsys.readouterr().out
