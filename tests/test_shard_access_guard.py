"""The shard's access guard checks every tenant a call reads, in each form
the call can take: a columnar BatchGet names its keys in tenant_id and
entity_ids, which the guard never read — a vouch for one tenant read
another's vectors (found in review)."""

from __future__ import annotations

import dataclasses

import pytest

from core.errors import PermissionDenied
from core.vouch import Vouch, metadata
from protos.vecshard.v1 import common_pb2 as cpb
from protos.vecshard.v1.internal import shard_pb2 as pb
from registry.access_policy import Principal, Role
from shard_server.access_guard import RULES, ShardAccessGuard
from shard_server.convert import lookup_keys
from tests.static_registry import INDEX, registry_for

BATCH_GET = "/vecshard.v1.internal.ShardService/BatchGet"


def _guard() -> ShardAccessGuard:
    reg = registry_for(["s1"], [["s1"]])
    reg.snapshot = dataclasses.replace(
        reg.snapshot, principals={"svc": Principal("svc", Role.READER, ("acme",), ("rec",))}
    )
    return ShardAccessGuard(reg)


@pytest.mark.parametrize("columnar", [False, True])
def test_a_lookup_of_another_tenant_is_refused_in_either_form(columnar: bool) -> None:
    ref = pb.IndexRef(name=INDEX.name, version=INDEX.version)
    if columnar:
        req = pb.BatchGetRequest(
            index=ref, columnar=True, tenant_id="globex", entity_type="item", entity_ids=["x"]
        )
    else:
        req = pb.BatchGetRequest(
            index=ref, keys=[cpb.EntityKey(tenant_id="globex", entity_type="item", entity_id="x")]
        )
    assert {k.tenant_id for k in lookup_keys(req)} == {"globex"}  # what the servicer reads
    rule = RULES[BATCH_GET]
    assert rule.items is not None
    with pytest.raises(PermissionDenied):
        _guard().check(rule, rule.items(req), metadata([Vouch("svc", "rec", "acme")]))
    own = pb.BatchGetRequest(
        index=ref, columnar=True, tenant_id="acme", entity_type="item", entity_ids=["x"]
    )
    _guard().check(rule, rule.items(own), metadata([Vouch("svc", "rec", "acme")]))
