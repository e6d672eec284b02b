"""Declarative registry specs (YAML documents `kind:` + `spec:`), applied in
dependency order. The control-plane issue grows this into `registry apply`
with diffs; here it creates what a demo or a test needs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from protos.errors import AlreadyExists, InvalidArgument
from registry import codec, model
from registry.registry import Registry

ORDER = ["EmbeddingFamily", "EmbeddingVersion", "IndexVersion", "Bundle", "Route"]


def load_documents(path: Path) -> list[dict[str, Any]]:
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"{path}: not valid YAML: {exc}") from None
    return docs


def apply(registry: Registry, docs: Iterable[Mapping[str, Any]], shard_ids: list[str]) -> list[str]:
    """Applies documents; returns one line per object saying what happened."""
    parsed = []
    for i, doc in enumerate(docs):
        kind = doc.get("kind")
        if kind not in ORDER:
            raise InvalidArgument(f"document {i}: kind {kind!r}, expected one of {ORDER}")
        obj = codec.from_dict(codec.KINDS[kind], doc.get("spec", {}), f"document {i} ({kind})")
        parsed.append((ORDER.index(kind), kind, obj, doc))
    lines = []
    for _, kind, obj, doc in sorted(parsed, key=lambda p: p[0]):
        name = getattr(obj, "name", "")
        match obj:
            case model.EmbeddingFamily():
                registry.put_family(obj)
            case model.EmbeddingVersion():
                registry.put_embedding_version(obj)
                name = str(obj.ref)
            case model.IndexVersion():
                name = str(obj.ref)
                try:
                    registry.create_index(
                        obj, list(doc.get("shards") or shard_ids), int(doc.get("replicas", 1))
                    )
                except AlreadyExists:
                    existing = registry.snapshot().indexes.get(obj.ref)
                    if existing != obj:
                        raise
                    lines.append(f"{kind} {name} unchanged")
                    continue
            case model.Bundle():
                registry.put_bundle(obj)
            case model.Route():
                registry.put_route(obj)
        lines.append(f"{kind} {name} applied")
    return lines
