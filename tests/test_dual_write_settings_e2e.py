"""Model-change settings through real processes (etcd, 2 shards, 2
coordinators; found in review): a dual-write the CLI accepted (exit 0) made
every write of the serving version fail, with an error naming neither the
new version nor dual-write: a target index typing an attribute otherwise, a
centroid-placed target index with no trained centroids. And an evaluation
of a ready version, silently not stored."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from cli.local_cluster import LocalCluster
from client.registry_client import RegistryClient
from client.retrieval_client import Record, RetrievalClient
from core.domain import AttrValue
from core.errors import FailedPrecondition, NotFound, VecshardError
from tests.conftest import ClusterFactory
from tests.model_change_support import cli
from tests.polling import poll
from tests.specs import tenant_docs

pytestmark = pytest.mark.integration
DIM = 8


@pytest.fixture(scope="module")
def cluster(make_module_cluster: ClusterFactory) -> Iterator[LocalCluster]:
    c = make_module_cluster(num_shards=2)
    with RegistryClient(c.coordinator_target) as reg:
        reg.apply(tenant_docs())
    yield c


def family_docs(fam: str, v2_index: dict[str, object]) -> list[dict[str, object]]:
    """v1 serving-ready with `cat` a string, v2 building with `v2_index`."""
    index = {"name": f"{fam}_ix", "kind": "flat", "num_buckets": 4}
    return [
        {
            "kind": "EmbeddingFamily",
            "spec": {"name": fam, "entity_type": "item", "dimension": DIM, "metric": "l2"},
        },
        {"kind": "EmbeddingVersion", "spec": {"name": fam, "version": "v1", "status": "ready"}},
        {"kind": "EmbeddingVersion", "spec": {"name": fam, "version": "v2", "status": "building"}},
        {
            "kind": "IndexVersion",
            "spec": {
                **index,
                "version": "v1",
                "embedding": {"name": fam, "version": "v1"},
                "attributes": {"cat": "string"},
                "status": "ready",
            },
        },
        {
            "kind": "IndexVersion",
            "spec": {
                **index,
                "version": "v2",
                "embedding": {"name": fam, "version": "v2"},
                "status": "building",
                **v2_index,
            },
        },
    ]


def write_v1(target: str, fam: str, attributes: dict[str, AttrValue], n: int = 5) -> None:
    vecs = np.random.default_rng(0).normal(size=(n, DIM)).astype(np.float32)
    with RetrievalClient(target, tenant_id="acme", purpose="recommendation") as c:
        c.upsert(fam, "v1", [Record(f"k{i}", v, attributes=attributes) for i, v in enumerate(vecs)])


def writes_fail(cluster: LocalCluster, fam: str) -> str | None:
    """None when v1 writes succeed on every coordinator, else the first error."""
    for address in cluster.coordinator_addresses:
        try:
            write_v1(address, fam, {"cat": "c0"})
        except VecshardError as exc:
            return f"{type(exc).__name__}: {exc}"
    return None


def dual_write(cluster: LocalCluster, fam: str) -> tuple[int, str]:
    out = cli(
        "embeddings", "dual-write", fam, "--from", "v1", "--to", "v2",
        "--coordinator", cluster.coordinator_target,
    )  # fmt: skip
    return out.returncode, out.stderr


def test_dual_write_into_a_version_typing_an_attribute_otherwise_is_refused(
    cluster: LocalCluster,
) -> None:
    fam = "dwa"
    with RegistryClient(cluster.coordinator_target) as reg:
        reg.apply(family_docs(fam, {"attributes": {"cat": "int"}}))
    assert writes_fail(cluster, fam) is None
    code, err = dual_write(cluster, fam)
    assert code != 0 and all(s in err for s in ("'cat'", "dwa_ix@v1", "dwa_ix@v2")), err
    assert writes_fail(cluster, fam) is None  # the serving version still takes writes


def test_a_write_the_dual_write_copy_refuses_names_the_copy(cluster: LocalCluster) -> None:
    """An attribute only the new version declares is not checked in advance."""
    fam = "dwn"
    with RegistryClient(cluster.coordinator_target) as reg:
        reg.apply(family_docs(fam, {"attributes": {"new": "int"}}))
    code, err = dual_write(cluster, fam)
    assert code == 0, err
    for address in cluster.coordinator_addresses:

        def attempt(address: str = address) -> str:
            try:
                write_v1(address, fam, {"new": "x"})  # accepted until the setting arrives
            except FailedPrecondition as exc:
                return str(exc)
            return ""

        error = poll(attempt, bool, timeout=10)
        assert all(s in error for s in ("dual-write", "dwn_ix@v2", "'new'")), error
    assert writes_fail(cluster, fam) is None  # writes without it are copied as before


def test_dual_write_into_an_untrained_centroid_index_is_refused_until_trained(
    cluster: LocalCluster,
) -> None:
    fam = "dwc"
    with RegistryClient(cluster.coordinator_target) as reg:
        reg.apply(family_docs(fam, {"placement": "centroid"}))
        code, err = dual_write(cluster, fam)
        assert code != 0 and all(s in err for s in ("dwc_ix@v2", "not trained")), err
        assert writes_fail(cluster, fam) is None  # the serving version still takes writes
        reg.train_placement(f"{fam}_ix", "v2", np.random.default_rng(1).normal(size=(40, DIM)))
    code, err = dual_write(cluster, fam)
    assert code == 0, err
    assert writes_fail(cluster, fam) is None


def test_an_evaluation_of_a_ready_version_says_it_is_not_stored(cluster: LocalCluster) -> None:
    """It stored nothing and said nothing, though the README said it was stored."""
    fam = "dwe"
    with RegistryClient(cluster.coordinator_target) as reg:
        reg.apply(family_docs(fam, {}))
    write_v1(cluster.coordinator_target, fam, {"cat": "c0"}, n=40)
    out = cli(
        "embeddings", "evaluate", f"{fam}_ix@v1", "--sample", "10",
        "--coordinator", cluster.coordinator_target,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "not stored: dwe_ix@v1 is ready; evaluations are recorded while building" in out.stderr
    with RegistryClient(cluster.coordinator_target) as reg, pytest.raises(NotFound):
        reg.get("IndexEvaluation", f"{fam}_ix", "v1")
