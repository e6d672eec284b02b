"""`vecshard capacity` on fabricated measurement files: every figure of the
plan follows from the measurements by the model's stated arithmetic, and a
missing or unusable measurement is a clear error, not a guess."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from cli.capacity_measurements import MeasurementError, load_measurements
from cli.capacity_model import GIB, MIB, Target, plan
from cli.main import main

N = 100_000


def ingest_doc(
    dims: dict[int, float],
    search_ms: dict[int, float] | None = None,
    recall: float = 0.97,
) -> dict[str, Any]:
    """An ingest benchmark result: 2 shards of 50,000 rows; per dimension,
    bytes per vector after the search pass (flush: 100 less)."""
    runs = []
    for dim, bpv in dims.items():
        memory = {
            f"shard-{i}": {
                "rows": N // 2,
                "empty": {"rss": 80 * MIB, "anon": 30 * MIB, "file": 50 * MIB},
                "bytes_per_vector_after_flush": {"rss": bpv - 100},
                "bytes_per_vector_after_search": {"rss": bpv},
                "describe": {"bytes_per_vector": bpv / 2},
            }
            for i in range(2)
        }
        runs.append(
            {
                "dim": dim,
                "n": N,
                "inprocess": {
                    "rows_per_s": 200_000.0,
                    "build_rows_per_s": 2_000.0 * 128 / dim,
                    "search_cpu_ms_per_query": (search_ms or {}).get(dim, 0.1),
                },
                "cluster": {
                    "columns": {
                        "rows_per_s": 100_000.0,
                        "cpu_us_per_row": {
                            "client": 1.0,
                            "coordinator": 3.0,
                            "shard-0": 4.0,
                            "shard-1": 4.0,
                        },
                    },
                    "memory": memory,
                    "search": {
                        "recall_at_10": recall,
                        "params": {"ef_search": 64},
                        "cpu_ms_per_query": {
                            "client": 0.4,
                            "coordinator": 2.0,
                            "shard-0": 1.1,
                            "shard-1": 1.1,
                        },
                    },
                },
            }
        )
    return {
        "benchmark": "ingest",
        "machine": {"cpus_usable": 2, "cpu_model": "test", "load_average_1_5_15": [1.0], "git_commit": "abc", "date_utc": "now"},
        "config": {"kind": "hnsw", "shards": 2},
        "runs": runs,
    }  # fmt: skip


def write(tmp_path: Path, name: str, doc: dict[str, Any]) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def test_every_figure_follows_from_the_measurements(tmp_path: Path) -> None:
    ingest = write(
        tmp_path, "ingest.json", ingest_doc({100: 1000.0, 200: 1400.0}, {100: 0.1, 200: 0.2})
    )
    m = load_measurements(ingest, None, 0.95)
    t = Target(vectors=1e8, dim=300, qps=1000, recall=0.95, replicas=2, shard_memory_gib=16)
    p = plan(m, t)
    bpv = 1800.0  # the line through (100, 1000) and (200, 1400)
    fixed = 80 * MIB + (64 + 32 + 256) * MIB + 20_000 * (4 * 300 + 330)
    per_shard = math.floor((16 * GIB * 0.8 - fixed) / bpv)
    assert p.shards == math.ceil(1e8 / per_shard)
    assert p.vectors_per_shard == pytest.approx(1e8 / p.shards)
    assert p.shard_memory_bytes == pytest.approx(fixed + p.vectors_per_shard * bpv)
    assert p.total_memory_bytes == pytest.approx(p.shard_memory_bytes * p.shards * p.replicas)
    # Shard CPU: overhead (1.1 measured on 50,000 rows a shard − the search, 0.1 in
    # process on N rows at d=100, grown to 50,000 rows by log2) + the search at
    # d=300 (× 0.3 / 0.1 by the line through (100, 0.1), (200, 0.2)) grown by log2.
    overhead = 1.1 - 0.1 * math.log2(N / 2) / math.log2(N)
    shard_ms = overhead + 0.1 * 3 * math.log2(p.vectors_per_shard) / math.log2(N)
    assert p.shard_cores == pytest.approx(p.shards * 1000 * shard_ms / 1e3 / 0.6)
    # Coordinator: all of the measured 2.0 ms counted per shard (one shard count measured).
    assert p.coordinator_cores == pytest.approx(1000 * (2.0 / 2 * p.shards) / 1e3 / 0.6)
    assert p.replicas == max(2, math.ceil(1000 * shard_ms / 1e3 / 0.6 / 16))
    assert any("1,800 B at d=300" in line for line in p.derivation)


def test_the_coordinator_is_fitted_over_shard_counts_from_the_search_benchmark(
    tmp_path: Path,
) -> None:
    ingest = write(tmp_path, "ingest.json", ingest_doc({128: 1200.0, 384: 2300.0}))

    def point(shards: int, coordinator: float, recall: float, value: int) -> dict[str, Any]:
        cpu = {"coordinator": coordinator, **{f"shard-{i}": 1.0 for i in range(shards)}}
        return {
            "system": "cluster", "kind": "hnsw", "shards": shards, "param": "ef_search",
            "value": value, "batch": 1, "recall_at_k": recall, "cpu_ms_per_query_loaded": cpu,
        }  # fmt: skip

    search = {
        "dataset": {"n": 100_000, "dim": 128},
        "settings": {"threads": 2},
        "points": [
            point(1, 1.5, 0.96, 64), point(2, 2.0, 0.97, 64), point(4, 3.0, 0.99, 64),
            point(1, 1.0, 0.90, 16),  # cheaper, but below the recall
            {
                "system": "in-process", "kind": "hnsw", "value": 64, "qps": 10_000.0,
                "cpu_ms_per_query_loaded": {"client": 0.15, "total": 0.15},
            },
        ],
    }  # fmt: skip
    m = load_measurements(ingest, write(tmp_path, "search.json", search), 0.95)
    assert (m.search.shards, m.search.setting) == (1, "ef_search=64")
    assert m.search.coordinator_per_shard_ms == pytest.approx(0.5)  # 1.5, 2.0, 3.0 at 1, 2, 4
    assert m.search.inprocess_search_ms == pytest.approx(0.15)  # measured CPU, not 2 / 10,000 QPS
    p = plan(m, Target(vectors=1e7, dim=128, qps=100, recall=0.95))
    assert p.coordinator_cores == pytest.approx(100 * (1.0 + 0.5 * p.shards) / 1e3 / 0.6)


@pytest.mark.parametrize(
    ("doc", "target_dim", "recall", "message"),
    [
        (ingest_doc({128: 1200.0}), 768, 0.95, "measured at d=128 only"),
        (ingest_doc({128: 1200.0, 384: 2300.0}, recall=0.9), 128, 0.95, "below --recall 0.95"),
        ({"benchmark": "search"}, 128, 0.95, "not an ingest benchmark"),
        (
            {"benchmark": "ingest", "runs": [{"dim": 128}]},
            128,
            0.95,
            "run `python -m benchmarks.ingest_bench` again",
        ),
    ],
)
def test_an_unusable_measurement_is_refused_saying_what_to_run(
    tmp_path: Path, doc: dict[str, Any], target_dim: int, recall: float, message: str
) -> None:
    ingest = write(tmp_path, "ingest.json", doc)
    with pytest.raises(MeasurementError, match=message):
        plan(
            load_measurements(ingest, None, recall),
            Target(vectors=1e9, dim=target_dim, qps=10, recall=recall),
        )


def test_the_command_prints_the_plan_and_its_derivation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ingest = write(tmp_path, "ingest-1.json", ingest_doc({128: 1200.0, 384: 2300.0}))
    argv = ["capacity", "--vectors", "1e9", "--dim", "768", "--qps", "5000", "--recall", "0.95"]
    assert main([*argv, "--replicas", "2", "--ingest", str(ingest)]) == 0
    out = capsys.readouterr().out
    for expected in ("shards", "replicas", "cores needed", "memory", "derivation:", str(ingest)):
        assert expected in out
    assert main([*argv, "--ingest", str(tmp_path / "missing.json")]) == 2
    assert "python -m benchmarks.ingest_bench" in capsys.readouterr().err


def test_the_feature_cache_flag_reaches_the_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A shard started with another `feature_cache_mib` (0 where it serves no
    features) is planned with it: the command always counted 256 MiB."""
    ingest = write(tmp_path, "ingest-1.json", ingest_doc({128: 1200.0, 384: 2300.0}))
    argv = ["capacity", "--vectors", "1e8", "--dim", "768", "--qps", "50", "--ingest", str(ingest)]
    assert main(argv) == 0
    default = capsys.readouterr().out
    assert main([*argv, "--feature-cache-mib", "0"]) == 0
    none = capsys.readouterr().out
    assert "feature cache 256 MiB" in default and "feature cache 0 MiB" in none
    assert main([*argv, "--feature-cache-mib", "-1"]) == 2


