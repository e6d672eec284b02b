"""The soak's model of acknowledged operations and the invariants every
answer is checked against (issue 14, item 8). Pure: plain data in, a list of
violations out, so each rule is unit-tested on fabricated histories.

Every write the workload sends is recorded when it is issued and when it
ends: acknowledged, failed, or still pending. A failed write is ambiguous (it
may have reached some replicas before failing), so for each read the model
only knows two things for sure:

- what was *acknowledged before the read began* must be visible, and
- nothing can be visible that was not *issued before the read ended*.

Vectors are a function of (entity id, version), the same for every tenant, so
two tenants hold identical ids and vectors (the hardest case for isolation)
and a returned vector can be checked byte for byte.
"""

from __future__ import annotations

import hashlib
import threading
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

Key = tuple[str, str]  # (tenant, entity_id)


def vector_of(entity_id: str, version: int, dim: int) -> np.ndarray:
    """The vector written for (entity id, version): any tenant, any writer."""
    seed = int.from_bytes(hashlib.blake2b(f"{entity_id}@{version}".encode()).digest()[:8], "little")
    return np.random.default_rng(seed).normal(size=dim).astype(np.float32)


@dataclass
class Op:
    kind: str  # upsert | delete
    version: int
    issued: float
    ended: float | None = None
    ok: bool | None = None  # None while pending


@dataclass(frozen=True)
class Violation:
    rule: str
    key: Key
    detail: str


@dataclass
class Model:
    """Thread-safe log of every write, per key."""

    ops: dict[Key, list[Op]] = field(default_factory=lambda: defaultdict(list))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def issue(self, key: Key, kind: str, version: int, at: float) -> Op:
        op = Op(kind, version, at)
        with self.lock:
            self.ops[key].append(op)
        return op

    @staticmethod
    def end(op: Op, ok: bool, at: float) -> None:
        op.ended, op.ok = at, ok

    def _history(self, key: Key) -> list[Op]:
        with self.lock:
            return list(self.ops.get(key, ()))

    # -- what a read may see -------------------------------------------------

    def bounds(self, key: Key, start: float, end: float) -> tuple[int, int, set[int], int]:
        """(newest upsert acknowledged before `start` or -1, newest delete
        acknowledged before `start` or -1, upsert versions issued before
        `end`, newest delete issued before `end` or -1)."""
        acked_up = acked_del = issued_del = -1
        issued_up: set[int] = set()
        for op in self._history(key):
            acked = op.ok is True and op.ended is not None and op.ended < start
            issued = op.issued < end
            if op.kind == "upsert":
                if acked:
                    acked_up = max(acked_up, op.version)
                if issued:
                    issued_up.add(op.version)
            else:
                if acked:
                    acked_del = max(acked_del, op.version)
                if issued:
                    issued_del = max(issued_del, op.version)
        return acked_up, acked_del, issued_up, issued_del

    def check_lookup(
        self,
        key: Key,
        start: float,
        end: float,
        status: str,
        version: int,
        vector: np.ndarray | None,
        dim: int,
    ) -> list[Violation]:
        """One key's lookup answer (status found/deleted/missing; unavailable
        answers are not checked: they claim nothing)."""
        intact = status != "found" or (
            vector is not None and vector.tobytes() == vector_of(key[1], version, dim).tobytes()
        )
        return self.check_read(key, start, end, status, version, intact)

    def check_read(
        self, key: Key, start: float, end: float, status: str, version: int, intact: bool = True
    ) -> list[Violation]:
        """The rules every point read of a key answers to — embeddings and
        feature rows alike: status found/deleted/missing, the version found,
        and `intact`: whether what came with it is what that version wrote."""
        acked_up, acked_del, issued_up, issued_del = self.bounds(key, start, end)
        out = []
        if status == "found":
            if version not in issued_up:
                out.append(Violation("phantom", key, f"found version {version}, never written"))
            elif not intact:
                out.append(Violation("corrupt", key, f"version {version} has another value"))
            if version < acked_up:
                out.append(
                    Violation("lost_write", key, f"found {version}, {acked_up} was acknowledged")
                )
            if version <= acked_del:
                out.append(
                    Violation("resurrected", key, f"found {version} after delete {acked_del}")
                )
        elif status in ("deleted", "missing") and acked_up >= 0 and issued_del < acked_up:
            out.append(
                Violation(
                    "lost_write",
                    key,
                    f"{status}, but {acked_up} was acknowledged and no delete as new was sent",
                )
            )
        return out

    def check_search(
        self,
        tenant: str,
        start: float,
        end: float,
        hits: Iterable[tuple[str, str]],
        partial: bool,
        expected: Key | None = None,
    ) -> list[Violation]:
        """One search answer (hits as (tenant, entity_id)). `expected`: a key
        searched for with its own current vector, which must be found unless
        the answer says it is partial."""
        out: list[Violation] = []
        seen: set[Key] = set()
        for hit in hits:
            key: Key = (hit[0], hit[1])
            if hit[0] != tenant:
                out.append(Violation("cross_tenant", key, f"returned to tenant {tenant!r}"))
            if key in seen:
                out.append(Violation("duplicate", key, "returned twice in one answer"))
            seen.add(key)
            acked_up, acked_del, issued_up, issued_del = self.bounds(key, start, end)
            if not issued_up:
                out.append(Violation("phantom", key, "returned, never written"))
            elif acked_del >= max(issued_up):
                out.append(
                    Violation("deleted_returned", key, f"delete {acked_del} was acknowledged")
                )
        if (
            expected is not None
            and expected not in seen
            and not partial
            and self.stable(expected, start, end) is not None
        ):
            out.append(
                Violation("incomplete_unflagged", expected, "missing from a complete answer")
            )
        return out

    def stable(self, key: Key, start: float, end: float) -> int | None:
        """The version a key certainly has during [start, end]: every write of
        it ended before `start`, all acknowledged, and the newest is an upsert
        newer than every delete. None when anything is uncertain."""
        history = self._history(key)
        if not history or any(op.ok is not True or op.ended is None for op in history):
            return None
        if any(op.ended is not None and op.ended >= start for op in history):
            return None
        ups = [op.version for op in history if op.kind == "upsert"]
        dels = [op.version for op in history if op.kind == "delete"]
        if not ups or (dels and max(dels) >= max(ups)):
            return None
        return max(ups)

    def keys(self) -> list[Key]:
        with self.lock:
            return list(self.ops)
