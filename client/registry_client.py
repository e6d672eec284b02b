"""A typed client for the coordinator's RegistryService (the admin API)."""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc

from client.errors import rpc_errors
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
    def __init__(self, address: str, *, who: str = "", timeout: float = 10.0) -> None:
        self.who = who
        self.timeout = timeout
        self._channel = grpc.insecure_channel(address)
        self._stub = registry_pb2_grpc.RegistryServiceStub(self._channel)

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._channel.close()

    def apply(
        self, documents: str | Iterable[Mapping[str, Any]], *, dry_run: bool = False, why: str = ""
    ) -> list[str]:
        # JSON documents are YAML documents: the SDK needs no YAML library.
        text = (
            documents
            if isinstance(documents, str)
            else "\n---\n".join(json.dumps(d) for d in documents)
        )
        with rpc_errors():
            resp = self._stub.Apply(
                pb.ApplyRequest(documents=text, dry_run=dry_run, who=self.who, why=why),
                timeout=self.timeout,
            )
        return list(resp.changes)

    def get(self, kind: str, name: str, version: str = "") -> RegistryObject:
        with rpc_errors():
            return _obj(
                self._stub.Get(
                    pb.GetRequest(kind=kind, name=name, version=version), timeout=self.timeout
                )
            )

    def list(self, kind: str) -> list[RegistryObject]:
        with rpc_errors():
            return [
                _obj(o)
                for o in self._stub.List(pb.ListRequest(kind=kind), timeout=self.timeout).objects
            ]

    def promote(self, kind: str, name: str, version: str, status: str) -> RegistryObject:
        req = pb.PromoteRequest(kind=kind, name=name, version=version, status=status)
        with rpc_errors():
            return _obj(self._stub.Promote(req, timeout=self.timeout))

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
        with rpc_errors():
            return _obj(self._stub.SwitchRoute(req, timeout=self.timeout))

    def rollback(self, route: str, *, why: str = "") -> RegistryObject:
        with rpc_errors():
            return _obj(
                self._stub.Rollback(
                    pb.RollbackRequest(route=route, who=self.who, why=why), timeout=self.timeout
                )
            )

    # builtins.list: in the class body `list` is the method above.
    def history(self, route: str) -> builtins.list[RouteChange]:
        with rpc_errors():
            resp = self._stub.History(pb.HistoryRequest(route=route), timeout=self.timeout)
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
        with rpc_errors():
            resp = self._stub.CheckCompat(req, timeout=self.timeout)
        return resp.compatible, resp.reason

    def set_shard_state(self, shard_id: str, state: str, reason: str = "") -> None:
        with rpc_errors():
            self._stub.SetShardState(
                pb.SetShardStateRequest(shard_id=shard_id, state=state, reason=reason),
                timeout=self.timeout,
            )

    def train_placement(self, index: str, version: str, sample: Any, seed: int = 0) -> int:
        """Trains a centroid-placed index's coarse quantizer from sample vectors."""
        import numpy as np

        data = np.ascontiguousarray(sample, dtype="<f4")
        req = pb.TrainPlacementRequest(
            index_name=index, index_version=version, sample=data.tobytes(), seed=seed
        )
        with rpc_errors():
            return int(self._stub.TrainPlacement(req, timeout=max(self.timeout, 60.0)).buckets)

    def status(self) -> pb.StatusResponse:
        with rpc_errors():
            status: pb.StatusResponse = self._stub.Status(pb.StatusRequest(), timeout=self.timeout)
            return status
