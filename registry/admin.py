"""The registry's admin verbs over plain data: apply (with a diff and dry-run,
like `kubectl apply`), get, list, promote, switch, rollback, history,
check-compat. The RegistryService servicer and the CLI both call these, so one
piece of code validates every change.
"""

from __future__ import annotations

import builtins
import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml

from core.domain import VersionRef
from core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from registry import codec, names, shape_bounds
from registry.access_policy import Principal
from registry.change_writes import (
    MODEL_CHANGE_KINDS,
    add_index_attributes,
    attributes_added,
    put_model_change_object,
)
from registry.compat import bundle_parts, check_bundle
from registry.features import FeatureGroup
from registry.model import (
    SERVABLE,
    Bundle,
    DualWrite,
    EmbeddingFamily,
    EmbeddingVersion,
    IndexVersion,
    Placement,
    Retirement,
    Route,
    RouteChange,
    Status,
    Tenant,
)
from registry.placement import feature_placement_ref
from registry.placement_options import (
    PlacementOptions,
    check_unchanged,
    check_write_quorum,
    placement_options,
    shards_to_place,
)
from registry.registry import Registry
from registry.retired_versions import refuse_retired
from registry.retirement import retire
from registry.serving_versions import check_status_move
from registry.snapshot import Snapshot, resolve_bundle
from registry.tenant_buckets import check_buckets_kept

# Dependencies first: a route needs its bundle, a bundle its versions.
ORDER = [
    "Principal",
    "Tenant",
    "EmbeddingFamily",
    "EmbeddingVersion",
    "IndexVersion",
    "FeatureDefinition",
    "FeatureGroup",
    "FeatureSet",
    "Bundle",
    "Route",
    "CanaryQuerySet",
    "DualWrite",
    "IndexEvaluation",
]
_FAMILY_FIXED = ("entity_type", "dimension", "metric", "normalize")


def _leaves_service(p: Planned) -> bool:
    """A version document whose status takes it out of ready/production."""
    return (
        isinstance(p.obj, EmbeddingVersion | IndexVersion)
        and p.current is not None
        and p.obj.status not in SERVABLE
        and p.current.status in SERVABLE
    )


def parse_documents(text: str) -> list[dict[str, Any]]:
    try:
        docs = [d for d in yaml.safe_load_all(text) if d]
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"specs are not valid YAML/JSON: {exc}") from None
    for i, d in enumerate(docs):
        if not isinstance(d, dict) or "kind" not in d:
            raise InvalidArgument(f"document {i}: expected a mapping with 'kind' and 'spec'")
    return docs


def to_json(obj: Any) -> str:
    return json.dumps(json.loads(codec.encode(obj))["spec"], sort_keys=True)


def parse_ref(text: str, what: str) -> VersionRef:
    name, sep, version = text.partition("@")
    if not sep or not name or not version:
        raise InvalidArgument(f"{what} {text!r}: expected NAME@VERSION")
    return VersionRef(name, version)


def _diff(old: Any, new: Any) -> list[str]:
    a = json.loads(codec.encode(old))["spec"]
    b = json.loads(codec.encode(new))["spec"]
    return [
        f"{k}: {json.dumps(a.get(k))} → {json.dumps(b.get(k))}"
        for k in sorted(set(a) | set(b))
        if a.get(k) != b.get(k)
    ]


def _label(obj: Any) -> str:
    kind = type(obj).__name__
    name = getattr(obj, "name", None) or getattr(obj, "tenant_id", "")
    version = getattr(obj, "version", "")
    return f"{kind} {name}@{version}" if version else f"{kind} {name}"


def _placed_ref(obj: IndexVersion | FeatureGroup) -> VersionRef:
    """The key of the object's placement."""
    if isinstance(obj, FeatureGroup):
        return feature_placement_ref(obj.name, obj.version)
    return obj.ref


@dataclasses.dataclass
class Planned:
    obj: Any
    doc: Mapping[str, Any]
    current: Any | None
    options: PlacementOptions = PlacementOptions()
    # The revision `current` was read at (0: absent): a route is written only
    # if still there, so the diff apply printed is what it replaced.
    revision: int = 0


