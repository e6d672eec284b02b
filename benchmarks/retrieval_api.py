"""What the public RetrievalService offers in this build, read from the generated descriptors.

The harness outlives the API it measures: GetFeatures (issue 6), the ``partial`` flag on
search responses (issue 5) and per-request search parameters (issue 4) arrive later. Reading
the descriptors instead of hard-coding message fields lets the same harness drive today's
flat cluster and pick those up the day they land, and say clearly what is missing when a
user asks for something this build does not have.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message

from protos.vecshard.v1 import retrieval_pb2 as pb

SERVICE_NAME = "vecshard.v1.RetrievalService"
_SERVICE = pb.DESCRIPTOR.services_by_name["RetrievalService"]


class NotInThisBuild(LookupError):
    """The public API of this build lacks something the user asked for."""


def method_names() -> list[str]:
    return sorted(_SERVICE.methods_by_name)


def method(name: str) -> MethodDescriptor:
    found = _SERVICE.methods_by_name.get(name)
    if found is None:
        raise NotInThisBuild(
            f"RetrievalService has no method {name!r} in this build; it has {method_names()}"
        )
    return found


def method_path(name: str) -> str:
    """The HTTP/2 path gRPC sends, e.g. ``/vecshard.v1.RetrievalService/Search``."""
    return f"/{SERVICE_NAME}/{method(name).name}"


def message_class(descriptor: Descriptor) -> type[Message]:
    return message_factory.GetMessageClass(descriptor)


def request_from_json(name: str, body: Mapping[str, Any], access: Mapping[str, str]) -> bytes:
    """A request for any RPC from its proto-JSON form, serialized once up front.

    ``access`` fills the request's ``access`` field when the JSON leaves it out, so one
    request file serves every tenant a load test is pointed at.
    """
    cls = message_class(method(name).input_type)
    try:
        request = json_format.ParseDict(dict(body), cls())
    except json_format.ParseError as exc:
        raise ValueError(f"request for {name}: {exc}") from exc
    fields = cls.DESCRIPTOR.fields_by_name
    if "access" in fields and not request.HasField("access"):
        json_format.ParseDict({"access": dict(access)}, request)
    return request.SerializeToString()


def partial_flag_reader(name: str) -> type[Message] | None:
    """The response class to parse when the method's response can say it is partial.

    ``None`` means the response has no boolean ``partial`` field, so the load generator never
    pays for parsing it.
    """
    output = method(name).output_type
    field = output.fields_by_name.get("partial")
    if field is None or field.type != FieldDescriptor.TYPE_BOOL:
        return None
    return message_class(output)


def search_params_on_request() -> frozenset[str]:
    """Index search parameters a SearchRequest can carry per request (e.g. ``ef_search``).

    Empty today: search parameters are part of the index version (issue 4), so a sweep
    needs one index version per value. When a later build adds them to the request, the
    search benchmark sweeps on one index version instead.
    """
    fields = pb.SearchRequest.DESCRIPTOR.fields_by_name
    return frozenset(name for name in ("ef_search", "nprobe") if name in fields)
