"""Event source mappings: queues on Redis with SQS semantics, polled into functions in batches.

A queue is a Redis stream (``klambda:queue:<namespace>:<name>``; producers ``XADD`` a ``body``
field). Every mapping of a queue reads it through one consumer group, so messages are shared, as
SQS consumers share them. The group's pending-entries list is the in-flight set; a message not
deleted within the visibility timeout is received again (``XAUTOCLAIM`` with that minimum idle
time), and its delivery counter is SQS's ApproximateReceiveCount. After ``maxReceiveCount``
receives a message moves to the dead-letter queue instead of reaching the function. A batch is
deleted when the function succeeds; with ReportBatchItemFailures only the messages it names
stay. Function errors, throttles and platform errors delete nothing: the messages come back
after the visibility timeout, as with Lambda. Nothing accepted is dropped.

The record shapes and the response rules are pure functions at the top of this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from klambda.api.routes import EventSourceRoute
from klambda.gateway.errors import LambdaError
from klambda.gateway.invoking import Invocation, Invoker
from klambda.gateway.redis_streams import Entry, claim_idle, read_group
from klambda.gateway.routing import RoutingTable

log = logging.getLogger(__name__)

GROUP = "klambda"
MOVE_SCRIPT = """
local kind = redis.call('TYPE', KEYS[2])['ok']
if kind ~= 'stream' and kind ~= 'none' then
  return redis.error_reply('WRONGTYPE the dead-letter queue ' .. KEYS[2] .. ' holds a ' .. kind)
end
for i = 2, #ARGV, 2 do
  redis.call('XADD', KEYS[2], '*', 'body', ARGV[i + 1])
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
  redis.call('XDEL', KEYS[1], ARGV[i])
