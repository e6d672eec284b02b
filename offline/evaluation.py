"""`vecshard embeddings evaluate NAME@VERSION`: measures an index version
before it may serve (DESIGN §11) and stores the result with it in the
registry, where promotion judges it against the version's gates
(`registry.quality.gate_failures`):

(a) recall@k against exact search on a sample of the vectors each shard
    stores, per shard and per segment kind (the shards measure it);
(b) recall@k on the labelled canary query set the gates name;
(c) top-k overlap with the family's index version in production, with
    stored items as queries (each version searched with its own vector of
    the same item, so two models are compared on the same entities);
(d) coverage: source rows (the backfill's Parquet dataset) present in the
    version, by tenant and by attribute value; rows by segment kind, by
    shard and by model version (rows dual-written during the migration
    keep the old model's version).
"""

from __future__ import annotations

import datetime
import json
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from client.evaluation_client import EvaluationClient
from client.registry_client import RegistryClient
from core.domain import VersionRef
from core.embedding_columns import FOUND
from core.errors import NotFound
from core.recall import mean, overlap_at_k, recall_at_k
from offline.backfill import source_files
from registry import codec
from registry.model import EmbeddingFamily, IndexVersion, Status
from registry.quality import CanaryQuerySet, IndexEvaluation, canary_matrix, gate_failures


@dataclass(frozen=True)
class EvaluateJob:
    index: VersionRef
    k: int | None = None  # None: the gates' k (10 without gates)
    canary_set: str | None = None  # None: the gates' canary set
    source: Path | None = None
    recall_sample_per_shard: int = 200
    coverage_sample: int = 20_000
    overlap_sample: int = 200
    coverage_attributes: tuple[str, ...] = ()
    seed: int = 0
    purpose: str = "evaluation"


def _get(reg: RegistryClient, kind: type[Any], name: str, version: str = "") -> Any:
    return codec.from_dict(kind, reg.get(kind.__name__, name, version).spec)


def production_index(reg: RegistryClient, index: IndexVersion) -> IndexVersion | None:
    """The family's index version in production (not this one), if any."""
    found = []
    for obj in reg.list("IndexVersion"):
        other = codec.from_dict(IndexVersion, obj.spec)
        if (
            other.status is Status.PRODUCTION
            and other.embedding.name == index.embedding.name
            and other.ref != index.ref
        ):
            found.append(other)
    return sorted(found, key=lambda ix: (ix.embedding.version, ix.version))[-1] if found else None


def source_sample(source: Path, n: int, seed: int) -> list[dict[str, Any]]:
    """Up to `n` source rows (keys and attributes), the same ones for a seed,
    in dataset order. Row numbers are drawn from the files' metadata and only
    the row groups holding them are read: the source is the backfill's whole
    dataset, and turning all of it into Python objects to keep `n` cost
    memory and time in its size."""
    files = [pq.ParquetFile(f) for f in source_files(source)]
    total = sum(pf.metadata.num_rows for pf in files)
    wanted = np.array(sorted(random.Random(seed).sample(range(total), min(n, total))), np.int64)
    rows: list[dict[str, Any]] = []
    start = 0  # the first row of the current row group in the whole dataset
    for pf in files:
        cols = [
            c
            for c in ("tenant_id", "entity_type", "entity_id", "attributes")
            if c in pf.schema_arrow.names
        ]
        for g in range(pf.metadata.num_row_groups):
            end = start + pf.metadata.row_group(g).num_rows
            lo, hi = np.searchsorted(wanted, [start, end])
            if hi > lo:
                group = pf.read_row_group(g, columns=cols)
                rows.extend(group.take(pa.array(wanted[lo:hi] - start)).to_pylist())
            start = end
    return rows


