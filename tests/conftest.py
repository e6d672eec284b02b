"""Shared fixtures: one local PKI and one real etcd (mutual TLS) per test
session, a fresh registry prefix per test, and real local clusters (separate
processes, TLS everywhere, token-authenticated coordinators) built on them.

The session's SDK credentials — the CA and the token of every cluster's
bootstrap `admin` — are in the environment (`VECSHARD_CA_FILE`,
`VECSHARD_TOKEN_FILE`), where the SDK and the CLI look by default, so a test
that needs no other identity builds clients as a user with those variables
would. Tests of access control pass explicit credentials of other principals.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.etcd_process import EtcdProcess
from cli.local_cluster import ADMIN, LocalCluster
from cli.pki import LocalPki
from registry.registry import Registry
from registry.store import EtcdStore


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPki]:
    local = LocalPki.ensure(tmp_path_factory.mktemp("pki"))
    saved = {k: os.environ.get(k) for k in ("VECSHARD_CA_FILE", "VECSHARD_TOKEN_FILE")}
    os.environ["VECSHARD_CA_FILE"] = str(local.ca_file)
    os.environ["VECSHARD_TOKEN_FILE"] = str(local.ensure_token(ADMIN))
    yield local
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def etcd(tmp_path_factory: pytest.TempPathFactory, pki: LocalPki) -> Iterator[EtcdProcess]:
    base = tmp_path_factory.mktemp("etcd")
    proc = EtcdProcess(base / "data", base / "etcd.log", pki.etcd)
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
    s = etcd.store()
    yield s
    s.close()


@pytest.fixture
def registry(store: EtcdStore, prefix: str) -> Registry:
    return Registry(store, prefix)


ClusterFactory = Callable[..., LocalCluster]


def _cluster_factory(
    etcd: EtcdProcess, pki: LocalPki, base: Path, started: list[LocalCluster]
) -> ClusterFactory:
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
            pki=pki,
            **kwargs,
        )
        started.append(cluster)
        cluster.start()
        return cluster

    return make


@pytest.fixture
def make_cluster(etcd: EtcdProcess, pki: LocalPki, tmp_path: Path) -> Iterator[ClusterFactory]:
    started: list[LocalCluster] = []
    yield _cluster_factory(etcd, pki, tmp_path, started)
    for c in started:
        c.stop()


@pytest.fixture(scope="module")
def make_module_cluster(
    etcd: EtcdProcess, pki: LocalPki, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ClusterFactory]:
    started: list[LocalCluster] = []
    yield _cluster_factory(etcd, pki, tmp_path_factory.mktemp("cluster"), started)
    for c in started:
        c.stop()