class RegistryAdmin:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    # --- apply -----------------------------------------------------------------

    def _parse(self, docs: Iterable[Mapping[str, Any]]) -> list[Planned]:
        planned = []
        for i, doc in enumerate(docs):
            kind = doc.get("kind")
            if kind not in ORDER or kind not in codec.KINDS:
                raise InvalidArgument(
                    f"document {i}: kind {kind!r}, expected one of {[k for k in ORDER if k in codec.KINDS]}"
                )
            codec.check_document(doc, f"document {i} ({kind})")
            options = placement_options(doc, kind, f"document {i} ({kind})")
            obj = codec.from_dict(
                codec.KINDS[kind], doc.get("spec") or {}, f"document {i} ({kind})"
            )
            found = self.registry.read(self.registry.key_of(obj))
            planned.append(
                Planned(obj, doc, found[0] if found else None, options, found[1] if found else 0)
            )
        planned.sort(key=lambda p: ORDER.index(type(p.obj).__name__))
        return planned

    def _validate(self, p: Planned, overlay: Snapshot) -> None:
        """The checks a write would make, without writing (for dry-run too)."""
        obj, cur = p.obj, p.current
        if isinstance(obj, IndexVersion | FeatureGroup):
            if cur is None:
                shards_to_place(p.options, _label(obj), overlay.shards)
                check_write_quorum(_label(obj), obj.write_quorum, p.options.replica_count)
            else:
                check_unchanged(p.options, _label(obj), overlay.placements.get(_placed_ref(obj)))
        if cur is None:  # on creation: an object stored before the rules stays appliable
            names.check_names(obj, _label(obj))
            if isinstance(obj, EmbeddingFamily):
                shape_bounds.check_family(obj)
            if isinstance(obj, IndexVersion):
                shape_bounds.check_index(obj)
        if isinstance(obj, EmbeddingFamily) and isinstance(cur, EmbeddingFamily):
            changed = [f for f in _FAMILY_FIXED if getattr(cur, f) != getattr(obj, f)]
            if changed:
                raise FailedPrecondition(
                    f"{_label(obj)}: {', '.join(changed)} cannot change on an existing family "
                    "(versions and indexes depend on it); create a new family"
                )
        if isinstance(obj, IndexVersion) and cur is not None:
            # Only added attributes, the status and the restricted list may differ.
            attributes_added(
                dataclasses.replace(cur, restricted_attributes=obj.restricted_attributes), obj
            )
        if isinstance(obj, Tenant) and isinstance(cur, Tenant):
            check_buckets_kept(cur, obj)
        if isinstance(obj, Bundle) and cur is not None and cur != obj:
            raise FailedPrecondition(
                f"{_label(obj)} exists with other versions; bundles are immutable"
            )
        if type(obj).__name__ in ("FeatureDefinition", "FeatureGroup", "FeatureSet"):
            from registry.feature_catalog import FeatureCatalog
            from registry.features import check_compatible_update

            if cur is not None and cur != obj:
                check_compatible_update(cur, obj)
            if cur is None:
                key = (type(obj).__name__, obj.name, getattr(obj, "version", ""))
                refuse_retired(key[0], VersionRef(obj.name, key[2]), overlay.retired.get(key))
            FeatureCatalog.build(overlay.features.values(), overlay.retired_texts)
        if isinstance(obj, EmbeddingVersion | IndexVersion) and _leaves_service(p):
            # Against the routes and dual-writes as the apply leaves them: a
            # route it switches away is written before (`apply`'s order).
            check_status_move(overlay, type(obj).__name__, obj.ref, obj.status)
        if isinstance(obj, Route):
            for arm, bundle in (
                ("primary", obj.bundle),
                ("canary", obj.canary_bundle),
                ("shadow", obj.shadow_bundle),
            ):
                if bundle:
                    resolve_bundle(overlay, obj, bundle, arm)

    @staticmethod
    def _overlay(snap: Snapshot, planned: Sequence[Planned]) -> Snapshot:
        """The snapshot as it would be after the apply (for route checks)."""
        families, versions = dict(snap.families), dict(snap.embedding_versions)
        features = dict(snap.features)
        indexes, bundles, placements = dict(snap.indexes), dict(snap.bundles), dict(snap.placements)
        routes, dual_writes = dict(snap.routes), dict(snap.dual_writes)
        for p in planned:
            match p.obj:
                case Route():
                    routes[p.obj.name] = p.obj
                case DualWrite():
                    dual_writes[p.obj.family] = p.obj
                case EmbeddingFamily():
                    families[p.obj.name] = p.obj
                case EmbeddingVersion():
                    versions[p.obj.ref] = p.obj
                case IndexVersion():
                    indexes[p.obj.ref] = p.obj
                    # Placed when written; route checks need only that it will be.
                    placements.setdefault(p.obj.ref, Placement(p.obj.ref, ()))
                case Bundle():
                    bundles[p.obj.name] = p.obj
                case _ if type(p.obj).__name__.startswith("Feature"):
                    key = (type(p.obj).__name__, p.obj.name, p.obj.version)
                    features[key] = p.obj
        return dataclasses.replace(
            snap,
            families=families,
            embedding_versions=versions,
            indexes=indexes,
            bundles=bundles,
            placements=placements,
            features=features,
            routes=routes,
            dual_writes=dual_writes,
        )

    def apply(
        self,
        docs: Iterable[Mapping[str, Any]],
        *,
        dry_run: bool = False,
        who: str = "",
        why: str = "",
    ) -> list[str]:
        # Before anything is written (a route's change keeps them).
        codec.check_note("apply", who=who, why=why)
        planned = self._parse(docs)
        snap = self.registry.snapshot()
        overlay = self._overlay(snap, planned)
        lines = []
        for p in planned:
            self._validate(p, overlay)
            if p.current is None:
                lines.append(f"{_label(p.obj)} created")
            elif p.current == p.obj:
                lines.append(f"{_label(p.obj)} unchanged")
            else:
                lines.append(f"{_label(p.obj)} updated: " + "; ".join(_diff(p.current, p.obj)))
        if dry_run:
            return [f"{line} (dry run)" for line in lines]
        # A version leaving service last: after the routes switched away from
        # it and the dual-writes turned off (else refused half-way through).
        for p in sorted(planned, key=_leaves_service):
            if p.current == p.obj:
                continue
            self._write(p, snap, who, why)
        return lines

    def _write(self, p: Planned, snap: Snapshot, who: str, why: str) -> None:
        reg, obj = self.registry, p.obj
        placed = isinstance(obj, IndexVersion | FeatureGroup) and p.current is None
        shards = shards_to_place(p.options, _label(obj), snap.shards) if placed else []
        match obj:
            case EmbeddingFamily():
                reg.put_family(obj)
            case EmbeddingVersion():
                reg.put_embedding_version(obj)
            case IndexVersion():
                if p.current is None:
                    try:
                        reg.create_index(obj, shards, p.options.replica_count)
                    except AlreadyExists:
                        raise FailedPrecondition(
                            f"{_label(obj)} was created concurrently"
                        ) from None
                else:
                    added = attributes_added(
                        dataclasses.replace(
                            p.current, restricted_attributes=obj.restricted_attributes
                        ),
                        obj,
                    )
                    if added:
                        add_index_attributes(reg, obj.ref, added)
                    if obj.restricted_attributes != p.current.restricted_attributes:
                        reg.set_restricted_attributes(obj.ref, obj.restricted_attributes)
                    reg.set_status("IndexVersion", obj.ref, obj.status)
            case Bundle():
                reg.put_bundle(obj)
            case Route():
                reg.put_route(obj, who, why, expected_revision=p.revision)
            case Tenant():
                reg.put_tenant(obj)
            case _ if type(obj).__name__ in MODEL_CHANGE_KINDS:
                put_model_change_object(reg, obj)
            case Principal():
                reg.put_principal(obj)
            case FeatureGroup() if p.current is None:
                reg.put_object(obj, shards, p.options.replica_count)
            case _:
                reg.put_object(obj)

    # --- reads -----------------------------------------------------------------

    def get(self, kind: str, name: str, version: str = "") -> tuple[Any, int]:
        probe = self._key(kind, name, version)
        found = self.registry.read(probe)
        if found is None:
            raise NotFound(f"no {kind} {name}{'@' + version if version else ''}")
        return found

    def revision_written(self, obj: Any) -> int:
        """The mod_revision of `obj` as just written, for a caller to chain its
        next compare-and-swap on; 0 when the stored object already differs
        (someone changed it since), so the caller re-reads rather than chaining
        on a revision that would silently overwrite a change it never saw."""
        found = self.registry.read(self.registry.key_of(obj))
        return found[1] if found is not None and found[0] == obj else 0

    def _key(self, kind: str, name: str, version: str) -> str:
        keys = self.registry.keys
        table = {
            "EmbeddingFamily": lambda: keys.family(name),
            "EmbeddingVersion": lambda: keys.embedding_version(name, version),
            "IndexVersion": lambda: keys.index(name, version),
            "Placement": lambda: keys.placement(name, version),
            "Bundle": lambda: keys.bundle(name),
            "Route": lambda: keys.route(name),
            "Tenant": lambda: keys.tenant(name),
            "Principal": lambda: keys.principal(name),
            "ShardMember": lambda: keys.shard(name),
            "IndexEvaluation": lambda: keys.evaluation(name, version),
            "VersionRetention": lambda: keys.retention(name, version),
            "CanaryQuerySet": lambda: keys.canary_set(name, version),
            "DualWrite": lambda: keys.dual_write(name),
        }
        if kind in table:
            return table[kind]()
        if kind in codec.KINDS:
            return keys.feature(kind, name, version)
        raise InvalidArgument(f"unknown kind {kind!r}; expected one of {sorted(codec.KINDS)}")

    def list(self, kind: str) -> list[tuple[Any, int]]:
        if kind not in codec.KINDS:
            raise InvalidArgument(f"unknown kind {kind!r}; expected one of {sorted(codec.KINDS)}")
        out = []
        for entry in self.registry.entries(""):
            try:
                obj = codec.decode(entry.value)
            except InvalidArgument:
                continue
            if type(obj).__name__ == kind:
                out.append((obj, entry.mod_revision))
        return out

    # --- changes ---------------------------------------------------------------

    def retire(
        self,
        kind: str,
        name: str,
        version: str,
        who: str = "",
        why: str = "",
        dry_run: bool = False,
    ) -> tuple[Retirement, builtins.list[str]]:
        """Takes a feature group or set version out of service for good
        (`registry.retirement`)."""
        if not name or not version:
            raise InvalidArgument(
                f"retire {kind}: name {name!r}, version {version!r}; both are required"
            )
        return retire(self.registry, kind, VersionRef(name, version), who, why, dry_run)

    def promote(self, kind: str, name: str, version: str, status: str) -> Any:
        try:
            target = Status(status)
        except ValueError:
            raise InvalidArgument(
                f"status {status!r}: expected one of {[s.value for s in Status]}"
            ) from None
        return self.registry.set_status(kind, VersionRef(name, version), target)

    def switch_route(
        self,
        name: str,
        bundle: str,
        *,
        canary_bundle: str = "",
        canary_share: float = 0.0,
        shadow_bundle: str = "",
        expected_revision: int | None = None,
        who: str = "",
        why: str = "",
    ) -> Route:
        if name not in self.registry.snapshot().routes:
            # A switch names a route that serves: one mistyped must not create another.
            raise NotFound(f"route {name!r} does not exist; create it with `registry apply`")
        route = Route(name, bundle, canary_bundle, canary_share, shadow_bundle)
        return self.registry.put_route(route, who, why, expected_revision=expected_revision)

    def rollback(self, name: str, who: str = "", why: str = "") -> Route:
        return self.registry.rollback(name, who, why)

    # builtins.list: in the class body `list` is the method above.
    def history(self, name: str) -> builtins.list[RouteChange]:
        changes = self.registry.history(name)
        if not changes and name not in self.registry.snapshot().routes:
            # A deleted route keeps its history; a mistyped name has none and
            # must not read as "never changed".
            raise NotFound(f"route {name!r} does not exist and has no history")
        return changes

    def check_compat(self, query_version: str, index_version: str) -> str:
        """Empty when compatible, else the reason naming both sides."""
        q = parse_ref(query_version, "query version")
        ix = parse_ref(index_version, "index version")
        snap = self.registry.snapshot()
        index = snap.index(ix)
        probe = Bundle("(check-compat)", q, index.embedding, ix)
        try:
            check_bundle(bundle_parts(probe, snap.families, snap.embedding_versions, snap.indexes))
        except FailedPrecondition as exc:
            return exc.message
        return ""
