"""Which shard a data directory belongs to, recorded in it on first start.

Nothing in RocksDB or the segment files says whose buckets they hold, so a
shard started on another shard's directory (swapped volumes, a mistyped
--data-dir) would register and serve that shard's rows as its own — and
catch-up would then merge them in for good. The owner file names the shard
id and registry prefix; a start under another id or prefix is refused,
naming both. A directory from a release before the file existed is adopted
by the first start (recorded as this shard's).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import IO

from core.durable_files import write_atomic
from core.settings import ConfigError

log = logging.getLogger(__name__)

OWNER_FILE = "vecshard-owner.json"


def claim_data_dir(data_dir: Path, shard_id: str, etcd_prefix: str) -> None:
    """Records `shard_id` and `etcd_prefix` as the owners of `data_dir`, or
    raises `ConfigError` if it belongs to another shard or registry."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / OWNER_FILE
    wanted = {"shard_id": shard_id, "etcd_prefix": etcd_prefix}
    if path.exists():
        try:
            recorded = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"data dir {data_dir}: {OWNER_FILE} is unreadable ({exc}); "
                "check the volume, or restore the file naming this shard"
            ) from exc
        owner = (recorded.get("shard_id"), recorded.get("etcd_prefix"))
        if owner == (shard_id, etcd_prefix):
            return
        raise ConfigError(
            f"data dir {data_dir} belongs to shard {owner[0]!r} (registry prefix {owner[1]!r}), "
            f"not to shard {shard_id!r} (prefix {etcd_prefix!r}): refusing to serve another "
            f"shard's data. Start shard {owner[0]!r} on it, or give shard {shard_id!r} its own "
            "data dir (an empty one: it catches up from its peer replicas)"
        )
    adopted = any(p.name != OWNER_FILE for p in data_dir.iterdir())
    payload = json.dumps(wanted, sort_keys=True).encode() + b"\n"

    def write(f: IO[bytes]) -> None:
        f.write(payload)

    write_atomic(path, write)
    if adopted:
        log.info("data dir %s recorded as shard %s's (it held data already)", data_dir, shard_id)
