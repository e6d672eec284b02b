"""Evaluation gates (DESIGN §11): what an index version must prove before it
serves, and the labelled canary query sets it is measured on.

An `IndexEvaluation` is stored with the index version it measured (its own
key, written by `vecshard embeddings evaluate`); `gate_failures` judges it
against the thresholds the index version declares (`QualityGates`). The
judgement is recomputed at every promotion from the stored measurements, not
read from a stored verdict, so an evaluation cannot pass a gate that was
tightened or that it never measured. Pure functions over plain data.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from core.domain import VersionRef
from core.errors import InvalidArgument
from registry.model import IndexVersion, frozen_map

# A canary set lives in etcd and in every snapshot: keep it small.
MAX_CANARY_QUERIES = 1000


@dataclass(frozen=True)
class CanaryQuery:
    """One labelled query: a query vector (base64 of little-endian float32)
    and the ids of the items a good answer contains."""

    tenant_id: str
    vector: str
    relevant_ids: tuple[str, ...]
    query_id: str = ""


@dataclass(frozen=True)
class CanaryQuerySet:
    """Labelled queries for one query embedding version (their vectors come
    from that model). Versioned and immutable: a new label set is a new
    version, so a recall figure always names what it was measured on."""

    name: str
    version: str
    query_embedding: VersionRef
    queries: tuple[CanaryQuery, ...] = ()
    description: str = ""

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"


def encode_vector(vector: np.ndarray) -> str:
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()


def canary_matrix(canary: CanaryQuerySet, dimension: int) -> np.ndarray:
    """The set's query vectors as an (n, dimension) float32 matrix."""
    rows = []
    for i, q in enumerate(canary.queries):
        v = np.frombuffer(base64.b64decode(q.vector), dtype="<f4")
        if v.shape != (dimension,) or not np.isfinite(v).all():
            raise InvalidArgument(
                f"canary set {canary.label} query {i}: expected {dimension} finite float32 values"
            )
        rows.append(v)
    return np.stack(rows).astype(np.float32) if rows else np.zeros((0, dimension), np.float32)


def validate_canary_set(canary: CanaryQuerySet, dimension: int) -> None:
    if not canary.queries:
        raise InvalidArgument(f"canary set {canary.label}: no queries")
    if len(canary.queries) > MAX_CANARY_QUERIES:
        raise InvalidArgument(
            f"canary set {canary.label}: {len(canary.queries)} queries, at most {MAX_CANARY_QUERIES}"
        )
    for i, q in enumerate(canary.queries):
        if not q.tenant_id or not q.relevant_ids:
            raise InvalidArgument(
                f"canary set {canary.label} query {i}: needs a tenant_id and relevant_ids"
            )
        repeated = sorted(r for r, n in Counter(q.relevant_ids).items() if n > 1)
        if repeated:
            # A label is a set: a repeat is a mistake in the labelling job,
            # and stored as it is it would read as a recall no answer can reach.
            raise InvalidArgument(
                f"canary set {canary.label} query {i}: relevant_ids lists "
                f"{', '.join(map(repr, repeated[:5]))} more than once; expected distinct ids"
            )
    canary_matrix(canary, dimension)


