"""What the audit trail says about a call: proto → record fields.

Never raw vectors, text or feature values: a query becomes a salted hash
(keyed BLAKE2b with the trail's id salt: a MAC, one C call per id, cheap
enough for bulk writes of thousands of records), and so does every entity id
a call names or returns — someone holding the salt can check whether a given
id was returned to anyone, nobody can read ids back. Names of routes, versions,
feature sets and registry objects are configuration, recorded as they are.

An id is hashed with the tenant and entity type it has in the store, as
(tenant, type, id), whichever form the call used: a key that leaves its
tenant or type empty takes the caller's tenant and its family's, group's or
index's type (`EntityTypes`), and so do ids sent bare or as columns — so one
entity has one hash in every record, and the hash of a subject matches.
A failure is recorded by its status code and its error's class, never its
message (`error_field`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from google.protobuf.message import Message

from core.columns_wire import packed_strings_from_pb, row_count
from core.domain import VersionRef
from core.errors import VecshardError
from core.hits_wire import packed_hits_from_pb
from protos.vecshard.v1 import common_pb2 as cpb

if TYPE_CHECKING:
    from registry.snapshot import Snapshot

# Salted hashes are 128 bits: enough to match a known id, and records stay short.
_DIGEST = 16


class Hasher:
    def __init__(self, salt: bytes) -> None:
        # BLAKE2b keys are at most 64 bytes. Copying a keyed state is half the
        # cost of keying a new one, and this runs for every id a call returns.
        # No cache of recent ids: a probe of one (160 ids a record, 20,000–
        # 100,000 distinct) looked them up slower than it hashed them — a
        # large dictionary gone cold between requests costs more than BLAKE2b.
        self._keyed = hashlib.blake2b(key=salt[:64], digest_size=_DIGEST)

    def __call__(self, data: bytes) -> str:
        h = self._keyed.copy()
        h.update(data)
        return h.hexdigest()

    def _hashed(self, keys: Iterable[tuple[str, str, str]]) -> list[str]:
        """Each (tenant, type, id)'s salted hash: the loop `key`, `keys` and
        `ids` share, inlined (a method call per id cost a quarter of it)."""
        keyed = self._keyed
        out = []
        for tenant, entity_type, entity_id in keys:
            h = keyed.copy()
            h.update(f"{tenant}\x1f{entity_type}\x1f{entity_id}".encode())
            out.append(h.hexdigest())
        return out

    def key(self, k: cpb.EntityKey) -> str:
        return self._hashed([(k.tenant_id, k.entity_type, k.entity_id)])[0]

    def keys(self, keys: Iterable[cpb.EntityKey]) -> list[str]:
        return self._hashed((k.tenant_id, k.entity_type, k.entity_id) for k in keys)

    def ids(
        self, tenants: Iterable[str], entity_types: Iterable[str], entity_ids: Iterable[str]
    ) -> list[str]:
        """`keys` of keys given as columns."""
        return self._hashed(zip(tenants, entity_types, entity_ids, strict=True))

    def subject(self, tenant: str, entity_type: str, entity_id: str) -> str:
        return self.key(
            cpb.EntityKey(tenant_id=tenant, entity_type=entity_type, entity_id=entity_id)
        )


class EntityTypes(Protocol):
    """The entity type of the ids a call names without one: a family's (by
    embedding name), an index version's (its family's) or a feature group
    version's; "" when the registry does not know it (the call then fails)."""

    def of_family(self, name: str) -> str: ...

    def of_index(self, name: str, version: str) -> str: ...

    def of_group(self, name: str, version: str) -> str: ...


class UnknownTypes:
    """`EntityTypes` knowing none: ids keep the type their call gave."""

    def of_family(self, name: str) -> str:
        return ""

    def of_index(self, name: str, version: str) -> str:
        return ""

    def of_group(self, name: str, version: str) -> str:
        return ""


UNKNOWN_TYPES = UnknownTypes()


