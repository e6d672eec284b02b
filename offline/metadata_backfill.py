"""`vecshard embeddings add-attribute`: a filterable attribute added to an
index version's schema and set on the records it already holds, without
re-embedding them (DESIGN §11), so that filters on it see the whole corpus,
not only new writes.

The schema change goes first (registry: only additions are allowed on a
version that serves; shards pick it up through their watch, or on the first
write that carries it). Then every key of the key list (a Parquet dataset:
the backfill's source, or an export) is read back with its vector and
written again with the attribute set — a default, or a computed value from a
column — at the record's own `source_version`: an equal version replaces, so
the job is idempotent, and a newer write that arrives meanwhile wins.
Records that already hold the value are skipped, so a rerun resumes.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import pyarrow.parquet as pq

from client.registry_client import RegistryClient
from client.retrieval_client import Record, RetrievalClient
from core.domain import AttrType, AttrValue, EntityKey, VersionRef
from core.errors import FailedPrecondition, InvalidArgument, NotFound
from offline.backfill import source_files


@dataclass(frozen=True)
class AttributeJob:
    index: VersionRef
    name: str
    type: AttrType
    keys: Path
    default: AttrValue | None = None
    value_column: str = ""
    batch_size: int = 500
    purpose: str = "backfill"


@dataclass(frozen=True)
class AttributeReport:
    updated: int
    unchanged: int
    missing: int  # keys the embedding version does not hold (deleted, never written)
    no_value: int  # rows whose computed value is empty


def parse_value(text: str, kind: AttrType) -> AttrValue:
    try:
        if kind is AttrType.INT:
            return int(text)
        if kind is AttrType.FLOAT:
            return float(text)
    except ValueError:
        raise InvalidArgument(f"default {text!r} is not a {kind.value}") from None
    if kind is AttrType.STRING_LIST:
        return tuple(v for v in text.split(",") if v)
    return text


def _value(row: dict[str, Any], job: AttributeJob) -> AttrValue | None:
    if not job.value_column:
        return job.default
    v = row.get(job.value_column)
    return tuple(v) if isinstance(v, list) else v


def _rows(job: AttributeJob) -> Iterator[list[dict[str, Any]]]:
    cols = [
        "tenant_id",
        "entity_type",
        "entity_id",
        *([job.value_column] if job.value_column else []),
    ]
    for f in source_files(job.keys):
        missing = set(cols) - set(pq.read_schema(f).names)
        if missing:
            raise InvalidArgument(f"{f} lacks column(s) {sorted(missing)}")
        for batch in pq.ParquetFile(f).iter_batches(batch_size=job.batch_size, columns=cols):
            yield batch.to_pylist()


def add_schema_attribute(reg: RegistryClient, job: AttributeJob) -> VersionRef:
    """Adds the attribute to the index version; returns its embedding version."""
    spec = reg.get("IndexVersion", job.index.name, job.index.version).spec
    embedding = VersionRef(spec["embedding"]["name"], spec["embedding"]["version"])
    try:
        dw = reg.get("DualWrite", embedding.name).spec
    except NotFound:
        dw = None
    if dw and dw["enabled"] and embedding.version in (dw["from_version"], dw["to_version"]):
        raise FailedPrecondition(
            f"dual-write of {embedding.name} is on ({dw['from_version']} → {dw['to_version']}): "
            "rewriting records now would copy them across versions; run this after the migration"
        )
    attributes = dict(spec.get("attributes") or {})
    if attributes.get(job.name, job.type.value) != job.type.value:
        raise FailedPrecondition(
            f"index version {job.index} has {job.name!r} as {attributes[job.name]}, not {job.type.value}"
        )
    if job.name not in attributes:
        attributes[job.name] = job.type.value
        reg.apply(
            [{"kind": "IndexVersion", "spec": {**spec, "attributes": attributes}}],
            why=f"add attribute {job.name}",
        )
    return embedding


def set_attribute(
    coordinator: str, job: AttributeJob, progress: TextIO | None = sys.stderr
) -> AttributeReport:
    with RegistryClient(coordinator) as reg:
        embedding = add_schema_attribute(reg, job)
    clients: dict[str, RetrievalClient] = {}
    updated = unchanged = missing = no_value = 0
    try:
        for rows in _rows(job):
            by_tenant: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for r in rows:
                by_tenant[r["tenant_id"]].append(r)
            for tenant, trs in by_tenant.items():
                if tenant not in clients:
                    clients[tenant] = RetrievalClient(
                        coordinator, tenant_id=tenant, purpose=job.purpose, timeout=60
                    )
                c = clients[tenant]
                keys = [EntityKey(tenant, r["entity_type"], r["entity_id"]) for r in trs]
                writes = []
                for r, lk in zip(
                    trs, c.batch_get(embedding.name, embedding.version, keys), strict=True
                ):
                    value = _value(r, job)
                    if lk.status != "found" or lk.vector is None:
                        missing += 1
                    elif value is None:
                        no_value += 1
                    elif lk.attributes.get(job.name) == value:
                        unchanged += 1
                    else:
                        writes.append(
                            Record(
                                lk.key.entity_id,
                                lk.vector,
                                attributes={**lk.attributes, job.name: value},
                                source_version=lk.source_version,
                                model_version=lk.model_version,
                                entity_type=lk.key.entity_type,
                                tenant_id=tenant,
                            )
                        )
                if writes:
                    c.upsert(embedding.name, embedding.version, writes, batch_size=len(writes))
                    updated += len(writes)
            if progress is not None:
                progress.write(
                    f"add-attribute {job.index} {job.name}: {updated:,} updated, {unchanged:,} "
                    f"already set, {missing:,} missing\n"
                )
    finally:
        for c in clients.values():
            c.close()
    return AttributeReport(updated, unchanged, missing, no_value)


def report_json(report: AttributeReport) -> str:
    return json.dumps(report.__dict__, sort_keys=True)
