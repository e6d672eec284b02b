"""Issue 15 through real processes and real TLS: callers without valid
credentials are UNAUTHENTICATED (and audited), grants bind tenant and purpose
on every RPC and filter shape, only admins change the registry, restricted
attributes need a grant, and shards answer only vouched cluster peers."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli.local_cluster import ADMIN, LocalCluster
from cli.pki import CertificateAuthority, new_signing_key
from cli.tokens import mint_token, mint_x5c_token
from client.credentials import Credentials
from client.registry_client import RegistryClient
from client.retrieval_client import Record, RetrievalClient
from core import vouch
from core.audit_chain import chains, read_records
from core.domain import EntityKey
from core.errors import PermissionDenied, Unauthenticated, Unavailable
from core.filters import And, Eq, Filter, In, Not, Or
from core.identity import ComponentRole
from core.vouch import Vouch
from core.wire import filter_to_pb
from protos.vecshard.v1 import common_pb2 as cpb
from protos.vecshard.v1 import retrieval_pb2 as pb
from protos.vecshard.v1 import retrieval_pb2_grpc
from protos.vecshard.v1.internal import replication_pb2 as rpb
from protos.vecshard.v1.internal import replication_pb2_grpc, shard_pb2_grpc
from protos.vecshard.v1.internal import shard_pb2 as spb
from tests.conftest import ClusterFactory
from tests.polling import poll
from tests.specs import route_spec, tenant_docs
from tests.test_feature_replicas_e2e import metric

pytestmark = pytest.mark.integration
DIM = 8
IDS = [f"e{i:03d}" for i in range(60)]
FEATURES = Path(__file__).resolve().parent.parent / "deploy" / "examples" / "50-features.yaml"
PRINCIPALS: list[dict[str, Any]] = [
    {"name": "svc-a", "role": "reader", "tenants": ["acme"], "purposes": ["p"]},
    {"name": "svc-a-writer", "role": "writer", "tenants": ["acme"], "purposes": ["p"]},
    {"name": "ops-reader", "role": "reader", "tenants": ["*"], "purposes": ["*"]},
    {
        "name": "analyst",
        "role": "reader",
        "tenants": ["acme"],
        "purposes": ["p"],
        "restricted_attributes": ["age_band"],
    },
]


def vector(eid: str) -> np.ndarray:
    return np.random.default_rng(int(eid[1:])).normal(size=DIM).astype(np.float32)


def attrs(eid: str) -> dict[str, str]:
    n = int(eid[1:])
    return {"colour": ("red", "blue", "green")[n % 3], "age_band": ("18-24", "25-34")[n % 2]}


@pytest.fixture(scope="module")
def cluster(make_module_cluster: ClusterFactory) -> LocalCluster:
    c = make_module_cluster(num_shards=2)
    docs = [json.loads(d) for d in route_spec(
        dim=DIM, attributes={"colour": "string", "age_band": "string"}
    ).split("\n---\n")]  # fmt: skip
    next(d for d in docs if d["kind"] == "IndexVersion")["spec"]["restricted_attributes"] = [
        "age_band"
    ]
    with RegistryClient(c.coordinator_target) as reg:
        reg.apply(docs)
        reg.apply(FEATURES.read_text())
        reg.apply(tenant_docs())
        reg.apply([{"kind": "Principal", "spec": p} for p in PRINCIPALS])
    # Two tenants with identical entity ids, vectors and attributes.
    for tenant in ("acme", "globex"):
        with RetrievalClient(c.coordinator_target, tenant_id=tenant, purpose="p") as admin:
            admin.upsert("v", "v1", [Record(e, vector(e), attributes=attrs(e)) for e in IDS])
            admin.put_features(
                "item_stats", "v1", [(("item", e), 1, {"item_ctr": 0.5}) for e in IDS]
            )
    return c


def as_(cluster: LocalCluster, principal: str, **kw: Any) -> RetrievalClient:
    return RetrievalClient(
        cluster.coordinator_target, credentials=cluster.credentials(principal), **kw
    )


def audit_records(
    cluster: LocalCluster, match: Callable[[dict[str, Any]], bool], n: int
) -> list[dict[str, Any]]:
    """Records the coordinators wrote that match; waits for group commit."""
    found = poll(
        lambda: [r for d in chains(cluster.audit_dir) for r in read_records(d) if match(r)],
        lambda records: len(records) >= n,
        timeout=10,
    )
    return sorted(found, key=lambda r: r["ts"])  # one chain per coordinator


# -- authentication -------------------------------------------------------------------


def test_calls_without_valid_credentials_are_unauthenticated_and_audited(
    cluster: LocalCluster,
) -> None:
    ca = cluster.certs.ca_file.read_bytes()
    evil = CertificateAuthority.create("evil CA")
    evil_cert, evil_key = evil.issue(
        "svc-a", uris=["spiffe://vecshard/principal/svc-a"], server=False
    )
    own_cert, own_key = cluster.certs.issue_principal_cert("svc-a")
    # The cluster CA is the components' trust anchor, not callers'.
    cluster_cert, cluster_key = cluster.certs.ca().issue(
        "svc-a", uris=["spiffe://vecshard/principal/svc-a"], server=False
    )
    bad = {
        "no token": None,
        "expired": cluster.certs.mint("svc-a", -300),
        "foreign key": mint_token(new_signing_key()[0], cluster.certs.signing_kid(), ADMIN, 600),
        "other CA": mint_x5c_token(evil_cert, evil_key, "svc-a", 600),
        "cert of another principal": mint_x5c_token(own_cert, own_key, "admin", 600),
        "cluster CA": mint_x5c_token(cluster_cert, cluster_key, "svc-a", 600),
        "garbage": "not.a.jwt",
    }
    for why, token in bad.items():
        creds = Credentials(token, ca)
        with (
            RetrievalClient(cluster.coordinator_target, tenant_id="acme", credentials=creds) as c,
            pytest.raises(Unauthenticated),
        ):
            c.search("r", np.ones(DIM), 3)
        with (
            RegistryClient(cluster.coordinator_target, credentials=creds) as reg,
            pytest.raises(Unauthenticated),
        ):
            reg.rollback("r", why=why)
    # The principal's own certificate signs a token that works (x5c), and a
    # valid token without a grant is authenticated but refused.
    good = Credentials(mint_x5c_token(own_cert, own_key, "svc-a", 600), ca)
    with RetrievalClient(cluster.coordinator_target, credentials=good) as c:
        assert c.search("r", vector("e001"), 3).hits
    with (
        pytest.raises(PermissionDenied, match="no grant"),
        as_(cluster, "nobody-granted", tenant_id="acme") as c,
    ):
        c.search("r", np.ones(DIM), 3)
    refused = audit_records(cluster, lambda r: r.get("code") == "UNAUTHENTICATED", 2 * len(bad))
    assert len(refused) >= 2 * len(bad)
    # (the SDK's search begins with DescribeRoute, which is refused first)
    assert {r["rpc"].rsplit("/", 1)[1] for r in refused} >= {"DescribeRoute", "Rollback"}


def test_only_tls_with_the_cluster_ca_reaches_a_coordinator(cluster: LocalCluster) -> None:
    token = cluster.token_file().read_text().strip()
    with grpc.insecure_channel(cluster.coordinator_address) as ch:
        stub = retrieval_pb2_grpc.RetrievalServiceStub(ch)
        with pytest.raises(grpc.RpcError) as plaintext:
            stub.DescribeRoute(pb.DescribeRouteRequest(route="r"), timeout=5)
    assert plaintext.value.code() is grpc.StatusCode.UNAVAILABLE
    other_ca = CertificateAuthority.create("other").cert_pem
    with (
        RetrievalClient(
            cluster.coordinator_target, credentials=Credentials(token, other_ca), timeout=3
        ) as c,
        pytest.raises(Unavailable),
    ):
        c.describe_route("r")


# -- authorization: roles ------------------------------------------------------------


def test_a_reader_cannot_switch_or_drain_an_admin_can_and_both_are_audited(
    cluster: LocalCluster,
) -> None:
    with RegistryClient(
        cluster.coordinator_target, credentials=cluster.credentials("ops-reader")
    ) as reg:
        assert reg.get("Route", "r").spec["bundle"] == "r_bundle"  # reads are fine
        with pytest.raises(PermissionDenied, match="needs role admin"):
            reg.switch_route("r", "r_bundle", canary_bundle="r_bundle", canary_share=0.5, why="x")
        with pytest.raises(PermissionDenied, match="needs role admin"):
            reg.set_shard_state("shard-1", "draining", "maintenance")
        with pytest.raises(PermissionDenied):  # no self-escalation
            reg.apply([{"kind": "Principal", "spec": {"name": "ops-reader", "role": "admin"}}])
        with pytest.raises(PermissionDenied):  # grants are not everyone's business
            reg.list("Principal")
    with RegistryClient(cluster.coordinator_target, who="claims-to-be-alice") as admin:
        admin.switch_route(
            "r", "r_bundle", canary_bundle="r_bundle", canary_share=0.5, why="canary"
        )
        admin.set_shard_state("shard-1", "draining", "maintenance")
        admin.set_shard_state("shard-1", "serving", "done")
        assert admin.history("r")[-1].who == ADMIN  # the token's principal, not the claim
        assert {p.spec["name"] for p in admin.list("Principal")} >= {"svc-a", ADMIN}

    def is_(principal: str, method: str, code: str) -> Callable[[dict[str, Any]], bool]:
        return lambda r: (
            r.get("principal") == principal
            and r["rpc"].endswith(method)
            and r.get("code") == code
            and r.get("event") != "attempt"
        )

    assert audit_records(cluster, is_("ops-reader", "/SwitchRoute", "PERMISSION_DENIED"), 1)
    assert audit_records(cluster, is_("ops-reader", "/SetShardState", "PERMISSION_DENIED"), 1)
    switched = audit_records(cluster, is_(ADMIN, "/SwitchRoute", "OK"), 1)
    assert switched and switched[-1]["why"] == "canary" and switched[-1]["who"] == ADMIN
    drains = audit_records(cluster, is_(ADMIN, "/SetShardState", "OK"), 2)
    assert [d["state"] for d in drains[-2:]] == ["draining", "serving"]


# -- authorization: tenants, on every RPC and filter shape ----------------------------


def filters() -> st.SearchStrategy[Filter]:
    leaf = st.one_of(
        st.builds(Eq, st.just("colour"), st.sampled_from(["red", "blue", "green", "x"])),
        st.builds(
            In, st.just("colour"), st.lists(st.sampled_from(["red", "blue"]), min_size=1).map(tuple)
        ),
    )
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.builds(And, st.tuples(inner, inner)),
            st.builds(Or, st.tuples(inner, inner)),
            st.builds(Not, inner),
        ),
        max_leaves=4,
    )


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    ids=st.lists(st.sampled_from(IDS), min_size=1, max_size=5, unique=True),
    flt=st.one_of(st.none(), filters()),
    k=st.integers(1, 20),
)
def test_a_principal_of_one_tenant_never_reaches_another(
    cluster: LocalCluster, ids: list[str], flt: Filter | None, k: int
) -> None:
    q = vector(ids[0])
    with as_(cluster, "svc-a") as mine:  # tenant and purpose from the grant
        hits = mine.search("r", q, k, filter=flt).hits
        assert all(h.key.tenant_id == "acme" for h in hits)
        got = mine.batch_get("v", "v1", ids)
        assert [g.key for g in got] == [EntityKey("acme", "item", e) for e in ids]
        with pytest.raises(PermissionDenied):
            mine.batch_get("v", "v1", [EntityKey("globex", "item", e) for e in ids])
        with pytest.raises(PermissionDenied):
            mine.get_features("home_ranker", "v1", [EntityKey("globex", "item", e) for e in ids])
    with as_(cluster, "svc-a", tenant_id="globex") as theirs:
        with pytest.raises(PermissionDenied, match="not granted tenant 'globex'"):
            theirs.search("r", q, k, filter=flt)
        with pytest.raises(PermissionDenied):
            theirs.batch_get("v", "v1", ids)
        with pytest.raises(PermissionDenied):
            theirs.get_features("home_ranker", "v1", [("item", e) for e in ids])
    with as_(cluster, "svc-a-writer", tenant_id="globex") as writer:
        with pytest.raises(PermissionDenied):
            writer.upsert("v", "v1", [Record(e, q) for e in ids])
        with pytest.raises(PermissionDenied):
            writer.delete("v", "v1", ids)
        with pytest.raises(PermissionDenied):
            writer.put_features(
                "item_stats", "v1", [(("item", e), 2, {"item_ctr": 1.0}) for e in ids]
            )
    with as_(cluster, "svc-a-writer") as writer:  # acme's own, naming globex's keys
        with pytest.raises(PermissionDenied):
            writer.delete("v", "v1", [EntityKey("globex", "item", e) for e in ids])
        with pytest.raises(PermissionDenied):
            writer.upsert("v", "v1", [Record(e, q, tenant_id="globex") for e in ids])
    # A batch that hides one other-tenant search among its own is refused whole.
    with cluster.channel(principal="svc-a") as ch:
        stub = retrieval_pb2_grpc.RetrievalServiceStub(ch)
        own = pb.SearchRequest(route="r", query_vector=q.tobytes(), k=k, filter=filter_to_pb(flt))
        other = pb.SearchRequest(route="r", query_vector=q.tobytes(), k=k)
        other.access.tenant_id = "globex"
        with pytest.raises(grpc.RpcError) as refused:
            stub.SearchBatch(pb.SearchBatchRequest(requests=[own, other]), timeout=10)
        assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as debug:
            stub.SearchDebug(other, timeout=10)
        assert debug.value.code() is grpc.StatusCode.PERMISSION_DENIED
    # Globex's identical data is still there for globex's own callers.
    with RetrievalClient(cluster.coordinator_target, tenant_id="globex", purpose="p") as admin:
        assert all(g.status == "found" for g in admin.batch_get("v", "v1", ids))


# -- restricted attributes ------------------------------------------------------------


@pytest.mark.parametrize(
    "flt",
    [
        Eq("age_band", "18-24"),
        And((Eq("colour", "red"), Eq("age_band", "18-24"))),
        Not(Or((Eq("colour", "blue"), In("age_band", ("25-34",))))),
    ],
)
def test_a_restricted_attribute_cannot_be_filtered_on_without_a_grant(
    cluster: LocalCluster, flt: Filter
) -> None:
    q = vector("e002")
    with as_(cluster, "svc-a") as c:
        with pytest.raises(PermissionDenied, match="restricted attribute"):
            c.search("r", q, 5, filter=flt)
        assert c.search("r", q, 5, filter=Eq("colour", "red")).hits  # others are fine
    with as_(cluster, "analyst") as granted:
        hits = granted.search("r", q, 20, filter=flt).hits
    with RetrievalClient(cluster.coordinator_target, tenant_id="acme", purpose="p") as admin:
        expected = admin.search("r", q, 20, filter=flt).hits
    assert [h.key for h in hits] == [h.key for h in expected]


# -- shards: cluster peers only, and only what a coordinator vouched for -------------


def shard_search(
    cluster: LocalCluster,
    credentials: grpc.ChannelCredentials,
    tenant: str,
    vouches: list[Vouch] | None,
    flt: Filter | None = None,
) -> spb.PackedSearchResponse:
    address = str(cluster.shards["shard-0"].ready["grpc"])  # type: ignore[index]  # started
    req = spb.PackedSearchRequest(
        index=spb.IndexRef(name="ix", version="v1"),
        vectors=vector("e001").tobytes(),
        dimension=DIM,
        queries=[spb.Query(k=3, tenant_id=tenant, filter=filter_to_pb(flt))],
    )
    md = vouch.metadata(vouches) if vouches is not None else ()
    with grpc.secure_channel(address, credentials) as ch:
        response: spb.PackedSearchResponse = shard_pb2_grpc.ShardServiceStub(ch).SearchPacked(
            req, timeout=10, metadata=md
        )
        return response


def test_a_shard_refuses_the_queries_of_a_batch_one_by_one(cluster: LocalCluster) -> None:
    """A coordinator's batch mixes callers: the shard answers the queries
    its checks allow — each exactly as alone — and refuses the others by
    position (`PackedSearchResponse.refused`); only a batch it refuses
    whole fails the call."""
    peer = cluster.peer_credentials()
    restricted: Filter = Eq("age_band", "18-24")
    plan: list[tuple[str, Vouch, Filter | None]] = [
        ("acme", Vouch(ADMIN, "p", "acme"), None),  # served
        ("acme", Vouch("ghost", "p", "acme"), None),  # no such principal
        ("acme", Vouch("analyst", "p", "acme"), restricted),  # granted the attribute
        ("acme", Vouch("svc-a", "p", "acme"), restricted),  # not granted
        ("globex", Vouch(ADMIN, "p", "acme"), None),  # not the tenant vouched for
    ]
    address = str(cluster.shards["shard-0"].ready["grpc"])  # type: ignore[index]  # started

    def search(
        rows: list[tuple[str, Vouch, Filter | None]], accepts: bool = True
    ) -> spb.PackedSearchResponse:
        req = spb.PackedSearchRequest(
            index=spb.IndexRef(name="ix", version="v1"),
            vectors=np.stack([vector("e001")] * len(rows)).tobytes(),
            dimension=DIM,
            queries=[spb.Query(k=3, tenant_id=t, filter=filter_to_pb(f)) for t, _, f in rows],
            accepts_refusals=accepts,
        )
        with grpc.secure_channel(address, peer) as ch:
            response: spb.PackedSearchResponse = shard_pb2_grpc.ShardServiceStub(ch).SearchPacked(
                req, timeout=10, metadata=vouch.metadata([v for _, v, _ in rows])
            )
            return response

    port = cluster.shards["shard-0"].ready["metrics"]  # type: ignore[index]  # started
    before = metric(port, "vecshard_shard_queries_refused_total")
    got = search(plan)
    assert [r.query for r in got.refused] == [1, 3, 4]
    assert metric(port, "vecshard_shard_queries_refused_total") == before + 3
    why = [r.message for r in got.refused]
    assert "ghost" in why[0] and "restricted attribute" in why[1] and "vouched" in why[2]
    assert [got.counts[i] for i in (1, 3, 4)] == [0, 0, 0] and got.counts[0] == 3
    alone = [search([plan[0]]), search([plan[2]])]
    assert got.scores == alone[0].scores + alone[1].scores
    assert got.entity_ids == alone[0].entity_ids + alone[1].entity_ids
    assert not alone[0].refused and not alone[1].refused
    with pytest.raises(grpc.RpcError) as err:
        search([plan[1], plan[3]])  # every query refused: the call is
    assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
    # A coordinator from before per-query refusals (it would read a refused
    # query's empty slot as an answer): the batch is refused whole.
    with pytest.raises(grpc.RpcError) as err:
        search(plan, accepts=False)
    assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED


def test_a_shard_answers_only_vouched_calls_from_cluster_peers(cluster: LocalCluster) -> None:
    ca = cluster.certs.ca_file.read_bytes()
    peer = cluster.peer_credentials()
    ok = [Vouch(ADMIN, "p", "acme")]
    assert len(shard_search(cluster, peer, "acme", ok).counts) == 1  # a coordinator: served

    def refused(
        creds: grpc.ChannelCredentials,
        tenant: str,
        vouches: list[Vouch] | None,
        flt: Filter | None = None,
    ) -> grpc.StatusCode:
        with pytest.raises(grpc.RpcError) as err:
            shard_search(cluster, creds, tenant, vouches, flt)
        code: grpc.StatusCode = err.value.code()
        return code

    # No client certificate, or one from another CA: the handshake fails.
    assert refused(grpc.ssl_channel_credentials(ca), "acme", ok) is grpc.StatusCode.UNAVAILABLE
    evil = CertificateAuthority.create("evil")
    cert, key = evil.issue("coordinator", uris=["spiffe://vecshard/coordinator"])
    forged = grpc.ssl_channel_credentials(ca, key, cert)
    assert refused(forged, "acme", ok) is grpc.StatusCode.UNAVAILABLE
    # A principal's certificate is from the principals CA: the handshake fails.
    pcert, pkey = cluster.certs.issue_principal_cert("svc-a")
    principal = grpc.ssl_channel_credentials(ca, pkey, pcert)
    assert refused(principal, "acme", ok) is grpc.StatusCode.UNAVAILABLE
    # A cluster CA certificate that names no component role: refused.
    ccert, ckey = cluster.certs.ca().issue("svc-a", uris=["spiffe://vecshard/principal/svc-a"])
    not_a_component = grpc.ssl_channel_credentials(ca, ckey, ccert)
    assert refused(not_a_component, "acme", ok) is grpc.StatusCode.PERMISSION_DENIED
    # A shard may not search another shard (replication only).
    shard_peer = cluster.peer_credentials(ComponentRole.SHARD)
    assert refused(shard_peer, "acme", ok) is grpc.StatusCode.PERMISSION_DENIED
    # A coordinator's certificate, but the vouch is missing or does not hold.
    assert refused(peer, "acme", None) is grpc.StatusCode.PERMISSION_DENIED
    assert refused(peer, "globex", ok) is grpc.StatusCode.PERMISSION_DENIED  # other tenant
    assert (
        refused(peer, "globex", [Vouch("svc-a", "p", "globex")])
        is grpc.StatusCode.PERMISSION_DENIED
    )
    assert refused(peer, "acme", [Vouch("ghost", "p", "acme")]) is grpc.StatusCode.PERMISSION_DENIED
    restricted = Eq("age_band", "18-24")
    assert (
        refused(peer, "acme", [Vouch("svc-a", "p", "acme")], restricted)
        is grpc.StatusCode.PERMISSION_DENIED
    )
    granted = shard_search(cluster, peer, "acme", [Vouch("analyst", "p", "acme")], restricted)
    assert len(granted.counts) == 1
    # Keyed calls too: a lookup of another tenant's key under this tenant's vouch.
    address = str(cluster.shards["shard-0"].ready["grpc"])  # type: ignore[index]  # started
    with grpc.secure_channel(address, peer) as ch:
        stub = shard_pb2_grpc.ShardServiceStub(ch)
        keys = [cpb.EntityKey(tenant_id="globex", entity_type="item", entity_id="e001")]
        with pytest.raises(grpc.RpcError) as err:
            stub.BatchGet(
                spb.BatchGetRequest(index=spb.IndexRef(name="ix", version="v1"), keys=keys),
                timeout=10,
                metadata=vouch.metadata(ok),
            )
        assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
    # Replication exports every tenant's raw rows: other shards only, not a
    # coordinator (and a shard may ask: an unknown group exports nothing).
    exports = [
        ("ExportBuckets", rpb.ExportRequest(index_name="ix", index_version="v1", buckets=[0])),
        (
            "ExportFeatureRows",
            rpb.FeatureExportRequest(group_name="nope", group_version="v1", buckets=[0]),
        ),
    ]
    for name, request in exports:
        with grpc.secure_channel(address, peer) as ch:
            with pytest.raises(grpc.RpcError) as err:
                list(
                    getattr(replication_pb2_grpc.ReplicationServiceStub(ch), name)(
                        request, timeout=10
                    )
                )
            assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED, name
    # So do anti-entropy's digests (they say which rows a bucket holds).
    digests = rpb.DigestRequest(group_name="nope", group_version="v1", buckets=[0, 1])
    with grpc.secure_channel(address, peer) as ch:
        with pytest.raises(grpc.RpcError) as err:
            replication_pb2_grpc.ReplicationServiceStub(ch).BucketDigests(digests, timeout=10)
        assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
    with grpc.secure_channel(address, shard_peer) as ch:
        exporter = replication_pb2_grpc.ReplicationServiceStub(ch)
        assert list(exporter.ExportFeatureRows(exports[1][1], timeout=10)) == []
        answer = exporter.BucketDigests(digests, timeout=10)
        assert [(d.bucket, d.digest, d.rows) for d in answer.buckets] == [(0, 0, 0), (1, 0, 0)]
