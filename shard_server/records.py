"""Embedding records as stored in RocksDB: key and value encodings.

Keys are length-prefixed components so that no tenant or entity id (which may
contain any byte) can make two keys collide or break prefix iteration.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.domain import AttrValue, EntityKey, VersionRef

_HEADER = struct.Struct(
    "<qqfIHI"
)  # source_version, created_at, norm, bucket, len(model), len(attrs)


def _part(s: str) -> bytes:
    b = s.encode()
    return struct.pack("<H", len(b)) + b


def index_prefix(index: VersionRef) -> bytes:
    return _part(index.name) + _part(index.version)


def record_key(index: VersionRef, key: EntityKey) -> bytes:
    return keyed(index_prefix(index), key)


def keyed(prefix: bytes, key: EntityKey) -> bytes:
    """`record_key` with the index prefix computed once by the caller."""
    return prefix + _part(key.tenant_id) + _part(key.entity_type) + _part(key.entity_id)


def parse_parts(raw: bytes) -> list[str]:
    """The components of a length-prefixed key (records, features)."""
    parts: list[str] = []
    pos = 0
    while pos < len(raw):
        (n,) = struct.unpack_from("<H", raw, pos)
        parts.append(raw[pos + 2 : pos + 2 + n].decode())
        pos += 2 + n
    return parts


def parse_record_key(raw: bytes) -> tuple[VersionRef, EntityKey]:
    parts = parse_parts(raw)
    if len(parts) != 5:
        raise ValueError(f"malformed record key {raw!r}")
    return VersionRef(parts[0], parts[1]), EntityKey(parts[2], parts[3], parts[4])


@dataclass(frozen=True)
class Record:
    key: EntityKey
    vector: np.ndarray  # float32, normalized where the family says so
    source_version: int = 0
    model_version: str = ""
    created_at: int = 0
    attributes: dict[str, AttrValue] = field(default_factory=dict)
    norm: float = 0.0  # of the vector as given, before normalization
    bucket: int = 0


def _attr_json(v: AttrValue) -> Any:
    return list(v) if isinstance(v, tuple) else v


def encode_record(rec: Record) -> bytes:
    model = rec.model_version.encode()
    attrs = json.dumps(
        {k: _attr_json(v) for k, v in rec.attributes.items()}, sort_keys=True
    ).encode()
    header = _HEADER.pack(
        rec.source_version, rec.created_at, rec.norm, rec.bucket, len(model), len(attrs)
    )
    return header + model + attrs + np.ascontiguousarray(rec.vector, dtype="<f4").tobytes()


def decode_record(key: EntityKey, raw: bytes) -> Record:
    sv, created, norm, bucket, nm, na = _HEADER.unpack_from(raw)
    pos = _HEADER.size
    model = raw[pos : pos + nm].decode()
    pos += nm
    attrs = {
        k: tuple(v) if isinstance(v, list) else v
        for k, v in json.loads(raw[pos : pos + na]).items()
    }
    pos += na
    vector = np.frombuffer(raw, dtype="<f4", offset=pos)
    return Record(key, vector, sv, model, created, attrs, norm, bucket)


def encode_tombstone(source_version: int) -> bytes:
    return struct.pack("<q", source_version)


def decode_tombstone(raw: bytes) -> int:
    return int(struct.unpack("<q", raw)[0])


def source_version_of(raw: bytes) -> int:
    return int(struct.unpack_from("<q", raw)[0])


def bucket_of_value(raw: bytes) -> int:
    """The bucket a stored record was placed in, without decoding the rest."""
    return int(_HEADER.unpack_from(raw)[3])
