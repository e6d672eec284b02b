"""One measured point of the search benchmark (a system, an index kind, a setting) and the
figures derived from many: cluster ÷ in-process QPS at equal recall, and QPS at the target
recall per kind and shard count."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from benchmarks.closed_loop import ClosedLoopResult
from benchmarks.ground_truth import recall_at_k
from benchmarks.index_kinds import KINDS
from benchmarks.recall_curves import CurvePoint, qps_at_recall, ratios_at_equal_recall

TARGET_RECALL = 0.95
Say = Callable[[str], None]


@dataclass(frozen=True)
class Point:
    system: str  # "in-process" | "cluster"
    kind: str
    shards: int | None
    param: str | None
    value: int | None
    recall: float
    single: ClosedLoopResult  # one request at a time: unloaded latency
    loaded: ClosedLoopResult  # at the fixed concurrency / thread count: QPS
    batch: int = 1  # queries per call under load (SearchBatch when > 1)
    # CPU milliseconds per query by process (client, coordinator, shard-N), where measured.
    cpu_single: Mapping[str, float | None] | None = None
    cpu_loaded: Mapping[str, float | None] | None = None
    # Recall over each query's other neighbours where queries are base rows
    # (`ground_truth.without_self_matches`: bigann10k); None where none is.
    recall_excluding_self: float | None = None

    @property
    def label(self) -> str:
        where = "in-process" if self.shards is None else f"cluster {self.shards} shard(s)"
        return f"{where} {self.kind}" + (f" SearchBatch×{self.batch}" if self.batch > 1 else "")

    @property
    def setting(self) -> str:
        return "" if self.param is None else f"{self.param}={self.value}"

    def curve_point(self) -> CurvePoint:
        return CurvePoint(self.recall, self.loaded.qps, self.setting)

    def to_dict(self) -> dict[str, Any]:
        single, loaded = self.single.to_dict(), self.loaded.to_dict()
        return {
            "system": self.system,
            "kind": self.kind,
            "shards": self.shards,
            "param": self.param,
            "value": self.value,
            "batch": self.batch,
            "recall_at_k": self.recall,
            "recall_at_k_excluding_self": self.recall_excluding_self,
            "qps": loaded["qps"],
            "p50_ms": loaded["latency"].get("p50_ms"),
            "p95_ms": loaded["latency"].get("p95_ms"),
            "p99_ms": loaded["latency"].get("p99_ms"),
            "single_p50_ms": single["latency"].get("p50_ms"),
            "single_p95_ms": single["latency"].get("p95_ms"),
            "single_p99_ms": single["latency"].get("p99_ms"),
            "single": single,
            "loaded": loaded,
            "cpu_ms_per_query_single": self.cpu_single,
            "cpu_ms_per_query_loaded": self.cpu_loaded,
        }


def recall_of(
    result: ClosedLoopResult, gt: NDArray[np.int32] | NDArray[np.int64], k: int, say: Say
) -> float:
    """Recall@k over the queries that were answered; a run that hit its time limit before
    answering them all says so, since its recall then covers fewer queries."""
    answered = result.answered if result.answered is not None else np.ones(len(gt), bool)
    if not answered.any():
        return 0.0
    if not answered.all():
        say(f"only {int(answered.sum())} of {len(gt)} queries answered; recall is over those")
    return recall_at_k(result.found_ids[answered], gt[answered], k)


def recall_of_others(
    result: ClosedLoopResult, others: NDArray[np.int64] | None, k: int
) -> float | None:
    """Recall@k over each query's true neighbours other than itself (``others``: the ground
    truth from ``without_self_matches``); None where no query is a base row."""
    return None if others is None else recall_of(result, others, k, lambda _: None)


def describe(point: Point) -> str:
    d = point.to_dict()
    return (
        f"{point.label:<28} {point.setting:<16} recall {point.recall:.4f}  "
        + (
            f"(excluding self {point.recall_excluding_self:.4f})  "
            if point.recall_excluding_self is not None
            else ""
        )
        + f"{d['qps']:9.1f} qps (p50 {d['p50_ms'] or 0:.3f} / p99 {d['p99_ms'] or 0:.3f} ms at "
        f"{point.loaded.workers} in flight)  single p50 {d['single_p50_ms'] or 0:.3f} ms"
        + (f"  errors {point.loaded.errors}" if point.loaded.errors else "")
        + (
            "  cpu ms/query "
            + " ".join(f"{k}={v:.2f}" for k, v in point.cpu_loaded.items() if v is not None)
            if point.cpu_loaded
            else ""
        )
    )


# --------------------------------------------------------------------------------------------
# Comparisons
# --------------------------------------------------------------------------------------------


def comparisons(points: Sequence[Point]) -> list[dict[str, Any]]:
    """Per cluster point: ratio at equal recall, ratio at the same parameter, p50 overhead."""
    inproc = {
        kind: [p for p in points if p.system == "in-process" and p.kind == kind] for kind in KINDS
    }
    out = []
    for p in points:
        if p.system != "cluster":
            continue
        curve = [q.curve_point() for q in inproc[p.kind]]
        (ratio,) = ratios_at_equal_recall([p.curve_point()], curve)
        same = next((q for q in inproc[p.kind] if q.value == p.value), None)
        single_p50 = p.to_dict()["single_p50_ms"] if p.batch == 1 else None
        same_p50 = same.to_dict()["single_p50_ms"] if same else None
        out.append(
            {
                "kind": p.kind,
                "shards": p.shards,
                "setting": p.setting,
                "batch": p.batch,
                "cluster_recall": p.recall,
                "cluster_qps": p.loaded.qps,
                "inprocess_at_equal_recall": None
                if ratio.inprocess is None
                else {
                    "recall": ratio.inprocess.recall,
                    "qps": ratio.inprocess.qps,
                    "setting": ratio.inprocess.label,
                },
                "ratio_at_equal_recall": ratio.ratio,
                "ratio_at_same_setting": p.loaded.qps / same.loaded.qps
                if same and same.loaded.qps
                else None,
                "single_p50_ms": single_p50,
                "inprocess_single_p50_ms": same_p50,
                "single_p50_overhead_ms": single_p50 - same_p50
                if single_p50 is not None and same_p50 is not None
                else None,
            }
        )
    return out


def server_cpu(cpu: Mapping[str, float | None] | None) -> float | None:
    """Coordinator + shards CPU ms per query (the load generator's own excluded)."""
    if not cpu:
        return None
    servers = [v for name, v in cpu.items() if name not in ("client", "total")]
    known = [v for v in servers if v is not None]
    return sum(known) if servers and len(known) == len(servers) else None


def targets(points: Sequence[Point], target_recall: float = TARGET_RECALL) -> dict[str, Any]:
    """The issue's figures: per kind and shard count, QPS at recall ≥ target and the ratio."""
    out: dict[str, Any] = {"recall_target": target_recall, "by_kind": {}}
    for kind in KINDS:
        inproc = [p for p in points if p.system == "in-process" and p.kind == kind]
        best_in = qps_at_recall([p.curve_point() for p in inproc], target_recall)
        cluster = [p for p in points if p.system == "cluster" and p.kind == kind]
        rows = {}
        for shards in sorted({p.shards for p in cluster if p.shards is not None}):
            mine = [p for p in cluster if p.shards == shards and p.batch == 1]
            batched = [p for p in cluster if p.shards == shards and p.batch > 1]
            best = qps_at_recall([p.curve_point() for p in mine], target_recall)
            best_batched = qps_at_recall([p.curve_point() for p in batched], target_recall)
            at = next((p for p in mine if best is not None and p.setting == best.label), None)
            at_batched = next(
                (
                    p
                    for p in batched
                    if best_batched is not None and p.setting == best_batched.label
                ),
                None,
            )
            rows[str(shards)] = {
                "qps": best.qps if best else None,
                "recall": best.recall if best else None,
                "setting": best.label if best else None,
                "ratio_to_inprocess": best.qps / best_in.qps if best and best_in else None,
                "single_p50_ms": at.to_dict()["single_p50_ms"] if at else None,
                "p99_ms_at_concurrency": at.to_dict()["p99_ms"] if at else None,
                "qps_with_search_batch": best_batched.qps if best_batched else None,
                # What capacity planning reads: CPU ms one query costs each process
                # (client, coordinator, shard-N) and the servers together, under load.
                "cpu_ms_per_query": dict(at.cpu_loaded) if at and at.cpu_loaded else None,
                "server_cpu_ms_per_query": server_cpu(at.cpu_loaded if at else None),
                "cpu_ms_per_query_search_batch": dict(at_batched.cpu_loaded)
                if at_batched and at_batched.cpu_loaded
                else None,
                "server_cpu_ms_per_query_search_batch": server_cpu(
                    at_batched.cpu_loaded if at_batched else None
                ),
            }
        if inproc or rows:
            out["by_kind"][kind] = {
                "inprocess": None
                if best_in is None
                else {"qps": best_in.qps, "recall": best_in.recall, "setting": best_in.label},
                "cluster": rows,
            }
    return out
