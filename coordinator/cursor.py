"""Search cursors: the next page of the same search, stable while writes continue.

A cursor pins the snapshot the first page was read at — the index version,
the replica chosen for each bucket and each shard's write sequence at that
moment — and carries the last item's order key. The next page asks the same
replicas for items strictly after that key and written no later than the
pinned sequence, so pages never repeat an item and items arriving meanwhile
cannot shift the order. Coordinators stay stateless: everything is in the
cursor, which any coordinator can continue.

A shard page 1 skipped by bound gave no answer, so no sequence of its own:
it is pinned at the sequence of the summary it was skipped on
(`IndexSummary.sequence`). That summary covers every row the shard held at
that sequence, and its bound proved none of them could make page 1 — so
reading the shard there on later pages is a snapshot consistent with page 1.
(Reading it as it is now, as the pin 0 meant "no limit", served writes made
after page 1, and an item page 1 served that moved to it since, twice.)

A pin of 0 is a pin (a shard with no write yet holds nothing). A cursor
from a coordinator before this rule wrote 0 for "not pinned yet": it lacks
the `pz` mark, and its 0 pins read as None (pinned at the shard's first
answer, as that coordinator did).
"""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from coordinator.merge import Hit
from coordinator.model import ShardTrace
from core.domain import EntityKey, VersionRef
from core.errors import InvalidArgument
from core.filters import Filter

VERSION = 1
# Cursors longer than this are deflated. Below it deflate costs more than it
# saves: a third of a cursor's ~10 us is zlib's set-up, one per full first page,
# to shorten a ~200-byte cursor by a third. Either form decodes: a deflate
# stream never begins with "{".
_DEFLATE_ABOVE = 512
# shard id → (buckets answered by it, its write sequence when page 1 was
# read, or skipped it; None: not pinned yet, only in an older cursor)
Pins = dict[str, tuple[tuple[int, ...], int | None]]


@dataclass(frozen=True)
class Cursor:
    route: str
    bundle: str
    index: VersionRef
    query_hash: str
    served: int
    last_score: float
    last_key: EntityKey
    shards: Pins
    # Buckets page 1 reported missing (no serving replica, or their shard
    # failed) that no pin covers: a later page reports them missing, not
    # itself complete. Buckets page 1 excluded by their stats are in neither
    # (nothing of the query is there: later pages skip them too). Only these,
    # not every bucket: a cursor past 512 bytes is deflated, which tripled its
    # cost at 64 buckets.
    missing: tuple[int, ...] = ()


def query_hash(vector: np.ndarray, k: int, tenant: str, flt: Filter | None) -> str:
    """Binds a cursor to its search: continuing with another query is refused."""
    h = hashlib.blake2b(digest_size=12)
    h.update(np.ascontiguousarray(vector, dtype="<f4").tobytes())
    h.update(f"|{k}|{tenant}|{flt!r}".encode())
    return h.hexdigest()


def encode(c: Cursor) -> str:
    doc = {
        "v": VERSION,
        "r": c.route,
        "b": c.bundle,
        "i": [c.index.name, c.index.version],
        "q": c.query_hash,
        "n": c.served,
        "s": c.last_score,
        "k": list(c.last_key),
        "sh": {sid: [list(bs), seq or 0] for sid, (bs, seq) in c.shards.items()},
    }
    if all(seq is not None for _, seq in c.shards.values()):
        doc["pz"] = 1  # a 0 pin is a pin (an older coordinator ignores this)
    if c.missing:
        doc["mb"] = list(c.missing)
    raw = json.dumps(doc, separators=(",", ":")).encode()
    if len(raw) > _DEFLATE_ABOVE:
        raw = zlib.compress(raw)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(text: str) -> Cursor:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        doc = json.loads(raw if raw[:1] == b"{" else zlib.decompress(raw))
        if not isinstance(doc, dict) or doc.get("v") != VERSION:
            raise ValueError("not a cursor of this version")
        if not isinstance(doc.get("sh"), dict):
            raise ValueError("its pins are not a mapping")
        zero_pins = doc.get("pz") == 1
        return Cursor(
            route=doc["r"],
            bundle=doc["b"],
            index=VersionRef(*doc["i"]),
            query_hash=doc["q"],
            served=int(doc["n"]),
            last_score=float(doc["s"]),
            last_key=EntityKey(*doc["k"]),
            shards={
                str(sid): (tuple(int(b) for b in bs), int(seq) if zero_pins or seq else None)
                for sid, (bs, seq) in doc["sh"].items()
            },
            missing=tuple(int(b) for b in doc.get("mb", ())),
        )
    except (ValueError, KeyError, TypeError, AttributeError, zlib.error) as exc:
        raise InvalidArgument(
            f"cursor is not valid ({exc}); pass next_cursor from a previous response unchanged"
        ) from None


def next_cursor(
    route: str,
    bundle: str,
    index: VersionRef,
    qhash: str,
    served: int,
    hits: Sequence[Hit],
    trace: Sequence[ShardTrace],
    pins: Pins | None,
    k: int,
    missing: Sequence[int] = (),
) -> str:
    """The cursor for the page after `hits`, or "" when the page is not full
    (nothing follows). Page 1 pins every shard it asked, at the sequence it
    answered at, and every shard it skipped by bound, at the sequence of the
    summary it was skipped on (see the module's docstring); later pages keep
    their pins. `missing`: the buckets this page reported missing —
    not every bucket no pin covers: one excluded by its stats was never
    asked, and is not missing on any page."""
    if len(hits) < k:
        return ""
    # A replica can appear twice on page 1: for its own buckets and in a
    # failover cover for another's; its pin holds both, at its later sequence.
    read = [t for t in trace if t.outcome in ("searched", "skipped_by_bound")]
    at: dict[str, int] = {}
    for t in read:
        at[t.shard_id] = max(at.get(t.shard_id, 0), t.sequence)
    new_pins: Pins = dict(pins or {})
    for t in read:
        sid = t.shard_id
        old = new_pins.get(sid)
        if old is None:
            new_pins[sid] = (t.buckets, at[sid])
        else:
            kept = old[0] if pins and sid in pins else tuple(sorted({*old[0], *t.buckets}))
            new_pins[sid] = (kept, at[sid] if old[1] is None else old[1])
    last = hits[-1]
    return encode(
        Cursor(
            route,
            bundle,
            index,
            qhash,
            served + len(hits),
            last.score,
            last.key,
            new_pins,
            tuple(sorted(set(missing).difference(*(bs for bs, _ in new_pins.values())))),
        )
    )
