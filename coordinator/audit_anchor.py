"""The audit chain's head anchored in etcd, moved only forward, by
compare-and-swap.

The anchor is what shows records cut from the end of a chain's files, so it
must never follow a cut back: a coordinator that overwrote it with whatever
head it found at start would bless the cut. Each write is a transaction on
the key's mod revision as last read or written here; when someone else has
changed the key meanwhile, the head there is re-read and the anchor advanced
only if ours is past it (else `AnchorConflict`: another writer under this
name, or a hand-set anchor; left for a person to look at).
"""

from __future__ import annotations

import json
import logging
import time

from coordinator import metrics
from coordinator.audit import AnchorConflict
from registry.store import ModRevisionIs, Put, RegistryStore

log = logging.getLogger(__name__)


class EtcdHeadAnchor:
    """`coordinator.audit.HeadAnchor` on one registry store key. Used from the
    audit thread only (and once before it starts)."""

    def __init__(self, store: RegistryStore, key: str) -> None:
        self.store = store
        self.key = key
        self._revision: int | None = None  # mod revision last seen (0: absent); None: unread
        self._seq = 0  # the seq anchored at that revision

    def read(self) -> tuple[int, str] | None:
        entry = self.store.get(self.key)
        if entry is None:
            self._revision, self._seq = 0, 0
            return None
        doc = json.loads(entry.value)
        head = int(doc["seq"]), str(doc["hash"])
        self._revision, self._seq = entry.mod_revision, head[0]
        return head

    def advance(self, seq: int, digest: str) -> None:
        if self._revision is None:
            self.read()
        if seq <= self._seq:
            return  # anchored already (or further): never back
        value = json.dumps({"seq": seq, "hash": digest, "ts": time.time()}).encode()
        assert self._revision is not None
        if self._swap(self._revision, value):
            return
        # Changed since we last saw it: by whom, we cannot tell; say so.
        metrics.AUDIT_ANCHOR_CONFLICTS.inc()
        seen = self._seq
        current = self.read()
        if current is not None and current[0] >= seq:
            raise AnchorConflict(
                f"{self.key} holds seq {current[0]}, at or past this chain's head seq {seq}: "
                "another coordinator anchors under this name, or someone set it; left as it is"
            )
        log.error(
            "audit anchor %s changed behind this coordinator's back (it anchored seq %d, now %s); "
            "anchoring seq %d over it",
            self.key,
            seen,
            "absent" if current is None else f"seq {current[0]}",
            seq,
        )
        assert self._revision is not None
        if not self._swap(self._revision, value):
            raise AnchorConflict(f"{self.key} keeps changing under this coordinator; left as it is")

    def _swap(self, revision: int, value: bytes) -> bool:
        """Puts `value` if the key is still at `revision`; learns its new
        revision by reading it back (the store's txn does not return it): a
        value other than ours there means someone wrote right after us."""
        if not self.store.txn([ModRevisionIs(self.key, revision)], [Put(self.key, value)]):
            return False
        entry = self.store.get(self.key)
        if entry is None or entry.value != value:
            return False
        self._revision, self._seq = entry.mod_revision, int(json.loads(value)["seq"])
        return True
