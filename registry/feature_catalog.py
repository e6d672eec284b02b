"""The feature catalog: which groups and definitions a feature set reads,
validated against the registry's group schemas, and which of them a request
may read (privacy). Built from a registry snapshot; pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from core.domain import VersionRef
from core.errors import NotFound
from registry.features import (
    FeatureDefinition,
    FeatureGroup,
    FeatureObject,
    FeatureRef,
    FeatureSet,
    GroupSchema,
    PrivacyClass,
    validate_group,
)


def validate_feature_set(
    fs: FeatureSet,
    groups: Mapping[VersionRef, GroupSchema],
    retired: Mapping[tuple[str, VersionRef], str] | None = None,
) -> None:
    """Every reference names an existing group version holding that feature."""
    for ref in fs.features:
        schema = groups.get(ref.group_ref)
        if schema is None:
            gone = (retired or {}).get(("FeatureGroup", ref.group_ref))
            raise NotFound(
                f"feature set {fs.ref}: "
                + (gone or f"group {ref.group_ref} does not exist")
                + "; expected an exact, registered group version"
            )
        if ref.feature not in schema.names:
            raise NotFound(
                f"feature set {fs.ref}: group {ref.group_ref} has no feature {ref.feature!r}; "
                f"has {schema.names}"
            )


@dataclass(frozen=True)
class GroupRead:
    """The features a feature set reads from one group, in set order."""

    schema: GroupSchema
    features: tuple[str, ...]
    outputs: tuple[str, ...]
    # Definitions of `features`, looked up once per plan, not per entity.
    definitions: tuple[FeatureDefinition, ...]


@dataclass(frozen=True)
class FeatureCatalog:
    """Validated definitions, groups and sets: a pure view the coordinator,
    shards and offline jobs build from a registry snapshot."""

    definitions: Mapping[VersionRef, FeatureDefinition]
    groups: Mapping[VersionRef, GroupSchema]
    feature_sets: Mapping[VersionRef, FeatureSet]
    # (kind, version) of retired groups and sets → what an error says of them.
    retired: Mapping[tuple[str, VersionRef], str] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        objects: Iterable[FeatureObject],
        retired: Mapping[tuple[str, VersionRef], str] | None = None,
    ) -> FeatureCatalog:
        """Validates the whole graph; refuses a dangling or inconsistent reference."""
        objs = list(objects)
        defs = {o.ref: o for o in objs if isinstance(o, FeatureDefinition)}
        groups = {o.ref: validate_group(o, defs) for o in objs if isinstance(o, FeatureGroup)}
        sets = {o.ref: o for o in objs if isinstance(o, FeatureSet)}
        for fs in sets.values():
            validate_feature_set(fs, groups, retired)
        return cls(defs, groups, sets, dict(retired or {}))

    def _missing(self, kind: str, ref: VersionRef, known: Iterable[VersionRef]) -> NotFound:
        retired = self.retired.get((kind, ref))
        if retired is not None:
            same = sorted(str(k) for k in known if k.name == ref.name)
            return NotFound(f"{retired}; its current versions: {', '.join(same) or 'none'}")
        what = "feature group" if kind == "FeatureGroup" else "feature set"
        return NotFound(f"unknown {what} {ref}")

    def schema(self, group: VersionRef) -> GroupSchema:
        try:
            return self.groups[group]
        except KeyError:
            raise self._missing("FeatureGroup", group, self.groups) from None

    def feature_set(self, ref: VersionRef) -> FeatureSet:
        try:
            return self.feature_sets[ref]
        except KeyError:
            raise self._missing("FeatureSet", ref, self.feature_sets) from None

    def plan(self, fs: FeatureSet) -> tuple[GroupRead, ...]:
        """The groups `fs` reads, in order of first reference."""
        order: dict[VersionRef, list[FeatureRef]] = {}
        for ref in fs.features:
            order.setdefault(ref.group_ref, []).append(ref)
        return tuple(
            GroupRead(
                self.schema(g),
                tuple(r.feature for r in refs),
                tuple(r.output_name for r in refs),
                tuple(self.schema(g).definition(r.feature) for r in refs),
            )
            for g, refs in order.items()
        )


def readable(schema: GroupSchema, personalized: bool) -> bool:
    return personalized or schema.privacy_class is PrivacyClass.PUBLIC


def readable_groups(
    fs: FeatureSet, catalog: FeatureCatalog, personalized: bool
) -> tuple[GroupRead, ...]:
    """The groups a request may fetch. The online path calls this BEFORE
    fetching, so a non-personalized request never reads behavioural data; the
    skipped groups' features resolve to `privacy_disabled` without a read."""
    return tuple(r for r in catalog.plan(fs) if readable(r.schema, personalized))