def test_the_measured_point_plans_to_its_measured_shard_cpu(tmp_path: Path) -> None:
    """The search benchmark's point for --recall 0.99 (ef_search=256: 2.5 ms of
    shard CPU, 2.0 ms of it the search in process) planned as measured: 1
    shard of 100,000 rows at d=128. The overhead was taken against the search
    benchmark's in-process search (2.0) and the ingest benchmark's (0.1, at
    its own ef_search) added back: 0.6 ms, a quarter of the CPU measured."""
    ingest = write(
        tmp_path, "ingest.json", ingest_doc({128: 1200.0, 384: 2300.0}, {128: 0.1, 384: 0.3})
    )
    search = {
        "dataset": {"n": N, "dim": 128},
        "settings": {"threads": 1},
        "points": [
            {
                "system": "cluster", "kind": "hnsw", "shards": 1, "param": "ef_search",
                "value": 256, "batch": 1, "recall_at_k": 0.99,
                "cpu_ms_per_query_loaded": {"coordinator": 1.0, "shard-0": 2.5},
            },
            {"system": "in-process", "kind": "hnsw", "value": 256, "qps": 500.0},  # 2.0 ms
        ],
    }  # fmt: skip
    m = load_measurements(ingest, write(tmp_path, "search.json", search), 0.99)
    at_point = plan(m, Target(vectors=N, dim=128, qps=1000, recall=0.99))
    assert at_point.shards == 1
    assert at_point.shard_cores == pytest.approx(1000 * 2.5 / 1e3 / 0.6)
    # At d=384 the search costs 0.3 / 0.1 times as much (the ingest benchmark's
    # two dimensions, one setting); the 0.5 ms overhead stays.
    at_384 = plan(m, Target(vectors=N, dim=384, qps=1000, recall=0.99, shard_memory_gib=256))
    assert at_384.shards == 1
    assert at_384.shard_cores == pytest.approx(1000 * (0.5 + 2.0 * 3) / 1e3 / 0.6)


