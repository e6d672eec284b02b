"""Authentication, authorization and audit of every public call, in one place.

For each call: verify the bearer token (`coordinator.authn`), find the
caller's grant in the registry, check the role the method needs and bind the
request's tenant and purpose to the grant (`coordinator.request_access`),
then run the servicer — and write one audit record with the outcome,
refusals included. Mutations are acknowledged only once their record is on
disk (`coordinator.audit`).

It sits inside `core.runtime`'s interceptor, so its `core.errors` exceptions
become statuses (UNAUTHENTICATED, PERMISSION_DENIED) like any other.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import grpc.aio

from coordinator import vouching
from coordinator.audit import AuditTrail
from coordinator.audit_records import (
    UNKNOWN_TYPES,
    EntityTypes,
    Hasher,
    describe,
    error_field,
    put_features,
)
from coordinator.authn import TokenVerifier, bearer_token
from coordinator.request_access import RULES, RpcRule
from core.errors import PermissionDenied, VecshardError
from core.runtime import PASSTHROUGH, wrap_handler
from core.vouch import Vouch
from registry.access_policy import Principal, require_role

log = logging.getLogger(__name__)
Grants = Callable[[str], Awaitable[Principal]]


def _access_fields(vouches: list[Vouch]) -> dict[str, Any]:
    tenants = sorted({v.tenant for v in vouches})
    purposes = sorted({v.purpose for v in vouches})
    if len(tenants) == 1 and len(purposes) == 1:
        return {"tenant": tenants[0], "purpose": purposes[0]}
    return {"tenants": tenants, "purposes": purposes} if vouches else {}


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        verifier: TokenVerifier,
        grants: Grants,
        audit: AuditTrail,
        hasher: Hasher,
        instance: str,
        types: EntityTypes = UNKNOWN_TYPES,
    ) -> None:
        """`types`: the entity type of ids a call names without one, so that
        they hash as the stored keys do (`coordinator.audit_records`)."""
        self.verifier = verifier
        self.grants = grants
        self.audit = audit
        self.hasher = hasher
        self.instance = instance
        self.types = types

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(PASSTHROUGH):
            return handler
        rule = RULES.get(method)
        streaming = bool(handler.request_streaming)
        return wrap_handler(handler, lambda behavior: self._wrap(behavior, method, rule, streaming))

    def _wrap(
        self,
        behavior: Callable[..., Awaitable[Any]],
        method: str,
        rule: RpcRule | None,
        streaming: bool,
    ) -> Callable[..., Awaitable[Any]]:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            start = time.perf_counter()
            record: dict[str, Any] = {
                "ts": time.time(),
                "coordinator": self.instance,
                "rpc": method,
                "peer": context.peer(),
                "principal": "",
            }
            vouches: list[Vouch] = []
            stream_summary: dict[str, Any] = {}
            audit_class = rule.audit if rule is not None else "read"
            try:
                self.audit.ready()
                identity = self.verifier.verify(bearer_token(context.invocation_metadata()))
                record["principal"] = identity.principal
                if rule is None:
                    raise PermissionDenied(f"{method} has no access policy; refused")
                principal = await self.grants(identity.principal)
                if streaming:
                    require_role(principal, rule.role, method)
                    request = self._bound_stream(request, principal, rule, vouches, stream_summary)
                else:
                    require_role(principal, rule.needed(request), method)
                    vouches.extend(rule.bind(principal, request))
                    if len(vouches) == 1:
                        vouching.CALLER.set(vouches[0])
                if audit_class == "admin":
                    await self.audit.record_durable(
                        {
                            **record,
                            "event": "attempt",
                            **_access_fields(vouches),
                            **self._describe(method, request, None),
                        }
                    )
                response = await behavior(request, context)
            except grpc.aio.AbortError:
                code = context.code() or grpc.StatusCode.UNKNOWN
                await self._finish(record, audit_class, vouches, code, "aborted", start)
                raise
            except Exception as exc:
                code = exc.code if isinstance(exc, VecshardError) else grpc.StatusCode.INTERNAL
                details = self._describe(method, None if streaming else request, None)
                record.update(details, **stream_summary)
                await self._finish(record, audit_class, vouches, code, error_field(exc), start)
                raise
            record.update(
                self._describe(method, None if streaming else request, response),
                **stream_summary,
            )
            await self._finish(record, audit_class, vouches, grpc.StatusCode.OK, "", start)
            return response

        return wrapped

    def _describe(self, method: str, request: Any, response: Any) -> dict[str, Any]:
        """The record's details; a bug here must not fail a call that was
        served — the record is still written, marked incomplete."""
        try:
            return describe(self.hasher, method, request, response, self.types)
        except Exception:  # noqa: BLE001 - see the docstring
            log.exception("audit: cannot describe a call of %s", method)
            return {"describe_error": True}

    def _bound_stream(
        self,
        requests: AsyncIterator[Any],
        principal: Principal,
        rule: RpcRule,
        vouches: list[Vouch],
        summary: dict[str, Any],
    ) -> AsyncIterator[Any]:
        """A client stream whose every message is bound as it arrives."""
        hasher, types = self.hasher, self.types

        async def bound() -> AsyncIterator[Any]:
            async for message in requests:
                found = rule.bind(principal, message)
                for v in found:
                    if v not in vouches:
                        vouches.append(v)
                # An async generator runs in its consumer's context: the
                # servicer's shard calls for this message see this caller.
                vouching.CALLER.set(found[0] if found else None)
                part = put_features(hasher, message, types)
                summary["messages"] = summary.get("messages", 0) + 1
                summary["rows"] = summary.get("rows", 0) + part["rows"]
                summary.setdefault("ids", []).extend(part["ids"])
                summary.setdefault("group", part["group"])
                yield message

        return bound()

    async def _finish(
        self,
        record: dict[str, Any],
        audit_class: str,
        vouches: list[Vouch],
        code: grpc.StatusCode,
        error: str,
        start: float,
    ) -> None:
        """`error`: what the record says of a failure (`error_field`: the
        class, never the message, which names raw ids and values)."""
        record.update(_access_fields(vouches))
        record["code"] = code.name
        record["ms"] = round((time.perf_counter() - start) * 1e3, 3)
        if code is not grpc.StatusCode.OK:
            record["error"] = error
        if audit_class == "read":
            self.audit.record(record)
        else:
            await self.audit.record_durable(record)
