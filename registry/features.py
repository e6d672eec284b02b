"""Feature definitions, groups and sets (DESIGN §2, §7) and the pure logic that
online serving and offline training share.

The one rule this module exists for: **a missing, stale or expired value is
resolved by the same function online and offline** (`resolve_value`), so a
model sees the same defaults and missing reasons in training as in serving.
Parity then holds by construction; `tests/test_feature_parity.py` proves it.

Units: timestamps are integer microseconds since the Unix epoch (UTC), the
unit the coordinator's clock and `source_version` already use; integers keep
staleness exact, so online and offline compare equal bit for bit. SLAs and
TTLs are configured in whole seconds because people write them.

Dtypes are deliberately few — `int64`, `float64`, `string`, `bool`,
`float_list` — because each maps one-to-one onto an Arrow/Parquet type, a JSON
value and a proto oneof, with no rounding or overflow between the three (an
`int32` or `float32` would round differently offline and online and break
parity). Timestamps are `int64` microseconds; categories are strings; short
dense vectors are `float_list`.

Missing reasons, and what each means (both paths):

- `entity_not_found`: no live row for the entity in the group — never written,
  or older than the group's TTL. Expiry is reported exactly like absence so
  that a purge of expired rows never changes an answer as of now (by the
  shard's clock: a past request time may see a row live then until it is
  purged — the online store keeps the latest row, not its history).
- `no_history`: a live row exists, but this feature is null in it (the
  pipeline ran and the entity had nothing to aggregate).
- `stale`: a value exists but is older than the definition's freshness SLA;
  by default the stale value is still served (policy `keep_value`).
- `privacy_disabled`: the request is not personalized and the feature is not
  `public`; such groups are never fetched (`readable_groups`).
- `timeout`: the shard holding the row was asked but did not answer within
  the request's deadline (online only).
- `unavailable`: no shard holding the row could be asked — none is serving
  its bucket (lease expired, drained) or every one refused the call (down,
  shutting down, overloaded) — so the value is unknown at once, without
  waiting out the deadline (online only).
- `not_computed`: the group version has no data at all where it was asked
  for (no column family on the shard; no dataset offline).

Every object here is a frozen dataclass that `registry.codec` encodes
(fields are str/int/bool/enums/tuples/nested dataclasses/Optional; values of
a feature's dtype are typed `Any` and canonicalized in `__post_init__`, so a
decoded object compares equal to the one encoded).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, NamedTuple, TypeAlias

from core.domain import INT64_MAX, INT64_MIN, EntityKey, VersionRef
from core.errors import FailedPrecondition, InvalidArgument, NotFound
from core.timestamps import MAX_US, check_time
from registry.names import check_name

US_PER_SECOND = 1_000_000
_MAX_SECONDS = MAX_US // US_PER_SECOND  # so `seconds * 1e6` cannot wrap int64
# Columns every offline feature table carries; a feature may not shadow them.
KEY_COLUMNS = ("tenant_id", "entity_type", "entity_id")
TIME_COLUMNS = ("feature_timestamp", "generated_at")
RESERVED_NAMES = frozenset((*KEY_COLUMNS, *TIME_COLUMNS, "date"))


class FeatureDType(StrEnum):
    INT64 = "int64"
    FLOAT64 = "float64"
    STRING = "string"
    BOOL = "bool"
    FLOAT_LIST = "float_list"


class PrivacyClass(StrEnum):
    """`public` may be served to anyone; `behavioural` (derived from a user's
    actions) and `sensitive` only to personalized requests — a request in
    non-personalized mode reads `public` features only."""

    PUBLIC = "public"
    BEHAVIOURAL = "behavioural"
    SENSITIVE = "sensitive"


class MissingReason(StrEnum):
    NO_HISTORY = "no_history"
    ENTITY_NOT_FOUND = "entity_not_found"
    STALE = "stale"
    PRIVACY_DISABLED = "privacy_disabled"
    TIMEOUT = "timeout"
    NOT_COMPUTED = "not_computed"
    UNAVAILABLE = "unavailable"


class FillAction(StrEnum):
    """What a model reads when a value is missing (or stale)."""

    FEATURE_DEFAULT = "feature_default"  # the definition's `default_value`
    NULL = "null"  # null; the model handles missing itself
    CONSTANT = "constant"  # the rule's own `constant`
    KEEP_VALUE = "keep_value"  # only for `stale`: serve the stored, stale value


def _check_seconds(what: str, value: int | None) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= _MAX_SECONDS
    ):
        raise InvalidArgument(f"{what} must be 1..{_MAX_SECONDS} seconds or unset, got {value!r}")


def canonical_value(dtype: FeatureDType, value: Any, where: str = "value") -> Any:
    """`value` checked against `dtype` and put in its one canonical form
    (float64 → float, float_list → tuple of floats), or None for null.

    Non-finite floats are refused: null says "missing", and NaN would compare
    unequal to itself and break parity checks and dedup.
    """
    if value is None:
        return None
    if dtype is FeatureDType.BOOL:
        if isinstance(value, bool):
            return value
    elif dtype is FeatureDType.INT64:
        if isinstance(value, int) and not isinstance(value, bool):
            if INT64_MIN <= value <= INT64_MAX:
                return value
            raise InvalidArgument(f"{where}: {value} does not fit in int64")
    elif dtype is FeatureDType.FLOAT64:
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
            if math.isfinite(number):
                return number
            raise InvalidArgument(f"{where}: {value!r} is not finite; use null for missing")
    elif dtype is FeatureDType.STRING:
        if isinstance(value, str):
            return value
    elif dtype is FeatureDType.FLOAT_LIST and isinstance(value, list | tuple):
        items = []
        for i, v in enumerate(value):
            if v is None:
                raise InvalidArgument(f"{where}[{i}]: a float_list may not contain nulls")
            items.append(canonical_value(FeatureDType.FLOAT64, v, f"{where}[{i}]"))
        return tuple(items)
    raise InvalidArgument(f"{where}: {value!r} is not a valid {dtype.value} value")


@dataclass(frozen=True)
class Fill:
    action: FillAction = FillAction.FEATURE_DEFAULT
    constant: Any = None


def _keep_stale() -> Fill:
    return Fill(FillAction.KEEP_VALUE)


@dataclass(frozen=True)
class DefaultPolicy:
    """One `Fill` per missing reason, as named fields so every reason has a
    rule and a new reason can be added with a default without breaking values
    already in etcd. Defaults: the definition's default value everywhere,
    except that a stale value is still served (a slightly old value beats a
    default for almost every model; set `stale` to a fill to change that)."""

    no_history: Fill = field(default_factory=Fill)
    entity_not_found: Fill = field(default_factory=Fill)
    stale: Fill = field(default_factory=_keep_stale)
    privacy_disabled: Fill = field(default_factory=Fill)
    timeout: Fill = field(default_factory=Fill)
    not_computed: Fill = field(default_factory=Fill)
    # Added after values were first stored: left out of a value while it is
    # the default, so older readers keep reading definitions (registry.codec).
    unavailable: Fill = field(default_factory=Fill, metadata={"omit_if_default": True})

    def fill_for(self, reason: MissingReason) -> Fill:
        fill: Fill = getattr(self, reason.value)
        return fill


@dataclass(frozen=True)
class FeatureDefinition:
    """One feature's meaning. `(name, version)` is immutable: changing anything
    but `owner` and `description` needs a new version (`check_compatible_update`)."""

    name: str
    version: str
    entity_type: str
    dtype: FeatureDType
    privacy_class: PrivacyClass
    # Who gets paged when the feature is stale or wrong.
    owner: str
    description: str = ""
    # Values older than this are `stale`; None: never stale.
    freshness_sla_seconds: int | None = None
    default_value: Any = None
    default_policy: DefaultPolicy = field(default_factory=DefaultPolicy)

    def __post_init__(self) -> None:
        where = f"feature {self.name}@{self.version}"
        check_name("feature name", self.name)
        check_name(f"{where}: version", self.version)
        check_name(f"{where}: entity_type", self.entity_type)
        if self.name in RESERVED_NAMES:
            raise InvalidArgument(
                f"{where}: the name is reserved for a key or time column; expected a name not in "
                f"{sorted(RESERVED_NAMES)}"
            )
        if not self.owner:
            raise InvalidArgument(f"{where}: owner is empty; expected the owning team or person")
        _check_seconds(f"{where}: freshness_sla_seconds", self.freshness_sla_seconds)
        object.__setattr__(
            self,
            "default_value",
            canonical_value(self.dtype, self.default_value, f"{where}: default_value"),
        )
        canonical: dict[str, Fill] = {}
        for reason in MissingReason:
            fill = self.default_policy.fill_for(reason)
            what = f"{where}: default_policy.{reason.value}"
            if fill.action is FillAction.KEEP_VALUE and reason is not MissingReason.STALE:
                raise InvalidArgument(
                    f"{what}: keep_value applies only to stale values; expected "
                    "feature_default, null or constant"
                )
            if fill.action is FillAction.CONSTANT:
                if fill.constant is None:
                    raise InvalidArgument(f"{what}: constant fill without a constant; use null")
                constant = canonical_value(self.dtype, fill.constant, f"{what}.constant")
                fill = Fill(FillAction.CONSTANT, constant)
            elif fill.constant is not None:
                raise InvalidArgument(f"{what}: a constant is set but the action is {fill.action}")
            canonical[reason.value] = fill
        object.__setattr__(self, "default_policy", DefaultPolicy(**canonical))

    @property
    def ref(self) -> VersionRef:
        return VersionRef(self.name, self.version)


@dataclass(frozen=True)
class FeatureGroup:
    """Features of one entity type stored, materialized and read together.

    A group is also the unit of access control: all its features share one
    privacy class, so reading a group never reads a feature the request may
    not see (a non-personalized request skips the whole group unfetched).
    """

    name: str
    version: str
    entity_type: str
    # Exact (feature name, feature version); order fixes the stored layout.
    features: tuple[VersionRef, ...]
    # Rows older than this are treated as absent (session features); None: never.
    ttl_seconds: int | None = None
    owner: str = ""
    description: str = ""
    # Replica acknowledgements a write needs per bucket; 0: all (README, Replicas).
    write_quorum: int = 0

    def __post_init__(self) -> None:
        where = f"feature group {self.name}@{self.version}"
        check_name("feature group name", self.name)
        check_name(f"{where}: version", self.version)
        check_name(f"{where}: entity_type", self.entity_type)
        _check_seconds(f"{where}: ttl_seconds", self.ttl_seconds)
        if (
            isinstance(self.write_quorum, bool)
            or not isinstance(self.write_quorum, int)
            or self.write_quorum < 0
        ):
            raise InvalidArgument(
                f"{where}: write_quorum {self.write_quorum!r}; expected 0 (every replica) or a "
                "number of replicas"
            )
        if not self.features:
            raise InvalidArgument(f"{where}: has no features; expected at least one")
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise InvalidArgument(f"{where}: a feature name appears twice in {names}")

    @property
    def ref(self) -> VersionRef:
        return VersionRef(self.name, self.version)


@dataclass(frozen=True)
class FeatureRef:
    """One column of a feature set: a feature of an exact group version (which
    pins the feature version)."""

    group: str
    group_version: str
    feature: str
    # Column name for the model; default `{group}__{feature}`.
    alias: str = ""

    @property
    def group_ref(self) -> VersionRef:
        return VersionRef(self.group, self.group_version)

    @property
    def output_name(self) -> str:
        return self.alias or f"{self.group}__{self.feature}"


@dataclass(frozen=True)
class FeatureSet:
    """What a model reads: exact feature references, in the model's order."""

    name: str
    version: str
    features: tuple[FeatureRef, ...]
    owner: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        where = f"feature set {self.name}@{self.version}"
        check_name("feature set name", self.name)
        check_name(f"{where}: version", self.version)
        if not self.features:
            raise InvalidArgument(f"{where}: has no features; expected at least one")
        outputs = [f.output_name for f in self.features]
        dupes = sorted({o for o in outputs if outputs.count(o) > 1})
        if dupes:
            raise InvalidArgument(f"{where}: output names {dupes} appear twice; set an alias")

    @property
    def ref(self) -> VersionRef:
        return VersionRef(self.name, self.version)


