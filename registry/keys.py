"""The registry's key space under one prefix (DESIGN §3)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "/vecshard/v1/"


@dataclass(frozen=True)
class Keys:
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not self.prefix.startswith("/") or not self.prefix.endswith("/"):
            raise ValueError(f"registry prefix {self.prefix!r} must start and end with '/'")

    def family(self, name: str) -> str:
        return f"{self.prefix}embeddings/{name}/family"

    def embedding_version(self, name: str, version: str) -> str:
        return f"{self.prefix}embeddings/{name}/versions/{version}"

    def index(self, name: str, version: str) -> str:
        return f"{self.prefix}indexes/{name}/{version}"

    def placement(self, name: str, version: str) -> str:
        return f"{self.prefix}placement/{name}/{version}"

    def bundle(self, name: str) -> str:
        return f"{self.prefix}bundles/{name}"

    def route(self, name: str) -> str:
        return f"{self.prefix}routes/{name}"

    def shard(self, shard_id: str) -> str:
        return f"{self.prefix}cluster/shards/{shard_id}"

    def shard_intent(self, shard_id: str) -> str:
        return f"{self.prefix}cluster/intents/{shard_id}"

    def route_history(self, name: str, revision: int | None = None) -> str:
        base = f"{self.prefix}history/routes/{name}/"
        return base if revision is None else f"{base}{revision:020d}"

    def tenant(self, tenant_id: str) -> str:
        return f"{self.prefix}tenants/{tenant_id}"

    def audit_head(self, coordinator: str) -> str:
        """Beside the registry's prefix, not under it: the heads move every
        second, and nothing that watches the registry should reload for that."""
        return f"{self.prefix.rstrip('/')}-audit/heads/{coordinator}"

    def principal(self, name: str) -> str:
        return f"{self.prefix}principals/{name}"

    def feature(self, kind: str, name: str, version: str = "") -> str:
        return f"{self.prefix}features/{kind}/{name}" + (f"/{version}" if version else "")

    def evaluation(self, name: str, version: str) -> str:
        return f"{self.prefix}evaluations/{name}/{version}"

    def retention(self, name: str, version: str) -> str:
        return f"{self.prefix}retention/{name}/{version}"

    def retired(self, kind: str, name: str, version: str) -> str:
        return f"{self.prefix}retired/{kind}/{name}/{version}"

    def canary_set(self, name: str, version: str) -> str:
        return f"{self.prefix}canaries/{name}/{version}"

    def dual_write(self, family: str) -> str:
        return f"{self.prefix}dualwrites/{family}"
