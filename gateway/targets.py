"""Delivering a record to a target named by a destination: a queue, a stream or a function.

A stream's failure records and its on-failure destination use this: the record is a queue
message's ``body``, a stream record's ``data`` (partition key: its request id, so records
spread over the shards) or an asynchronous event of the function. A stream's shard count is
read from its declaration in Redis (``streams.declared``), written when the Stream object is
reconciled.
"""

from __future__ import annotations

import time
import uuid

import redis.asyncio as aioredis

from klambda.api.async_settings import Target
from klambda.api.routes import queue_key, stream_key
from klambda.gateway.async_queue import AsyncEvent, AsyncQueue
from klambda.gateway.queues import Queue
from klambda.gateway.streams import declared


class TargetMissing(Exception):
    """The target does not exist (a stream never declared, no async queue)."""


class Targets:
    def __init__(self, client: aioredis.Redis, async_queue: AsyncQueue | None) -> None:
        self.client = client
        self.async_queue = async_queue

    async def deliver(
        self, target: Target, namespace: str, body: str, request_id: str = ""
    ) -> None:
        """Sends ``body`` to ``target`` (names resolve in ``namespace`` unless the target has
        its own); raises RedisError, LambdaError or TargetMissing when it cannot."""
        ns = target.namespace or namespace
        request_id = request_id or str(uuid.uuid4())
        if target.kind == "queue":
            await Queue(self.client, queue_key(ns, target.name)).send({"body": body})
        elif target.kind == "stream":
            stream = await declared(self.client, stream_key(ns, target.name))
            if stream is None:
                raise TargetMissing(f"stream {target.name} does not exist in namespace {ns}")
            await stream.put([(request_id, body.encode())])
        else:
            if self.async_queue is None:
                raise TargetMissing("asynchronous invocation is off (no Redis)")
            event = AsyncEvent(request_id, ns, target.name, target.qualifier, body, time.time())
            await self.async_queue.enqueue(event)
