"""The features benchmark end to end on a tiny data set (real processes, TLS
and tokens): both sides are measured and the loading rates are reported; and
both sides are warmed up alike, on the same requests."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from benchmarks import features_bench
from benchmarks.features_inprocess import InProcess
from registry.feature_catalog import FeatureCatalog
from tests import fake_perf


def test_both_sides_are_warmed_up_alike_and_time_the_same_requests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cluster made 50 untimed requests of each kind before the timed ones,
    the in-process baseline none: its cold start landed in its p95 and
    flattered p95_ratio. Each side's requests are recorded here, in order."""
    asked: dict[str, list[Any]] = {"cluster": [], "in_process": []}

    def features(side: str, user: str, items: list[str]) -> None:
        asked[side].append(("features", user, tuple(items)))

    def lookups(side: str, ids: list[str]) -> None:
        asked[side].append(("lookups", tuple(ids)))

    class Client:
        def get_features(self, fs: str, v: str, ents: list[tuple[str, str]], **_: Any) -> Any:
            features("cluster", ents[0][1], [e for t, e in ents if t == "item"])
            return SimpleNamespace(missing_by_reason={}, frame=lambda t: range(800))

        def get_embeddings(self, name: str, v: str, ids: list[str]) -> Any:
            lookups("cluster", ids)
            return SimpleNamespace(status=np.ones(len(ids)))

    def inproc_features(self: InProcess, ids: dict[str, list[str]], at: int) -> list[Any]:
        features("in_process", ids["user"][0], ids["item"])
        return []

    def inproc_lookups(self: InProcess, index: Any, ids: list[str], dim: int) -> None:
        lookups("in_process", ids)

    data = features_bench.Data(1000, 10, 0)
    features_bench.measure_cluster(Client(), data, 5, {})  # type: ignore[arg-type]  # a stand-in client
    monkeypatch.setattr(InProcess, "get_features", inproc_features)
    monkeypatch.setattr(InProcess, "get_embeddings", inproc_lookups)
    objs, fs = features_bench._defs()
    features_bench.measure_in_process(tmp_path, FeatureCatalog.build(objs), fs, data, 5)
    # 5 warm-up and 5 timed requests of each kind, the same ones in the same order.
    assert [a[0] for a in asked["cluster"]] == ["features"] * 10 + ["lookups"] * 10
    assert asked["in_process"] == asked["cluster"]


@pytest.mark.integration
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
