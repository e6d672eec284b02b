"""How a replication export (catch-up, anti-entropy) is cut into the chunks
of its stream: at most a count of entries and a number of bytes each, so a
chunk always fits one gRPC message.

Why bytes too: cut at 2,000 records whatever their size, one chunk of a
family of dimension 16,384 (64 KiB a vector) was 125 MiB, past the 64 MiB
every channel and server allow (`core.runtime.MAX_MESSAGE_MB`); the export
failed RESOURCE_EXHAUSTED every time, and the replica never caught up nor
was reconciled — only a warning said so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from core.runtime import MAX_MESSAGE_MB

Entry = TypeVar("Entry")

# A quarter of the message limit: a chunk may carry a record part and a
# tombstone part (`replication.export_records`), each within it, with room
# to spare for the message's own framing.
CHUNK_BYTES = MAX_MESSAGE_MB * 2**20 // 4
# What an entry adds to the message beyond its key and value (field tags,
# lengths, a varint version), counted generously.
ENTRY_OVERHEAD = 32


def pair_size(entry: tuple[bytes, bytes | int]) -> int:
    """The bytes a (key, value) or (key, version) entry takes in a chunk."""
    key, value = entry
    return len(key) + (len(value) if isinstance(value, bytes) else 0) + ENTRY_OVERHEAD


def sized_chunks(
    entries: Iterable[Entry],
    size: Callable[[Entry], int],
    max_entries: int,
    max_bytes: int = CHUNK_BYTES,
) -> Iterator[list[Entry]]:
    """`entries` in order, in lists of at most `max_entries` and `max_bytes`
    (by `size`) — at least one entry each, however large it is alone."""
    part: list[Entry] = []
    used = 0
    for entry in entries:
        n = size(entry)
        if part and (len(part) >= max_entries or used + n > max_bytes):
            yield part
            part, used = [], 0
        part.append(entry)
        used += n
    if part:
        yield part