def test_the_inprocess_search_cost_is_its_measured_cpu_not_wall_time(tmp_path: Path) -> None:
    """2 threads at 2,000 QPS are 1.0 ms of wall time per query per thread, but
    the benchmark measured 0.2 ms of CPU (threads waiting for a core): the
    wall-time proxy left no serving overhead (0.5 − 1.0 < 0), and the measured
    point planned to 1.0 ms of shard CPU instead of its measured 0.5."""
    ingest = write(
        tmp_path, "ingest.json", ingest_doc({128: 1200.0, 384: 2300.0}, {128: 0.1, 384: 0.3})
    )
    cluster = {
        "system": "cluster", "kind": "hnsw", "shards": 1, "param": "ef_search", "value": 64,
        "batch": 1, "recall_at_k": 0.97,
        "cpu_ms_per_query_loaded": {"client": 0.5, "coordinator": 1.0, "shard-0": 0.5},
    }  # fmt: skip
    inproc = {"system": "in-process", "kind": "hnsw", "value": 64, "qps": 2000.0}
    search = {
        "dataset": {"n": N, "dim": 128},
        "settings": {"threads": 2},
        "points": [cluster, {**inproc, "cpu_ms_per_query_loaded": {"client": 0.2, "total": 0.2}}],
    }
    m = load_measurements(ingest, write(tmp_path, "search.json", search), 0.95)
    assert m.search.inprocess_search_ms == pytest.approx(0.2)
    p = plan(m, Target(vectors=N, dim=128, qps=1000, recall=0.95))
    assert p.shards == 1
    assert p.shard_cores == pytest.approx(1000 * 0.5 / 1e3 / 0.6)
    assert any("0.200 ms in process at ef_search=64 (measured CPU)" in x for x in p.derivation)
    # A point from an older benchmark, without CPU: wall time, and the plan says so.
    search["points"] = [cluster, inproc]
    m = load_measurements(ingest, write(tmp_path, "old.json", search), 0.95)
    assert m.search.inprocess_search_ms == pytest.approx(1.0)
    p = plan(m, Target(vectors=N, dim=128, qps=1000, recall=0.95))
    assert any("wall time, 2 thread(s) / 2,000 QPS" in x for x in p.derivation)


