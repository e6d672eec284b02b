"""The demo data set behind `vecshard up --demo`: a small catalogue of items in
topical clusters for two tenants, a route, searches and lookups, printed."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from client.credentials import Credentials
from client.registry_client import RegistryClient
from client.retrieval_client import Hit, Record, RetrievalClient
from core.errors import VecshardError
from core.filters import And, Eq, Range

DIM = 32
TOPICS = ["cooking", "travel", "jazz", "chess", "hiking", "sci-fi", "gardening", "retro-games"]
CATEGORIES = ["books", "video", "music", "games"]
TENANTS = ["acme", "globex"]
ITEMS_PER_TENANT = 3000
EMBEDDING = ("demo_items", "v1")
ROUTE = "home_feed"
PURPOSE = "recommendation"

SPEC: list[dict[str, Any]] = [
    {
        "kind": "EmbeddingFamily",
        "spec": {
            "name": "demo_items",
            "entity_type": "item",
            "dimension": DIM,
            "metric": "cosine",
            "normalize": True,
            "owner": "demo",
            "allowed_purposes": [PURPOSE],
        },
    },
    {
        "kind": "EmbeddingVersion",
        "spec": {"name": "demo_items", "version": "v1", "status": "ready"},
    },
    {
        "kind": "IndexVersion",
        "spec": {
            "name": "demo_items_flat",
            "version": "v1",
            "embedding": {"name": "demo_items", "version": "v1"},
            "kind": "flat",
            "num_buckets": 12,
            "attributes": {
                "category": "string",
                "topic": "string",
                "price": "float",
                "tags": "string_list",
            },
        },
    },
    {
        "kind": "Bundle",
        "spec": {
            "name": "home_feed_v1",
            "query_embedding": {"name": "demo_items", "version": "v1"},
            "item_embedding": {"name": "demo_items", "version": "v1"},
            "index": {"name": "demo_items_flat", "version": "v1"},
        },
    },
    {"kind": "Route", "spec": {"name": ROUTE, "bundle": "home_feed_v1"}},
    *(
        {
            "kind": "Tenant",
            "spec": {"tenant_id": t, "display_name": t.title(), "allowed_purposes": [PURPOSE]},
        }
        for t in TENANTS
    ),
]
# A service that may read tenant acme's data for recommendation, nothing else.
FEED_SERVICE: dict[str, Any] = {
    "kind": "Principal",
    "spec": {
        "name": "feed-service",
        "role": "reader",
        "tenants": ["acme"],
        "purposes": [PURPOSE],
        "description": "demo: the home feed's ranking service",
    },
}


def catalogue(seed: int = 7) -> tuple[np.ndarray, dict[str, list[Record]]]:
    """Items around one centre per topic; returns the centres and records per tenant."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(TOPICS), DIM)).astype(np.float32)
    per_tenant: dict[str, list[Record]] = {}
    for tenant in TENANTS:
        recs = []
        for i in range(ITEMS_PER_TENANT):
            topic = int(rng.integers(len(TOPICS)))
            vec = centres[topic] + 0.35 * rng.normal(size=DIM).astype(np.float32)
            recs.append(
                Record(
                    entity_id=f"item-{i:05d}",
                    vector=vec,
                    attributes={
                        "category": CATEGORIES[int(rng.integers(len(CATEGORIES)))],
                        "topic": TOPICS[topic],
                        "price": round(float(rng.uniform(2, 60)), 2),
                        "tags": (TOPICS[topic], CATEGORIES[i % len(CATEGORIES)]),
                    },
                    source_version=1,
                )
            )
        per_tenant[tenant] = recs
    return centres, per_tenant


def _table(client: RetrievalClient, hits: list[Hit], say: Callable[[str], None]) -> None:
    if not hits:
        say("    (no results)")
        return
    looked = client.batch_get(*EMBEDDING, [h.key for h in hits], include_vectors=False)
    say(
        f"    {'rank':>4}  {'item':<12} {'score':>7}  {'topic':<12} {'category':<8} {'price':>6}  shard"
    )
    for h, lk in zip(hits, looked, strict=True):
        a = lk.attributes
        say(
            f"    {h.rank:>4}  {h.key.entity_id:<12} {h.score:>7.4f}  {a.get('topic', '?'):<12} "
            f"{a.get('category', '?'):<8} {a.get('price', 0):>6.2f}  {h.shard_id}"
        )


