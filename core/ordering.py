"""The global result order (DESIGN §6), in one place for shards and coordinators.

Score descending, then entity_id ascending bytewise, then tenant_id, then
entity_type. Comparing UTF-8 bytes (not Python str order) keeps the order the
same in every language a client is written in.
"""

from __future__ import annotations

from core.domain import EntityKey

OrderKey = tuple[float, bytes, bytes, bytes]


def order_key(score: float, key: EntityKey) -> OrderKey:
    return (-float(score), key.entity_id.encode(), key.tenant_id.encode(), key.entity_type.encode())