end
return (#ARGV - 1) / 2
"""
"""Moves messages (ARGV: group, then id and body of each) from the queue (KEYS[1]) to the
dead-letter queue (KEYS[2]), checking first, so each is in exactly one place."""
IDLE_BLOCK_MS = 1000
ERROR_PAUSE = 1.0
FIRST_RECEIVE_MEMORY = 10_000


@dataclass(frozen=True)
class Message:
    """One received queue message."""

    message_id: str
    body: str
    receive_count: int
    first_receive_ms: int


def sqs_event(route: EventSourceRoute, messages: list[Message]) -> dict[str, Any]:
    """The batch as Lambda hands SQS messages to a function."""
    return {
        "Records": [
            {
                "messageId": m.message_id,
                "receiptHandle": m.message_id,
                "body": m.body,
                "attributes": {
                    "ApproximateReceiveCount": str(m.receive_count),
                    "SentTimestamp": m.message_id.split("-", 1)[0],
                    "SenderId": "klambda",
                    "ApproximateFirstReceiveTimestamp": str(m.first_receive_ms),
                },
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(m.body.encode(), usedforsecurity=False).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": route.queue_arn,
                "awsRegion": route.region,
            }
            for m in messages
        ]
    }


def failed_items(payload: bytes, ids: list[str]) -> set[str]:
    """Messages to keep after a successful invocation with ReportBatchItemFailures.

    Lambda's rules: an empty or null response, or an empty list, keeps none; a response it
    cannot read (not JSON, no such key, an empty or unknown itemIdentifier) keeps the batch.
    """
    if not payload.strip():
        return set()
    try:
        response = json.loads(payload)
    except ValueError:
        return set(ids)
    if response is None:
        return set()
    if not isinstance(response, dict):
        return set(ids)
    failures = response.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return set(ids)
    keep = set()
    for item in failures:
        ident = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(ident, str) or ident not in ids:
            return set(ids)
        keep.add(ident)
    return keep


def to_dead_letter(messages: list[Message], max_receive_count: int | None) -> list[Message]:
    """Messages received more often than the redrive policy allows."""
    if max_receive_count is None:
        return []
    return [m for m in messages if m.receive_count > max_receive_count]


class QueuePoller:
    """Delivers one mapping's queue: receive a batch, invoke, delete what succeeded."""

    def __init__(self, route: EventSourceRoute, client: aioredis.Redis, invoker: Invoker) -> None:
        self.route = route
        self.client = client
        self.invoker = invoker
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._first_receive: dict[str, int] = {}

    async def run(self) -> None:
        """Polls until cancelled; a failure pauses it, never ends it (messages wait in Redis)."""
        while True:
            try:
                await self._ensure_group()
                while True:
                    await self.poll_once()
            except (RedisError, OSError) as e:
                log.warning("queue %s: %s; retrying", self.route.queue_key, e)
            except Exception:
                log.exception("queue %s: poller failed; retrying", self.route.queue_key)
            await asyncio.sleep(ERROR_PAUSE)

    async def _ensure_group(self) -> None:
        with contextlib.suppress(ResponseError):  # BUSYGROUP: it exists
            await self.client.xgroup_create(self.route.queue_key, GROUP, id="0", mkstream=True)

    async def poll_once(self) -> int:
        """Receives and delivers one batch; returns how many messages it held."""
        messages = await self._receive()
        if not messages:
            return 0
        dead = to_dead_letter(messages, self.route.max_receive_count)
        if dead:
            await self._redrive(dead)
            messages = [m for m in messages if m not in dead]
        if messages:
            await self._deliver(messages)
        return len(messages) + len(dead)

    async def _receive(self) -> list[Message]:
        """Up to batch_size messages: reclaimed ones first, then new ones, waiting up to a
        second for the first and then up to the batching window for the batch to fill."""
        r = self.route
        entries = await self._reclaim(r.batch_size)
        window_ends = time.monotonic() + r.batching_window
        while len(entries) < r.batch_size:
            wait = window_ends - time.monotonic() if entries else IDLE_BLOCK_MS / 1000
            if wait <= 0:
                break
            entries += await read_group(
                self.client,
                GROUP,
                self.consumer,
                {r.queue_key: ">"},
                count=r.batch_size - len(entries),
                block=max(1, int(wait * 1000)),
            )
            if not entries:
                break  # a quiet second: go round, reclaiming again
        return await self._messages(entries)

    async def _reclaim(self, count: int) -> list[Entry]:
        """Messages whose visibility timeout ran out (their delivery counter goes up)."""
        idle_ms = int(self.route.visibility_timeout * 1000)
        return await claim_idle(
            self.client, self.route.queue_key, GROUP, self.consumer, idle_ms, count
        )

    async def _messages(self, entries: list[Entry]) -> list[Message]:
        if not entries:
            return []
        ids = [_text(i) for i, _ in entries]
        async with self.client.pipeline(transaction=False) as pipe:
            for i in ids:
                pipe.xpending_range(self.route.queue_key, GROUP, min=i, max=i, count=1)
            pending = await pipe.execute()
        now_ms = int(time.time() * 1000)
        if len(self._first_receive) > FIRST_RECEIVE_MEMORY:  # approximate, as SQS says
            self._first_receive.clear()
        out = []
        for i, (_, fields), info in zip(ids, entries, pending, strict=True):
            count = int(info[0]["times_delivered"]) if info else 1
            first = self._first_receive.setdefault(i, now_ms)
            out.append(Message(i, _text(fields.get(b"body", b"")), count, first))
        return out

    async def _redrive(self, dead: list[Message]) -> None:
        """Onto the dead-letter queue and off this one, atomically (a Lua script that checks
        first: MULTI/EXEC would not undo an XADD that fails at run time, and the XACK/XDEL
        after it would lose the message). On failure the messages stay where they were."""
        assert self.route.dead_letter_key is not None
        args: list[str] = [GROUP]
        for m in dead:
            args += [m.message_id, m.body]
        await self.client.eval(
            MOVE_SCRIPT, 2, self.route.queue_key, self.route.dead_letter_key, *args
        )
        for m in dead:
            self._first_receive.pop(m.message_id, None)
        log.info(
            "queue %s: %d message(s) to the dead-letter queue", self.route.queue_key, len(dead)
        )

    async def _deliver(self, messages: list[Message]) -> None:
        r = self.route
        payload = json.dumps(sqs_event(r, messages)).encode()
        try:
            result = await self.invoker.invoke(
                Invocation(r.namespace, r.function, r.qualifier, payload)
            )
        except LambdaError as e:  # throttled or not ready: the messages come back later
            log.info("queue %s: batch not delivered: %s", r.queue_key, e)
            return
        if result.function_error:
            return  # nothing deleted: received again after the visibility timeout
        ids = [m.message_id for m in messages]
        keep = failed_items(result.payload, ids) if r.report_failures else set()
        done = [i for i in ids if i not in keep]
        if done:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.xack(r.queue_key, GROUP, *done)
                pipe.xdel(r.queue_key, *done)
                await pipe.execute()
            for i in done:
                self._first_receive.pop(i, None)


class EventSourcePollers:
    """Keeps one poller per published mapping, restarting those whose settings change."""

    def __init__(self, table: RoutingTable, client: aioredis.Redis, invoker: Invoker) -> None:
        self.table = table
        self.client = client
        self.invoker = invoker
        self._running: dict[tuple[str, str], tuple[EventSourceRoute, list[asyncio.Task[None]]]] = {}

    async def run(self) -> None:
        try:
            while True:
                self.table.event_sources_changed.clear()
                self._sync()
                await self.table.event_sources_changed.wait()
        finally:
            await self._stop(list(self._running))

    def _sync(self) -> None:
        wanted = {(r.namespace, r.name): r for r in self.table.event_sources()}
        for key, (route, tasks) in list(self._running.items()):
            if wanted.get(key) != route:
                for task in tasks:
                    task.cancel()
                del self._running[key]
        for key, route in wanted.items():
            if key not in self._running:  # one poller per batch in flight, one consumer each
                tasks = [
                    asyncio.create_task(
                        QueuePoller(route, self.client, self.invoker).run(),
                        name=f"esm-{key[0]}-{key[1]}-{i}",
                    )
                    for i in range(route.concurrency)
                ]
                self._running[key] = (route, tasks)

    async def _stop(self, keys: list[tuple[str, str]]) -> None:
        tasks = [t for k in keys for t in self._running.pop(k)[1]]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
