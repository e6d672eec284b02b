"""Registry documents as a person writes them, against a real etcd: what
`apply` refuses before anything is written (numbers that do not fit or are
not finite, text with NUL or too long, a list or mapping of the wrong shape,
names that cannot be keys, sizes that would take a process down), that an
object created before a rule stays appliable, and that any mutation of the
examples is applied or refused with a caller's error — never another
exception (INTERNAL) — leaving a registry every process can read."""

from __future__ import annotations

import copy
import dataclasses
import random
from collections.abc import Iterator
from typing import Any

import pytest

from core.domain import VersionRef
from core.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from registry import codec
from registry.admin import RegistryAdmin, parse_documents
from registry.model import Tenant
from registry.registry import Registry
from tests.specs import admin_with_shards, example_docs

pytestmark = pytest.mark.integration
CALLERS_ERRORS = (InvalidArgument, NotFound, AlreadyExists, FailedPrecondition, PermissionDenied)


def example(kind: str, which: str) -> dict[str, Any]:
    doc = next(
        d
        for d in example_docs()
        if d["kind"] == kind and which in (d["spec"].get("name"), d["spec"].get("tenant_id"))
    )
    return copy.deepcopy(doc)


@pytest.fixture
def admin(registry: Registry) -> RegistryAdmin:
    admin = admin_with_shards(registry)
    admin.apply(example_docs())
    return admin


def stored(admin: RegistryAdmin) -> dict[str, bytes]:
    entries, _ = admin.registry.store.list_prefix(admin.registry.keys.prefix)
    return {e.key: e.value for e in entries}


def changed(kind: str, which: str, **spec: Any) -> dict[str, Any]:
    doc = example(kind, which)
    doc["spec"].update(spec)
    return doc


REFUSED = [
    # Sizes that would be allocated elsewhere (2**63 buckets: the coordinator OOM).
    (changed("IndexVersion", "items_flat", version="b1", num_buckets=2**63), "fit in 64 bits"),
    (changed("IndexVersion", "items_flat", version="b2", num_buckets=5000), r"1\.\.4096"),
    (changed("IndexVersion", "items_flat", version="b3", num_buckets=0), "num_buckets 0"),
    (changed("IndexVersion", "items_flat", version="b4", max_k=0), "max_k 0; expected"),
    (changed("IndexVersion", "items_flat", version="b5", max_k=10**6), r"1\.\.100000"),
    (changed("EmbeddingFamily", "item_tower", name="wide", dimension=2**20), "dimension"),
    # Shapes: a string is not a list of its characters; null is not a list.
    (changed("Tenant", "acme", allowed_purposes="search"), "expected a list, got 'search'"),
    (changed("Tenant", "acme", allowed_purposes=None), "expected a list, got None"),
    (changed("IndexVersion", "items_flat", version="b6", attributes=[]), "expected a mapping"),
    # Numbers and text as YAML reads them.
    (changed("Route", "home_feed", canary_share=float("nan")), "finite"),
    (changed("Tenant", "acme", display_name="x" * 70_000), "70000 characters"),
    (changed("Tenant", "acme", display_name="a\x00b"), "NUL"),
    # Names that cannot be keys, partitions or labels.
    (changed("Tenant", "acme", tenant_id=""), "not a valid name"),
    (changed("Tenant", "acme", tenant_id="a/b"), "not a valid name"),
    (changed("EmbeddingFamily", "item_tower", name="items:v2"), "not a valid name"),
    (changed("IndexVersion", "items_flat", version="2026 12"), "not a valid name"),
    (changed("Route", "home_feed", name=" home"), "not a valid name"),
    (changed("Tenant", "acme", tenant_id="acme\n"), "not a valid name"),  # `$` matches before it
    # A TTL whose microseconds wrap int64.
    (changed("FeatureGroup", "user_session", version="v9", ttl_seconds=2**62), "seconds"),
]


