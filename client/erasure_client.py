"""A typed client for the coordinator's ErasureService (admin only).

Every step is idempotent, so every call is retried on another coordinator
when one is unreachable. `vecshard delete-subject` drives these steps as a
resumable job; use this client to build your own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from client.arguments import key_parts
from client.connection import Connection, RetryPolicy
from client.credentials import Credentials, resolve
from core.domain import EntityKey
from core.wire import key_to_pb
from protos.vecshard.v1 import erasure_pb2 as pb
from protos.vecshard.v1 import erasure_pb2_grpc


@dataclass(frozen=True)
class StoredCopy:
    embedding: str  # NAME@VERSION
    index: str  # NAME@VERSION
    vector: bytes  # little-endian float32, as stored
    source_version: int


@dataclass(frozen=True)
class Plan:
    copies: list[StoredCopy]
    embedding_versions: list[str]
    index_versions: list[str]
    feature_groups: list[str]


class ErasureClient:
    def __init__(
        self,
        address: str | Sequence[str],
        *,
        timeout: float = 600.0,
        retry: RetryPolicy | None = None,
        credentials: Credentials | None = None,
        token: str | None = None,
        root_certificates: bytes | None = None,
    ) -> None:
        self.timeout = timeout
        self._conn = Connection(
            address, retry, credentials=resolve(credentials, token, root_certificates)
        )
        self._stubs = [erasure_pb2_grpc.ErasureServiceStub(ch) for ch in self._conn.channels]

    def __enter__(self) -> ErasureClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    def _rpc(self, name: str, request: object) -> object:
        return self._conn.call(lambda i: getattr(self._stubs[i], name), request, self.timeout)

    @staticmethod
    def _request(subject: EntityKey, job_id: str, why: str, version: int = 0) -> pb.ErasureRequest:
        key = EntityKey(*key_parts(subject, "subject", (3,)))
        return pb.ErasureRequest(
            subject=key_to_pb(key), job_id=job_id, why=why, source_version=version
        )

    def plan(self, subject: EntityKey, job_id: str = "", why: str = "") -> Plan:
        r = self._rpc("PlanErasure", self._request(subject, job_id, why))
        assert isinstance(r, pb.ErasurePlan)
        return Plan(
            [
                StoredCopy(
                    f"{c.embedding_name}@{c.embedding_version}",
                    f"{c.index_name}@{c.index_version}",
                    c.vector,
                    c.source_version,
                )
                for c in r.copies
            ],
            list(r.embedding_versions),
            list(r.index_versions),
            list(r.feature_groups),
        )

    def erase(self, subject: EntityKey, job_id: str = "", why: str = "") -> pb.EraseResponse:
        r = self._rpc("EraseSubject", self._request(subject, job_id, why))
        assert isinstance(r, pb.EraseResponse)
        return r

    def purge(self, subject: EntityKey, job_id: str = "", why: str = "") -> pb.PurgeResponse:
        r = self._rpc("PurgeSubject", self._request(subject, job_id, why))
        assert isinstance(r, pb.PurgeResponse)
        return r

    def verify(
        self,
        subject: EntityKey,
        copies: Sequence[StoredCopy],
        *,
        scan_files: bool = True,
        job_id: str = "",
        why: str = "",
        offline_rows_removed: int = 0,
        offline_matches: int = 0,
    ) -> pb.VerifyResponse:
        def copy_pb(c: StoredCopy) -> pb.EmbeddingCopy:
            en, _, ev = c.embedding.partition("@")
            iname, _, iv = c.index.partition("@")
            return pb.EmbeddingCopy(
                embedding_name=en,
                embedding_version=ev,
                index_name=iname,
                index_version=iv,
                vector=c.vector,
                source_version=c.source_version,
            )

        req = pb.VerifyRequest(
            erasure=self._request(subject, job_id, why),
            copies=[copy_pb(c) for c in copies],
            scan_files=scan_files,
            offline_rows_removed=offline_rows_removed,
            offline_matches=offline_matches,
        )
        r = self._rpc("VerifyErasure", req)
        assert isinstance(r, pb.VerifyResponse)
        return r
