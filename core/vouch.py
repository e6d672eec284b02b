"""The coordinator's vouch: for whom a call to a shard is made (DESIGN §10).

A coordinator authenticates the caller and binds the request to the caller's
grant; then, on every call to a shard, it says for which principal, purpose
and tenant each item of the call is — in gRPC metadata, so the internal
messages stay as they are. The shard (defence in depth) checks every query's
and key's tenant against the vouch, and the vouch against the grant in its own
copy of the registry, and refuses a mismatch. A search batch mixes callers, so
its vouch names one entry per query.

Wire form (`x-vecshard-vouch-bin`): JSON `{"v": [[principal, purpose,
tenant], ...], "q": [entry index per query]}`; `q` is left out when the call
has one entry for everything.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from core.errors import PermissionDenied

VOUCH_METADATA = "x-vecshard-vouch-bin"
# The purpose the coordinator's ErasureService vouches with; no caller may
# name it (an erasure reads and deletes across purposes, for an admin only).
ERASURE_PURPOSE = "erasure"
# Bounds what a shard parses from a peer before it checks anything.
MAX_VOUCH_BYTES = 1 << 20


class Vouch(NamedTuple):
    principal: str
    purpose: str
    tenant: str


def encode(per_item: Sequence[Vouch]) -> bytes:
    """One vouch per item (query); repeated vouches are sent once."""
    index: dict[Vouch, int] = {}
    order = [index.setdefault(v, len(index)) for v in per_item]
    doc: dict[str, object] = {"v": [list(v) for v in index]}
    if len(index) > 1:
        doc["q"] = order
    return json.dumps(doc, separators=(",", ":")).encode()


def metadata(per_item: Sequence[Vouch]) -> tuple[tuple[str, bytes]]:
    return ((VOUCH_METADATA, encode(per_item)),)


def decode(raw: bytes, items: int) -> list[Vouch]:
    """The vouch of each of `items` items; PERMISSION_DENIED when it is
    missing or malformed (a shard answers nobody the coordinator did not
    vouch for)."""
    if len(raw) > MAX_VOUCH_BYTES:
        raise PermissionDenied(f"vouch of {len(raw)} bytes exceeds {MAX_VOUCH_BYTES}")
    try:
        doc = json.loads(raw)
        entries = [Vouch(str(p), str(u), str(t)) for p, u, t in doc["v"]]
        order = doc.get("q")
        if order is None:
            if len(entries) != 1:
                raise ValueError("several entries without a per-item index")
            return entries * items
        if len(order) != items:
            raise ValueError(f"{len(order)} item indexes for {items} items")
        return [entries[i] for i in order]
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise PermissionDenied(f"malformed coordinator vouch ({exc})") from None


def from_metadata(md: Sequence[tuple[str, str | bytes]] | None, items: int) -> list[Vouch]:
    found: Mapping[str, str | bytes] = dict(md or ())
    raw = found.get(VOUCH_METADATA)
    if raw is None:
        raise PermissionDenied(
            "no coordinator vouch on this call: shards answer only requests a coordinator "
            "authorized for a principal, purpose and tenant"
        )
    return decode(raw if isinstance(raw, bytes) else raw.encode(), items)
