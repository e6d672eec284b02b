"""The search benchmark end to end on a tiny data set (in-process and a real 1-shard
cluster), and the pure pieces it is built from: curve comparison at equal recall, index
parameter parsing, and the max-rate search's stepping and verdicts."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks import search_bench
from benchmarks.closed_loop import Timing, threaded_closed_loop
from benchmarks.datasets import load_real
from benchmarks.ground_truth import recall_at_k, without_self_matches
from benchmarks.index_kinds import configure, default_sweeps
from benchmarks.rate_search import RateSearch, find_max_rate, judge
from benchmarks.recall_curves import CurvePoint, qps_at_recall, ratios_at_equal_recall

# --------------------------------------------------------------------------------------------
# In-process baselines
# --------------------------------------------------------------------------------------------


def test_ivfpq_queries_on_the_benchmark_threads_use_one_openmp_thread() -> None:
    """OpenMP's thread count is per thread: pinned only where the index was built, every
    query on a closed-loop worker thread forked a team of one thread per core (3.3x the
    CPU of a pinned query on 2 cores), understating in-process IVF-PQ QPS."""
    faiss = pytest.importorskip("faiss")
    from benchmarks.inprocess_index import FaissIvfPq

    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs 2+ cores to tell 1 OpenMP thread from the default")
    rng = np.random.default_rng(0)
    base = rng.normal(size=(3000, 16)).astype(np.float32)
    index = FaissIvfPq(base, "l2", {"nlist": 16, "m": 4, "nbits": 4, "train_size": 3000}, 2)
    seen: list[int] = []

    def search(i: int) -> Any:
        ids = index.search(base[i], 10)
        seen.append(faiss.omp_get_max_threads())
        return ids

    threaded_closed_loop(search, 20, 10, 2, Timing(0.05, 0.0))
    assert seen and set(seen) == {1}, f"OpenMP threads per in-process query: {sorted(set(seen))}"


# --------------------------------------------------------------------------------------------
# Recall on queries that are base rows
# --------------------------------------------------------------------------------------------


def test_recall_can_leave_out_a_query_finding_itself() -> None:
    """bigann10k's queries are base rows: each finds itself at distance 0, a hit
    any index scores. Without it, an answer holding itself and 8 of the 9 other
    true neighbours recalls 8/9, not 9/10; a query that is no base row keeps its
    ground truth."""
    dataset = load_real("bigann10k")
    assert dataset.ground_truth is not None
    others = without_self_matches(dataset.base, dataset.queries, dataset.ground_truth)
    assert others is not None
    np.testing.assert_array_equal(others[:, 0], -1)  # every query is its own first neighbour
    np.testing.assert_array_equal(others[:, 1:], dataset.ground_truth[:, 1:])
    found = np.array(dataset.ground_truth[:, :10])
    found[:, 9] = dataset.ground_truth[:, 10]  # the 10th true neighbour missed
    assert recall_at_k(found, dataset.ground_truth, 10) == pytest.approx(0.9)
    assert recall_at_k(found, others, 10) == pytest.approx(8 / 9)
    base = np.eye(4, dtype=np.float32)
    queries = np.array([[1, 0, 0, 0], [0.5, 0.5, 0, 0]], dtype=np.float32)
    truth = np.array([[0, 1], [0, 1]])
    assert without_self_matches(base, queries[1:], truth[1:]) is None
    np.testing.assert_array_equal(without_self_matches(base, queries, truth), [[-1, 1], [0, 1]])


# --------------------------------------------------------------------------------------------
# Curves
# --------------------------------------------------------------------------------------------

CURVE = [
    CurvePoint(0.80, 9000, "ef=16"),
    CurvePoint(0.95, 5000, "ef=64"),
    CurvePoint(0.99, 2000, "ef=128"),
]


def test_qps_at_recall_is_the_fastest_point_at_or_above_it() -> None:
    assert qps_at_recall(CURVE, 0.90) == CURVE[1]
    assert qps_at_recall(CURVE, 0.95) == CURVE[1]
    assert qps_at_recall(CURVE, 0.9505) == CURVE[1]  # within the measurement tolerance
    assert qps_at_recall(CURVE, 0.97) == CURVE[2]
    assert qps_at_recall(CURVE, 0.999) is None


def test_ratio_compares_at_equal_recall_not_equal_parameters() -> None:
    # A sharded index at ef=64 recalls more than in-process at ef=64: it is compared with
    # the in-process point that reaches at least the same recall.
    (ratio,) = ratios_at_equal_recall([CurvePoint(0.985, 1000, "ef=64")], CURVE)
    assert ratio.inprocess == CURVE[2] and ratio.ratio == pytest.approx(0.5)
    (none,) = ratios_at_equal_recall([CurvePoint(1.0, 10, "")], CURVE)
    assert none.ratio is None


# --------------------------------------------------------------------------------------------
# Index parameters
# --------------------------------------------------------------------------------------------


def test_defaults_scale_with_the_data_and_overrides_apply() -> None:
    sweeps = default_sweeps(100_000, 128)
    assert sweeps["ivfpq"].params["nlist"] == 256 and sweeps["ivfpq"].params["m"] == 32
    assert 784 % default_sweeps(1000, 784)["ivfpq"].params["m"] == 0
    assert (
        max(default_sweeps(2000, 16)["ivfpq"].values)
        <= default_sweeps(2000, 16)["ivfpq"].params["nlist"]
    )
    tuned = configure(sweeps, ["hnsw.M=32", "ivfpq.refine_factor=4"], ["hnsw.ef_search=8,16"])
    assert tuned["hnsw"].params["M"] == 32 and tuned["ivfpq"].params["refine_factor"] == 4
    assert [v for v, _ in tuned["hnsw"].points()] == [8, 16]
    assert tuned["hnsw"].points()[1][1] == {"M": 32, "ef_construction": 100, "ef_search": 16}
    assert tuned["hnsw"].index_name(16) == "hnsw_ef_search16"
    assert sweeps["flat"].points() == [(None, {})]


@pytest.mark.parametrize(
    ("params", "sweeps_", "message"),
    [
        (["hnsw.M"], [], "KIND.NAME=VALUE"),
        (["annoy.trees=4"], [], "unknown index kind"),
        ([], ["hnsw.ef_search=a,b"], "integers"),
        ([], ["hnsw.ef_search=0"], ">= 1"),
    ],
)
def test_bad_parameters_are_refused(params: list[str], sweeps_: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        configure(default_sweeps(1000, 16), params, sweeps_)


# --------------------------------------------------------------------------------------------
# Highest sustainable rate
# --------------------------------------------------------------------------------------------


def step_summary(
    rate: float, p99_ms: float, errors: int = 0, send_share: float = 1.0
) -> dict[str, Any]:
    return {
        "target_rate": rate,
        "scheduled_rate": rate,
        "send_rate": rate * send_share,
        "ok_rate": rate,
        "errors": errors,
        "errors_by_code": {"UNAVAILABLE": errors} if errors else {},
        "partial": 0,
        "latency": {"p50_ms": p99_ms / 3, "p99_ms": p99_ms},
        "send_lag": {"p99_ms": 0.5},
    }


def test_max_rate_steps_up_then_bisects_to_the_knee() -> None:
    knee = 730.0  # a server model: fine below the knee, queueing above it

    async def step(rate: float) -> dict[str, Any]:
        return step_summary(rate, 2.0 if rate <= knee else 80.0)

    found = asyncio.run(
        find_max_rate(step, RateSearch(bound_ms=5, start_rate=100, factor=1.5, refine=3))
    )
    rates = [s["rate"] for s in found["steps"]]
    assert rates[:6] == pytest.approx([100, 150, 225, 337.5, 506.25, 759.375])
    assert len(rates) == 9  # six steps up, three bisections
    assert 690 < found["max_sustainable_rate"] <= knee < found["first_failing_rate"]
    assert "p99 80.00 ms > 5 ms" in found["limited_by"]


def test_a_failing_start_rate_steps_down() -> None:
    async def step(rate: float) -> dict[str, Any]:
        return step_summary(rate, 1.0, errors=0 if rate < 50 else 3)

    found = asyncio.run(
        find_max_rate(step, RateSearch(bound_ms=5, start_rate=100, factor=2, refine=0))
    )
    assert found["max_sustainable_rate"] == 25 and found["first_failing_rate"] == 50
    assert "3 errors" in found["limited_by"]


def test_a_saturated_generator_is_not_reported_as_a_server_limit() -> None:
    verdict = judge(step_summary(5000, 1.0, send_share=0.8), bound_ms=5)
    assert not verdict["sustainable"] and verdict["generator_limited"]
    assert "load generator" in verdict["reason"]


# --------------------------------------------------------------------------------------------
# End to end
# --------------------------------------------------------------------------------------------


def test_search_bench_end_to_end_on_a_tiny_set(tmp_path: Path) -> None:
    args = search_bench.build_parser().parse_args(
        [
            "search", "--n", "2000", "--dim", "16", "--queries", "40", "--kinds", "flat,hnsw",
            "--sweep", "hnsw.ef_search=8,64", "--param", "hnsw.ef_construction=40",
            "--shards", "1", "--concurrency", "4", "--threads", "2", "--duration", "0.3",
            "--latency-duration", "0.3", "--warmup", "0.1", "--data-dir", str(tmp_path),
            "--out-dir", str(tmp_path / "out"), "--name", "tiny",
        ]
    )  # fmt: skip
    lines: list[str] = []
    payload = search_bench.run(args, lines.append)
    written = json.loads((tmp_path / "out" / "tiny.json").read_text())
    assert written["dataset"] == {
        "name": "gmm-n2000-d16-c8-s1", "n": 2000, "dim": 16, "queries": 40, "metric": "l2", "k": 10,
    }  # fmt: skip
    assert (tmp_path / "out" / "tiny.png").exists() == bool(importlib.util.find_spec("matplotlib"))
    assert written["errors"] == [] and written["machine"]["cpus"] >= 1

    points = {(p["system"], p["kind"], p["value"]): p for p in payload["points"]}
    # Exact search is exact in-process and through the cluster.
    assert points[("in-process", "flat", None)]["recall_at_k"] == 1.0
    assert points[("cluster", "flat", None)]["recall_at_k"] == 1.0
    for p in payload["points"]:
        assert p["qps"] > 0 and p["single"]["completed"] > 0 and p["p99_ms"] >= p["p50_ms"]
    # A larger ef never recalls less in-process.
    assert (
        points[("in-process", "hnsw", 64)]["recall_at_k"]
        >= points[("in-process", "hnsw", 8)]["recall_at_k"]
    )
    (flat,) = [c for c in payload["comparisons"] if c["kind"] == "flat"]
    assert flat["ratio_at_equal_recall"] == pytest.approx(
        flat["cluster_qps"] / points[("in-process", "flat", None)]["qps"]
    )
    assert payload["targets"]["by_kind"]["flat"]["cluster"]["1"]["recall"] == 1.0
    # HNSW through the cluster: measured where the shards serve it, reported where not.
    support = payload["clusters"][0]["support"]["hnsw"]
    served = [p for p in payload["points"] if p["system"] == "cluster" and p["kind"] == "hnsw"]
    assert support["supported"] == bool(served)
    if not support["supported"]:
        assert "hnsw" in support["reason"] and any("hnsw not measured" in line for line in lines)


def _two_flat_shards(tmp_path: Path, *extra: str) -> dict[str, Any]:
    """A run of the benchmark over 1,200 × 8 rows, exact index, 2 shards."""
    args = search_bench.build_parser().parse_args(
        [
            "search", "--n", "1200", "--dim", "8", "--queries", "20", "--kinds", "flat",
            "--shards", "2", "--concurrency", "2", "--threads", "1",
            "--duration", "0.3", "--latency-duration", "0.2", "--warmup", "0.1",
            "--data-dir", str(tmp_path), "--out-dir", str(tmp_path / "out"), *extra,
        ]
    )  # fmt: skip
    return search_bench.run(args, lambda _: None)


def test_search_bench_with_replicas_puts_each_bucket_on_that_many_shards(tmp_path: Path) -> None:
    payload = _two_flat_shards(tmp_path, "--replicas", "2")
    (cluster,) = payload["clusters"]
    assert (cluster["shards"], cluster["replicas"]) == (2, 2)
    assert (cluster["builds"]["flat"]["placement"], cluster["builds"]["flat"]["centroids"]) == (
        "hash",
        0,
    )
    # Every row on both shards (each holds every bucket), and still exact answers.
    for shard in cluster["describe"].values():
        (stats,) = [s for s in shard["indexes"] if s["index"]["name"] == "flat"]
        assert int(stats["live_count"]) == 1200
    (point,) = [p for p in payload["points"] if p["system"] == "cluster"]
    assert point["recall_at_k"] == 1.0 and point["qps"] > 0


def test_replicas_must_be_positive() -> None:
    args = search_bench.build_parser().parse_args(["search", "--replicas", "0"])
    with pytest.raises(SystemExit, match="--replicas must be >= 1"):
        search_bench.check_args(args)


def test_search_bench_with_centroid_placement_stays_exact(tmp_path: Path) -> None:
    payload = _two_flat_shards(tmp_path, "--placement", "centroid")
    assert payload["settings"]["placement"] == "centroid" and payload["errors"] == []
    (cluster,) = payload["clusters"]
    # Trained on the base vectors before the first write: one centroid per bucket.
    assert cluster["builds"]["flat"]["placement"] == "centroid"
    assert cluster["builds"]["flat"]["centroids"] == 16
    # Shards skipped by bound or not, the answers stay exact.
    (point,) = [p for p in payload["points"] if p["system"] == "cluster"]
    assert point["recall_at_k"] == 1.0 and point["qps"] > 0