@pytest.mark.parametrize(("doc", "message"), REFUSED, ids=[m for _, m in REFUSED])
def test_bad_documents_are_refused_and_nothing_is_written(
    admin: RegistryAdmin, doc: dict[str, Any], message: str
) -> None:
    before = stored(admin)
    for dry_run in (True, False):
        with pytest.raises(InvalidArgument, match=message):
            admin.apply([doc], dry_run=dry_run)
    assert stored(admin) == before


def test_yaml_infinity_and_huge_integers_are_refused(admin: RegistryAdmin) -> None:
    text = (
        "kind: Route\nspec: {name: home_feed, bundle: home_2026_10, "
        "canary_bundle: home_2026_11, canary_share: .inf}"
    )
    with pytest.raises(InvalidArgument, match="inf; expected a finite number"):
        admin.apply(parse_documents(text))
    text = "kind: Tenant\nspec: {tenant_id: acme, buckets: [99999999999999999999]}"
    with pytest.raises(InvalidArgument, match="does not fit in 64 bits"):
        admin.apply(parse_documents(text))


def test_yaml_integer_keys_and_booleans_as_numbers_are_refused(admin: RegistryAdmin) -> None:
    """Found in review: mixed int/str keys passed the dry run and crashed the
    write (INTERNAL); a lone int key was stored as "1", so the same document
    re-applied differed; `canary_share: true` was stored as 1.0."""
    before = stored(admin)
    for spec in (
        "attributes: {a: string, 1: int}",
        "attributes: {1: string}",
        "params: {M: 16, 3: 4}",
    ):
        text = (
            "kind: IndexVersion\nspec: {name: ix, version: v9, kind: flat, "
            f"embedding: {{name: items, version: v1}}, {spec}}}"
        )
        for dry_run in (True, False):
            with pytest.raises(InvalidArgument, match="expected text \\(quote it\\)"):
                admin.apply(parse_documents(text), dry_run=dry_run)
    text = "kind: Route\nspec: {name: r9, bundle: b, canary_bundle: c, canary_share: true}"
    with pytest.raises(InvalidArgument, match="canary_share: expected float, got True"):
        admin.apply(parse_documents(text))
    assert stored(admin) == before


@pytest.mark.parametrize(
    "raw", [b"not json", b"[1, 2]", b'{"schema": 1, "kind": "Route"}', b"\xff"]
)
def test_a_stored_value_that_is_no_document_is_invalid_argument(
    admin: RegistryAdmin, raw: bytes
) -> None:
    """`registry list` caught only INVALID_ARGUMENT: one such value under the
    prefix made it fail for every kind (the snapshot skips it)."""
    with pytest.raises(InvalidArgument):
        codec.decode(raw)
    reg = admin.registry
    routes = [o.name for o, _ in admin.list("Route")]
    reg.store.put(reg.keys.route("broken"), raw)
    assert [o.name for o, _ in admin.list("Route")] == routes


def test_an_object_named_before_the_rule_stays_appliable(admin: RegistryAdmin) -> None:
    admin.registry.put_tenant(Tenant("legacy tenant", "Old"))  # written by an earlier version
    spec = {"tenant_id": "legacy tenant", "display_name": "Old"}
    assert admin.apply([{"kind": "Tenant", "spec": spec}]) == ["Tenant legacy tenant unchanged"]
    renamed = {"kind": "Tenant", "spec": {**spec, "display_name": "Renamed"}}
    assert admin.apply([renamed])[0].startswith("Tenant legacy tenant updated")


DELETE = object()


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    yield path, value
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, sub in items:
        yield from _leaves(sub, (*path, key))


def _replaced(spec: dict[str, Any], path: tuple[Any, ...], new: Any) -> Any:
    out = copy.deepcopy(spec)
    if not path:
        return new
    parent = out
    for key in path[:-1]:
        parent = parent[key]
    if new is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = new
    return out


