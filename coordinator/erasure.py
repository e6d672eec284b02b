"""Verified deletion of one subject (a user or an item), across the cluster.

The steps `vecshard delete-subject` runs, each idempotent so a killed job can
simply run it again:

1. `plan`: every index version built on an embedding version of the
   subject's entity type (any status: data is data), every feature group of
   that type, and the subject's stored copies (their vectors are what the
   verification searches with);
2. `erase`: a delete on every shard holding each index version, at a version
   above every stored copy and the clock — deletes win over writes of their
   version or older, so nothing is served once this returns and no retried
   write brings it back — and the subject's rows out of every feature group;
   repeated while a newer write raced it;
3. `purge`: every shard seals and compacts its segments (deleted rows are not
   rebuilt; replaced files are deleted) and compacts RocksDB;
4. `verify`: search every index version with each deleted vector, look the
   key up on every shard, read its features, and scan every shard's files
   for its vectors and id.

Every shard is asked, not only the owners of the subject's bucket: a replica
that once held it (before a placement change, or as a centroid-placed copy)
must be cleaned too. Calls to shards carry the erasure vouch the interceptor
set (purpose `erasure`; the shard requires an admin granted the tenant).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import grpc
import grpc.aio
import numpy as np

from coordinator import vouching
from coordinator.access import require_tenant
from coordinator.model import GroupFetch, ShardQuery
from coordinator.shard import ShardFactory
from coordinator.snapshots import RegistryView
from core import runtime as serving
from core.domain import EntityKey, VersionRef
from core.embedding_columns import FOUND, EmbeddingColumns
from core.errors import InvalidArgument, NotFound, Unavailable
from core.feature_columns import REASON_CODE
from core.vectors import from_bytes
from core.vouch import ERASURE_PURPOSE
from core.wire import key_to_pb
from protos.vecshard.v1 import common_pb2 as cpb
from protos.vecshard.v1.internal import erasure_pb2 as epb
from protos.vecshard.v1.internal import erasure_pb2_grpc
from registry.features import FeatureGroup
from registry.model import IndexVersion, Status
from registry.placement import feature_placement_ref
from registry.snapshot import Snapshot

# A verification search asks each shard for this many nearest items.
VERIFY_K = 10
# Rows that are not there read with these reasons.
_ABSENT = {"entity_not_found", "not_computed"}
# A file a compaction replaced is deleted once no search holds it any more.
SCAN_ATTEMPTS = 5


@dataclass(frozen=True)
class Copy:
    embedding: VersionRef
    index: VersionRef
    vector: bytes
    source_version: int


@dataclass(frozen=True)
class ErasurePlan:
    copies: list[Copy]
    embedding_versions: list[VersionRef]
    indexes: list[IndexVersion]
    groups: list[FeatureGroup]

    @property
    def max_source_version(self) -> int:
        return max((c.source_version for c in self.copies), default=0)


@dataclass
class Verification:
    searches: int = 0
    search_matches: int = 0
    lookups: int = 0
    lookup_matches: int = 0
    feature_reads: int = 0
    feature_matches: int = 0
    files_scanned: int = 0
    file_matches: int = 0
    markers: int = 0
    findings: list[tuple[str, str]] = field(default_factory=list)


def check_subject(subject: EntityKey) -> EntityKey:
    if not (subject.tenant_id and subject.entity_type and subject.entity_id):
        raise InvalidArgument(
            f"subject {tuple(subject)}: tenant_id, entity_type and entity_id are all required"
        )
    return subject


def _groups(snap: Snapshot) -> list[FeatureGroup]:
    return [
        g
        for (kind, _, _), g in snap.features.items()
        if kind == "FeatureGroup" and isinstance(g, FeatureGroup)
    ]


def _principal() -> str:
    caller = vouching.CALLER.get()
    return caller.principal if caller is not None else ""


class ErasureEngine:
    def __init__(
        self,
        view: RegistryView,
        shards: ShardFactory,
        credentials: grpc.ChannelCredentials,
        timeout: float = 60.0,
        purge_timeout: float = 600.0,
    ) -> None:
        self.view = view
        self.shards = shards
        self.credentials = credentials
        self.timeout = timeout
        self.purge_timeout = purge_timeout

    # -- what holds the subject --------------------------------------------------

    async def _snapshot(self, subject: EntityKey) -> Snapshot:
        snap, _ = await self.view.fresh(lambda s: require_tenant(s, subject.tenant_id))
        known = {f.entity_type for f in snap.families.values()} | {
            g.entity_type for g in _groups(snap)
        }
        if subject.entity_type not in known:
            # A mistyped type would plan nothing, erase nothing and verify
            # clean: an erasure reported done that never happened.
            raise NotFound(
                f"entity type {subject.entity_type!r}: no embedding family or feature group "
                f"holds it; expected one of {sorted(known)}"
            )
        self._require_every_holder(snap, subject.entity_type)
        return snap

    def _require_every_holder(self, snap: Snapshot, entity_type: str) -> None:
        """Every shard placed to hold the type's data must be registered. Why
        refuse rather than skip one that is down: it keeps its copy (a
        feature row has no tombstone to catch up on, an index version with
        one replica has no peer to catch up from), verification could not
        ask it, and a feature group's replicas copy newer rows from each
        other at start — the erased row would come back, and spread."""
        _, indexes = self._targets(snap, entity_type)
        placed = [(ix.ref, f"index {ix.ref}") for ix in indexes] + [
            (feature_placement_ref(g.name, g.version), f"feature group {g.name}@{g.version}")
            for g in _groups(snap)
            if g.entity_type == entity_type
        ]
        down: dict[str, list[str]] = {}
        for ref, label in placed:
            placement = snap.placements.get(ref)
            for sid in placement.shards() if placement is not None else ():
                if sid not in snap.shards:
                    down.setdefault(sid, []).append(label)
        if down:
            held = "; ".join(f"{sid} ({', '.join(what)})" for sid, what in sorted(down.items()))
            raise Unavailable(
                f"erasure of {entity_type!r} subjects: shard(s) holding copies are not "
                f"registered: {held}. An erasure must reach and verify every copy; retry "
                "when they are back"
            )

    @staticmethod
    def _targets(snap: Snapshot, entity_type: str) -> tuple[list[VersionRef], list[IndexVersion]]:
        families = {n for n, f in snap.families.items() if f.entity_type == entity_type}
        versions = sorted(
            (ref for ref in snap.embedding_versions if ref.name in families),
            key=lambda r: (r.name, r.version),
        )
        wanted = set(versions)
        # Not archived ones: their data is gone (the shards drop it on the
        # archive, or at start-up), and a shard refuses every call naming
        # one — every erasure of the type would fail for good.
        indexes = sorted(
            (
                ix
                for ix in snap.indexes.values()
                if ix.embedding in wanted and ix.status is not Status.ARCHIVED
            ),
            key=lambda ix: (ix.name, ix.version),
        )
        return versions, indexes

    @staticmethod
    def _holders(snap: Snapshot, index: IndexVersion) -> list[tuple[str, str]]:
        placement = snap.placements.get(index.ref)
        ids = placement.shards() if placement is not None else ()
        return [(s, snap.shards[s].address) for s in ids if s in snap.shards]

    async def plan(self, subject: EntityKey) -> ErasurePlan:
        subject = check_subject(subject)
        snap = await self._snapshot(subject)
        versions, indexes = self._targets(snap, subject.entity_type)
        copies: list[Copy] = []
        for index in indexes:
            for found in await self._lookups(snap, index, subject, include_vectors=True):
                if found.status[0] == FOUND:
                    copies.append(
                        Copy(
                            index.embedding,
                            index.ref,
                            found.vectors[0].astype("<f4").tobytes(),
                            int(found.source_version[0]),
                        )
                    )
                    break  # one copy per index version is what verification needs
        groups = sorted(
            (g for g in _groups(snap) if g.entity_type == subject.entity_type),
            key=lambda g: (g.name, g.version),
        )
        return ErasurePlan(copies, versions, indexes, groups)

    async def _lookups(
        self, snap: Snapshot, index: IndexVersion, subject: EntityKey, include_vectors: bool
    ) -> list[EmbeddingColumns]:
        """The subject as every shard holding the index version answers (one
        key each): a copy on any of them counts, not only the owner's."""
        calls = [
            self.shards(sid, address).batch_get(index.ref, [subject], include_vectors, self.timeout)
            for sid, address in self._holders(snap, index)
        ]
        return list(await asyncio.gather(*calls))

    # -- tombstones ---------------------------------------------------------------

    async def erase(self, subject: EntityKey, version: int = 0) -> tuple[int, int, int, int]:
        """(delete version, records deleted, feature rows deleted, index versions)."""
        subject = check_subject(subject)
        records = 0
        for _ in range(3):
            found = await self.plan(subject)
            v = max(version, time.time_ns() // 1000, found.max_source_version)
            snap = await self._snapshot(subject)
            calls = [
                self.shards(sid, address).delete(index.ref, [subject], v, self.timeout)
                for index in found.indexes
                for sid, address in self._holders(snap, index)
            ]
            records += sum(await asyncio.gather(*calls))
            # A write newer than the delete raced it: delete again, higher.
            if not (await self.plan(subject)).copies:
                break
            version = v + 1
        feature_rows = await self._delete_feature_rows(snap, subject)
        return v, records, feature_rows, len(found.indexes)

    def _channel(self, address: str) -> grpc.aio.Channel:
        return grpc.aio.secure_channel(address, self.credentials, options=serving.grpc_options())

    async def _delete_feature_rows(self, snap: Snapshot, subject: EntityKey) -> int:
        # One time for every shard: the subject's rows stamped up to it are
        # refused from now on (a replayed history), later ones accepted.
        request = epb.DeleteFeatureRowsRequest(
            entities=[key_to_pb(subject)], erased_at_us=time.time_ns() // 1000
        )
        md = vouching.call_metadata()

        async def one(address: str) -> int:
            async with self._channel(address) as channel:
                stub = erasure_pb2_grpc.ShardErasureServiceStub(channel)
                ack = await stub.DeleteFeatureRows(request, timeout=self.timeout, metadata=md)
                return int(ack.deleted)

        return sum(await asyncio.gather(*(one(m.address) for m in snap.shards.values())))

    # -- physical purge -----------------------------------------------------------

    async def purge(self, subject: EntityKey) -> tuple[list[str], int]:
        snap = await self._snapshot(check_subject(subject))
        md = vouching.call_metadata()

        async def one(address: str) -> int:
            async with self._channel(address) as channel:
                stub = erasure_pb2_grpc.ShardErasureServiceStub(channel)
                ack = await stub.Purge(epb.PurgeRequest(), timeout=self.purge_timeout, metadata=md)
                return int(ack.partitions)

        members = sorted(snap.shards.values(), key=lambda m: m.shard_id)
        counts = await asyncio.gather(*(one(m.address) for m in members))
        return [m.shard_id for m in members], sum(counts)

    # -- verification -------------------------------------------------------------

    async def verify(
        self, subject: EntityKey, copies: Sequence[Copy], scan_files: bool
    ) -> Verification:
        subject = check_subject(subject)
        snap = await self._snapshot(subject)
        _, indexes = self._targets(snap, subject.entity_type)
        out = Verification()
        await self._verify_searches(snap, subject, copies, indexes, out)
        for index in indexes:
            for found in await self._lookups(snap, index, subject, include_vectors=False):
                out.lookups += 1
                if found.status[0] == FOUND:
                    out.lookup_matches += 1
                    out.findings.append((f"lookup {index.ref}", "found"))
        await self._verify_features(snap, subject, out)
        if scan_files:
            await self._scan(snap, subject, copies, out)
        return out

    async def _verify_searches(
        self,
        snap: Snapshot,
        subject: EntityKey,
        copies: Sequence[Copy],
        indexes: Sequence[IndexVersion],
        out: Verification,
    ) -> None:
        principal = _principal()
        for copy in copies:
            vector = from_bytes(copy.vector, what="captured vector")
            for index in indexes:
                family = snap.families.get(index.embedding.name)
                if index.embedding != copy.embedding or family is None:
                    continue
                query = ShardQuery(
                    vector,
                    VERIFY_K,
                    subject.tenant_id,
                    principal=principal,
                    purpose=ERASURE_PURPOSE,
                )
                for sid, address in self._holders(snap, index):
                    (answer,) = await self.shards(sid, address).search(
                        index.ref, [query], self.timeout
                    )
                    out.searches += 1
                    if subject in answer.keys:
                        out.search_matches += 1
                        out.findings.append((f"search {index.ref} on {sid}", "returned"))

    async def _verify_features(self, snap: Snapshot, subject: EntityKey, out: Verification) -> None:
        """Every shard is asked for the subject's row of every group of its
        entity type; any answer other than "no row" is a finding."""
        groups = [g for g in _groups(snap) if g.entity_type == subject.entity_type]
        now = time.time_ns() // 1000
        absent = {REASON_CODE[r] for r in _ABSENT}
        for group in groups:
            fetch = GroupFetch(
                VersionRef(group.name, group.version),
                tuple(f.name for f in group.features),
                [subject.entity_id],
            )
            for sid, member in snap.shards.items():
                (columns,) = await self.shards(sid, member.address).get_feature_columns(
                    subject.tenant_id, [fetch], now, True, self.timeout
                )
                out.feature_reads += 1
                codes = np.frombuffer(
                    cast(cpb.ResolvedFeatureColumns, columns).missing_reasons, dtype=np.uint8
                )
                if any(int(c) not in absent for c in codes):
                    out.feature_matches += 1
                    out.findings.append((f"features {group.name}@{group.version} on {sid}", "row"))

    async def _scan(
        self, snap: Snapshot, subject: EntityKey, copies: Sequence[Copy], out: Verification
    ) -> None:
        request = epb.ScanRequest(
            data_patterns=sorted({c.vector for c in copies}),
            key_pattern=subject.entity_id.encode(),
        )
        md = vouching.call_metadata()

        async def one(address: str) -> epb.ScanResponse:
            async with self._channel(address) as channel:
                stub = erasure_pb2_grpc.ShardErasureServiceStub(channel)
                response: epb.ScanResponse = await stub.ScanFiles(
                    request, timeout=self.purge_timeout, metadata=md
                )
                return response

        members = sorted(snap.shards.values(), key=lambda m: m.shard_id)
        for attempt in range(SCAN_ATTEMPTS):
            answers = await asyncio.gather(*(one(m.address) for m in members))
            found = [
                (m.shard_id, match)
                for m, a in zip(members, answers, strict=True)
                for match in a.matches
                if match.kind != "marker"
            ]
            if not found or attempt == SCAN_ATTEMPTS - 1:
                break
            await asyncio.sleep(0.2 * (attempt + 1))  # replaced segment files still held
        out.files_scanned = sum(a.files for a in answers)
        out.markers = sum(1 for a in answers for m in a.matches if m.kind == "marker")
        out.file_matches = len(found)
        out.findings += [(f"file {sid}:{m.file}", m.kind) for sid, m in found]
