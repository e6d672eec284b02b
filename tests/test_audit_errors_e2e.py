"""A refused call's audit record says why by its code and its error's class,
never by its message (coordinator.audit_records.error_field): messages name
the offending key, attribute value or filter operand, and the trail promises
raw ids only as salted hashes and never values (SECURITY.md §6). The caller
still gets the whole message."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from cli.local_cluster import LocalCluster
from client.registry_client import RegistryClient
from client.retrieval_client import Record, RetrievalClient
from core.audit_chain import chains, read_records
from core.errors import InvalidArgument
from core.filters import Eq
from tests.conftest import ClusterFactory
from tests.polling import poll
from tests.specs import route_spec

pytestmark = pytest.mark.integration

SECRET_ID = "alice.smith@example.com"
SECRET_VALUE = "postcode-SW1A-1AA"


def records_of(cluster: LocalCluster, rpc: str) -> list[dict[str, Any]]:
    """The refused calls of `rpc` in the trail (waits for group commit)."""
    return poll(
        lambda: [
            r
            for d in chains(cluster.audit_dir)
            for r in read_records(d)
            if r.get("rpc", "").endswith(rpc) and r.get("code") == "INVALID_ARGUMENT"
        ],
        lambda found: len(found) >= 1,
        timeout=10,
    )


def test_refused_calls_leave_no_raw_id_or_value_in_the_trail(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster(num_shards=1, num_coordinators=1)
    with RegistryClient(cluster.coordinator_target) as reg:
        reg.apply(route_spec(dim=4, attributes={"age": "int"}))
    with RetrievalClient(cluster.coordinator_target, tenant_id="t", purpose="p") as c:
        with pytest.raises(InvalidArgument) as short:  # 3 floats for a 4-dimensional family
            c.upsert("v", "v1", [Record(SECRET_ID, np.ones(3, np.float32))])
        with pytest.raises(InvalidArgument) as bad_value:
            c.upsert("v", "v1", [Record("u2", np.ones(4, np.float32), {"age": SECRET_VALUE})])
        with pytest.raises(InvalidArgument) as bad_filter:
            c.search("r", np.ones(4, np.float32), k=1, filter=Eq("age", SECRET_VALUE))
    # The caller is told exactly what was wrong ...
    assert SECRET_ID in str(short.value)
    assert SECRET_VALUE in str(bad_value.value) and SECRET_VALUE in str(bad_filter.value)
    # ... the trail records that it was refused, and why by class only.
    refused = records_of(cluster, "/Upsert") + records_of(cluster, "/Search")
    assert len(refused) >= 3
    assert {r["error"] for r in refused} == {"InvalidArgument"}
    text = json.dumps([r for d in chains(cluster.audit_dir) for r in read_records(d)])
    assert SECRET_ID not in text and SECRET_VALUE not in text
