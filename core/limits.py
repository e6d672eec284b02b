"""Input limits: how large a key, a record and a request may be.

Why they exist: without them one caller can store a 10 KB entity id or a
50 MB attribute in every replica, and a shard's memory and RocksDB's write
amplification pay for it for as long as the record lives. Every limit is
checked before anything is written (the coordinator checks, and the shard
checks again: a shard must not trust its caller) and is refused with
INVALID_ARGUMENT naming the limit and the value. The defaults are documented
in the README ("Limits"); each can be set per deployment
(`VECSHARD__LIMITS__<FIELD>`).

Undeclared attributes (not in the index version's schema) are kept as
metadata — returned by lookups, never filterable — within the same limits.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii

import numpy as np

from core.domain import AttrType, AttrValue, EntityKey
from core.errors import InvalidArgument
from core.record_columns import AttributeColumn, PackedStrings, StringLists, first_row


@dataclass(frozen=True)
class Limits:
    max_tenant_id_bytes: int = 128
    max_entity_type_bytes: int = 128
    max_entity_id_bytes: int = 512
    max_attributes_per_record: int = 64
    max_attribute_name_bytes: int = 128
    max_attribute_value_bytes: int = 4096  # a string, or all items of a string list
    max_attribute_list_items: int = 256
    max_attributes_bytes: int = 16 * 1024  # the record's attributes, encoded
    max_model_version_bytes: int = 256
    max_records_per_request: int = 10_000
    max_keys_per_request: int = 10_000
    max_searches_per_request: int = 256
    max_request_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"limits.{name}={value!r}: expected a positive integer")

    def check_key(self, key: EntityKey, where: str) -> None:
        for part, limit in (
            ("tenant_id", self.max_tenant_id_bytes),
            ("entity_type", self.max_entity_type_bytes),
            ("entity_id", self.max_entity_id_bytes),
        ):
            size = len(getattr(key, part).encode())
            if size > limit:
                raise InvalidArgument(
                    f"{where}: {part} is {size} bytes, expected at most {limit} "
                    f"(limits.max_{part}_bytes)"
                )

    def check_attributes(self, attrs: Mapping[str, AttrValue], where: str) -> None:
        if len(attrs) > self.max_attributes_per_record:
            raise InvalidArgument(
                f"{where}: {len(attrs)} attributes, expected at most "
                f"{self.max_attributes_per_record} (limits.max_attributes_per_record)"
            )
        for name, value in attrs.items():
            if len(name.encode()) > self.max_attribute_name_bytes:
                raise InvalidArgument(
                    f"{where}: attribute name {name[:40]!r}... is {len(name.encode())} bytes, "
                    f"expected at most {self.max_attribute_name_bytes} "
                    "(limits.max_attribute_name_bytes)"
                )
            self._check_value(name, value, where)
        size = len(json.dumps(_plain(attrs), separators=(",", ":")).encode())
        if size > self.max_attributes_bytes:
            raise InvalidArgument(
                f"{where}: attributes take {size} bytes encoded, expected at most "
                f"{self.max_attributes_bytes} (limits.max_attributes_bytes)"
            )

    def _check_value(self, name: str, value: AttrValue, where: str) -> None:
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidArgument(
                f"{where}: attribute {name!r} is {value}, expected a finite number"
            )
        if isinstance(value, tuple):
            if len(value) > self.max_attribute_list_items:
                raise InvalidArgument(
                    f"{where}: attribute {name!r} has {len(value)} items, expected at most "
                    f"{self.max_attribute_list_items} (limits.max_attribute_list_items)"
                )
            size = sum(len(v.encode()) for v in value)
        elif isinstance(value, str):
            size = len(value.encode())
        else:
            return
        if size > self.max_attribute_value_bytes:
            raise InvalidArgument(
                f"{where}: attribute {name!r} is {size} bytes, expected at most "
                f"{self.max_attribute_value_bytes} (limits.max_attribute_value_bytes)"
            )

    def check_model_version(self, model_version: str, where: str) -> None:
        size = len(model_version.encode())
        if size > self.max_model_version_bytes:
            raise InvalidArgument(
                f"{where}: model_version is {size} bytes, expected at most "
                f"{self.max_model_version_bytes} (limits.max_model_version_bytes)"
            )

    def check_count(self, what: str, count: int, limit_name: str) -> None:
        """A batch's size against one of the per-request limits (by field name)."""
        limit = getattr(self, limit_name)
        if count > limit:
            raise InvalidArgument(
                f"{what}: {count} in one request, expected at most {limit} "
                f"(limits.{limit_name}); split the batch"
            )

    def check_keys_of(
        self, tenant_id: str, types: Sequence[str], ids: Sequence[str], where: str
    ) -> None:
        """A request's keys as lists (feature reads and writes: the caller's
        tenant, a few types, many ids). Counted in characters first — one is
        at most 4 UTF-8 bytes — so only a long id is encoded."""
        for t in dict.fromkeys(types):
            self.check_key(EntityKey(tenant_id, t, ""), where)
        if not ids or max(map(len, ids)) * 4 <= self.max_entity_id_bytes:
            return
        for i, e in enumerate(ids):
            if len(e) * 4 > self.max_entity_id_bytes:
                self.check_key(EntityKey(tenant_id, "", e), f"{where} [{i}]")

    # --- the same limits over records as columns (core.record_columns) -------
    # One verdict per row equal to the per-record checks above, computed with
    # array operations; `where(i)` names row i in the message.

    def check_key_columns(
        self,
        tenant_id: str,
        entity_type: str,
        entity_ids: PackedStrings,
        where: Callable[[int], str],
    ) -> None:
        if len(entity_ids):
            self.check_key(EntityKey(tenant_id, entity_type, ""), where(0))
        row = first_row(entity_ids.lengths() > self.max_entity_id_bytes)
        if row is not None:
            self.check_key(EntityKey(tenant_id, entity_type, entity_ids[row]), where(row))

    def check_attribute_columns(
        self, columns: Mapping[str, AttributeColumn], n: int, where: Callable[[int], str]
    ) -> None:
        if not columns:
            return
        counts = np.zeros(n, dtype=np.int64)
        for col in columns.values():
            counts += col.present
        row = first_row(counts > self.max_attributes_per_record)
        if row is not None:
            raise InvalidArgument(
                f"{where(row)}: {int(counts[row])} attributes, expected at most "
                f"{self.max_attributes_per_record} (limits.max_attributes_per_record)"
            )
        # JSON size of each row's attributes: "{" + "name":value pairs joined by "," + "}".
        size = np.full(n, 2, dtype=np.int64) + np.maximum(counts - 1, 0)
        for name, col in columns.items():
            self._check_column(name, col, where)
            size += col.present * (len(encode_basestring_ascii(name)) + 1 + _json_sizes(col))
        row = first_row(size > self.max_attributes_bytes)
        if row is not None:
            raise InvalidArgument(
                f"{where(row)}: attributes take {int(size[row])} bytes encoded, expected at "
                f"most {self.max_attributes_bytes} (limits.max_attributes_bytes)"
            )

    def _check_column(self, name: str, col: AttributeColumn, where: Callable[[int], str]) -> None:
        row = first_row(col.present)
        if row is None:
            return
        if len(name.encode()) > self.max_attribute_name_bytes:
            self.check_attributes({name: 0}, where(row))  # raises, worded as for one record
        values = col.values
        bad: int | None = None
        if isinstance(values, np.ndarray):
            if col.type is AttrType.FLOAT:
                bad = first_row(col.present & ~np.isfinite(values))
        elif isinstance(values, StringLists):
            items = np.diff(values.offsets)
            too_long = _row_sums(values.items.lengths(), values.offsets)
            bad = first_row(
                col.present
                & (
                    (items > self.max_attribute_list_items)
                    | (too_long > self.max_attribute_value_bytes)
                )
            )
        else:
            bad = first_row(col.present & (values.lengths() > self.max_attribute_value_bytes))
        if bad is not None:
            value = col.value(bad)
            assert value is not None
            self._check_value(name, value, where(bad))


