"""Scales one queue mapping's pollers across every process that polls (decisions:
``queue_scaling``).

A batch in flight needs a slot: a place in a semaphore in Redis (``<mapping>:slots``, a sorted
set of holders by expiry), so all replicas together never have more batches in flight than
the target. The process holding the leader lease looks at the queue once a second, moves the
target by Lambda's rule, publishes it (``<mapping>:target``) and does the queue's upkeep
(delayed messages due, retention). Every process announces itself and keeps its share of the
target as poller tasks (ceil(target / processes), so the work spreads over replicas). A slot
lasts the visibility timeout plus the batching window plus 10 s (no batch can take longer) and
is renewed between batches, at most once a second: a dead process's slots come free about when
its messages come back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Coroutine
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from klambda.api.routes import EventSourceRoute
from klambda.gateway import queue_scaling as scaling
from klambda.gateway.fifo_queues import queue_for
from klambda.gateway.invoking import Invoker
from klambda.gateway.streams import Leases

log = logging.getLogger(__name__)

TICK = 1.0
LEADER = 0
"""The leader's lease (the only lease of the mapping's Leases)."""

# KEYS: holders (sorted set, score: expiry in ms); ARGV: holder, target, lease ms.
# Takes a slot while fewer than the target are held, renews one's own; a holder renewing
# while more than the target are held (scaled down) gives its slot up.
_HOLD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZCARD', KEYS[1])
local target = tonumber(ARGV[2])
local ms = tonumber(ARGV[3])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  if held > target then
    redis.call('ZREM', KEYS[1], ARGV[1])
    return 0
  end
elseif held >= target then
  return 0
end
redis.call('ZADD', KEYS[1], now + ms, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ms)
return 1
"""


def mapping_prefix(route: EventSourceRoute) -> str:
    return f"klambda:esm:{route.namespace}:{route.name}:{route.uuid}"


class Slots:
    """One poller task's hold on a batch slot; the scaler sets ``target`` (all replicas) and
    ``limit`` (this replica's share) each tick."""

    def __init__(self, client: aioredis.Redis, route: EventSourceRoute, holder: str) -> None:
        assert route.queue is not None
        self.key = f"{mapping_prefix(route)}:slots"
        self.holder = holder
        self.ms = int((route.queue.visibility_timeout + route.batching_window + 10.0) * 1000)
        self.client = client
        self.target = 0
        self.limit = 0
        self.held = False
        self._renewed = -math.inf
        self._renewed_for = -1
        self._hold = client.register_script(_HOLD)

    async def hold(self) -> bool:
        """Keeps (renews) this task's slot or takes a free one; False when there is none. A
        slot held with the same target is renewed at most once a tick (its lease lasts far
        longer), so a busy poller pays no Redis call per batch for it."""
        now = time.monotonic()
        if self.held and self.target == self._renewed_for and now - self._renewed < TICK:
            return True
        self.held = bool(
            await self._hold(keys=[self.key], args=[self.holder, self.target, self.ms])
        )
        self._renewed, self._renewed_for = now, self.target
        return self.held

    async def let_go(self) -> None:
        if self.held:
            self.held = False
            await self.client.zrem(self.key, self.holder)


class QueueScaler:
    """This process's pollers of one queue mapping; the target, when this process leads."""

    def __init__(
        self,
        route: EventSourceRoute,
        client: aioredis.Redis,
        invoker: Invoker,
        owner: str,
        tick: float = TICK,
    ) -> None:
        assert route.queue is not None
        self.route = route
        self.client = client
        self.invoker = invoker
        self.owner = owner
        self.tick = tick
        self.leases = Leases(client, mapping_prefix(route), owner)
        self.target_key = f"{mapping_prefix(route)}:target"
        self.queue = queue_for(client, route.queue.key, route.queue.fifo)
        self.scale = scaling.Scale()
        self._seen_at: float | None = None

    def cap(self) -> int:
        assert self.route.queue is not None
        fn = self.invoker.table.get(self.route.namespace, self.route.function)
        reserved = fn.reserved_concurrency if fn else None
        return scaling.cap_of(self.route.queue.maximum_concurrency, reserved)

    async def lead(self) -> int | None:
        """When this process holds the leader lease: the queue's upkeep, then observes it,
        decides and publishes the target (and the queue's gauges); returns the target."""
        if not await self.leases.acquire(LEADER, self.tick * 3):
            self._seen_at = None
            return None
        assert self.route.queue is not None
        if self._seen_at is None:  # newly the leader: the queue, and the published target
            await self.queue.ensure()
            published = await self.published()
            self.scale = scaling.Scale(published) if published else scaling.Scale()
        await self.queue.release_due()
        await self.queue.expire(self.route.queue.retention)
        now = time.monotonic()
        counts = await self.queue.counts()
        elapsed = 0.0 if self._seen_at is None else now - self._seen_at
        self._seen_at = now
        batch = max(1, self.route.batch_size)
        seen = scaling.Observed(
            backlog=math.ceil(counts.visible / batch),
            busy=math.ceil(counts.in_flight / batch),
            now=now,
            elapsed=elapsed,
        )
        self.scale = scaling.step(self.scale, seen, self.cap())
        await self.client.set(self.target_key, self.scale.target, ex=max(1, int(self.tick * 10)))
        labels = (self.route.namespace, self.route.queue.key.split(":", 3)[-1])
        self.invoker.metrics.queue_backlog.labels(*labels).set(counts.visible)
        self.invoker.metrics.queue_oldest_age.labels(*labels).set(counts.oldest_age)
        return self.scale.target

    async def published(self) -> int:
        """The target the leader published (0 until one has)."""
        found = await self.client.get(self.target_key)
        return int(found) if found is not None else 0

    async def run(self, poll: Callable[[int, Slots], Coroutine[Any, Any, None]]) -> None:
        """Keeps this process's share of the target as poller tasks (``poll(index, slots)``)
        until cancelled; a task above the share ends by itself once its batch is done."""
        tasks: dict[int, tuple[asyncio.Task[None], Slots]] = {}
        labels = (self.route.namespace, self.route.name)
        try:
            while True:
                try:
                    decided = await self.lead()
                    target = decided if decided is not None else await self.published()
                    alive = await self.leases.heartbeat(self.tick * 3)
                except (RedisError, OSError) as e:
                    log.warning("queue mapping %s: %s; retrying", self.route.name, e)
                    target, alive = 0, 1  # no new pollers; running ones keep their slots
                share = min(target, math.ceil(target / max(1, alive)))
                for i in [i for i, (t, _) in tasks.items() if t.done()]:
                    del tasks[i]
                for i in range(share):
                    if i not in tasks:
                        slots = Slots(self.client, self.route, f"{self.owner}-{i}")
                        name = f"esm-{labels[0]}-{labels[1]}-{i}"
                        tasks[i] = (asyncio.create_task(poll(i, slots), name=name), slots)
                for _, slots in tasks.values():
                    slots.target, slots.limit = target, share
                held = sum(1 for _, s in tasks.values() if s.held)
                self.invoker.metrics.esm_pollers.labels(*labels).set(held)
                await asyncio.sleep(self.tick)
        finally:
            for task, _ in tasks.values():
                task.cancel()
            await asyncio.gather(*(t for t, _ in tasks.values()), return_exceptions=True)
            with contextlib.suppress(RedisError, OSError):
                await self.leases.release(LEADER)
                await self.leases.leave()
