"""Columnar calls name entity ids too, and their audit records hash every one
as the per-key forms do — (tenant, type, id), with the caller's tenant and the
family's, group's or index's type filled in — so a subject's hash matches in
every record (coordinator.audit_records): UpsertColumns, columnar lookups by
entity id, columnar feature reads and writes, evaluation's SearchIndex and
LookupIndex, and
per-key calls that send bare ids (their hash left tenant and type empty)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cli.local_cluster import LocalCluster
from client.evaluation_client import EvaluationClient
from client.registry_client import RegistryClient
from client.retrieval_client import RetrievalClient
from coordinator.audit_records import Hasher
from core.audit_chain import chains, derive_keys, read_records, read_secret
from tests.conftest import ClusterFactory
from tests.polling import poll
from tests.specs import route_spec, tenant_docs

pytestmark = pytest.mark.integration

FEATURES = Path(__file__).resolve().parent.parent / "deploy" / "examples" / "50-features.yaml"
IDS = ["i1", "i2", "i3"]
SERVICE = "/vecshard.v1.RetrievalService/"


def record_of(cluster: LocalCluster, rpc: str) -> dict[str, Any]:
    """The last successful call of `rpc` in the trail (waits for group commit)."""
    found = poll(
        lambda: [
            r
            for d in chains(cluster.audit_dir)
            for r in read_records(d)
            if r.get("rpc") == rpc and r.get("code") == "OK" and "event" not in r
        ],
        lambda records: len(records) >= 1,
        timeout=10,
    )
    return found[-1]


def test_columnar_calls_hash_every_id_they_name_or_return(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster(num_shards=2, num_coordinators=1)
    with RegistryClient(cluster.coordinator_target) as reg:
        reg.apply(route_spec(dim=4))  # family v: entity type item
        reg.apply(FEATURES.read_text())  # group item_stats: entity type item
        reg.apply(tenant_docs())
    matrix = np.eye(4, dtype=np.float32)[: len(IDS)]
    with RetrievalClient(cluster.coordinator_target, tenant_id="acme", purpose="p") as c:
        assert c.upsert_matrix("v", "v1", IDS, matrix) == (3, 0)
        c.get_embeddings("v", "v1", [*IDS, "absent"])
        c.put_features("item_stats", "v1", [(("item", e), 1, {"item_ctr": 0.5}) for e in IDS])
        c.get_features("home_ranker", "v1", [("item", e) for e in IDS])
    with EvaluationClient(cluster.coordinator_target, purpose="p") as ev:
        hits, _partial = ev.search_index("ix@v1", "acme", matrix, k=1)
        ev.lookup_index("ix@v1", "acme", [*IDS, "absent"])
    assert sorted(h for row in hits for h in row) == IDS
    with RetrievalClient(cluster.coordinator_target, tenant_id="acme", purpose="p") as c:
        c.delete("v", "v1", IDS[:1])  # a bare id (no tenant, no type) in the per-key form

    h = Hasher(derive_keys(read_secret(cluster.certs.audit_key_file))[1])
    expected = {h.subject("acme", "item", e) for e in IDS}
    upsert = record_of(cluster, SERVICE + "UpsertColumns")
    assert (upsert["records"], set(upsert["ids"])) == (3, expected), upsert
    lookup = record_of(cluster, SERVICE + "BatchGetEmbeddings")
    assert (lookup["keys"], lookup["results"], set(lookup["result_ids"])) == (4, 3, expected)
    # Named ones too: asking whether "absent" exists is a read of it.
    assert set(lookup["ids"]) == expected | {h.subject("acme", "item", "absent")}
    put = record_of(cluster, SERVICE + "PutFeatures")
    assert (put["rows"], set(put["ids"])) == (3, expected), put
    read = record_of(cluster, SERVICE + "GetFeatures")
    assert (read["entities"], set(read["result_ids"])) == (3, expected), read
    search = record_of(cluster, "/vecshard.v1.EvaluationService/SearchIndex")
    assert (search["queries"], search["results"]) == (3, 3), search
    assert set(search["result_ids"]) == expected
    held = record_of(cluster, "/vecshard.v1.EvaluationService/LookupIndex")
    assert (held["keys"], held["results"], set(held["result_ids"])) == (4, 3, expected), held
    assert set(held["ids"]) == expected | {h.subject("acme", "item", "absent")}
    assert record_of(cluster, SERVICE + "Delete")["ids"] == [h.subject("acme", "item", IDS[0])]
