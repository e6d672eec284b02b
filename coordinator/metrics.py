"""Coordinator metrics. Labels carry routes, arms, shards and outcomes — never entity ids."""

from __future__ import annotations

from typing import TypeVar

from prometheus_client import Counter, Gauge, Histogram

M = TypeVar("M", Counter, Gauge, Histogram)
_CHILDREN: dict[tuple[int, tuple[str, ...]], object] = {}


def labeled(metric: M, *labels: str) -> M:
    """`metric.labels(*labels)`, cached: a `labels()` call costs a lock and
    a dict lookup, several per query. Labels are routes, arms, phases and
    outcomes (bounded), never ids."""
    key = (id(metric), labels)
    child = _CHILDREN.get(key)
    if child is None:
        child = _CHILDREN[key] = metric.labels(*labels)
    return child  # type: ignore[return-value]  # a child has its parent's type


REGISTRY_STALENESS = Gauge(
    "vecshard_registry_staleness_seconds",
    "Seconds since the registry snapshot was last confirmed current (0 while the watch is live)",
    ["component"],
)
REGISTRY_REVISION = Gauge(
    "vecshard_registry_revision", "etcd revision of the serving snapshot", ["component"]
)
SHARD_CLIENTS = Gauge(
    "vecshard_coordinator_shard_clients",
    "Shard clients (a channel and a batcher each) this coordinator holds; follows the "
    "registry's shard members",
)
AUDIT_CHAIN_BYTES = Gauge(
    "vecshard_audit_chain_bytes",
    "Bytes of this coordinator's audit chain files on disk (rotated files count until they "
    "are shipped and removed); about 870 bytes a Search, 540 a query of a SearchBatch",
)
AUDIT_GAPS = Counter(
    "vecshard_audit_gaps_total",
    "Gaps found in this coordinator's audit chain at start and written down as gap records: "
    "behind (records cut while it was down), diverged (the chain was replaced), unanchored "
    "(no head in etcd to check against); `vecshard audit verify` fails on each",
    ["reason"],
)
AUDIT_ANCHOR_CONFLICTS = Counter(
    "vecshard_audit_anchor_conflicts_total",
    "Times the audit head anchored in etcd was not the one this coordinator last anchored "
    "(another writer under its name, or someone set it); never moved back",
)
ROUTE_ARM = Counter("vecshard_route_requests_total", "Searches by route and arm", ["route", "arm"])
SHADOW_OVERLAP = Histogram(
    "vecshard_shadow_topk_jaccard",
    "Jaccard overlap of the primary and shadow top-k",
    ["route"],
    buckets=(0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0),
)
SHADOW_LATENCY_DELTA = Histogram(
    "vecshard_shadow_latency_delta_seconds",
    "Shadow search latency minus primary search latency",
    ["route"],
    buckets=(-0.05, -0.01, -0.005, -0.001, 0.0, 0.001, 0.005, 0.01, 0.05, 0.1),
)
SHADOW_ERRORS = Counter("vecshard_shadow_errors_total", "Shadow searches that failed", ["route"])
SHADOW_SKIPPED = Counter(
    "vecshard_shadow_skipped_total",
    "Shadow searches not run: the coordinator's shadow slots were full (load)",
    ["route"],
)
REPLICA_COOLDOWNS = Counter(
    "vecshard_replica_cooldowns_total",
    "Times a shard was avoided for a cool-down while it has peer replicas: it failed a call "
    "(failed), or hedges to its peers answered first several times in a row (slow: stalled)",
    ["shard", "reason"],
)
HEDGES = Counter("vecshard_hedges_total", "Hedged shard calls, fired and won", ["route", "outcome"])
SEARCH_PHASE = Histogram(
    "vecshard_search_phase_seconds",
    "Search latency by phase: resolve (route, plan, access), fanout (waiting for shards), "
    "merge (merging their answers, after each wave and at the end)",
    ["route", "phase"],
    buckets=(0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5),
)
SHARD_CALL_QUERIES = Histogram(
    "vecshard_shard_call_queries",
    "Queries per search call to a shard (adaptive batching: a shard's fixed cost per call is "
    "~7x its cost per query, so this says how much of it each query pays)",
    ["shard_id"],
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64),
)
SHARDS_PER_QUERY = Histogram(
    "vecshard_search_shards",
    "Shards searched and skipped by bound per query",
    ["route", "outcome"],
    buckets=(0, 1, 2, 3, 4, 6, 8, 12, 16, 32, 64),
)
WAVE_SKIP_RATE = Gauge(
    "vecshard_search_wave_skip_rate",
    "Per index version, the decayed share of shards past a query's first wave that their "
    "bound skipped; below the policy's minimum, queries ask every shard at once",
    ["index"],
)
PARTIAL = Counter(
    "vecshard_search_partial_total", "Searches answered with partial results", ["route"]
)
SHED = Counter(
    "vecshard_shed_total",
    "Requests (or shard calls) shed with RESOURCE_EXHAUSTED, by reason: coordinator_in_flight "
    "(the coordinator's admission limit), audit_backlog (the audit trail's records wait to be "
    "written), shard_in_flight (a shard's bound of calls in flight)",
    ["reason"],
)
FEATURE_LATENCY = Histogram(
    "vecshard_feature_request_seconds",
    "GetFeatures latency",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)
FEATURE_ENTITIES = Histogram(
    "vecshard_feature_entities_per_request",
    "Entities per GetFeatures request",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000),
)
FEATURE_MISSING = Counter(
    "vecshard_feature_missing_total",
    "Feature values not served as stored, by group and reason",
    ["group", "reason"],
)
FEATURE_HEDGES = Counter(
    "vecshard_feature_hedges_total",
    "GetFeatures shard calls slower than the shard's p95 whose replicated rows were also asked "
    "of other replicas (fired), and those the other replicas answered first (won)",
    ["outcome"],
)
LOOKUP_HEDGES = Counter(
    "vecshard_lookup_hedges_total",
    "BatchGetEmbeddings shard calls slower than the shard's p95 whose keys were also asked of "
    "other replicas (fired), and those the other replicas answered first (won)",
    ["outcome"],
)
REPLICA_REPAIRS = Counter(
    "vecshard_replica_write_repairs_total",
    "Replica writes (index records, feature rows) that failed on one replica and were retried "
    "in the background: repaired, gave_up (after ~8 s), dropped (the oldest, with too many held)",
    ["outcome"],
)
FEATURE_FAILOVERS = Counter(
    "vecshard_feature_failovers_total",
    "GetFeatures calls a shard did not answer (down, refusing, overloaded) whose rows were "
    "asked of the other replicas of their buckets",
    ["shard_id"],
)
FEATURE_FRESHNESS = Gauge(
    "vecshard_feature_last_timestamp_seconds",
    "Newest feature_timestamp written through this coordinator, per group (freshness)",
    ["group"],
)
