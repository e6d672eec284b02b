"""The shard process's memory: what it holds (RSS, anonymous and file-backed,
from /proc) and how the allocator gives freed memory back.

Why `configure_allocator`: glibc raises its mmap threshold each time a large
block is freed (up to 32 MiB), after which blocks of a few MiB — a write
batch's arrays, a build's copies of the rows — come from the arenas of the
threads that allocated them, between the small blocks an index keeps for
good (hnswlib's per-element links and label map). Freed, they leave pages
that one live small block pins, in every gRPC thread's arena: measured on a
shard after loading and flushing 50,000 × 128 vectors, 2.4–3.3 KB per vector
above the empty shard against 1.2 KB with the threshold fixed at 1 MiB.
Fixing it keeps large blocks out of the arenas; it costs a page fault per
page of each large block (about 10 % of the shard's CPU per ingested row,
inside the measurement noise). `MALLOC_MMAP_THRESHOLD_` in the environment
wins.

Why `release_free_memory`: a seal or a compaction frees the growing
segment's arrays and the rows a build copied. glibc keeps freed heap for
reuse and returns it only from the top of each arena, so without a trim the
shard's RSS stays at its peak and looks like a leak; `malloc_trim(0)`
returns every free page (glibc ≥ 2.8 also releases pages inside the heap).
Elsewhere (musl, macOS) both do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


MMAP_THRESHOLD = 1 << 20
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    except (OSError, AttributeError):  # not glibc
        return None
    return libc


_LIBC = _libc()


def configure_allocator(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fixes the mmap threshold (see above), unless the environment sets it;
    True when set here."""
    if _LIBC is None or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    return bool(_LIBC.mallopt(_M_MMAP_THRESHOLD, threshold))


def release_free_memory() -> None:
    """Returns freed heap pages to the operating system (glibc; else nothing)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


@dataclass(frozen=True)
class ProcessMemory:
    rss: int = 0
    anon: int = 0  # heap, numpy arrays, index structures
    file: int = 0  # mapped files: libraries, segment vector files as far as touched


def process_memory(pid: int | str = "self") -> ProcessMemory:
    """Resident memory of a process in bytes (Linux; zeros elsewhere)."""
    fields = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "RssAnon", "RssFile"):
                fields[name] = int(value.split()[0]) * 1024
    except OSError:
        return ProcessMemory()
    return ProcessMemory(fields.get("VmRSS", 0), fields.get("RssAnon", 0), fields.get("RssFile", 0))
