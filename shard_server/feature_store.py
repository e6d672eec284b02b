"""Online feature partitions (DESIGN §7) in the shard's RocksDB.

One column family per group version, `features:{group}:{version}`, so a
group version is created, scanned, purged or dropped without touching
another, and a multi-get reads exactly one family. Keys are the entity key,
length-prefixed like `shard_server.records` (`tenant | entity_type |
entity_id`): no id can make two keys collide, and a tenant prefix iterates.

A value is a fixed binary header — `feature_timestamp`, `generated_at` (int64
µs) and the group version — followed by the row's values as a JSON array in
the group's feature order. Why this split:

- the write path compares times on every put and reads only the header
  (16 bytes, no JSON parse);
- values are mixed dtypes with nulls, strings and lists; the C JSON codec
  handles them faster than a per-dtype struct walk in Python, round-trips
  float64 exactly (shortest repr) and keeps null distinct;
- positional, because a group version's feature list is immutable (a new
  feature is a new group version, hence a new column family), so names need
  not be repeated in every row.

Writes follow `GroupRow.supersedes`: an older `(feature_timestamp,
generated_at)` never overwrites a newer one (counted as `ignored_older`);
equal times replace, so a replayed batch is idempotent. Each put is one
RocksDB batch synced to the WAL before it returns (through
`ShardStore.write`), so an acknowledged row survives a SIGKILL.
"""

from __future__ import annotations

import json
import struct
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

from core.domain import EntityKey, VersionRef
from core.errors import Internal
from registry.feature_values import is_expired
from registry.features import FeatureDType, GroupRow, GroupSchema, PutAck
from shard_server.records import _part, parse_parts
from shard_server.storage import ShardStore, StoreMemory

_HEADER = struct.Struct("<qqH")  # feature_timestamp, generated_at, len(group version)
_TIMES = struct.Struct("<qq")
# Purges delete in chunks so one purge never holds the write lock for long.
_PURGE_CHUNK = 4096


def column_family(group: VersionRef) -> str:
    """Names never contain ':' (registry.features validates them), so this
    cannot collide with another group or with the shard's own families."""
    return f"features:{group.name}:{group.version}"


def entity_key(key: EntityKey) -> bytes:
    return _part(key.tenant_id) + _part(key.entity_type) + _part(key.entity_id)


def parse_entity_key(raw: bytes) -> EntityKey:
    parts = parse_parts(raw)
    if len(parts) != 3:
        raise Internal(f"malformed feature key {raw!r}; expected tenant, entity type, id")
    return EntityKey(*parts)


def encode_row(schema: GroupSchema, row: GroupRow) -> bytes:
    version = schema.group.version.encode()
    values = [row.values.get(name) for name in schema.names]
    body = json.dumps(values, separators=(",", ":"), allow_nan=False).encode()
    return _HEADER.pack(row.feature_timestamp, row.generated_at, len(version)) + version + body


def row_times(raw: bytes) -> tuple[int, int]:
    ts, gen = _TIMES.unpack_from(raw)
    return ts, gen


def decode_row(schema: GroupSchema, key: EntityKey, raw: bytes) -> GroupRow:
    (row,) = decode_rows(schema, [key], [raw])
    return row


def decode_rows(
    schema: GroupSchema, keys: Sequence[EntityKey], raws: Sequence[bytes]
) -> list[GroupRow]:
    """Rows of one group, decoded together: one `json.loads` over all bodies
    is several times faster than one call per row, and a GetFeatures of 800
    candidates decodes hundreds of rows per shard."""
    tag = struct.pack("<H", len(schema.group.version)) + schema.group.version.encode()
    start = _HEADER.size - 2
    head = start + len(tag)
    bodies = []
    for key, raw in zip(keys, raws, strict=True):
        if raw[start:head] != tag:
            raise Internal(
                f"feature row of {tuple(key)} in {column_family(schema.ref)} is not of group "
                f"version {schema.group.version!r}"
            )
        bodies.append(raw[head:])
    decoded = json.loads(b"[" + b",".join(bodies) + b"]") if bodies else []
    names = schema.names
    # JSON has no tuple; float_list values come back as lists.
    lists = [i for i, d in enumerate(schema.definitions) if d.dtype is FeatureDType.FLOAT_LIST]
    out = []
    for key, raw, values in zip(keys, raws, decoded, strict=True):
        if len(values) != len(names):
            raise Internal(
                f"feature row of {tuple(key)} in {column_family(schema.ref)} has {len(values)} "
                f"values; expected {len(names)}"
            )
        for i in lists:
            if values[i] is not None:
                values[i] = tuple(values[i])
        ts, gen = row_times(raw)
        out.append(GroupRow(key, ts, gen, dict(zip(names, values, strict=True))))
    return out


class FeatureStorage(Protocol):
    """What the feature store needs from the shard's RocksDB: the existing
    `ShardStore` surface plus runtime column families."""

    def ensure_column_family(self, name: str) -> None:
        """Creates the column family if it does not exist (idempotent)."""

    def has_column_family(self, name: str) -> bool: ...

    def multi_get(self, cf: str, keys: Sequence[bytes]) -> list[bytes | None]: ...

    def write(
        self,
        puts: Sequence[tuple[str, bytes, bytes]] = (),
        deletes: Sequence[tuple[str, bytes]] = (),
    ) -> int: ...

    def iter_prefix(self, cf: str, prefix: bytes) -> Iterator[tuple[bytes, bytes]]: ...


