"""Typed reads of Redis streams: redis-py types its replies as ``Any | int | str``.

The consumer-group calls that the async dispatcher and the queue pollers make, with the reply
shapes Redis documents, so the code above works with entries, not with untyped lists.
"""

from __future__ import annotations

from typing import cast

import redis.asyncio as aioredis

Entry = tuple[bytes, dict[bytes, bytes]]
"""A stream entry: its id and its fields."""


async def read_group(
    client: aioredis.Redis,
    group: str,
    consumer: str,
    streams: dict[str, str],
    count: int,
    block: int | None = None,
) -> list[Entry]:
    """XREADGROUP: the entries of every stream read, in order (``>``: new ones; ``0``: this
    consumer's pending ones)."""
    reply = await client.xreadgroup(group, consumer, streams, count=count, block=block)  # type: ignore[arg-type]
    batches = cast(list[tuple[bytes, list[Entry]]], reply or [])
    return [entry for _, entries in batches for entry in entries]


async def claim_idle(
    client: aioredis.Redis, stream: str, group: str, consumer: str, min_idle_ms: int, count: int
) -> list[Entry]:
    """XAUTOCLAIM from the start: entries idle at least ``min_idle_ms``, now this consumer's.

    Redis 6.2 answers [next, claimed]; 7.0 adds the ids of deleted entries, and entries deleted
    while pending come back with no fields, which are left out."""
    reply = await client.xautoclaim(stream, group, consumer, min_idle_ms, "0-0", count=count)
    claimed = cast(list[tuple[bytes, dict[bytes, bytes] | None]], reply[1] if reply else [])
    return [(entry_id, fields) for entry_id, fields in claimed if fields is not None]
