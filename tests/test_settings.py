"""Configuration: defaults → file → environment → flags, and loud failures."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from coordinator.config import CoordinatorConfig
from core.runtime import freeze_startup_heap
from core.settings import ConfigError, load_settings
from shard_server.config import ShardConfig


def test_sources_apply_in_order(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[shard]\nshard_id = "from-file"\nlease_ttl = 7\nmax_workers = 3\n')
    env = {"VECSHARD__SHARD__LEASE_TTL": "9", "VECSHARD__SHARD__DATA_DIR": "/env"}
    cfg = load_settings(
        ShardConfig, "shard", file=f, env=env, overrides={"max_workers": 5, "etcd": None}
    )
    assert (cfg.shard_id, cfg.lease_ttl, cfg.max_workers, cfg.data_dir) == (
        "from-file",
        9,
        5,
        Path("/env"),
    )
    assert cfg.etcd == "127.0.0.1:2379"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VECSHARD__COORDINATOR__DEFAULT_TIMEOUT": "soon"}, "not a valid float"),
        ({"VECSHARD__COORDINATOR__DEFAULT_TIMEOUT": "-1"}, "must be > 0"),
        ({"VECSHARD__COORDINATOR__TIMEOUTT": "1"}, "unknown setting"),
        ({"VECSHARD__COORDINATOR__METRICS_PORT": "1.5"}, "not a valid int"),
        ({"VECSHARD__COORDINATOR__GC_YOUNG_THRESHOLD": "0"}, "collection stays on"),
        ({"VECSHARD__COORDINATOR__SUMMARY_LEASE_SECONDS": "3600"}, "summary_lease_seconds 3600"),
    ],
)
def test_invalid_values_fail_at_start_naming_the_source(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(CoordinatorConfig, "coordinator", env=env)


def test_unknown_file_key_and_missing_required(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("[shard]\nshard_idd = 'x'\n")
    with pytest.raises(ConfigError, match="unknown keys"):
        load_settings(ShardConfig, "shard", file=f, env={})
    with pytest.raises(ConfigError, match="shard_id"):
        load_settings(ShardConfig, "shard", env={}, overrides={"data_dir": "/x"})


def test_engine_settings_come_from_config_and_bad_ones_stop_start_up(tmp_path: Path) -> None:
    base = {"shard_id": "s0", "data_dir": str(tmp_path)}
    cfg = load_settings(
        ShardConfig,
        "shard",
        env={
            "VECSHARD__SHARD__SEAL_ROWS": "123",
            "VECSHARD__SHARD__EXACT_BELOW_SELECTIVITY": "0.1",
            "VECSHARD__SHARD__ROCKSDB_BLOCK_CACHE_MIB": "8",
            "VECSHARD__SHARD__FEATURE_CACHE_MIB": "0",
            "VECSHARD__SHARD__FEATURE_CACHE_IDLE_SECONDS": "30",
            "VECSHARD__SHARD__ANTI_ENTROPY_INTERVAL_SECONDS": "0",
        },
        overrides=base,
    )
    policy = cfg.lifecycle_policy()
    assert (policy.seal_rows, policy.planner.exact_below_selectivity) == (123, 0.1)
    memory = cfg.store_memory()
    assert (memory.block_cache_bytes, memory.feature_cache_bytes) == (8 << 20, 0)
    assert memory.feature_cache_idle_seconds == 30
    assert (cfg.anti_entropy_interval_seconds, cfg.expiry_interval_seconds) == (0, 600)
    for key, value, message in (
        ("SEAL_ROWS", "0", "seal_rows"),
        ("COMPACT_MIN_SEGMENTS", "1", "min_segments"),
        ("EXACT_BELOW_SELECTIVITY", "2", "exact_below_selectivity"),
        ("BUILD_THREADS", "0", "build_threads"),
        ("ROCKSDB_MEMTABLE_MIB", "0", "RocksDB memory bounds"),
        ("FEATURE_CACHE_MIB", "-1", "feature_cache_bytes"),
        ("FEATURE_CACHE_IDLE_SECONDS", "0", "feature_cache_idle_seconds"),
        ("ANTI_ENTROPY_INTERVAL_SECONDS", "-1", "anti_entropy_interval_seconds -1.0 must be ≥ 0"),
        ("EXPIRY_INTERVAL_SECONDS", "-5", "expiry_interval_seconds"),
    ):
        with pytest.raises(ConfigError, match=message):
            load_settings(
                ShardConfig, "shard", env={f"VECSHARD__SHARD__{key}": value}, overrides=base
            )


def test_the_young_generation_threshold_comes_from_the_settings() -> None:
    cfg = load_settings(
        CoordinatorConfig, "coordinator", env={"VECSHARD__COORDINATOR__GC_YOUNG_THRESHOLD": "1234"}
    )
    assert cfg.gc_young_threshold == 1234
    assert load_settings(CoordinatorConfig, "coordinator", env={}).gc_young_threshold == 50_000


def test_freezing_the_heap_sets_only_the_young_threshold() -> None:
    before = gc.get_threshold()
    try:
        freeze_startup_heap(4321)
        assert gc.get_threshold() == (4321, *before[1:])
        assert gc.get_freeze_count() > 0  # the startup heap left the collector's reach
        with pytest.raises(ValueError, match="must be ≥ 1"):
            freeze_startup_heap(0)
        gc.set_threshold(*before)
        freeze_startup_heap()  # no threshold: CPython's stays
        assert gc.get_threshold() == before
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
