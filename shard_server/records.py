"""Embedding records as stored in RocksDB: key and value encodings.

Keys are length-prefixed components so that no tenant or entity id (which may
contain any byte) can make two keys collide or break prefix iteration.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii
from typing import Any

import numpy as np

from core.domain import AttrType, AttrValue, EntityKey, VersionRef
from core.errors import Internal, InvalidArgument
from core.record_columns import AttributeColumn

_HEADER = struct.Struct(
    "<qqfIHI"
)  # source_version, created_at, norm, bucket, len(model), len(attrs)
# The same header as a numpy record, to encode a batch of them at once.
_HEADER_DTYPE = np.dtype(
    [
        ("source_version", "<i8"),
        ("created_at", "<i8"),
        ("norm", "<f4"),
        ("bucket", "<u4"),
        ("model_len", "<u2"),
        ("attrs_len", "<u4"),
    ]
)
assert _HEADER_DTYPE.itemsize == _HEADER.size


def _part(s: str) -> bytes:
    b = s.encode()
    try:
        return struct.pack("<H", len(b)) + b
    except struct.error:
        raise InvalidArgument(key_part_too_long(len(b))) from None


def key_part_too_long(size: int) -> str:
    """A key part past the 2-byte length prefix: the coordinator's limits stop
    it first (512-byte ids); a shard refuses it rather than fail the call."""
    return f"a key part of {size} bytes; expected at most 65535 (and within limits)"


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


def created_at_of(raw: bytes) -> int:
    return int(struct.unpack_from("<q", raw, 8)[0])


def bucket_of_value(raw: bytes) -> int:
    """The bucket a stored record was placed in, without decoding the rest."""
    return int(_HEADER.unpack_from(raw)[3])


# --- a batch at once (shard_server.row_batch) ---------------------------------
# Byte for byte what `encode_record` writes for each row (a test holds them
# together), without a Python object per value.


def _json_float(v: float) -> str:
    """What `json.dumps` writes for a float (specials as JSON's own names)."""
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "Infinity" if v > 0 else "-Infinity"
    return float.__repr__(v)


def _json_values(col: AttributeColumn) -> list[str]:
    if col.type is AttrType.STRING_LIST:
        return [
            "[" + ", ".join(map(encode_basestring_ascii, items)) + "]"
            for items in col.values.tolist()
        ]
    if col.type is AttrType.STRING:
        return list(map(encode_basestring_ascii, col.values.tolist()))
    if col.type is AttrType.FLOAT:
        return list(map(_json_float, col.values.tolist()))
    return list(map(int.__repr__, col.values.tolist()))


def attributes_json(columns: Sequence[tuple[str, AttributeColumn]], n: int) -> list[bytes]:
    """Per row, `json.dumps(attributes, sort_keys=True)` of the row's attributes."""
    present = [(name, col) for name, col in columns if col.present.any()]
    if not present:
        return [b"{}"] * n
    parts = []
    for name, col in sorted(present, key=lambda c: c[0]):  # stable: a name's types stay adjacent
        head = encode_basestring_ascii(name) + ": "
        parts.append(
            [
                head + v if p else ""
                for v, p in zip(_json_values(col), col.present.tolist(), strict=True)
            ]
        )
    return [
        ("{" + ", ".join(p for p in row if p) + "}").encode() for row in zip(*parts, strict=True)
    ]


def encode_rows(
    source_versions: np.ndarray,
    created_at: np.ndarray,
    norms: np.ndarray,
    buckets: np.ndarray,
    model_versions: Sequence[str],
    attrs: Sequence[bytes],
    vectors: np.ndarray,
) -> list[bytes]:
    """`encode_record` of every row: one header array and one vector buffer,
    then one join per row."""
    n = source_versions.shape[0]
    models = [m.encode() for m in model_versions]
    header = np.empty(n, dtype=_HEADER_DTYPE)
    header["source_version"] = source_versions
    header["created_at"] = created_at
    header["norm"] = norms
    header["bucket"] = buckets
    header["model_len"] = np.fromiter(map(len, models), dtype=np.int64, count=n)
    header["attrs_len"] = np.fromiter(map(len, attrs), dtype=np.int64, count=n)
    head = memoryview(header.tobytes())
    vec = memoryview(np.ascontiguousarray(vectors, dtype="<f4").tobytes())
    h, d = _HEADER.size, vectors.shape[1] * 4
    return [
        b"".join((head[i * h : i * h + h], models[i], attrs[i], vec[i * d : i * d + d]))
        for i in range(n)
    ]


def row_keys(prefix: bytes, keys: Sequence[EntityKey]) -> list[bytes]:
    """`keyed` for many keys; tenant and entity type parts are encoded once each."""
    parts: dict[str, bytes] = {}

    def part(s: str) -> bytes:
        p = parts.get(s)
        if p is None:
            p = parts[s] = _part(s)
        return p

    return [prefix + part(t) + part(e) + _part(i) for t, e, i in keys]


_LENGTH = struct.Struct("<H")  # of a key part, as `_part` writes it


def entity_key(key: EntityKey) -> bytes:
    return _part(key.tenant_id) + _part(key.entity_type) + _part(key.entity_id)


def entity_keys(tenant_id: str, entity_type: str, entity_ids: Sequence[str]) -> list[bytes]:
    """`entity_key` of many ids of one tenant and type (the prefix once)."""
    prefix = _part(tenant_id) + _part(entity_type)
    length = _LENGTH.pack
    encoded = [i.encode() for i in entity_ids]
    try:
        return [prefix + length(len(b)) + b for b in encoded]
    except struct.error:
        raise InvalidArgument(key_part_too_long(max(map(len, encoded)))) from None


def parse_entity_key(raw: bytes) -> EntityKey:
    parts = parse_parts(raw)
    if len(parts) != 3:
        raise Internal(f"malformed feature key {raw!r}; expected tenant, entity type, id")
    return EntityKey(*parts)
