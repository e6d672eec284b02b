"""A gRPC failure with a chosen status, for tests of the SDK's error rules
(retries, coalesced searches) without a server."""

from __future__ import annotations

import grpc


class Failure(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str = "") -> None:
        self._code = code
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details or f"fake {self._code.name}"
