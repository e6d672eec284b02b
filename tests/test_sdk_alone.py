"""The SDK needs no extra: against a real local cluster, a Python in which every
server, offline and CLI dependency (and vecshard's own server, offline and CLI
packages) cannot be imported still imports `client`, searches and looks up."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cli.demo import EMBEDDING, PURPOSE, ROUTE, SPEC
from client.registry_client import RegistryClient
from client.retrieval_client import Record, RetrievalClient
from tests.conftest import ClusterFactory
from tests.import_blocker import EXTRA_ONLY_MODULES, NON_SDK_PACKAGES, run_blocked

pytestmark = pytest.mark.integration

TENANT = "acme"
DIM = next(o["spec"]["dimension"] for o in SPEC if o["kind"] == "EmbeddingFamily")

SDK_SCRIPT = """\
import json
import numpy as np
import client
from client.retrieval_client import RetrievalClient

address, route, name, version, tenant, purpose, query, ids = sys.argv[1:]
with RetrievalClient(address, tenant_id=tenant, purpose=purpose) as c:
    res = c.search(route, np.array(json.loads(query), dtype=np.float32), k=5)
    looked = c.batch_get(name, version, json.loads(ids))
vecshard = {"protos", "core", "client", "registry", "shard_server", "coordinator", "offline",
            "cli", "benchmarks", "tests"}
print(json.dumps({
    "hits": [[h.key.entity_id, h.score] for h in res.hits],
    "lookups": [[lk.key.entity_id, lk.status, lk.source_version] for lk in looked],
    "imported": sorted({m.partition(".")[0] for m in sys.modules} & vecshard),
}))
"""


def test_search_and_batch_get_with_the_sdk_alone(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster(num_shards=2)
    rng = np.random.default_rng(11)
    vectors = rng.normal(size=(40, DIM)).astype(np.float32)
    ids = [f"item-{i:05d}" for i in range(len(vectors))]
    with RegistryClient(cluster.coordinator_target, who="test") as registry:
        registry.apply(SPEC)
    with RetrievalClient(cluster.coordinator_target, tenant_id=TENANT, purpose=PURPOSE) as c:
        written, _ = c.upsert(
            *EMBEDDING,
            [Record(i, v, source_version=7) for i, v in zip(ids, vectors, strict=True)],
        )
    assert written == len(ids)

    query = rng.normal(size=DIM).astype(np.float32)
    out = run_blocked(
        EXTRA_ONLY_MODULES + NON_SDK_PACKAGES,
        SDK_SCRIPT,
        [
            cluster.coordinator_target,
            ROUTE,
            *EMBEDDING,
            TENANT,
            PURPOSE,
            json.dumps(query.tolist()),
            json.dumps(["item-00003", "item-00039", "no-such-item"]),
        ],
    )
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)

    # The family is cosine: the exact top 5 by cosine similarity.
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cosine = unit @ (query / np.linalg.norm(query))
    expected = [ids[i] for i in np.argsort(-cosine)[:5]]
    assert [h[0] for h in answer["hits"]] == expected
    np.testing.assert_allclose([h[1] for h in answer["hits"]], np.sort(cosine)[::-1][:5], rtol=1e-5)
    assert answer["lookups"] == [
        ["item-00003", "found", 7],
        ["item-00039", "found", 7],
        ["no-such-item", "missing", 0],
    ]
    assert answer["imported"] == ["client", "core", "protos"]
