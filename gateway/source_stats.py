"""What queues and streams hold, read with the queue engine: the controller's ``SourceStats``
port (Queue and Stream statuses), wired in by whoever runs both (``klambda up``)."""

from __future__ import annotations

import redis.asyncio as aioredis

from klambda.api.routes import QueueCounts, ShardCounts, queue_key, stream_key
from klambda.gateway import streams
from klambda.gateway.fifo_queues import queue_for


class RedisSourceStats:
    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client

    async def queue_counts(self, namespace: str, name: str, fifo: bool) -> QueueCounts:
        return await queue_for(self.client, queue_key(namespace, name), fifo).counts()

    async def declare_stream(
        self, namespace: str, name: str, shards: int, retention_hours: int
    ) -> None:
        await streams.declare(self.client, stream_key(namespace, name), shards, retention_hours)

    async def stream_counts(self, namespace: str, name: str, shards: int) -> list[ShardCounts]:
        return await streams.Stream(self.client, stream_key(namespace, name), shards).counts()

    async def last_fired(self, mark_key: str) -> int | None:
        found = await self.client.get(mark_key)
        return int(found) if found is not None else None
