"""Configuration: defaults → file → environment → flags, and loud failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.config import CoordinatorConfig
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