def _replicated_run(shards: int, replicas: int, shard_ms: float) -> dict[str, Any]:
    return {
        "dataset": {"n": N, "dim": 128},
        "settings": {"threads": 1},
        "clusters": [{"shards": shards, "replicas": replicas}],
        "points": [
            {
                "system": "cluster", "kind": "hnsw", "shards": shards, "param": "ef_search",
                "value": 64, "batch": 1, "recall_at_k": 0.97,
                "cpu_ms_per_query_loaded": {
                    "coordinator": 1.0, **{f"shard-{i}": shard_ms for i in range(shards)}
                },
            },
        ],
    }  # fmt: skip


def test_a_replicated_search_point_is_read_as_the_shards_a_query_reached(tmp_path: Path) -> None:
    """2 shards x 2 replicas: each shard holds all N rows and a query reaches
    one of them (0.4 ms on each shard per query, averaged over every query, is
    0.8 ms on the one reached). It was read as 2 shards of N/2 rows each
    reached by every query at 0.4 ms, and the coordinator's cost split over 2."""
    ingest = write(tmp_path, "ingest.json", ingest_doc({128: 1200.0, 384: 2300.0}))
    m = load_measurements(ingest, write(tmp_path, "s.json", _replicated_run(2, 2, 0.4)), 0.95)
    assert m.search.rows_per_shard == N, "each of 2 shards x 2 replicas holds every row"
    assert (m.search.shards, m.search.shard_ms) == (1, pytest.approx(0.8))
    assert m.search.coordinator_per_shard_ms == pytest.approx(1.0)
    assert "a query reached one" in m.search.source
    # 4 shards x 2 replicas: how many shards a query reached is not in the file.
    with pytest.raises(MeasurementError, match="4 shards with --replicas 2"):
        load_measurements(ingest, write(tmp_path, "r.json", _replicated_run(4, 2, 0.4)), 0.95)


def test_fixed_memory_is_what_a_default_shard_holds() -> None:
    """The plan counted 96 MiB of RocksDB bounds; a shard started with the
    defaults (as the manifests start it) also keeps up to 256 MiB of feature
    rows in memory, so every shard was planned 256 MiB short. The model keeps
    its own copy of the defaults (capacity needs no server extra): held equal
    to ShardConfig's here."""
    from shard_server.config import ShardConfig

    shard = ShardConfig(shard_id="s", data_dir=Path("/nonexistent"))
    memory = shard.store_memory()
    t = Target(vectors=1, dim=1, qps=1, recall=0.9)
    assert (t.memtable_mib * MIB, t.block_cache_mib * MIB, t.feature_cache_mib * MIB) == (
        memory.memtable_bytes,
        memory.block_cache_bytes,
        memory.feature_cache_bytes,
    )
    assert t.seal_rows == shard.seal_rows


def test_a_shard_too_small_for_one_vector_is_refused(tmp_path: Path) -> None:
    """Memory left after the fixed part but less than one vector: the shard
    count divided by zero (floor(usable / bytes per vector) = 0)."""
    m = load_measurements(
        write(tmp_path, "i.json", ingest_doc({128: 1200.0, 384: 2300.0})), None, 0.9
    )
    fixed = 80 * MIB + (64 + 32 + 256) * MIB + 20_000 * (4 * 128 + 330)
    gib = (fixed + 600) / 0.8 / GIB  # 600 B free, a vector takes 1,200
    with pytest.raises(MeasurementError, match="not one fits"):
        plan(m, Target(vectors=1e6, dim=128, qps=10, recall=0.9, shard_memory_gib=gib))
