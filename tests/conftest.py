"""Shared fixtures: one real etcd per test session, a fresh registry prefix per
test, and real local clusters (separate processes) built on them."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.etcd_process import EtcdProcess
from cli.local_cluster import LocalCluster
from registry.registry import Registry
from registry.store import EtcdStore


@pytest.fixture(scope="session")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdProcess]:
    base = tmp_path_factory.mktemp("etcd")
    proc = EtcdProcess(base / "data", base / "etcd.log")
    proc.start()
    yield proc
    proc.stop()


def new_prefix() -> str:
    return f"/vecshard-test/{uuid.uuid4().hex[:12]}/"


@pytest.fixture
def prefix() -> str:
    return new_prefix()


@pytest.fixture
def store(etcd: EtcdProcess) -> Iterator[EtcdStore]:
    s = EtcdStore(etcd.endpoint)
    yield s
    s.close()


@pytest.fixture
def registry(store: EtcdStore, prefix: str) -> Registry:
    return Registry(store, prefix)


ClusterFactory = Callable[..., LocalCluster]


def _cluster_factory(etcd: EtcdProcess, base: Path, started: list[LocalCluster]) -> ClusterFactory:
    def make(num_shards: int = 3, num_coordinators: int = 2, **kwargs: Any) -> LocalCluster:
        """A real cluster; two coordinators by default, as production runs
        several: clients given `cluster.coordinator_target` alternate between
        them, so writes, reads and registry changes cross coordinators."""
        cluster = LocalCluster(
            base / uuid.uuid4().hex[:8],
            num_shards=num_shards,
            num_coordinators=num_coordinators,
            etcd_prefix=new_prefix(),
            etcd_endpoint=etcd.endpoint,
            **kwargs,
        )
        started.append(cluster)
        cluster.start()
        return cluster

    return make


@pytest.fixture
def make_cluster(etcd: EtcdProcess, tmp_path: Path) -> Iterator[ClusterFactory]:
    started: list[LocalCluster] = []
    yield _cluster_factory(etcd, tmp_path, started)
    for c in started:
        c.stop()


@pytest.fixture(scope="module")
def make_module_cluster(
    etcd: EtcdProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ClusterFactory]:
    started: list[LocalCluster] = []
    yield _cluster_factory(etcd, tmp_path_factory.mktemp("cluster"), started)
    for c in started:
        c.stop()
