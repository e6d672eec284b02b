"""The authorization policy as plain data (registry.access_policy), the
coordinator's per-RPC table (coordinator.request_access) and the vouch's wire
form (core.vouch): unit and property tests, no processes."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from coordinator.request_access import RULES, bind_access
from core.domain import AttrType, VersionRef
from core.errors import InvalidArgument, PermissionDenied
from core.filters import And, Eq, Filter, In, Not, Or, Range
from core.vouch import ERASURE_PURPOSE, Vouch, decode, encode, from_metadata
from protos.vecshard.v1 import common_pb2 as cpb
from protos.vecshard.v1 import erasure_pb2, registry_pb2, retrieval_pb2
from registry.access_policy import (
    ANY,
    Principal,
    Role,
    bind_purpose,
    bind_tenant,
    check_grant,
    check_restricted_filter,
    filter_attributes,
    require_role,
)
from registry.model import IndexVersion

names = st.text(st.characters(codec="utf-8", exclude_characters="/"), min_size=1, max_size=12)


def principal(**kw: object) -> Principal:
    return Principal("svc", **kw)  # type: ignore[arg-type]  # test helper: fields by name


def test_roles_are_ordered_reader_writer_admin() -> None:
    p = principal(role=Role.WRITER)
    require_role(p, Role.READER, "read")
    require_role(p, Role.WRITER, "write")
    with pytest.raises(PermissionDenied, match="needs role admin"):
        require_role(p, Role.ADMIN, "switch")
    with pytest.raises(PermissionDenied, match="disabled"):
        require_role(principal(role=Role.ADMIN, disabled=True), Role.READER, "read")


def test_a_single_granted_tenant_is_implied_and_no_other_is_allowed() -> None:
    p = principal(tenants=("acme",), purposes=("rec",))
    assert bind_tenant(p, "") == "acme" and bind_purpose(p, "") == "rec"
    assert bind_tenant(p, "acme") == "acme"
    with pytest.raises(PermissionDenied, match="not granted tenant 'globex'"):
        bind_tenant(p, "globex")
    several = principal(tenants=("a", "b"))
    with pytest.raises(InvalidArgument, match="name one of"):
        bind_tenant(several, "")
    with pytest.raises(PermissionDenied, match="granted no tenant"):
        bind_tenant(principal(), "")
    wildcard = principal(tenants=(ANY,))
    assert bind_tenant(wildcard, "anyone") == "anyone"
    with pytest.raises(InvalidArgument):
        bind_tenant(wildcard, "")  # an operator still names the tenant


@given(granted=st.lists(names, max_size=4, unique=True), asked=names)
@example(granted=[ANY], asked="0")  # found by CI: a wildcard grant covers every tenant
@example(granted=["acme", ANY], asked=ANY)
def test_binding_never_yields_a_tenant_outside_the_grant(granted: list[str], asked: str) -> None:
    p = principal(tenants=tuple(granted))
    covered = asked in granted or ANY in granted  # the generated names include the wildcard
    try:
        bound = bind_tenant(p, asked)
    except (PermissionDenied, InvalidArgument):
        assert not covered
    else:
        assert bound == asked and covered


def filters(attrs: list[str]) -> st.SearchStrategy[Filter]:
    leaf = st.one_of(
        st.builds(Eq, st.sampled_from(attrs), st.text(max_size=3)),
        st.builds(In, st.sampled_from(attrs), st.tuples(st.text(max_size=3))),
        st.builds(Range, st.sampled_from(attrs), st.floats(0, 9), st.none()),
    )
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.builds(And, st.tuples(inner, inner)),
            st.builds(Or, st.tuples(inner, inner)),
            st.builds(Not, inner),
        ),
        max_leaves=8,
    )


INDEX = IndexVersion(
    "ix",
    "v1",
    VersionRef("e", "v1"),
    attributes={"a": AttrType.STRING, "b": AttrType.STRING, "age": AttrType.INT},
    restricted_attributes=("age",),
)


@given(f=filters(["a", "b", "age"]))
def test_a_filter_touching_a_restricted_attribute_anywhere_is_refused(f: Filter) -> None:
    touches = "age" in filter_attributes(f)
    try:
        check_restricted_filter((), INDEX, filter_attributes(f), "svc")
    except PermissionDenied:
        assert touches
    else:
        assert not touches
    check_restricted_filter(("age",), INDEX, filter_attributes(f), "svc")  # granted: allowed
    check_restricted_filter((ANY,), INDEX, filter_attributes(f), "svc")


def test_bind_access_rewrites_the_request_from_the_grant() -> None:
    p = principal(tenants=("acme",), purposes=("rec",))
    access = cpb.AccessContext(tenant_id="", purpose="", principal="someone-else")
    v = bind_access(p, access)
    assert (access.tenant_id, access.purpose, access.principal) == ("acme", "rec", "svc")
    assert v == Vouch("svc", "rec", "acme")
    with pytest.raises(PermissionDenied, match="reserved"):
        bind_access(
            principal(tenants=("acme",), purposes=(ANY,)),
            cpb.AccessContext(purpose=ERASURE_PURPOSE),
        )


def test_every_public_method_has_an_access_rule() -> None:
    """A method missing from the table is refused at run time (fail closed);
    this keeps the table complete as services grow."""
    for module in (retrieval_pb2, registry_pb2, erasure_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                assert f"/{service.full_name}/{method.name}" in RULES, method.full_name
    mutations = [m for m, r in RULES.items() if "RegistryService" in m and r.role is Role.ADMIN]
    assert sorted(m.rsplit("/", 1)[1] for m in mutations) == [
        "Apply",
        "Promote",
        "Retire",
        "Rollback",
        "SetShardState",
        "SwitchRoute",
        "TrainPlacement",
    ]


def test_reading_grants_needs_admin() -> None:
    rule = RULES["/vecshard.v1.RegistryService/List"]
    assert rule.needed(registry_pb2.ListRequest(kind="Principal")) is Role.ADMIN
    assert rule.needed(registry_pb2.ListRequest(kind="Route")) is Role.READER


def test_registry_changes_and_grants_need_an_admin_of_every_tenant() -> None:
    """An admin of one tenant (erasures of its subjects) could Apply a
    Principal granting itself every tenant, or switch the routes every
    tenant is served by (found in review)."""
    from google.protobuf import symbol_database

    one = Principal("acme-admin", Role.ADMIN, ("acme",), ("*",))
    every = Principal("ops", Role.ADMIN, ("*",), ("*",))
    service = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"]
    db = symbol_database.Default()
    for method in service.methods:
        rule = RULES[f"/{service.full_name}/{method.name}"]
        request = db.GetSymbol(method.input_type.full_name)()
        if hasattr(request, "kind"):
            request.kind = "Principal"
        if rule.needed(request) is not Role.ADMIN:
            continue
        with pytest.raises(PermissionDenied, match="cluster-wide"):
            rule.bind(one, request)
        rule.bind(every, request)
    route = registry_pb2.ListRequest(kind="Route")
    assert RULES["/vecshard.v1.RegistryService/List"].bind(one, route) == []


vouches = st.builds(Vouch, names, names, names)


@given(items=st.lists(vouches, min_size=1, max_size=20))
def test_vouch_round_trips_per_item(items: list[Vouch]) -> None:
    assert decode(encode(items), len(items)) == items


def test_a_missing_or_malformed_vouch_is_refused() -> None:
    with pytest.raises(PermissionDenied, match="no coordinator vouch"):
        from_metadata([("other", "x")], 1)
    with pytest.raises(PermissionDenied, match="malformed"):
        decode(b"not json", 1)
    two = encode([Vouch("p", "u", "a"), Vouch("p", "u", "b")])
    with pytest.raises(PermissionDenied, match="malformed"):
        decode(two, 3)  # one index per item, not fewer


def test_check_grant_covers_tenant_and_purpose() -> None:
    p = principal(tenants=("acme",), purposes=("rec",))
    check_grant(p, "acme", "rec")
    with pytest.raises(PermissionDenied):
        check_grant(p, "acme", "ads")
    with pytest.raises(PermissionDenied):
        check_grant(p, "globex", "rec")