class SnapshotTypes:
    """`EntityTypes` from the coordinator's registry snapshot (read per call:
    a dict lookup or two)."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def of_family(self, name: str) -> str:
        family = self._snapshot().families.get(name)
        return family.entity_type if family is not None else ""

    def of_index(self, name: str, version: str) -> str:
        index = self._snapshot().indexes.get(VersionRef(name, version))
        return self.of_family(index.embedding.name) if index is not None else ""

    def of_group(self, name: str, version: str) -> str:
        try:
            group = self._snapshot().feature_catalog.groups.get(VersionRef(name, version))
        except VecshardError:  # an invalid catalog: the call fails on it too
            return ""
        return group.group.entity_type if group is not None else ""


def _owned(
    keys: Iterable[cpb.EntityKey], tenant: str, entity_type: str
) -> list[tuple[str, str, str]]:
    """Keys as stored: an empty tenant is the caller's, an empty type the
    family's or group's (what `coordinator.access.own_key` fills in)."""
    return [(k.tenant_id or tenant, k.entity_type or entity_type, k.entity_id) for k in keys]


def _bare(ids: Iterable[str], tenant: str, entity_type: str) -> list[tuple[str, str, str]]:
    return [(tenant, entity_type, i) for i in ids]


def _packed(m: cpb.PackedStrings, what: str) -> list[str]:
    return packed_strings_from_pb(m, row_count(m, what), what).tolist()


def error_field(exc: BaseException) -> str:
    """What a record says of why a call failed: the error's class
    (`InvalidArgument`, `QueriesRefused`; an unexpected exception's type),
    never its message. A message tells the caller what was wrong, so it
    names the offending key, attribute value or filter operand
    (`records[3] ('acme', 'user', 'alice@…')`, `got 'x'`) — the raw ids and
    values the trail promises to hold only hashed or not at all. Scrubbing
    messages by pattern (quoted strings, tuples) would miss the next message
    someone writes, or a quote cut by truncation; the class is fixed by the
    code. The caller still gets the whole message in its status."""
    return type(exc).__name__


def _search(h: Hasher, req: Any, resp: Any, types: EntityTypes = UNKNOWN_TYPES) -> dict[str, Any]:
    """Hits carry whole keys: `types` is not needed (the describers' shape)."""
    out: dict[str, Any] = {
        "route": req.route,
        "k": req.k,
        # The query as a whole (vector, k, filter, cursor): equal queries
        # hash equal, so repeated lookups of one user show without the vector.
        "query_hash": h(
            req.query_vector
            + req.filter.SerializeToString(deterministic=True)
            + f"\x1f{req.k}\x1f{req.cursor}".encode()
        ),
    }
    if resp is not None:
        if resp.HasField("packed_hits"):  # read from the arrays: the same ids, the same hashes
            hits = packed_hits_from_pb(resp.packed_hits)
            ids = h.ids(hits.tenant_ids, hits.entity_types, hits.entity_ids)
        else:
            ids = h.keys(hit.key for hit in resp.hits)
        out.update(
            bundle=resp.bundle,
            index=f"{resp.index_name}@{resp.index_version}",
            embedding=f"{resp.embedding_name}@{resp.embedding_version}",
            results=len(ids),
            result_ids=ids,
            partial=resp.partial,
        )
    return out


def _search_batch(h: Hasher, req: Any, resp: Any, types: EntityTypes) -> dict[str, Any]:
    answers = list(resp.responses) if resp is not None else [None] * len(req.requests)
    parts = [_search(h, r, a, types) for r, a in zip(req.requests, answers, strict=True)]
    return {"queries": len(parts), "searches": parts}


def _lookups(h: Hasher, req: Any, resp: Any, types: EntityTypes) -> dict[str, Any]:
    """Every key named (`ids`, refusals included: probing which ids exist is
    a read of them) and the ones found (`result_ids`, a subset, hashed once)."""
    tenant, etype = req.access.tenant_id, types.of_family(req.embedding_name)
    named = _owned(req.keys, tenant, etype) + _bare(req.entity_ids, tenant, etype)
    hashed = h._hashed(named)
    out: dict[str, Any] = {
        "embedding": f"{req.embedding_name}@{req.embedding_version}",
        "keys": len(named),
        "ids": hashed,
    }
    if resp is None:
        return out
    if resp.HasField("columns"):
        found = _found_columns(hashed, resp.columns)
    else:
        by_key = dict(zip(named, hashed, strict=True))
        owned = _owned((r.key for r in resp.records if r.status == cpb.FOUND), tenant, etype)
        found = [by_key[k] if k in by_key else h._hashed([k])[0] for k in owned]
    out.update(results=len(found), result_ids=found)
    return out


def _found_columns(hashed: list[str], columns: Any) -> list[str]:
    """Columnar answers carry statuses in request order (keys, then
    entity_ids), not keys: the found ones are the request's."""
    status = np.frombuffer(columns.status, np.uint8)[: len(hashed)]
    return [hashed[i] for i in np.flatnonzero(status == cpb.FOUND).tolist()]


def _lookup_index(h: Hasher, req: Any, resp: Any, types: EntityTypes) -> dict[str, Any]:
    """An evaluation's lookup in one index version, recorded as a lookup is:
    every id named, and the ones found."""
    etype = types.of_index(req.index_name, req.index_version)
    hashed = h._hashed(_bare(req.entity_ids, req.access.tenant_id, etype))
    out: dict[str, Any] = {
        "index": f"{req.index_name}@{req.index_version}",
        "keys": len(hashed),
        "ids": hashed,
    }
    if resp is not None:
        found = _found_columns(hashed, resp.columns)
        out.update(results=len(found), result_ids=found)
    return out


def _upsert(h: Hasher, req: Any, resp: Any, types: EntityTypes) -> dict[str, Any]:
    etype = types.of_family(req.embedding_name)
    keys = _owned((r.key for r in req.records), req.access.tenant_id, etype)
    return _written(h, req, resp, keys)


def _upsert_columns(h: Hasher, req: Any, resp: Any, types: EntityTypes) -> dict[str, Any]:
    etype = req.records.entity_type or types.of_family(req.embedding_name)
    ids = _packed(req.records.entity_ids, "records.entity_ids")
    return _written(h, req, resp, _bare(ids, req.access.tenant_id, etype))


def _written(
    h: Hasher, req: Any, resp: Any, keys: Sequence[tuple[str, str, str]]
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "embedding": f"{req.embedding_name}@{req.embedding_version}",
        "records": len(keys),
        "ids": h._hashed(keys),
    }
    if resp is not None:
        out.update(written=resp.written, ignored=resp.ignored_stale)
    return out


def _delete(h: Hasher, req: Any, resp: Any, types: EntityTypes) -> dict[str, Any]:
    keys = _owned(req.keys, req.access.tenant_id, types.of_family(req.embedding_name))
    out: dict[str, Any] = {
        "embedding": f"{req.embedding_name}@{req.embedding_version}",
        "keys": len(keys),
        "ids": h._hashed(keys),
        "source_version": req.source_version,
    }
    if resp is not None:
        out["deleted"] = resp.deleted
    return out


def _feature_entities(req: Any) -> list[tuple[str, str, str]]:
    """The entities a feature read names, in request order: `entities`, then
    `entity_columns` (one type index per id into their `entity_types`)."""
    tenant, cols = req.access.tenant_id, req.entity_columns
    types = list(cols.entity_types)
    named = _owned(req.entities, tenant, "")
    named += [(tenant, types[t], i) for t, i in zip(cols.type_index, cols.entity_ids, strict=True)]
    return named


def _features(h: Hasher, req: Any, resp: Any, types: EntityTypes) -> dict[str, Any]:
    out: dict[str, Any] = {
        "feature_set": f"{req.feature_set}@{req.feature_set_version}",
        "entities": len(req.entities) + len(req.entity_columns.entity_ids),
        "personalized": req.personalized,
    }
    if resp is None:
        return out
    if resp.blocks:
        # A block's rows are positions among the request's entities of its
        # type, and the blocks of a group hold each of them once (a missing
        # reason included): the answer covers every entity of a type with a
        # block. Read so, not row by row — that loop cost more per request
        # than the hashes.
        answered = {block.entity_type for block in resp.blocks}
        results = list(dict.fromkeys(k for k in _feature_entities(req) if k[1] in answered))
        out.update(results=len(results), result_ids=h._hashed(results))
    else:
        results = _owned((e.entity for e in resp.entities), req.access.tenant_id, "")
        out.update(results=len(results), result_ids=h._hashed(results))
    out["missing"] = dict(resp.diagnostics.missing_by_reason)
    return out


def _search_index(h: Hasher, req: Any, resp: Any, types: EntityTypes) -> dict[str, Any]:
    """An evaluation search: query rows of one index version, hits as bare
    ids of the caller's tenant and the index's entity type."""
    out: dict[str, Any] = {
        "index": f"{req.index_name}@{req.index_version}",
        "k": req.k,
        "queries": len(req.vectors) // (4 * req.dimension) if req.dimension else 0,
        "query_hash": h(req.vectors + f"\x1f{req.dimension}\x1f{req.k}".encode()),
    }
    if resp is not None:
        etype = types.of_index(req.index_name, req.index_version)
        ids = _bare(
            (i for hits in resp.results for i in hits.entity_ids), req.access.tenant_id, etype
        )
        out.update(results=len(ids), result_ids=h._hashed(ids), partial=resp.partial)
    return out


def _registry(h: Hasher, req: Any, resp: Any, types: EntityTypes) -> dict[str, Any]:
    """Registry calls: every field but bulk payloads (documents, samples)."""
    out: dict[str, Any] = {}
    for f, value in req.ListFields():
        if f.name in ("documents", "sample"):
            out[f"{f.name}_sha256"] = hashlib.sha256(
                value if isinstance(value, bytes) else value.encode()
            ).hexdigest()
        elif isinstance(value, str | int | float | bool):
            out[f.name] = value
    if resp is not None and hasattr(resp, "changes") and not hasattr(resp, "objects"):
        changes = list(resp.changes)
        if changes and isinstance(changes[0], str):
            out["changes"] = changes[:200]
    if resp is not None and hasattr(resp, "effects"):
        out["effects"] = list(resp.effects)[:200]
    return out


def _erasure(h: Hasher, req: Any, resp: Any, types: EntityTypes) -> dict[str, Any]:
    base = req.erasure if hasattr(req, "erasure") else req
    s = base.subject
    out: dict[str, Any] = {
        "subject": h.key(s),
        "entity_type": s.entity_type,
        "job_id": base.job_id,
        "why": base.why,
    }
    for name in ("offline_rows_removed", "offline_matches", "scan_files"):
        if hasattr(req, name):
            out[name] = getattr(req, name)
    if resp is not None:
        for f, value in resp.ListFields():
            if isinstance(value, str | int | float | bool):
                out[f.name] = value
            elif f.name in ("embedding_versions", "index_versions", "feature_groups", "shards"):
                out[f.name] = list(value)
            elif f.name == "copies":
                out["copies"] = len(value)
            elif f.name == "findings":
                out["findings"] = [fd.where for fd in value][:50]
    return out


def _search_debug(h: Hasher, req: Any, resp: Any, types: EntityTypes) -> dict[str, Any]:
    return _search(h, req, resp.response if resp is not None else None, types)


_BY_METHOD = {
    "Search": _search,
    "SearchDebug": _search_debug,
    "SearchBatch": _search_batch,
    "BatchGetEmbeddings": _lookups,
    "Upsert": _upsert,
    "UpsertColumns": _upsert_columns,
    "Delete": _delete,
    "GetFeatures": _features,
    "SearchIndex": _search_index,
    "LookupIndex": _lookup_index,
}


def describe(
    h: Hasher,
    method: str,
    request: Message | None,
    response: Message | None,
    types: EntityTypes = UNKNOWN_TYPES,
) -> dict[str, Any]:
    """Fields for one call of `method` (the full gRPC name); `types` gives
    the entity type of ids the call names without one."""
    if request is None:
        return {}
    service, name = method.rsplit("/", 1)
    if service.endswith("RegistryService"):
        return _registry(h, request, response, types)
    if service.endswith("ErasureService"):
        return _erasure(h, request, response, types)
    if name == "DescribeRoute":
        return {"route": getattr(request, "route", "")}
    fn = _BY_METHOD.get(name)
    return fn(h, request, response, types) if fn is not None else {}


def put_features(h: Hasher, req: Any, types: EntityTypes = UNKNOWN_TYPES) -> dict[str, Any]:
    """One message of the PutFeatures stream (rows are counted, ids hashed):
    its `rows` and its `columns`, which it may carry together."""
    tenant, etype = req.access.tenant_id, types.of_group(req.group, req.group_version)
    keys = _owned((r.entity for r in req.rows), tenant, etype)
    cols = req.columns
    if cols.entity_ids:
        keys += _bare(cols.entity_ids, cols.tenant_id or tenant, cols.entity_type or etype)
    return {"group": f"{req.group}@{req.group_version}", "rows": len(keys), "ids": h._hashed(keys)}
