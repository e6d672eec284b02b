"""A gRPC failure with a chosen status, for tests of the SDK's error rules
(retries, coalesced searches) without a server."""

from __future__ import annotations

import grpc


class Failure(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return f"fake {self._code.name}"
