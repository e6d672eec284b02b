"""The ingest benchmark end to end on a tiny data set (real processes): it
writes every row through both paths, measures each side, and its JSON holds
what `vecshard capacity` reads — which then plans from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import ingest_bench
from cli.capacity_measurements import load_measurements
from cli.capacity_model import Target, plan

pytestmark = pytest.mark.integration


def test_the_ingest_benchmark_measures_both_sides_and_feeds_capacity(tmp_path: Path) -> None:
    out = tmp_path / "ingest.json"
    argv = ["--n", "3000", "--dims", "8,24", "--queries", "30", "--shards", "2"]
    assert ingest_bench.main([*argv, "--data-dir", str(tmp_path), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [r["dim"] for r in report["runs"]] == [8, 24]
    for r in report["runs"]:
        c = r["cluster"]
        assert r["inprocess"]["rows_per_s"] > 0 and r["inprocess"]["build_rows_per_s"] > 0
        assert c["columns"]["rows_per_s"] > 0 and c["records"]["rows_per_s"] > 0
        assert sum(b["rows"] for b in c["build"].values()) == 3000
        assert 0.9 <= c["search"]["recall_at_10"] <= 1.0
        for m in c["memory"].values():
            assert m["empty"]["rss"] > 0 and m["describe"]["bytes_per_vector"] > 8 * 4
            assert m["after_flush"]["rss"] > 0
    p = plan(load_measurements(out, None, 0.9), Target(vectors=1e6, dim=16, qps=100, recall=0.9))
    assert p.shards >= 1 and p.total_cores > 0 and p.total_memory_bytes > 1e6 * 16 * 4
