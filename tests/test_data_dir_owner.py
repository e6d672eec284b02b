"""A shard refuses another shard's data directory: swapped volumes must not
serve one shard's rows as another's (`shard_server.data_dir_owner`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from client.registry_client import RegistryClient
from client.retrieval_client import Record, RetrievalClient
from core.settings import ConfigError
from shard_server.data_dir_owner import OWNER_FILE, claim_data_dir
from tests.conftest import ClusterFactory
from tests.specs import route_spec

DIM = 8


def test_the_first_start_records_the_owner_and_later_ones_check_it(tmp_path: Path) -> None:
    claim_data_dir(tmp_path / "d", "shard-0", "/p/")
    claim_data_dir(tmp_path / "d", "shard-0", "/p/")  # the same shard again: fine
    with pytest.raises(ConfigError, match=r"belongs to shard 'shard-0'.*not to shard 'shard-1'"):
        claim_data_dir(tmp_path / "d", "shard-1", "/p/")
    with pytest.raises(ConfigError, match=r"registry prefix '/p/'"):
        claim_data_dir(tmp_path / "d", "shard-0", "/other/")


def test_a_data_dir_of_an_earlier_release_is_adopted(tmp_path: Path) -> None:
    (tmp_path / "rocksdb").mkdir()  # data, no owner file: written before it existed
    claim_data_dir(tmp_path, "shard-3", "/p/")
    assert "shard-3" in (tmp_path / OWNER_FILE).read_text()
    with pytest.raises(ConfigError):
        claim_data_dir(tmp_path, "shard-4", "/p/")


@pytest.mark.integration
def test_swapped_data_dirs_are_refused(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster(num_shards=2, num_coordinators=1, lease_ttl=3)
    rng = np.random.default_rng(0)
    with (
        RegistryClient(cluster.coordinator_target) as reg,
        RetrievalClient(cluster.coordinator_target, tenant_id="t", purpose="p") as c,
    ):
        reg.apply(route_spec(dim=DIM, metric="cosine", num_buckets=4, replicas=1))
        c.upsert("v", "v1", [Record(f"e{i}", rng.normal(size=DIM)) for i in range(20)])
    for sid in ("shard-0", "shard-1"):
        cluster.shards[sid].stop()
    a0, a1 = cluster.shards["shard-0"].argv, cluster.shards["shard-1"].argv
    i0, i1 = a0.index("--data-dir") + 1, a1.index("--data-dir") + 1
    a0[i0], a1[i1] = a1[i1], a0[i0]  # the volumes are swapped
    for sid in ("shard-0", "shard-1"):
        shard = cluster.shards[sid]
        shard.start()
        with pytest.raises(RuntimeError, match="exited with code 2"):
            shard.wait_ready(60)
        assert "not to shard" in shard.log_tail(), shard.log_tail()
