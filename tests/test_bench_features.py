"""The features benchmark end to end on a tiny data set (real processes, TLS
and tokens): both sides are measured and the loading rates are reported."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from benchmarks import features_bench
from tests import fake_perf

pytestmark = pytest.mark.integration


def test_the_features_benchmark_measures_both_sides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "features.json"
    env = {k: v for k, v in os.environ.items() if k.startswith("VECSHARD")}
    # Profiled through the stand-in perf: the recorders' wiring, not perf itself.
    monkeypatch.setenv("PATH", f"{fake_perf.install(tmp_path / 'bin')}:{os.environ['PATH']}")
    argv = ["--entities", "2000", "--requests", "20", "--users", "50", "--profiler", "perf"]
    argv += ["--profile-dir", str(tmp_path / "profiles")]
    assert features_bench.main([*argv, "--materialize-rows", "1000", "--out", str(out)]) == 0
    # Its cluster's credentials went to its clients, not into this process's
    # environment (the suite's other clients read theirs from there).
    assert {k: v for k, v in os.environ.items() if k.startswith("VECSHARD")} == env
    report = json.loads(out.read_text())
    load = report["load"]
    assert load["put_features_rows"] > 2000 and load["materialize_rows"] == 1000
    assert load["put_features_rows_per_s"] > 0 and load["materialize_rows_per_s"] > 0
    for call in ("get_features_800x2+1", "batch_get_embeddings_100"):
        r = report[call]
        assert r["cluster"]["p50"] > 0 and r["in_process"]["p50"] > 0, call
        assert r["p95_ratio"] > 0 and r["cluster_cpu_ms_per_request"]["coordinator"] > 0, call
        # Every server process was recorded while this kind ran, and read back.
        assert set(r["profile"]) == {"coordinator", "shard-0", "shard-1", "shard-2"}, call
        assert all(p["groups_pct"]["python interpreter"] == 40.0 for p in r["profile"].values())
    # Whether rows were read from memory is in the report: every shard and the
    # in-process baseline copied the item and user groups (2,000 items ×
    # 2 groups + 50 users: well within the default budget).
    caches = report["feature_cache"]
    assert set(caches) == {"shard-0", "shard-1", "shard-2", "in_process"}
    for name, cache in caches.items():
        assert cache["bytes"] > 0 and cache["over_budget"] == 0, name
        assert cache["in_memory"] >= 2, name  # item_stats, item_meta (+ user_profile)
    assert sum(c["bytes"] for n, c in caches.items() if n != "in_process") >= (
        caches["in_process"]["bytes"] * 0.9
    )
