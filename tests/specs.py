"""Registry specs the integration tests share: one embedding family, its
version, an index version, a bundle and a route, as YAML documents; and the
documents of `deploy/examples/` with an admin over two registered shards."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from registry import codec
from registry.admin import RegistryAdmin, parse_documents
from registry.model import ShardMember
from registry.registry import Registry

EXAMPLES = Path(__file__).resolve().parent.parent / "deploy" / "examples"

# Every tenant id the integration tests use: requests must name a registered
# tenant (coordinator.access.require_tenant).
TEST_TENANTS = ("t", "t0", "t1", "t2", "t3", "acme", "globex", "u", "other")


def tenant_docs(tenants: tuple[str, ...] = TEST_TENANTS) -> list[dict[str, Any]]:
    return [{"kind": "Tenant", "spec": {"tenant_id": t}} for t in tenants]


def tenant_spec(tenants: tuple[str, ...] = TEST_TENANTS) -> str:
    """The tenants as YAML documents, to append to a spec ("\n---\n" + this)."""
    return "\n---\n".join(json.dumps(d) for d in tenant_docs(tenants))


def route_spec(
    *,
    dim: int,
    metric: str = "l2",
    family: str = "v",
    index: str = "ix",
    route: str = "r",
    kind: str = "flat",
    num_buckets: int = 8,
    replicas: int = 1,
    write_quorum: int = 0,
    placement: str = "hash",
    attributes: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
) -> str:
    ix = {
        "name": index,
        "version": "v1",
        "embedding": {"name": family, "version": "v1"},
        "kind": kind,
        "num_buckets": num_buckets,
        "placement": placement,
        "write_quorum": write_quorum,
        "attributes": dict(attributes or {}),
        "params": dict(params or {}),
    }
    docs = [
        {
            "kind": "EmbeddingFamily",
            "spec": {"name": family, "entity_type": "item", "dimension": dim, "metric": metric},
        },
        {"kind": "EmbeddingVersion", "spec": {"name": family, "version": "v1"}},
        {"kind": "IndexVersion", "replicas": replicas, "spec": ix},
        {
            "kind": "Bundle",
            "spec": {
                "name": f"{route}_bundle",
                "query_embedding": {"name": family, "version": "v1"},
                "item_embedding": {"name": family, "version": "v1"},
                "index": {"name": index, "version": "v1"},
            },
        },
        {"kind": "Route", "spec": {"name": route, "bundle": f"{route}_bundle"}},
        *tenant_docs(),
    ]
    return "\n---\n".join(json.dumps(d) for d in docs)  # JSON is YAML


def example_docs() -> list[dict[str, Any]]:
    """Every document of `deploy/examples/`, in file order."""
    return [d for f in sorted(EXAMPLES.glob("*.yaml")) for d in parse_documents(f.read_text())]


def admin_with_shards(registry: Registry) -> RegistryAdmin:
    """An admin over `registry` with shard-0 and shard-1 registered (index
    versions are placed on them)."""
    for sid in ("shard-0", "shard-1"):
        registry.store.put(
            registry.keys.shard(sid), codec.encode(ShardMember(sid, f"127.0.0.1:{sid[-1]}"))
        )
    return RegistryAdmin(registry)
