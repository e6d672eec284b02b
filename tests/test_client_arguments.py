"""The SDK refuses a wrong argument before sending anything, with an
`InvalidArgument` naming it and what was expected — never a numpy,
protobuf or unpacking error from deep inside, and never a string read as a
sequence of one-character ids: `delete("fam", "v1", "abc")` deleted the
entities "a", "b" and "c", and `upsert_matrix(..., "abcd", vectors)` wrote
four of them (found calling every SDK method with odd arguments through a
real cluster)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cli.local_cluster import LocalCluster
from client.arguments import entity_ids, float_vectors, int64s, integer, items_of, key_parts
from client.erasure_client import ErasureClient
from client.evaluation_client import EvaluationClient
from client.registry_client import RegistryClient
from client.retrieval_client import Record, RetrievalClient
from core.domain import EntityKey
from core.errors import InvalidArgument
from core.filters import Range
from protos.vecshard.v1 import retrieval_pb2 as pb
from tests.conftest import ClusterFactory
from tests.specs import route_spec, tenant_docs

SPEC = (Path(__file__).resolve().parent.parent / "deploy/examples/50-features.yaml").read_text()
T0 = 1_800_000_000 * 1_000_000
V = np.random.default_rng(1).normal(size=(4, 8)).astype(np.float32)


def odd(value: object) -> Any:
    """An argument of a type its parameter does not declare."""
    return value


def test_the_argument_checks_name_what_was_expected() -> None:
    assert entity_ids(("a", "b"), "ids") == ["a", "b"]
    assert key_parts(EntityKey("t", "item", "a"), "k", (3,)) == ("t", "item", "a")
    assert integer(np.int64(3), "k") == 3 and type(integer(np.int64(3), "k")) is int
    assert float_vectors([1, 2], "v").dtype == np.float32
    cases: list[tuple[Callable[[], Any], str]] = [
        (lambda: entity_ids("abc", "ids"), r"ids: str 'abc'; expected a list of entity ids \(one"),
        (lambda: entity_ids(odd(b"ab"), "ids"), "ids: bytes"),
        (
            lambda: entity_ids(odd([b"a"]), "ids"),
            r"ids\[0\]: bytes b'a'; expected an entity id \(str\)",
        ),
        (lambda: items_of(None, "keys", "keys"), "keys: NoneType None; expected keys"),
        (lambda: items_of(3, "keys", "keys"), "keys: int 3; expected keys"),
        (
            lambda: key_parts(("a", "b"), "k", (3,)),
            r"expected \(tenant_id, entity_type, entity_id\)",
        ),
        (lambda: key_parts("ab", "k", (2,)), r"k: str 'ab'; expected \(entity_type, entity_id\)"),
        (lambda: key_parts(("a", 1), "k", (2, 3)), "of str"),
        (lambda: integer(True, "k"), "k: bool True; expected an int"),
        (lambda: integer(1.0, "k"), "k: float 1.0; expected an int"),
        (lambda: float_vectors("1,2", "v"), "v: str '1,2'; expected numbers"),
        (lambda: float_vectors([[1, 2], [3]], "v"), "v: .*; expected numbers of one shape"),
    ]
    for call, message in cases:
        with pytest.raises(InvalidArgument, match=message):
            call()


def test_int64s_take_integers_exactly_and_name_the_first_that_is_not() -> None:
    """numpy's casts wrote 12.9 as 12, NaN as -2**63 and a uint64 past 2**63
    as a negative number."""
    big = 2**62 + 1  # past 2**53: a float64 on the way would change it
    assert int64s([1, 2.0, np.int8(3), big], "x").tolist() == [1, 2, 3, big]
    assert int64s(np.array([2**63 - 1], dtype=np.uint64), "x").tolist() == [2**63 - 1]
    assert int64s(np.array([-(2.0**63), 7.0]), "x").tolist() == [-(2**63), 7]
    assert int64s(np.array([[1, 2]], dtype=np.int16), "x").dtype == np.int64
    assert int64s([], "x").shape == (0,)
    cases: list[tuple[Any, str]] = [
        ([1, 12.9], r"x\[1\]: float 12.9; expected an integer within int64"),
        (np.array([1.0, np.nan]), r"x\[1\]: nan \(float64\)"),
        (np.array([np.inf]), r"x\[0\]: inf \(float64\)"),
        (np.array([2.0**63]), r"x\[0\]: 9.223372036854776e\+18 \(float64\)"),
        (np.array([2**63 + 5], dtype=np.uint64), r"x\[0\]: 9223372036854775813 \(uint64\)"),
        ([2**63], r"x\[0\]: int 9223372036854775808"),
        ([-(2**63) - 1], r"x\[0\]: int -9223372036854775809"),
        ([np.uint64(2**64 - 1)], r"x\[0\]: 18446744073709551615 \(uint64\)"),
        ([True], r"x\[0\]: bool True"),
        ([3, np.True_], r"x\[1\]: True \(bool\)"),  # numpy reads a list of these as ints
        ([1, 2, True], r"x\[2\]: bool True"),
        ([1, None], r"x\[1\]: NoneType None"),
        (["5"], r"x\[0\]: str '5'"),
        ([[1, 2], [3, 4.5]], r"x\[1, 1\]: float 4.5"),
        (5.5, r"x: float 5.5"),
        (np.array([True]), "x: bool values; expected integers"),
        (None, "x: NoneType None; expected integers"),
        ("123", "x: str '123'; expected integers"),
    ]
    for value, message in cases:
        with pytest.raises(InvalidArgument, match=message):
            int64s(value, "x")


@pytest.fixture(scope="module")
def cluster(make_module_cluster: ClusterFactory) -> LocalCluster:
    return make_module_cluster(num_shards=2)


@pytest.fixture(scope="module")
def client(cluster: LocalCluster) -> Iterator[RetrievalClient]:
    with RegistryClient(cluster.coordinator_target) as reg:
        reg.apply(SPEC)
        reg.apply(tenant_docs())
        reg.apply(route_spec(dim=8, metric="cosine", family="fam", attributes={"year": "int"}))
    with RetrievalClient(
        cluster.coordinator_target, tenant_id="acme", purpose="recommendation"
    ) as c:
        c.upsert_matrix("fam", "v1", ["a", "b", "c", "d"], V, attributes={"year": [1, 2, 3, 4]})
        yield c


@pytest.mark.integration
def test_every_sdk_call_refuses_a_wrong_argument_before_sending(client: RetrievalClient) -> None:
    c: Any = client  # called with what its signatures refuse
    item = ("item", "x")
    cases: list[tuple[Callable[[], Any], str]] = [
        (lambda: c.search("r", None), "query vector: NoneType None; expected numbers"),
        (lambda: c.search("r", "abc"), "query vector: str 'abc'"),
        (lambda: c.search("r", [[1, 2], [3]]), "query vector: .*inhomogeneous"),
        (lambda: c.search("r", V[:1]), r"query vector: shape \(1, 8\); expected one vector of 8"),
        (lambda: c.search("r", V[0], k=True), "k: bool True; expected an int"),
        (lambda: c.search(None, V[0]), "route: NoneType None; expected a str"),
        (lambda: c.search("r", V[0], filter="year>3"), "filter 'year>3': expected one of"),
        (lambda: c.search("r", V[0], filter=Range("year", gte=odd("x"))), "bound 'x'; expected a number"),
        (lambda: c.search_batch("r", "abc"), "query vectors: str 'abc'"),
        (lambda: c.search_batch("r", V, k=2.0), "k: float 2.0; expected an int"),
        (lambda: c.upsert_matrix("fam", "v1", "abcd", V), "ids: str 'abcd'; expected a list"),
        (lambda: c.upsert_matrix("fam", "v1", [1, 2, 3, 4], V), r"ids\[0\]: int 1; expected an entity id"),
        (lambda: c.upsert_matrix("fam", "v1", list("abcd"), V, attributes=[1]), "attributes: list; expected a mapping"),
        (lambda: c.upsert("fam", "v1", [Record("a", odd(None))]), "record 'a': NoneType None; expected numbers"),
        (lambda: c.upsert("fam", "v1", [("a", V[0])]), r"records\[0\]: tuple; expected a Record"),
        (lambda: c.upsert("fam", "v1", [Record("a", V[0], source_version=odd(1.5))]), "source_version: float 1.5"),
        (lambda: c.upsert("fam", "v1", [Record("a", V[0], {"year": odd([1, 2])})]), r"attribute value \[1, 2\]"),
        (lambda: c.delete("fam", "v1", "abc"), "keys: str 'abc'; expected a list of entity ids or EntityKeys"),
        (lambda: c.delete("fam", "v1", None), "keys: NoneType None"),
        (lambda: c.batch_get("fam", "v1", "ab"), "keys: str 'ab'"),
        (lambda: c.batch_get("fam", "v1", [("acme", "item")]), r"keys\[0\]: tuple \('acme', 'item'\); expected \(tenant_id"),
        (lambda: c.get_embeddings("fam", "v1", "ab"), "entity_ids: str 'ab'"),
        (lambda: c.get_features("home_ranker", "v1", "user"), "entities: str 'user'"),
        (lambda: c.get_features("home_ranker", "v1", {"user": "u1"}), r"entities\['user'\]: str 'u1'"),
        (lambda: c.get_features("home_ranker", "v1", [("user", 1)]), r"entities\[0\]: tuple \('user', 1\)"),
        (lambda: c.get_features("home_ranker", "v1", [item], request_time_us=1.5), "request_time_us: float 1.5"),
        (lambda: c.put_features("item_stats", "v1", [("x", T0, {"item_ctr": 0.5})]), r"rows\[0\] entity: str 'x'"),
        (lambda: c.put_features("item_stats", "v1", [(item, T0, [0.5])]), r"rows\[0\]: .*expected \(entity, feature_timestamp_us"),
        (lambda: c.put_feature_columns("item_stats", "v1", "xy", [T0, T0], {}), "entities: str 'xy'"),
    ]  # fmt: skip
    for call, message in cases:
        with pytest.raises(InvalidArgument, match=message):
            call()
    # Nothing reached the server: "a", "b", "c" are still there.
    assert [lk.status for lk in c.batch_get("fam", "v1", ["a", "b", "c", "d"])] == ["found"] * 4
    assert c.search("r", V[0], k=np.int64(2)).hits[0].key.entity_id == "a"


@pytest.mark.integration
def test_the_admin_clients_refuse_a_wrong_argument_before_sending(
    cluster: LocalCluster, client: RetrievalClient
) -> None:
    target = cluster.coordinator_target
    with RegistryClient(target) as reg, ErasureClient(target) as er, EvaluationClient(target) as ev:
        cases: list[tuple[Callable[[], Any], str]] = [
            (lambda: reg.apply(odd(None)), "documents: NoneType None; expected YAML text or mappings"),
            (lambda: reg.train_placement("ix", "v1", odd("abc")), "sample: str 'abc'; expected numbers"),
            (lambda: er.plan(odd("x")), r"subject: str 'x'; expected \(tenant_id, entity_type"),
            (lambda: er.erase(odd(("t", "item"))), r"subject: tuple \('t', 'item'\)"),
            (lambda: ev.search_index("ix@v1", "t", odd("abc"), 3), "vectors: str 'abc'"),
        ]  # fmt: skip
        for call, message in cases:
            with pytest.raises(InvalidArgument, match=message):
                call()
        # A plain tuple is a key as an EntityKey is.
        assert er.plan(odd(("acme", "item", "a"))).index_versions == ["ix@v1"]


def test_record_upserts_of_large_vectors_go_in_requests_under_the_message_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """1,000 records a request whatever their size: at 16,384 dimensions a
    request was 64 MiB of vectors, past every server's message limit.
    (upsert_matrix already sized its requests by bytes.)"""
    sent: list[Any] = []

    def rpc(self: RetrievalClient, name: str, request: Any, *args: Any, **kw: Any) -> Any:
        sent.append(request)
        return pb.UpsertResponse(written=len(request.records))

    monkeypatch.setattr(RetrievalClient, "_rpc", rpc)
    vectors = np.ones((1000, 16_384), np.float32)
    with RetrievalClient("127.0.0.1:1", tenant_id="t", purpose="p") as c:
        written, _ = c.upsert("fam", "v1", [Record(f"e{i}", v) for i, v in enumerate(vectors)])
    assert written == 1000 and len(sent) > 1
    assert max(r.ByteSize() for r in sent) < 40 << 20
    assert [r.key.entity_id for req in sent for r in req.records] == [f"e{i}" for i in range(1000)]