# What the registry keeps under its features/ keys.
FeatureObject: TypeAlias = FeatureDefinition | FeatureGroup | FeatureSet


# ---------------------------------------------------------------------------
# Versioning rules


MUTABLE_FIELDS = frozenset({"owner", "description"})


def check_compatible_update(
    old: FeatureObject,
    new: FeatureObject,
) -> None:
    """Refuses an in-place change of what a version means.

    Only `owner` and `description` may change under the same (name, version);
    anything else (dtype, defaults, SLA, privacy, TTL, members) changes what a
    model reads and needs a new version, so a model trained on v1 keeps
    reading exactly v1.
    """
    if type(old) is not type(new) or old.ref != new.ref:
        raise InvalidArgument(
            f"cannot compare {type(old).__name__} {old.ref} with {type(new).__name__} {new.ref}; "
            "expected the same kind, name and version"
        )
    changed = [
        f.name
        for f in fields(old)
        if f.name not in MUTABLE_FIELDS and getattr(old, f.name) != getattr(new, f.name)
    ]
    if changed:
        raise FailedPrecondition(
            f"{type(old).__name__} {old.ref}: changing {', '.join(changed)} changes what models "
            f"read; versions are immutable except for {sorted(MUTABLE_FIELDS)}, so create a new "
            f"version of {old.ref.name!r} instead"
        )


