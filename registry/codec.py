"""JSON encoding of registry objects, with a schema version in every value.

The decoder is driven by the dataclass type hints, so adding a field with a
default never breaks reading values written by an older version. The other
way round — an older reader refuses fields it does not know — a field added
later is marked `metadata={"omit_if_default": True}`: it is left out of a
value while it holds its default, so older readers keep reading every value
that does not use it (and refuse, rightly, one that does).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import types
import typing
from collections.abc import Mapping
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar

from core.domain import INT64_MAX, INT64_MIN
from core.errors import InvalidArgument
from registry import model

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

SCHEMA_VERSION = 1
T = TypeVar("T", bound="DataclassInstance")

KINDS: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        model.EmbeddingFamily,
        model.EmbeddingVersion,
        model.IndexVersion,
        model.Placement,
        model.Bundle,
        model.Route,
        model.ShardMember,
        model.RouteChange,
        model.Tenant,
        model.ShardStateIntent,
    )
}


def register_kind(cls: type[Any]) -> None:
    """Lets other registry modules add encodable kinds."""
    KINDS[cls.__name__] = cls


def _register_features() -> None:
    from registry import access_policy, features, quality

    for cls in (
        features.FeatureDefinition,
        features.FeatureGroup,
        features.FeatureSet,
        access_policy.Principal,
    ):
        register_kind(cls)
    for kind in (
        quality.IndexEvaluation,
        quality.CanaryQuerySet,
        model.DualWrite,
        model.VersionRetention,
        model.Retirement,
    ):
        register_kind(kind)


_register_features()


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not (f.metadata.get("omit_if_default") and getattr(value, f.name) == _default(f))
        }
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def encode(obj: Any) -> bytes:
    doc = {"schema": SCHEMA_VERSION, "kind": type(obj).__name__, "spec": _plain(obj)}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _build(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        return _build(next(a for a in args if a is not type(None)), value, where)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if isinstance(tp, type) and issubclass(tp, Enum):
        try:
            return tp(value)
        except ValueError:
            allowed = ", ".join(m.value for m in tp)
            raise InvalidArgument(f"{where}: {value!r} is not one of {allowed}") from None
    if origin is tuple:
        # Not any iterable: a string would become a tuple of its characters.
        if not isinstance(value, list | tuple):
            raise InvalidArgument(f"{where}: expected a list, got {value!r:.80}")
        item = args[0] if args else Any
        return tuple(_build(item, v, where) for v in value)
    if origin in (Mapping, dict) or tp is Mapping:
        if not isinstance(value, Mapping):
            raise InvalidArgument(f"{where}: expected a mapping, got {value!r:.80}")
        vt = args[1] if len(args) == 2 else Any
        return model.frozen_map({k: _build(vt, v, f"{where}.{k}") for k, v in value.items()})
    if tp in (int, float, str, bool):
        if tp is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not isinstance(value, tp) or (tp is not bool and isinstance(value, bool)):
            raise InvalidArgument(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


MAX_TEXT = 64 * 1024


def check_document(value: Any, where: str) -> None:
    """A document as a person writes it, before its fields are typed: every
    integer fits int64, every float is finite, no text holds NUL or passes
    64 KiB. Why on applied documents only (not on stored values): YAML and
    JSON read `1e999` as inf and any digit string as an integer, which then
    pass `isinstance` checks and break comparisons, protobuf fields and
    arithmetic far from here. Stored values are read as they are: a stricter
    reader would drop an object in use (undecodable values are skipped)."""
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise InvalidArgument(f"{where}: {value} does not fit in 64 bits")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidArgument(f"{where}: {value}; expected a finite number")
    elif isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise InvalidArgument(
                f"{where}: text of {len(value)} characters; expected at most {MAX_TEXT}"
            )
        if "\x00" in value:
            raise InvalidArgument(f"{where}: text with a NUL character; expected none")
    elif isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                # YAML reads `1:` as an integer key; stored, it would come back
                # as "1" and differ from the document on every apply.
                raise InvalidArgument(
                    f"{where}: key {k!r} is {type(k).__name__}; expected text (quote it)"
                )
            check_document(k, f"{where}.{k!r:.40}")
            check_document(v, f"{where}.{k}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            check_document(v, f"{where}[{i}]")


def check_note(where: str, **notes: str) -> None:
    """Who made a change and why, kept beside it (route history, shard
    intents): held to the text rule of documents, so a note past etcd's
    request size is refused as such, not answered INTERNAL."""
    check_document(notes, where)


@functools.cache
def _fields_of(cls: type) -> tuple[dict[str, Any], frozenset[str]]:
    """A dataclass's resolved field types and names. Cached: resolving the
    string annotations compiles each of them, half of decoding a registry
    snapshot (every process rebuilds one on every change and every poll)."""
    return typing.get_type_hints(cls), frozenset(f.name for f in dataclasses.fields(cls))


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "") -> T:
    """Builds `cls` from plain data, naming the field when a value is wrong."""
    where = where or cls.__name__
    if not isinstance(data, Mapping):
        raise InvalidArgument(f"{where}: expected a mapping, got {type(data).__name__}")
    hints, names = _fields_of(cls)
    unknown = set(data) - names
    if unknown:
        raise InvalidArgument(
            f"{where}: unknown field(s) {sorted(unknown)}; expected {sorted(names)}"
        )
    kwargs = {k: _build(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise InvalidArgument(f"{where}: {exc}") from None


def decode(raw: bytes) -> Any:
    """A stored value; one that is not a registry document is INVALID_ARGUMENT
    (readers skip it and name it), never a raw parsing error."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"registry value is not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("spec"), Mapping):
        raise InvalidArgument(
            f"registry value {raw[:60]!r} is not a document; expected an object with "
            "schema, kind and spec"
        )
    if doc.get("schema") != SCHEMA_VERSION:
        raise InvalidArgument(
            f"registry value has schema {doc.get('schema')!r}; this build reads {SCHEMA_VERSION}"
        )
    kind = doc.get("kind")
    if kind not in KINDS:
        raise InvalidArgument(f"unknown registry kind {kind!r}; expected one of {sorted(KINDS)}")
    return from_dict(KINDS[kind], doc["spec"])
