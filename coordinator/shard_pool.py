"""`ShardPool`: one shard client per shard id, reused across requests.

Each is a `BatchingShard` around a `RemoteShard`, so concurrent searches for
one shard share a call (`calls_in_flight` per index version, then they
queue). A shard that moved (a restart gets a new address) gets a new channel;
the old one closes in the background, after the calls still using it
(`CLOSE_GRACE`). A shard that left the registry has its client retired the
same way (`keep_only`): a fleet that churns shard ids (autoscaling, pods
renamed) otherwise kept a channel, a batcher and their buffers per id for good.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection

import grpc

from coordinator.batcher import BatchingShard
from coordinator.remote_shard import RemoteShard
from coordinator.shard import Shard

# How long calls on a replaced channel may still finish: longer than any
# call's deadline. Closed at once, the calls of requests holding a snapshot a
# revision older were cancelled, and each failed CANCELLED (found in review).
CLOSE_GRACE = 60.0


async def _retire(shard: Shard) -> None:
    inner = shard.inner if isinstance(shard, BatchingShard) else shard
    if isinstance(inner, RemoteShard):
        await inner.close(CLOSE_GRACE)
    else:
        await shard.close()


class ShardPool:
    def __init__(
        self,
        max_batch: int = 64,
        calls_in_flight: int = 1,
        instance: str = "",
        summary_lease: float = 1.0,
        *,
        credentials: grpc.ChannelCredentials,
    ) -> None:
        self.max_batch = max_batch
        self.calls_in_flight = calls_in_flight
        self.instance = instance
        self.summary_lease = summary_lease
        self.credentials = credentials
        self._shards: dict[str, Shard] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def get(self, shard_id: str, address: str) -> Shard:
        shard = self._shards.get(shard_id)
        if shard is None or shard.address != address:
            if shard is not None:
                self._retire(shard)
            remote = RemoteShard(
                shard_id,
                address,
                self.instance,
                self.summary_lease,
                credentials=self.credentials,
            )
            shard = BatchingShard(remote, self.max_batch, self.calls_in_flight)
            self._shards[shard_id] = shard
        return shard

    def _retire(self, shard: Shard) -> None:
        task = asyncio.ensure_future(_retire(shard))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def keep_only(self, shard_ids: Collection[str]) -> None:
        """Retires the clients of shards not in `shard_ids` (the registry's
        members). A request still holding an older snapshot that names one
        gets a fresh client from `get`, retired at the next change."""
        for shard_id in [s for s in self._shards if s not in shard_ids]:
            self._retire(self._shards.pop(shard_id))

    def __len__(self) -> int:
        return len(self._shards)

    def remote(self, shard_id: str, address: str) -> RemoteShard:
        """The shard's unbatched client, for admin calls (recall checks)."""
        shard = self.get(shard_id, address)
        assert isinstance(shard, BatchingShard) and isinstance(shard.inner, RemoteShard)
        return shard.inner

    async def close(self) -> None:
        for shard in self._shards.values():
            await shard.close()
        self._shards.clear()