# ---------------------------------------------------------------------------
# Validated views


# The row types below are NamedTuples, not frozen dataclasses: the
# serving path creates one per entity or per value (1,600+ per GetFeatures of
# 800 candidates), a NamedTuple is about three times cheaper to build, and the
# registry codec never stores them (like `core.domain.EntityKey`).


class StoredValue(NamedTuple):
    """One feature's value in a stored row; `value` None means null."""

    value: Any
    feature_timestamp: int
    generated_at: int


class GroupRow(NamedTuple):
    """One entity's row of a group: the unit written online and offline."""

    entity: EntityKey
    feature_timestamp: int
    generated_at: int
    values: Mapping[str, Any]

    def stored(self, feature: str) -> StoredValue:
        return StoredValue(self.values.get(feature), self.feature_timestamp, self.generated_at)

    def supersedes(self, feature_timestamp: int, generated_at: int) -> bool:
        """Whether this row replaces one stored with these times.

        Rows are ordered by (feature_timestamp, generated_at): an older event
        never overwrites a newer one, and of two computations of the same
        event the later one wins, whatever order they arrive in. Equal times
        replace, so replaying a batch is idempotent.
        """
        return (self.feature_timestamp, self.generated_at) >= (feature_timestamp, generated_at)


@dataclass(frozen=True)
class PutAck:
    """What a feature write did: rows written, and rows ignored because a row
    at least as new was already stored."""

    written: int
    ignored_older: int