class FeatureShardStore(ShardStore):
    """`ShardStore` with column families created at runtime (one per feature
    group version); `ShardStore` opens the ones already on disk."""

    def __init__(self, path: Path, memory: StoreMemory | None = None) -> None:
        super().__init__(path, memory)
        self._cf_lock = threading.Lock()

    def ensure_column_family(self, name: str) -> None:
        # Why a lock: two writers creating the same family at once would make
        # RocksDB fail the second create ("column family already exists").
        with self._cf_lock:
            if name in self._cfs:
                return
            cf = self._db.create_column_family(name, self._cf_options())
            self._handles[name] = self._db.get_column_family_handle(name)
            self._cfs[name] = cf

    def has_column_family(self, name: str) -> bool:
        return name in self._cfs


class FeatureStore:
    """The shard's online feature partitions, on top of its `ShardStore`."""

    def __init__(self, storage: FeatureStorage) -> None:
        self._storage = storage
        # Why a lock: put is read-compare-write; two puts of the same entity
        # interleaving could let the older row land last.
        self._write_lock = threading.Lock()

    def has_group(self, group: VersionRef) -> bool:
        """False when this shard holds no data for the group version at all:
        its values are then `not_computed`, not `entity_not_found`."""
        return self._storage.has_column_family(column_family(group))

    def ensure_group(self, group: VersionRef) -> None:
        """Creates the group's column family (e.g. when the registry announces
        it), so an empty partition reads as `entity_not_found`."""
        self._storage.ensure_column_family(column_family(group))

    def put(self, group: GroupSchema, rows: Sequence[GroupRow]) -> PutAck:
        """Writes rows that are at least as new as what is stored, synced.

        Every row is checked before anything is written (one bad row rejects
        the batch, naming it). Within the batch the newest row per entity
        wins, on a tie the later one — the order a replay repeats.
        """
        checked = [group.check_row(r) for r in rows]
        latest: dict[EntityKey, GroupRow] = {}
        for r in checked:
            prev = latest.get(r.entity)
            if prev is None or r.supersedes(prev.feature_timestamp, prev.generated_at):
                latest[r.entity] = r
        if not latest:
            return PutAck(0, 0)
        cf = column_family(group.ref)
        keys = [entity_key(k) for k in latest]
        with self._write_lock:
            self._storage.ensure_column_family(cf)
            stored = self._storage.multi_get(cf, keys)
            puts = []
            for raw_key, r, old in zip(keys, latest.values(), stored, strict=True):
                if old is None or r.supersedes(*row_times(old)):
                    puts.append((cf, raw_key, encode_row(group, r)))
            if puts:
                self._storage.write(puts=puts)
        return PutAck(len(puts), len(checked) - len(puts))

    def multi_get(
        self,
        group: GroupSchema,
        keys: Sequence[EntityKey],
        request_time: int | None = None,
    ) -> list[GroupRow | None]:
        """Stored rows in `keys` order, None where there is none.

        With `request_time`, rows past the group's TTL read as None — the
        same answer `resolve_value` gives for them (`entity_not_found`), but
        without decoding them.
        """
        cf = column_family(group.ref)
        if not keys or not self._storage.has_column_family(cf):
            return [None] * len(keys)
        raws = self._storage.multi_get(cf, [entity_key(k) for k in keys])
        ttl = group.group.ttl_seconds
        live: list[tuple[int, bytes]] = [
            (i, raw)
            for i, raw in enumerate(raws)
            if raw is not None
            and (request_time is None or not is_expired(ttl, row_times(raw)[0], request_time))
        ]
        rows = decode_rows(group, [keys[i] for i, _ in live], [raw for _, raw in live])
        out: list[GroupRow | None] = [None] * len(keys)
        for (i, _), r in zip(live, rows, strict=True):
            out[i] = r
        return out

    def scan(self, group: GroupSchema, tenant_id: str | None = None) -> Iterator[GroupRow]:
        """Every stored row of the group (of one tenant), in key order."""
        cf = column_family(group.ref)
        if not self._storage.has_column_family(cf):
            return
        prefix = _part(tenant_id) if tenant_id is not None else b""
        for raw_key, raw in self._storage.iter_prefix(cf, prefix):
            yield decode_row(group, parse_entity_key(raw_key), raw)

    def purge_expired(self, group: GroupSchema, now: int) -> int:
        """Deletes rows past the group's TTL; returns how many.

        Invisible to readers by construction: an expired row already reads as
        absent. Candidates are re-checked under the write lock, because a put
        may have refreshed a row since the scan saw it.
        """
        ttl = group.group.ttl_seconds
        cf = column_family(group.ref)
        if ttl is None or not self._storage.has_column_family(cf):
            return 0
        candidates = [
            k
            for k, raw in self._storage.iter_prefix(cf, b"")
            if is_expired(ttl, row_times(raw)[0], now)
        ]
        purged = 0
        for start in range(0, len(candidates), _PURGE_CHUNK):
            chunk = candidates[start : start + _PURGE_CHUNK]
            with self._write_lock:
                current = self._storage.multi_get(cf, chunk)
                dead = [
                    (cf, k)
                    for k, raw in zip(chunk, current, strict=True)
                    if raw is not None and is_expired(ttl, row_times(raw)[0], now)
                ]
                if dead:
                    self._storage.write(deletes=dead)
            purged += len(dead)
        return purged