def run_demo(
    coordinator: str,
    credentials: Credentials | None = None,
    token_for: Callable[[str], str] | None = None,
    say: Callable[[str], None] = print,
) -> None:
    """`credentials`: an admin's; `token_for(principal)` mints a token for the
    access-control part (skipped without it)."""
    say("\n== registry: applying the demo spec (family, version, index, bundle, route)")
    with RegistryClient(coordinator, who="vecshard up --demo", credentials=credentials) as registry:
        for line in registry.apply(SPEC, why="demo data set"):
            say(f"    {line}")

    centres, per_tenant = catalogue()
    for tenant, recs in per_tenant.items():
        with RetrievalClient(
            coordinator, tenant_id=tenant, purpose=PURPOSE, credentials=credentials
        ) as client:
            t0 = time.perf_counter()
            written, ignored = client.upsert(*EMBEDDING, recs, batch_size=500)
            say(
                f"== upserted {written} items for tenant {tenant!r} "
                f"({ignored} stale ignored) in {time.perf_counter() - t0:.2f}s"
            )

    with RetrievalClient(
        coordinator, tenant_id="acme", purpose=PURPOSE, credentials=credentials
    ) as client:
        info = client.describe_route(ROUTE)
        say(
            f"\n== route {ROUTE!r} → bundle {info.bundle}: index {info.index}, "
            f"embedding {info.embedding}, {info.dimension}-d {info.metric}"
        )
        jazz = centres[TOPICS.index("jazz")]
        res = client.search(ROUTE, jazz, k=5)
        say(
            f"\n== search: tenant 'acme', query = the 'jazz' topic centre, k=5 "
            f"({res.diagnostics['shards_searched']:.0f} shards, {res.diagnostics['fanout_ms']:.1f} ms fanout)"
        )
        _table(client, res.hits, say)

        flt = And((Eq("category", "books"), Range("price", lt=20.0)))
        res = client.search(ROUTE, centres[TOPICS.index("travel")], k=5, filter=flt)
        say("\n== search with a filter: 'travel' centre, category == books AND price < 20")
        _table(client, res.hits, say)

        first = res.hits[0].key.entity_id if res.hits else "item-00000"
        deleted = client.delete(*EMBEDDING, [first])
        say(f"\n== deleted {deleted} item ({first}); it can no longer be found:")
        res2 = client.search(ROUTE, centres[TOPICS.index("travel")], k=5, filter=flt)
        _table(client, res2.hits, say)

        keys = ["item-00001", first, "item-99999"]
        say(f"\n== BatchGetEmbeddings {keys} (one record per key, in order):")
        for lk in client.batch_get(*EMBEDDING, keys):
            extra = (
                f"norm={lk.norm:.3f} topic={lk.attributes.get('topic')}"
                if lk.status == "found"
                else ""
            )
            say(f"    {lk.key.entity_id:<12} {lk.status:<8} {extra}")

    with RetrievalClient(
        coordinator, tenant_id="globex", purpose=PURPOSE, credentials=credentials
    ) as client:
        res = client.search(ROUTE, jazz, k=3)
        say("\n== same 'jazz' query for tenant 'globex' (its own items only):")
        _table(client, res.hits, say)
    if token_for is not None and credentials is not None:
        _access_demo(coordinator, credentials, token_for, jazz, say)


def _access_demo(
    coordinator: str,
    admin: Credentials,
    token_for: Callable[[str], str],
    query: np.ndarray,
    say: Callable[[str], None],
) -> None:
    """A service granted one tenant and purpose: its tenant is implied, another
    tenant is refused, and it cannot change the registry."""
    with RegistryClient(coordinator, credentials=admin) as registry:
        registry.apply([FEED_SERVICE], why="demo: a reader of one tenant")
    feed = Credentials(token_for("feed-service"), admin.root_certificates)
    say("\n== access control: principal 'feed-service' (reader; tenant acme; recommendation)")
    with RetrievalClient(coordinator, credentials=feed) as client:  # tenant from the grant
        say(
            f"    search without naming a tenant: {len(client.search(ROUTE, query, k=3).hits)} hits"
        )
    with RetrievalClient(coordinator, tenant_id="globex", credentials=feed) as client:
        try:
            client.search(ROUTE, query, k=3)
        except VecshardError as exc:
            say(f"    search for tenant globex: {exc.code.name}")
    with RegistryClient(coordinator, credentials=feed) as registry:
        try:
            registry.rollback(ROUTE, why="not allowed")
        except VecshardError as exc:
            say(f"    rollback of route {ROUTE!r}: {exc.code.name}")
