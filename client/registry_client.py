"""A typed client for the coordinator's RegistryService (the admin API)."""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from client.arguments import float_vectors, items_of
from client.connection import Connection, RetryPolicy
from client.credentials import Credentials, resolve
from protos.vecshard.v1 import registry_pb2 as pb
from protos.vecshard.v1 import registry_pb2_grpc


@dataclass(frozen=True)
class RegistryObject:
    kind: str
    spec: dict[str, Any]
    mod_revision: int


@dataclass(frozen=True)
class RouteChange:
    revision: int
    who: str
    when: str
    why: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


def _obj(o: pb.RegistryObject) -> RegistryObject:
    return RegistryObject(o.kind, json.loads(o.spec_json), o.mod_revision)


class RegistryClient:
    """`address` as for `RetrievalClient` (one or several coordinators). Reads,
    `apply` (declarative), `retire` and `set_shard_state` are retried on
    another coordinator when one is unreachable; `promote`, `switch_route`, `rollback`
    and `train_placement` are not (a retry could apply them twice).

    Credentials as for `RetrievalClient`; changes need a principal with the
    `admin` role. `who` is kept for older coordinators: the registry records
    the token's principal as who made a change."""

    def __init__(
        self,
        address: str | Sequence[str],
        *,
        who: str = "",
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        credentials: Credentials | None = None,
        token: str | None = None,
        root_certificates: bytes | None = None,
    ) -> None:
        self.who = who
        self.timeout = timeout
        self._conn = Connection(
            address, retry, credentials=resolve(credentials, token, root_certificates)
        )
        self._stubs = [registry_pb2_grpc.RegistryServiceStub(ch) for ch in self._conn.channels]

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._conn.close()

    def close(self) -> None:
        self._conn.close()

    def _rpc(
        self, name: str, request: Any, timeout: float | None = None, idempotent: bool = True
    ) -> Any:
        return self._conn.call(
            lambda i: getattr(self._stubs[i], name),
            request,
            self.timeout if timeout is None else timeout,
            idempotent=idempotent,
        )

    def apply(
        self, documents: str | Iterable[Mapping[str, Any]], *, dry_run: bool = False, why: str = ""
    ) -> list[str]:
        # JSON documents are YAML documents: the SDK needs no YAML library.
        text = (
            documents
            if isinstance(documents, str)
            else "\n---\n".join(
                json.dumps(d) for d in items_of(documents, "documents", "YAML text or mappings")
            )
        )
        # Declarative: applying the same documents twice changes nothing more.
        req = pb.ApplyRequest(documents=text, dry_run=dry_run, who=self.who, why=why)
        return list(self._rpc("Apply", req).changes)

    def get(self, kind: str, name: str, version: str = "") -> RegistryObject:
        return _obj(self._rpc("Get", pb.GetRequest(kind=kind, name=name, version=version)))

    def list(self, kind: str) -> list[RegistryObject]:
        return [_obj(o) for o in self._rpc("List", pb.ListRequest(kind=kind)).objects]

    def promote(self, kind: str, name: str, version: str, status: str) -> RegistryObject:
        req = pb.PromoteRequest(kind=kind, name=name, version=version, status=status)
        return _obj(self._rpc("Promote", req, idempotent=False))

    def switch_route(
        self,
        route: str,
        bundle: str,
        *,
        canary_bundle: str = "",
        canary_share: float = 0.0,
        shadow_bundle: str = "",
        expected_revision: int = 0,
        why: str = "",
    ) -> RegistryObject:
        req = pb.SwitchRouteRequest(
            route=route,
            bundle=bundle,
            canary_bundle=canary_bundle,
            canary_share=canary_share,
            shadow_bundle=shadow_bundle,
            expected_revision=expected_revision,
            who=self.who,
            why=why,
        )
        return _obj(self._rpc("SwitchRoute", req, idempotent=False))

    def rollback(self, route: str, *, why: str = "") -> RegistryObject:
        req = pb.RollbackRequest(route=route, who=self.who, why=why)
        return _obj(self._rpc("Rollback", req, idempotent=False))

    def retire(
        self, kind: str, name: str, version: str, *, why: str = "", dry_run: bool = False
    ) -> tuple[RegistryObject, builtins.list[str]]:
        """Retires a FeatureGroup or FeatureSet version; returns the record
        and what it did. Idempotent (retiring again answers the record), so
        it is retried on another coordinator like a read."""
        req = pb.RetireRequest(
            kind=kind, name=name, version=version, who=self.who, why=why, dry_run=dry_run
        )
        resp = self._rpc("Retire", req)
        return _obj(resp.retirement), builtins.list(resp.effects)

    # builtins.list: in the class body `list` is the method above.
    def history(self, route: str) -> builtins.list[RouteChange]:
        resp = self._rpc("History", pb.HistoryRequest(route=route))
        return [
            RouteChange(
                c.revision,
                c.who,
                c.when,
                c.why,
                json.loads(c.before_json) if c.before_json else None,
                json.loads(c.after_json) if c.after_json else None,
            )
            for c in resp.changes
        ]

    def check_compat(self, query_version: str, index_version: str) -> tuple[bool, str]:
        req = pb.CheckCompatRequest(query_version=query_version, index_version=index_version)
        resp = self._rpc("CheckCompat", req)
        return resp.compatible, resp.reason

    def set_shard_state(self, shard_id: str, state: str, reason: str = "") -> None:
        self._rpc(
            "SetShardState", pb.SetShardStateRequest(shard_id=shard_id, state=state, reason=reason)
        )

    def train_placement(self, index: str, version: str, sample: Any, seed: int = 0) -> int:
        """Trains a centroid-placed index's coarse quantizer from sample vectors."""
        import numpy as np

        data = np.ascontiguousarray(float_vectors(sample, "sample"), dtype="<f4")
        req = pb.TrainPlacementRequest(
            index_name=index, index_version=version, sample=data.tobytes(), seed=seed
        )
        resp = self._rpc("TrainPlacement", req, max(self.timeout, 60.0), idempotent=False)
        return int(resp.buckets)

    def status(self) -> pb.StatusResponse:
        resp: pb.StatusResponse = self._rpc("Status", pb.StatusRequest())
        return resp
