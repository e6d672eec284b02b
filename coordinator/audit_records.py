"""What the audit trail says about a call: proto → record fields.

Never raw vectors, text or feature values: a query becomes a salted hash
(keyed BLAKE2b with the trail's id salt: a MAC, one C call per id, cheap
enough for bulk writes of thousands of records), and so does every entity id
a call names or returns — someone holding the salt can check whether a given
id was returned to anyone, nobody can read ids back. Names of routes, versions,
feature sets and registry objects are configuration, recorded as they are.
A failure is recorded by its status code and its error's class, never its
message (`error_field`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from google.protobuf.message import Message

from core.hits_wire import packed_hits_from_pb
from protos.vecshard.v1 import common_pb2 as cpb

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


def _search(h: Hasher, req: Any, resp: Any) -> dict[str, Any]:
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


def _search_batch(h: Hasher, req: Any, resp: Any) -> dict[str, Any]:
    answers = list(resp.responses) if resp is not None else [None] * len(req.requests)
    parts = [_search(h, r, a) for r, a in zip(req.requests, answers, strict=True)]
    return {"queries": len(parts), "searches": parts}


def _lookups(h: Hasher, req: Any, resp: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "embedding": f"{req.embedding_name}@{req.embedding_version}",
        "keys": len(req.keys),
    }
    if resp is not None:
        found = [r.key for r in resp.records if r.status == cpb.FOUND]
        out.update(results=len(found), result_ids=h.keys(found))
    return out


def _upsert(h: Hasher, req: Any, resp: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "embedding": f"{req.embedding_name}@{req.embedding_version}",
        "records": len(req.records),
        "ids": h.keys(r.key for r in req.records),
    }
    if resp is not None:
        out.update(written=resp.written, ignored=resp.ignored_stale)
    return out


def _delete(h: Hasher, req: Any, resp: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "embedding": f"{req.embedding_name}@{req.embedding_version}",
        "keys": len(req.keys),
        "ids": h.keys(req.keys),
        "source_version": req.source_version,
    }
    if resp is not None:
        out["deleted"] = resp.deleted
    return out


def _features(h: Hasher, req: Any, resp: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "feature_set": f"{req.feature_set}@{req.feature_set_version}",
        "entities": len(req.entities),
        "personalized": req.personalized,
    }
    if resp is not None:
        out.update(
            results=len(resp.entities),
            result_ids=h.keys(e.entity for e in resp.entities),
            missing=dict(resp.diagnostics.missing_by_reason),
        )
    return out


def _registry(h: Hasher, req: Any, resp: Any) -> dict[str, Any]:
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


def _erasure(h: Hasher, req: Any, resp: Any) -> dict[str, Any]:
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


def _search_debug(h: Hasher, req: Any, resp: Any) -> dict[str, Any]:
    return _search(h, req, resp.response if resp is not None else None)


_BY_METHOD = {
    "Search": _search,
    "SearchDebug": _search_debug,
    "SearchBatch": _search_batch,
    "BatchGetEmbeddings": _lookups,
    "Upsert": _upsert,
    "Delete": _delete,
    "GetFeatures": _features,
}


def describe(
    h: Hasher, method: str, request: Message | None, response: Message | None
) -> dict[str, Any]:
    """Fields for one call of `method` (the full gRPC name)."""
    if request is None:
        return {}
    service, name = method.rsplit("/", 1)
    if service.endswith("RegistryService"):
        return _registry(h, request, response)
    if service.endswith("ErasureService"):
        return _erasure(h, request, response)
    if name == "DescribeRoute":
        return {"route": getattr(request, "route", "")}
    fn = _BY_METHOD.get(name)
    return fn(h, request, response) if fn is not None else {}


def put_features(h: Hasher, req: Any) -> dict[str, Any]:
    """One message of the PutFeatures stream (rows are counted, ids hashed)."""
    return {
        "group": f"{req.group}@{req.group_version}",
        "rows": len(req.rows),
        "ids": h.keys(r.entity for r in req.rows),
    }
