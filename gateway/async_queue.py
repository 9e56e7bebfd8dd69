"""Asynchronous invocations (``X-Amz-Invocation-Type: Event``), durable in Redis.

An accepted event is written to a Redis stream before the 202 goes out. Dispatchers read it
through a consumer group, invoke the function once, and acknowledge it. Nothing accepted is
lost: a throttled or platform-failed delivery goes to a delayed set and comes back with
exponential backoff (1 s up to 5 min, as Lambda's async queue) until its maximum age; a
dispatcher that dies mid-delivery leaves the entry pending, and another claims it once it has
been idle longer than any invocation can run. Retries of function errors, destinations and
dead-letter queues belong to the asynchronous-invocation machinery proper.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import socket
import time
from dataclasses import asdict, dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from klambda.api import defaults
from klambda.gateway.errors import LambdaError, ServiceError, TooManyRequests
from klambda.gateway.invoking import Invocation, Invoker
from klambda.gateway.redis_streams import claim_idle, read_group

log = logging.getLogger(__name__)

STREAM = "klambda:async:events"
DELAYED = "klambda:async:delayed"
QUEUED = "klambda:async:queued"
"""Hash: namespace -> its events accepted and not finished (queued, delayed or in flight)."""
QUEUE_LIMIT = defaults.ASYNC_QUEUE_LIMIT
"""Events one namespace may have waiting at once: one tenant's throttled flood (retried for up
to 6 h) must not fill the Redis every tenant's events live in."""
GROUP = "dispatchers"
MAX_EVENT_AGE = 6 * 3600.0
CLAIM_IDLE_MS = 960_000  # longer than the longest function timeout (900 s) plus margin

# Count the namespace's waiting events and add this one, unless it is at its quota: atomically.
_ENQUEUE = """
local waiting = tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '0')
if waiting >= tonumber(ARGV[3]) then
  return -1
end
redis.call('XADD', KEYS[1], '*', 'event', ARGV[1])
return redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
"""

# Move due entries from the delayed set back to the stream, atomically.
_MOVE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 100)
for _, item in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 'event', item)
  redis.call('ZREM', KEYS[1], item)
