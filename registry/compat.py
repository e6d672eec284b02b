"""Compatibility rules, checked in the platform (DESIGN §3), never by callers.

Each rule is a function over plain data that raises FailedPrecondition naming
both sides; `check_bundle` applies all of them. A mismatch is an error, never a
silent fallback to another index.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from core.domain import VersionRef
from core.errors import FailedPrecondition, NotFound
from registry.model import SERVABLE, Bundle, EmbeddingFamily, EmbeddingVersion, IndexVersion

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True)
class BundleParts:
    bundle: Bundle
    query_family: EmbeddingFamily
    query_version: EmbeddingVersion
    item_family: EmbeddingFamily
    item_version: EmbeddingVersion
    index: IndexVersion


def family_declared(p: BundleParts) -> None:
    q, i = p.query_family, p.item_family
    if q.name != i.name and q.name not in i.compatible_query_families:
        raise FailedPrecondition(
            f"query family {q.name!r} is not declared compatible with item family {i.name!r} "
            f"(compatible: {list(i.compatible_query_families)})"
        )


def version_declared(p: BundleParts) -> None:
    q, i = p.query_version.ref, p.item_version
    if q != i.ref and q not in i.compatible_query_versions:
        raise FailedPrecondition(
            f"query embedding version {q} is not declared compatible with item embedding version "
            f"{i.ref} (compatible: {[str(r) for r in i.compatible_query_versions] or 'only itself'})"
        )


def _same(attr: str) -> Callable[[BundleParts], None]:
    def rule(p: BundleParts) -> None:
        q, i = getattr(p.query_family, attr), getattr(p.item_family, attr)
        if q != i:
            raise FailedPrecondition(
                f"{attr} differs: query family {p.query_family.name!r} has {attr}={q}, "
                f"item family {p.item_family.name!r} has {attr}={i}"
            )

    rule.__name__ = f"same_{attr}"
    return rule


def index_built_on_item_version(p: BundleParts) -> None:
    if p.index.embedding != p.item_version.ref:
        raise FailedPrecondition(
            f"bundle {p.bundle.name!r}: index {p.index.ref} is built on {p.index.embedding}, "
            f"but the bundle's item embedding is {p.item_version.ref}"
        )


def servable(p: BundleParts) -> None:
    for what, ref, status in (
        ("query embedding version", p.query_version.ref, p.query_version.status),
        ("item embedding version", p.item_version.ref, p.item_version.status),
        ("index version", p.index.ref, p.index.status),
    ):
        if status not in SERVABLE:
            raise FailedPrecondition(
                f"bundle {p.bundle.name!r}: {what} {ref} is {status.value}, expected ready or production"
            )


RULES: tuple[Callable[[BundleParts], None], ...] = (
    family_declared,
    version_declared,
    _same("dimension"),
    _same("metric"),
    _same("normalize"),
    index_built_on_item_version,
    servable,
)


def _get(mapping: Mapping[K, V], key: K, what: str) -> V:
    try:
        return mapping[key]
    except KeyError:
        raise NotFound(f"unknown {what} {key}") from None


def bundle_parts(
    bundle: Bundle,
    families: Mapping[str, EmbeddingFamily],
    versions: Mapping[VersionRef, EmbeddingVersion],
    indexes: Mapping[VersionRef, IndexVersion],
) -> BundleParts:
    index = _get(indexes, bundle.index, "index version")
    return BundleParts(
        bundle=bundle,
        query_family=_get(families, bundle.query_embedding.name, "embedding family"),
        query_version=_get(versions, bundle.query_embedding, "embedding version"),
        item_family=_get(families, bundle.item_embedding.name, "embedding family"),
        item_version=_get(versions, bundle.item_embedding, "embedding version"),
        index=index,
    )


def check_bundle(parts: BundleParts) -> None:
    for rule in RULES:
        rule(parts)
