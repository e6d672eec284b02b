"""Issue 14, defect 5, through real processes and raw gRPC (the SDK would
refuse some of these itself): oversized keys and attributes, unknown and
empty tenants and NaN filter bounds are refused with a status naming what
was wrong, and nothing is written."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from cli.local_cluster import LocalCluster
from client.registry_client import RegistryClient
from protos.vecshard.v1 import common_pb2 as cpb
from protos.vecshard.v1 import retrieval_pb2 as pb
from protos.vecshard.v1 import retrieval_pb2_grpc
from tests.conftest import ClusterFactory
from tests.specs import route_spec

pytestmark = pytest.mark.integration
DIM = 4
VEC = np.ones(DIM, np.float32).tobytes()


@pytest.fixture(scope="module")
def cluster(make_module_cluster: ClusterFactory) -> LocalCluster:
    c = make_module_cluster(num_shards=2)
    with RegistryClient(c.coordinator_target) as reg:
        reg.apply(route_spec(dim=DIM, attributes={"price": "float"}))
    return c


@pytest.fixture
def stub(cluster: LocalCluster) -> Iterator[retrieval_pb2_grpc.RetrievalServiceStub]:
    options = [("grpc.max_send_message_length", 64 << 20)]
    creds = cluster.credentials().composite_credentials()
    with grpc.secure_channel(cluster.coordinator_address, creds, options=options) as ch:
        yield retrieval_pb2_grpc.RetrievalServiceStub(ch)


def access(tenant: str = "t") -> cpb.AccessContext:
    return cpb.AccessContext(tenant_id=tenant, purpose="test")


def upsert(tenant: str, eid: str, **attrs: cpb.AttributeValue) -> pb.UpsertRequest:
    return pb.UpsertRequest(
        access=access(tenant),
        embedding_name="v",
        embedding_version="v1",
        records=[
            cpb.EmbeddingRecord(
                key=cpb.EntityKey(entity_id=eid), vector=VEC, source_version=1, attributes=attrs
            )
        ],
    )


def lookup_status(stub: retrieval_pb2_grpc.RetrievalServiceStub, eid: str) -> int:
    resp = stub.BatchGetEmbeddings(
        pb.BatchGetEmbeddingsRequest(
            access=access(), embedding_name="v", embedding_version="v1",
            keys=[cpb.EntityKey(entity_id=eid)],
        )
    )  # fmt: skip
    return int(resp.records[0].status)


def refused(call: object, code: grpc.StatusCode, *fragments: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        call()  # type: ignore[operator]
    details = err.value.details() or ""
    assert err.value.code() == code, details
    for f in fragments:
        assert f in details, details


def test_a_10kb_entity_id_is_refused_and_not_written(
    stub: retrieval_pb2_grpc.RetrievalServiceStub,
) -> None:
    big = "x" * 10240
    refused(
        lambda: stub.Upsert(upsert("t", big)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "entity_id is 10240 bytes",
        "max_entity_id_bytes",
    )
    refused(
        lambda: stub.BatchGetEmbeddings(
            pb.BatchGetEmbeddingsRequest(
                access=access(), embedding_name="v", embedding_version="v1",
                keys=[cpb.EntityKey(entity_id=big)],
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "max_entity_id_bytes",
    )  # fmt: skip


def test_a_50mb_undeclared_attribute_is_refused_and_not_written(
    stub: retrieval_pb2_grpc.RetrievalServiceStub,
) -> None:
    blob = cpb.AttributeValue(string_value="x" * (50 * 1024 * 1024))
    refused(
        lambda: stub.Upsert(upsert("t", "blob", notes=blob)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "attribute 'notes'",
        "max_attribute_value_bytes",
    )
    assert lookup_status(stub, "blob") == cpb.MISSING
    # Within the limits, an undeclared attribute is kept as metadata.
    small = cpb.AttributeValue(string_value="kept")
    assert stub.Upsert(upsert("t", "small", notes=small)).written == 1
    assert lookup_status(stub, "small") == cpb.FOUND


@pytest.mark.parametrize(
    ("tenant", "code", "fragment"),
    [
        ("nobody", grpc.StatusCode.NOT_FOUND, "tenant 'nobody' is not registered"),
        ("", grpc.StatusCode.INVALID_ARGUMENT, "tenant_id is empty"),
    ],
)
def test_unknown_and_empty_tenants_are_refused_for_reads_and_writes(
    stub: retrieval_pb2_grpc.RetrievalServiceStub,
    tenant: str,
    code: grpc.StatusCode,
    fragment: str,
) -> None:
    refused(lambda: stub.Upsert(upsert(tenant, "ghost")), code, fragment)
    refused(
        lambda: stub.Search(
            pb.SearchRequest(route="r", access=access(tenant), query_vector=VEC, k=3)
        ),
        code,
        fragment,
    )
    refused(
        lambda: stub.Delete(
            pb.DeleteRequest(
                access=access(tenant), embedding_name="v", embedding_version="v1",
                keys=[cpb.EntityKey(entity_id="ghost")], source_version=1,
            )
        ),
        code,
        fragment,
    )  # fmt: skip


def test_a_nan_range_bound_is_refused(stub: retrieval_pb2_grpc.RetrievalServiceStub) -> None:
    flt = cpb.Filter(range=cpb.Range(attribute="price", gte=float("nan")))
    refused(
        lambda: stub.Search(
            pb.SearchRequest(route="r", access=access(), query_vector=VEC, k=3, filter=flt)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "bound gte=nan",
        "finite",
    )
