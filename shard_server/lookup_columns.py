"""Stored embeddings by key, read as arrays (`EmbeddingColumns`) straight
from the record values in RocksDB: one multi-get, then the fixed header of
every record (`shard_server.records`) and its vector are cut out of the
concatenated values with numpy — no record object per key. Attributes, a
JSON object in each value, are passed on as that JSON (never parsed here),
and only when asked for."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from core.domain import EntityKey, VersionRef
from core.embedding_columns import DELETED, FOUND, MISSING, EmbeddingColumns
from core.errors import Internal
from core.feature_columns import gather_ranges
from shard_server import records as rec
from shard_server.storage import RECORDS, TOMBSTONES, ShardStore

# The record header of `records._HEADER` ("<qqfIHI"), as a numpy dtype.
_HEADER = np.dtype(
    [
        ("sv", "<i8"),
        ("created", "<i8"),
        ("norm", "<f4"),
        ("bucket", "<u4"),
        ("nm", "<u2"),
        ("na", "<u4"),
    ]
)


def record_keys(index: VersionRef, keys: Sequence[EntityKey]) -> list[bytes]:
    prefix = rec.index_prefix(index)
    return [rec.keyed(prefix, k) for k in keys]


def read_embeddings(
    store: ShardStore,
    raw_keys: list[bytes],
    dimension: int,
    include_vectors: bool,
    include_attributes: bool,
) -> EmbeddingColumns:
    """One answer per key: found (with its record), deleted (tombstoned) or
    missing."""
    n = len(raw_keys)
    stored = store.multi_get(RECORDS, raw_keys)
    found = [i for i, v in enumerate(stored) if v is not None]
    absent = [i for i, v in enumerate(stored) if v is None]
    status = np.full(n, MISSING, dtype=np.uint8)
    status[found] = FOUND
    if absent:
        tombs = store.multi_get(TOMBSTONES, [raw_keys[i] for i in absent])
        status[[i for i, t in zip(absent, tombs, strict=True) if t is not None]] = DELETED
    width = dimension if include_vectors else 0
    vectors = np.zeros((n, width), dtype=np.float32)
    sv = np.zeros(n, dtype=np.int64)
    created = np.zeros(n, dtype=np.int64)
    norm = np.zeros(n, dtype=np.float32)
    version_index = np.full(n, -1, dtype=np.int32)
    attributes = [""] * n if include_attributes else None
    versions: dict[str, int] = {}
    if found:
        live = [v for v in stored if v is not None]
        lengths = np.fromiter(map(len, live), dtype=np.int64, count=len(live))
        starts = np.zeros(len(live), dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        blob = np.frombuffer(b"".join(live), dtype=np.uint8)
        head = blob[(starts[:, None] + np.arange(_HEADER.itemsize)).reshape(-1)].view(_HEADER)
        nm, na = head["nm"].astype(np.int64), head["na"].astype(np.int64)
        if (lengths != _HEADER.itemsize + nm + na + 4 * dimension).any():
            raise Internal(f"a stored record is not of dimension {dimension}")
        at = np.array(found)
        sv[at], created[at], norm[at] = head["sv"], head["created"], head["norm"]
        if width:
            data = gather_ranges(
                blob, starts + _HEADER.itemsize + nm + na, np.full(len(live), 4 * width)
            )
            vectors[at] = data.view("<f4").reshape(len(live), width)
        for j, (raw, m, a) in enumerate(zip(live, nm.tolist(), na.tolist(), strict=True)):
            h = _HEADER.itemsize
            version = raw[h : h + m].decode()
            version_index[found[j]] = versions.setdefault(version, len(versions))
            if attributes is not None:
                attributes[found[j]] = raw[h + m : h + m + a].decode()
    return EmbeddingColumns(
        status, vectors, sv, created, norm, list(versions), version_index, attributes
    )