@dataclass(frozen=True)
class GroupSchema:
    """A group with its definitions resolved (in the group's feature order):
    what the online store, the offline store and the join all read."""

    group: FeatureGroup
    definitions: tuple[FeatureDefinition, ...]

    @property
    def ref(self) -> VersionRef:
        return self.group.ref

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.definitions)

    @property
    def privacy_class(self) -> PrivacyClass:
        return self.definitions[0].privacy_class

    def definition(self, feature: str) -> FeatureDefinition:
        for d in self.definitions:
            if d.name == feature:
                return d
        raise NotFound(f"feature group {self.ref} has no feature {feature!r}; has {self.names}")

    def check_row(self, row: GroupRow) -> GroupRow:
        """The row with canonical values; refuses wrong entity type, times
        out of range (`core.timestamps`), unknown features and values of the
        wrong dtype, naming the row."""
        where = f"feature group {self.ref}, entity {tuple(row.entity)}"
        if row.entity.entity_type != self.group.entity_type:
            raise InvalidArgument(
                f"{where}: entity type {row.entity.entity_type!r}; expected "
                f"{self.group.entity_type!r}"
            )
        if not row.entity.entity_id:
            raise InvalidArgument(f"{where}: entity_id is empty; expected a non-empty id")
        for what in TIME_COLUMNS:
            check_time(what, getattr(row, what), where)
        unknown = set(row.values) - set(self.names)
        if unknown:
            raise InvalidArgument(
                f"{where}: unknown feature(s) {sorted(unknown)}; expected some of {self.names}"
            )
        values = {
            d.name: canonical_value(d.dtype, row.values.get(d.name), f"{where}: {d.name}")
            for d in self.definitions
        }
        return GroupRow(row.entity, row.feature_timestamp, row.generated_at, values)


def validate_group(
    group: FeatureGroup, definitions: Mapping[VersionRef, FeatureDefinition]
) -> GroupSchema:
    """Every member exists at its exact version, has the group's entity type,
    and all share one privacy class."""
    where = f"feature group {group.ref}"
    defs = []
    for ref in group.features:
        d = definitions.get(ref)
        if d is None:
            raise NotFound(f"{where}: feature {ref} does not exist; register it first")
        if d.entity_type != group.entity_type:
            raise InvalidArgument(
                f"{where}: feature {ref} is for entity type {d.entity_type!r}; expected "
                f"{group.entity_type!r}"
            )
        defs.append(d)
    classes = {d.privacy_class for d in defs}
    if len(classes) > 1:
        raise InvalidArgument(
            f"{where}: mixes privacy classes {sorted(classes)}; a group is read or skipped "
            "whole, so split it into one group per class"
        )
    return GroupSchema(group, tuple(defs))