@dataclass(frozen=True)
class IndexEvaluation:
    """What `vecshard embeddings evaluate` measured on an index version
    (DESIGN §2: its build and validation stats). None = not measured."""

    index: VersionRef
    evaluated_at: str
    k: int
    sample_size: int = 0
    # (a) recall@k of the index against exact search on stored vectors.
    recall_vs_exact: float | None = None
    recall_by_shard: Mapping[str, float] = field(default_factory=frozen_map)
    recall_by_segment_kind: Mapping[str, float] = field(default_factory=frozen_map)
    # (b) recall@k on the labelled canary set.
    canary_set: str = ""
    canary_recall: float | None = None
    # (c) top-k overlap with the index version in production.
    production_index: str = ""
    overlap_with_production: float | None = None
    # (d) coverage: source rows found in the version.
    coverage: float | None = None
    coverage_by_tenant: Mapping[str, float] = field(default_factory=frozen_map)
    coverage_by_attribute: Mapping[str, float] = field(default_factory=frozen_map)
    rows_by_segment_kind: Mapping[str, int] = field(default_factory=frozen_map)
    rows_by_shard: Mapping[str, int] = field(default_factory=frozen_map)
    # Rows by model_version: dual-written rows keep the old model's version.
    rows_by_model_version: Mapping[str, int] = field(default_factory=frozen_map)
    # The verdict when it was stored (informative; promotion re-judges).
    failures: tuple[str, ...] = ()


def gate_failures(index: IndexVersion, evaluation: IndexEvaluation | None) -> list[str]:
    """Every gate `evaluation` fails for `index`, each naming the gate, what
    was measured and what was required; empty when it may be promoted."""
    gates = index.gates
    if gates is None:
        return []
    if evaluation is None:
        return [f"never evaluated: run `vecshard embeddings evaluate {index.name}@{index.version}`"]
    out = []
    if evaluation.k != gates.k:
        out.append(f"evaluated at k={evaluation.k}, the gates ask k={gates.k}")
    if gates.canary_set and evaluation.canary_set != gates.canary_set:
        out.append(
            f"canary_set: evaluated on {evaluation.canary_set or 'none'}, "
            f"the gates name {gates.canary_set}"
        )
    checks = (
        ("min_recall_vs_exact", gates.min_recall_vs_exact, evaluation.recall_vs_exact),
        ("min_canary_recall", gates.min_canary_recall, evaluation.canary_recall),
        (
            "min_overlap_with_production",
            gates.min_overlap_with_production,
            evaluation.overlap_with_production,
        ),
        ("min_coverage", gates.min_coverage, evaluation.coverage),
    )
    for name, required, measured in checks:
        if required <= 0:
            continue
        if measured is None:
            out.append(f"{name}: not measured (required ≥ {required:.3f})")
        elif measured < required:
            out.append(f"{name}: measured {measured:.3f} < required {required:.3f}")
    few = evaluation.sample_size < gates.min_recall_sample
    if gates.min_recall_vs_exact > 0 and evaluation.recall_vs_exact is not None and few:
        out.append(
            f"min_recall_vs_exact: measured on {evaluation.sample_size} queries, the gates need "
            f"at least {gates.min_recall_sample} (min_recall_sample): evaluate with a larger "
            "--sample (stored vectors per shard), or lower min_recall_sample for an index this small"
        )
    return out


def check_gates_declared(index: IndexVersion) -> None:
    """Thresholds are shares in [0, 1], at a positive k, and canary recall
    needs the canary set it is measured on."""
    gates = index.gates
    if gates is None:
        return
    where = f"index {index.name}@{index.version} gates"
    if gates.k <= 0 or gates.k > index.max_k:
        raise InvalidArgument(f"{where}: k={gates.k}, expected 1..{index.max_k}")
    for name in ("min_recall_vs_exact", "min_canary_recall", "min_overlap_with_production"):
        value = getattr(gates, name)
        if not 0.0 <= value <= 1.0:
            raise InvalidArgument(f"{where}: {name}={value}, expected a share in [0, 1]")
    if gates.min_recall_sample < 0:
        raise InvalidArgument(
            f"{where}: min_recall_sample={gates.min_recall_sample}, expected a number of queries ≥ 0"
        )
    if not 0.0 <= gates.min_coverage <= 1.0:
        raise InvalidArgument(f"{where}: min_coverage={gates.min_coverage}, expected [0, 1]")
    if gates.min_canary_recall > 0 and not gates.canary_set:
        raise InvalidArgument(f"{where}: min_canary_recall needs canary_set (NAME@VERSION)")