def _by_tenant(rows: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        out[r["tenant_id"]].append(r)
    return out


class Evaluation:
    def __init__(self, coordinator: str, job: EvaluateJob) -> None:
        self.coordinator = coordinator
        self.job = job

    @staticmethod
    def _lookups(
        ev: EvaluationClient,
        tenant: str,
        index: VersionRef,
        ids: list[str],
        include_vectors: bool = False,
    ) -> tuple[list[bool], list[str], list[np.ndarray | None]]:
        """For each id, in order, whether index version `index` itself holds
        it, its model version and (`include_vectors`) its vector. Not a
        BatchGetEmbeddings: that reads the embedding version's serving index
        version, and a new index version of the same embedding version (a
        kind being tried) lacking every row written before it read as full."""
        found: list[bool] = []
        models: list[str] = []
        vectors: list[np.ndarray | None] = []
        for i in range(0, len(ids), 1000):
            chunk = ev.lookup_index(
                str(index), tenant, ids[i : i + 1000], include_vectors=include_vectors
            )
            hits = (chunk.status == FOUND).tolist()
            found.extend(hits)
            models.extend(chunk.model_version(j) for j in range(len(chunk)))
            vectors.extend(
                chunk.vectors[j] if hit and include_vectors else None for j, hit in enumerate(hits)
            )
        return found, models, vectors

    def run(self) -> tuple[IndexEvaluation, list[str], str]:
        """The evaluation, its failed gates, and why it was not stored ("" when
        it was). Why not always stored: a ready or production version's
        evaluation is the record it was promoted on (`registry.change_writes`),
        so measuring a serving version reports without replacing it."""
        job = self.job
        with (
            RegistryClient(self.coordinator) as reg,
            EvaluationClient(self.coordinator, purpose=job.purpose) as ev,
        ):
            index = _get(reg, IndexVersion, job.index.name, job.index.version)
            family = _get(reg, EmbeddingFamily, index.embedding.name)
            gates = index.gates
            k = job.k or (gates.k if gates else 10)
            canary_name = (
                job.canary_set
                if job.canary_set is not None
                else (gates.canary_set if gates else "")
            )
            fields: dict[str, Any] = {
                "index": index.ref,
                "evaluated_at": datetime.datetime.now(datetime.UTC).isoformat(
                    timespec="milliseconds"
                ),
                "k": k,
            }
            fields.update(self._recall_vs_exact(ev, index, k))
            if canary_name:
                fields.update(self._canary(reg, ev, index, family, canary_name, k))
            if job.source is not None:
                sample = source_sample(job.source, job.coverage_sample, job.seed)
                fields.update(self._coverage(ev, index, sample))
                prod = production_index(reg, index)
                if prod is not None:
                    fields.update(self._overlap(ev, index, prod, sample, k))
            evaluation = IndexEvaluation(**fields)
            failures = gate_failures(index, evaluation)
            evaluation = IndexEvaluation(**{**fields, "failures": tuple(failures)})
            if index.status not in (Status.BUILDING, Status.VALIDATING):
                not_stored = (
                    f"not stored: {index.ref} is {index.status.value}; evaluations are recorded "
                    "while building or validating"
                )
                return evaluation, failures, not_stored
            doc = {
                "kind": "IndexEvaluation",
                "spec": json.loads(codec.encode(evaluation))["spec"],
            }
            reg.apply([doc], why=f"evaluate {index.ref}")
        return evaluation, failures, ""

    def _recall_vs_exact(self, ev: EvaluationClient, index: IndexVersion, k: int) -> dict[str, Any]:
        shards = ev.check_recall(str(index.ref), k, self.job.recall_sample_per_shard, self.job.seed)
        measured = [s for s in shards if s.queries]
        by_kind: dict[str, list[tuple[float, int]]] = defaultdict(list)
        rows_by_kind: dict[str, int] = defaultdict(int)
        for s in shards:
            for kind, value in s.recall_by_kind.items():
                # Weighted by the pairs measured on that kind (a shard's few
                # queries on a small segment kind must weigh few). An older
                # coordinator sends no counts: the shard's queries, as before.
                by_kind[kind].append((value, s.queries_by_kind.get(kind, s.queries)))
            for kind, rows in s.rows_by_kind.items():
                rows_by_kind[kind] += rows
        total = sum(s.queries for s in measured)
        return {
            "sample_size": total,
            "recall_vs_exact": (sum(s.recall * s.queries for s in measured) / total)
            if total
            else None,
            "recall_by_shard": {s.shard_id: s.recall for s in measured},
            "recall_by_segment_kind": {
                kind: sum(v * n for v, n in pairs) / max(sum(n for _, n in pairs), 1)
                for kind, pairs in by_kind.items()
            },
            "rows_by_segment_kind": dict(rows_by_kind),
            "rows_by_shard": {s.shard_id: s.rows for s in shards},
        }

    def _canary(
        self,
        reg: RegistryClient,
        ev: EvaluationClient,
        index: IndexVersion,
        family: EmbeddingFamily,
        label: str,
        k: int,
    ) -> dict[str, Any]:
        name, _, version = label.partition("@")
        try:
            canary = _get(reg, CanaryQuerySet, name, version)
        except NotFound:
            raise NotFound(
                f"canary set {label} named by {index.ref}'s gates does not exist"
            ) from None
        matrix = canary_matrix(canary, family.dimension)
        recalls: list[float] = []
        by_tenant: dict[str, list[int]] = defaultdict(list)
        for i, q in enumerate(canary.queries):
            by_tenant[q.tenant_id].append(i)
        for tenant, rows in sorted(by_tenant.items()):
            found, _ = ev.search_index(str(index.ref), tenant, matrix[rows], k)
            recalls.extend(
                recall_at_k(ids, canary.queries[i].relevant_ids, k)
                for ids, i in zip(found, rows, strict=True)
            )
        return {"canary_set": label, "canary_recall": mean(recalls)}

    def _coverage(
        self, ev: EvaluationClient, index: IndexVersion, sample: Sequence[dict[str, Any]]
    ) -> dict[str, Any]:
        attrs = self.job.coverage_attributes
        found_by_tenant: dict[str, list[int]] = {}
        by_attr: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        models: dict[str, int] = defaultdict(int)
        for tenant, rows in sorted(_by_tenant(sample).items()):
            hits, versions, _ = self._lookups(ev, tenant, index.ref, [r["entity_id"] for r in rows])
            found_by_tenant[tenant] = [sum(hits), len(hits)]
            for r, hit, model in zip(rows, hits, versions, strict=True):
                if hit:
                    models[model or "(none)"] += 1
                raw = r.get("attributes") or "{}"
                values = json.loads(raw) if isinstance(raw, str) else dict(raw)
                for a in attrs:
                    cell = by_attr[f"{a}={values.get(a, '(missing)')}"]
                    cell[0] += hit
                    cell[1] += 1
        found = sum(f for f, _ in found_by_tenant.values())
        total = sum(n for _, n in found_by_tenant.values())
        return {
            "coverage": found / total if total else None,
            "coverage_by_tenant": {t: f / n for t, (f, n) in found_by_tenant.items() if n},
            "coverage_by_attribute": {a: f / n for a, (f, n) in by_attr.items() if n},
            "rows_by_model_version": dict(models),
        }

    def _overlap(
        self,
        ev: EvaluationClient,
        index: IndexVersion,
        prod: IndexVersion,
        sample: Sequence[dict[str, Any]],
        k: int,
    ) -> dict[str, Any]:
        rows = random.Random(self.job.seed + 1).sample(
            list(sample), min(len(sample), self.job.overlap_sample)
        )
        overlaps: list[float] = []
        for tenant, trs in sorted(_by_tenant(rows).items()):
            ids = [r["entity_id"] for r in trs]
            _, _, new = self._lookups(ev, tenant, index.ref, ids, include_vectors=True)
            _, _, old = self._lookups(ev, tenant, prod.ref, ids, include_vectors=True)
            both = [
                (a, b) for a, b in zip(new, old, strict=True) if a is not None and b is not None
            ]
            if not both:
                continue
            got, _ = ev.search_index(str(index.ref), tenant, np.stack([a for a, _ in both]), k)
            want, _ = ev.search_index(str(prod.ref), tenant, np.stack([b for _, b in both]), k)
            overlaps.extend(overlap_at_k(g, w, k) for g, w in zip(got, want, strict=True))
        return {
            "production_index": str(prod.ref),
            "overlap_with_production": mean(overlaps) if overlaps else None,
        }