end
return #due
"""


@dataclass
class AsyncEvent:
    request_id: str
    namespace: str
    function: str
    qualifier: str | None
    payload: str
    received: float
    attempt: int = 0

    def encode(self, key: bytes | None = None) -> str:
        """The event as stored, sealed with ``key`` (an HMAC over it): a process that can
        write to Redis but holds no key cannot make an entry the dispatcher will run."""
        body = json.dumps(asdict(self), sort_keys=True)
        if key is None:
            return body
        return json.dumps({"sealed": body, "mac": _mac(key, body)})

    @classmethod
    def decode(cls, raw: str | bytes, key: bytes | None = None) -> AsyncEvent:
        """The stored event; raises ForgedEvent when ``key`` is set and its seal is missing
        or wrong."""
        doc = json.loads(raw)
        if key is None:
            return cls(**json.loads(doc["sealed"])) if "sealed" in doc else cls(**doc)
        body, mac = doc.get("sealed"), doc.get("mac")
        if not isinstance(body, str) or not isinstance(mac, str):
            raise ForgedEvent("the entry is not sealed")
        if not hmac.compare_digest(mac, _mac(key, body)):
            raise ForgedEvent("the entry's seal does not match")
        return cls(**json.loads(body))


class ForgedEvent(ValueError):
    """A stream entry the platform did not write."""


def _mac(key: bytes, body: str) -> str:
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def async_key(platform_key: bytes) -> bytes:
    """The key async events are sealed with, derived from the platform key (Kubernetes: the
    Secret every gateway reads, so any gateway opens any gateway's events, across restarts)."""
    return hmac.new(platform_key, b"klambda async events v1", hashlib.sha256).digest()


def backoff(attempt: int) -> float:
    """Seconds before redelivering a throttled event: 1, 2, 4, ... up to 5 minutes."""
    return float(min(300, 2 ** max(0, attempt - 1)))


class AsyncQueue:
    def __init__(
        self, client: aioredis.Redis, limit: int = QUEUE_LIMIT, key: bytes | None = None
    ) -> None:
        self.client = client
        self.limit = limit
        self.key = key
        self._enqueue = client.register_script(_ENQUEUE)

    async def enqueue(self, event: AsyncEvent) -> None:
        """Stores the event durably; raises TooManyRequests when its namespace already has
        ``limit`` events waiting, ServiceError when Redis cannot take it."""
        try:
            added = await self._enqueue(
                keys=[STREAM, QUEUED], args=[event.encode(self.key), event.namespace, self.limit]
            )
        except RedisError as e:
            raise ServiceError(f"cannot queue the event: {e}") from e
        if int(added) < 0:
            raise TooManyRequests(
                "AsyncQueueFull",
                f"Namespace {event.namespace} has {self.limit} asynchronous events waiting "
                "(its quota); try again once they are delivered",
            )


class Dispatcher:
    """Delivers queued events through the gateway's invoker, ``concurrency`` at a time."""

    def __init__(
        self,
        client: aioredis.Redis,
        invoker: Invoker,
        concurrency: int = 16,
        consumer: str | None = None,
        key: bytes | None = None,
    ) -> None:
        """``key``: what events are sealed with (``AsyncQueue``'s); entries without its seal
        are not run."""
        self.client = client
        self.invoker = invoker
        self.key = key
        # A stable name lets a restarted dispatcher take its own unfinished entries back at
        # once; other dispatchers' entries are claimed only after they have been idle long.
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._move_due = client.register_script(_MOVE_DUE)
        self._inflight: dict[bytes | str, AsyncEvent] = {}
        self._stopping = asyncio.Event()
        self.delivered = 0
        self.refused = 0

    def stop(self) -> None:
        """Asks ``run`` to return after its current round (at most one blocking read, 0.5 s):
        deliveries in flight are then cut off and queued again. Stopping by a flag, not by
        cancelling the loop in the middle of a Redis command, where redis-py may swallow the
        cancellation and the loop would go on."""
        self._stopping.set()

    async def run(self) -> None:
        await self._ensure_group()
        # Until the routes are known, "function not found" would drop events wrongly.
        await self.invoker.table.wait_synced()
        try:
            await self._recover()
            while not self._stopping.is_set():
                try:
                    await self._round()
                except ResponseError as e:
                    if "NOGROUP" not in str(e):
                        raise
                    log.warning("async dispatcher: consumer group gone (Redis lost its data?)")
                    await self._ensure_group()
                except RedisError as e:
                    log.warning("async dispatcher: Redis unavailable (%s); retrying", e)
                    await asyncio.sleep(1.0)
                except Exception:  # one bad round must not stop deliveries
                    log.exception("async dispatcher round failed; retrying")
                    await asyncio.sleep(1.0)
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._requeue_inflight()

    async def _ensure_group(self) -> None:
        with contextlib.suppress(ResponseError):  # BUSYGROUP: it exists already
            await self.client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)

    async def _recover(self) -> None:
        """Redelivers entries this consumer took but never finished (it was stopped)."""
        mine = await read_group(self.client, GROUP, self.consumer, {STREAM: "0"}, count=1000)
        for entry_id, fields in mine:
            if fields:
                await self._slots.acquire()
                task = asyncio.create_task(self._deliver(entry_id, fields))
                self._tasks.add(task)
                task.add_done_callback(self._done)

    async def _requeue_inflight(self) -> None:
        """On shutdown, deliveries cut off go back to the stream as new entries, which any
        dispatcher reads at once (at least once: one cut off just after its invocation ended
        runs again)."""
        with contextlib.suppress(RedisError):
            for entry_id, event in list(self._inflight.items()):
                async with self.client.pipeline(transaction=True) as pipe:
                    pipe.xadd(STREAM, {"event": event.encode(self.key)})
                    pipe.xack(STREAM, GROUP, entry_id)
                    pipe.xdel(STREAM, entry_id)
                    await pipe.execute()

    async def _round(self) -> None:
        await self._move_due(keys=[DELAYED, STREAM], args=[time.time()])
        entries = await claim_idle(self.client, STREAM, GROUP, self.consumer, CLAIM_IDLE_MS, 16)
        entries += await read_group(
            self.client, GROUP, self.consumer, {STREAM: ">"}, count=16, block=500
        )
        for entry_id, fields in entries:
            await self._slots.acquire()
            task = asyncio.create_task(self._deliver(entry_id, fields))
            self._tasks.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("async delivery failed", exc_info=task.exception())

    async def _deliver(self, entry_id: bytes | str, fields: dict[bytes, bytes]) -> None:
        try:
            event = AsyncEvent.decode(fields[b"event"], self.key)
        except (ForgedEvent, ValueError, TypeError, KeyError) as e:
            # not written by a gateway (or unreadable): never run, never retried; said loudly
            log.error("async entry %s refused, not run: %s", entry_id, e)
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.xack(STREAM, GROUP, entry_id)
                pipe.xdel(STREAM, entry_id)
                await pipe.execute()
            self.refused += 1
            return
        self._inflight[entry_id] = event
        try:
            await self._deliver_once(entry_id, event)
        except asyncio.CancelledError:
            raise  # stopped mid-delivery: it stays in _inflight, for _requeue_inflight
        except BaseException:
            self._inflight.pop(entry_id, None)  # still pending: reclaimed like any other
            raise
        self._inflight.pop(entry_id, None)

    async def _deliver_once(self, entry_id: bytes | str, event: AsyncEvent) -> None:
        try:
            result = await self.invoker.invoke(
                Invocation(
                    event.namespace,
                    event.function,
                    event.qualifier,
                    event.payload.encode(),
                    event.request_id,
                )
            )
            if result.function_error:
                log.info("async event %s: function error (%s)", event.request_id, result.error_type)
        except TooManyRequests:
            await self._retry_later(entry_id, event, "throttled")
            return
        except LambdaError as e:
            if e.status >= 500:
                await self._retry_later(entry_id, event, e.message)
                return
            log.warning("async event %s dropped: %s", event.request_id, e.message)
        await self._ack(entry_id, event)
        self.delivered += 1

    async def _retry_later(self, entry_id: bytes | str, event: AsyncEvent, why: str) -> None:
        if time.time() - event.received > MAX_EVENT_AGE:
            log.warning("async event %s too old to retry (%s)", event.request_id, why)
            await self._ack(entry_id, event)
            return
        event.attempt += 1
        due = time.time() + backoff(event.attempt)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.zadd(DELAYED, {event.encode(self.key): due})
            pipe.xack(STREAM, GROUP, entry_id)
            pipe.xdel(STREAM, entry_id)
            await pipe.execute()

    async def _ack(self, entry_id: bytes | str, event: AsyncEvent) -> None:
        """The event is finished (delivered, or dropped as Lambda would): it leaves the stream
        and its namespace's count, at once."""
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.xack(STREAM, GROUP, entry_id)
            pipe.xdel(STREAM, entry_id)
            pipe.hincrby(QUEUED, event.namespace, -1)
            await pipe.execute()
