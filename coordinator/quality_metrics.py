"""Coordinator metrics of model changes and retrieval quality (DESIGN §11).
Labels are routes, families and index versions — never ids."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

DUAL_WRITES = Counter(
    "vecshard_dual_write_records_total",
    "Records an upsert or delete of a family's old embedding version also sent to the new one",
    ["family", "operation"],
)
CANARY_RECALL = Gauge(
    "vecshard_canary_recall",
    "Recall@k of the route's labelled canary query set, run on a schedule through the route",
    ["route"],
)
CANARY_BASELINE = Gauge(
    "vecshard_canary_recall_baseline",
    "Canary recall of the route's index version when it was evaluated for promotion",
    ["route"],
)
CANARY_RUNS = Counter(
    "vecshard_canary_runs_total", "Scheduled canary runs by route and outcome", ["route", "outcome"]
)
ARCHIVED = Counter(
    "vecshard_retention_archived_total",
    "Deprecated index versions archived when their rollback retention ended",
)