def _variants(value: Any) -> list[Any]:
    common = [None, DELETE, "", "x" * 300, "a:b", [], {}]
    if isinstance(value, bool):
        return [*common, not value, 1]
    if isinstance(value, int):
        return [*common, -1, 0, 2**62, 1.5]
    if isinstance(value, float):
        return [*common, -1.0, 1e300]
    if isinstance(value, list):
        return [*common, [*value, *value[:1]], [None]]
    if isinstance(value, dict):
        return [*common, {**value, "unknown_field": 1}]
    return common


def test_mutated_examples_are_applied_or_refused_clearly(admin: RegistryAdmin) -> None:
    rng = random.Random(11)
    tried = refused = 0
    for n, doc in enumerate(example_docs()):
        # Every field but the kind: the spec's and the placement's (`replicas`).
        body = {k: v for k, v in doc.items() if k != "kind"}
        for path, value in list(_leaves(body))[1:]:
            for new in rng.sample(_variants(value), 3):
                mutated = _replaced(body, path, new)
                spec = mutated.get("spec")
                if isinstance(spec, dict) and "version" in spec and path != ("spec", "version"):
                    spec["version"] = f"m{n}-{tried}"  # a new version: not an immutable update
                tried += 1
                try:
                    admin.apply([{"kind": doc["kind"], **mutated}])
                except CALLERS_ERRORS:
                    refused += 1
    assert tried > 400 and 0 < refused < tried
    # Whatever was accepted, every value in the registry still reads.
    history = f"{admin.registry.keys.prefix}history/"
    for key, value in stored(admin).items():
        if not key.startswith(history):
            codec.decode(value)
    assert admin.registry.snapshot().routes["home_feed"].bundle


def test_the_registry_itself_refuses_sizes_its_callers_did_not_check(
    admin: RegistryAdmin,
) -> None:
    """Jobs write through `Registry` without `apply` (model-change jobs)."""
    reg = admin.registry
    family = reg.snapshot().families["item_tower"]
    with pytest.raises(InvalidArgument, match=r"dimension 70000; expected 1\.\.65536"):
        reg.put_family(dataclasses.replace(family, name="wide", dimension=70_000))
    index = reg.snapshot().indexes[VersionRef("items_flat", "2026-11")]
    for bad, message in (
        (dataclasses.replace(index, version="direct", num_buckets=5000), "num_buckets 5000"),
        (dataclasses.replace(index, version="direct", max_k=0), "max_k 0"),
    ):
        with pytest.raises(InvalidArgument, match=message):
            reg.create_index(bad, ["shard-0", "shard-1"])
    assert VersionRef("items_flat", "direct") not in reg.snapshot().indexes


def test_a_tenants_buckets_cannot_change_once_it_exists(admin: RegistryAdmin) -> None:
    """Records stay in the buckets they were written to: after a change of
    the tenant's buckets a delete went to the new bucket's replicas and was
    acknowledged while the record lived on, searchable (found in review)."""
    first = {"kind": "Tenant", "spec": {"tenant_id": "moving", "buckets": [0]}}
    admin.apply([first])
    before = stored(admin)
    for buckets in ([1], [0, 1], []):
        doc = {"kind": "Tenant", "spec": {"tenant_id": "moving", "buckets": buckets}}
        for dry_run in (True, False):
            with pytest.raises(FailedPrecondition, match=r"'moving': buckets cannot change"):
                admin.apply([doc], dry_run=dry_run)
    with pytest.raises(FailedPrecondition, match=r"\[0\] -> all buckets.*create a new tenant"):
        admin.registry.put_tenant(Tenant("moving"))  # jobs write without `apply`
    assert stored(admin) == before
    # Anything else about it may change; a new tenant takes any buckets.
    renamed = {
        "kind": "Tenant",
        "spec": {"tenant_id": "moving", "buckets": [0], "display_name": "M"},
    }
    admin.apply([renamed, {"kind": "Tenant", "spec": {"tenant_id": "moved", "buckets": [1]}}])
    tenants = admin.registry.snapshot().tenants
    assert (tenants["moving"].display_name, tenants["moved"].buckets) == ("M", (1,))