def _row_sums(per_item: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per row, the sum of its items' values (row i holds items offsets[i]:offsets[i+1])."""
    total = np.zeros(per_item.shape[0] + 1, dtype=np.int64)
    np.cumsum(per_item, out=total[1:])
    sums: np.ndarray = total[offsets[1:]] - total[offsets[:-1]]
    return sums


def _json_sizes(col: AttributeColumn) -> np.ndarray:
    """Per row, the length of the value as `json.dumps` writes it (rows without
    the attribute: whatever; the caller masks them)."""
    values = col.values
    if isinstance(values, StringLists):
        items = np.fromiter(
            map(len, map(encode_basestring_ascii, values.items.tolist())),
            dtype=np.int64,
            count=len(values.items),
        )
        counts = np.diff(values.offsets)
        return 2 + np.where(counts > 0, _row_sums(items, values.offsets) + counts - 1, 0)
    if isinstance(values, PackedStrings):
        texts = map(encode_basestring_ascii, values.tolist())
    elif col.type is AttrType.FLOAT:
        texts = map(float.__repr__, values.tolist())  # what json.dumps writes for a float
    else:
        texts = map(str, values.tolist())
    return np.fromiter(map(len, texts), dtype=np.int64, count=len(col))


def _plain(attrs: Mapping[str, AttrValue]) -> dict[str, object]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in attrs.items()}


DEFAULT_LIMITS = Limits()

# The longest a coordinator may use a shard's summary (DescribeRequest's
# summary_lease_seconds). A write a live summary misses is acknowledged only
# when that summary has expired, holding one of the shard's RPC threads
# meanwhile: a lease of an hour (a mistyped setting) held writes and threads
# for an hour, and one of 1e308 or inf failed every such write (past sleep's
# range) until the shard restarted.
MAX_SUMMARY_LEASE_SECONDS = 10.0


def check_summary_lease(seconds: float, where: str) -> None:
    if not 0 < seconds <= MAX_SUMMARY_LEASE_SECONDS:  # NaN fails too
        raise InvalidArgument(
            f"{where}: summary lease of {seconds} s; expected more than 0 and at most "
            f"{MAX_SUMMARY_LEASE_SECONDS:g} s"
        )
