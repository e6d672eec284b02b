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
from collections.abc import Mapping
from dataclasses import dataclass

from core.domain import AttrValue, EntityKey
from core.errors import InvalidArgument


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


def _plain(attrs: Mapping[str, AttrValue]) -> dict[str, object]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in attrs.items()}


DEFAULT_LIMITS = Limits()
