"""Fires Schedules: each firing an asynchronous invocation, sent once however many gateway
replicas run a scheduler.

Every tick, per schedule, the firings due since its mark (the last firing handed over, in Redis,
``ScheduleRoute.mark_key``) are found by ``schedules.missed_policy``: those younger than the
retry policy's maximum event age are handed over, oldest first, each once its flexible delay has
passed; older ones are skipped, counted and logged (EventBridge Scheduler does not backfill
them either). Handing over is one Lua script (``queues.Queue.send`` with a mark): the event goes
on the async queue only if the mark is below the firing time, and the mark moves to it in the
same step, so two replicas cannot both send a firing, and a crash loses none. A firing the async
queue refuses (the namespace's quota is full, Redis is down) is tried again each tick until its
retry policy gives up on it; then it goes to the schedule's dead-letter queue, or is dropped
(logged, counted).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from klambda.api.routes import ScheduleRoute
from klambda.api.schedules import (
    firing_id,
    flexible_delay,
    missed_policy,
    parse,
    scheduled_event,
)
from klambda.gateway.async_queue import AsyncEvent, AsyncQueue
from klambda.gateway.errors import LambdaError
from klambda.gateway.metrics import Metrics
from klambda.gateway.queues import Queue
from klambda.gateway.routing import RoutingTable

log = logging.getLogger(__name__)

TICK = 1.0
# KEYS: mark; ARGV: value. Moves the mark forward only; 1 when it moved.
_ADVANCE = """
if tonumber(redis.call('GET', KEYS[1]) or '-1') < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
  return 1
end
return 0
"""
SLACK = timedelta(milliseconds=1)


class Scheduler:
    def __init__(
        self,
        table: RoutingTable,
        client: aioredis.Redis,
        queue: AsyncQueue,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
        tick: float = TICK,
    ) -> None:
        self.table = table
        self.client = client
        self.queue = queue
        self.metrics = metrics
        self.clock = clock
        self.tick = tick
        self._attempts: dict[tuple[str, int], int] = {}
        self._advance = client.register_script(_ADVANCE)

    async def run(self) -> None:
        while True:
            try:
                await self.tick_once()
            except (RedisError, OSError) as e:
                log.warning("scheduler: %s; retrying", e)
            await asyncio.sleep(self.tick)

    async def tick_once(self) -> int:
        """Hands over every firing due now; returns how many it sent."""
        sent = 0
        for route in self.table.schedules():
            sent += await self._fire(route)
        return sent

    async def _fire(self, route: ScheduleRoute) -> int:
        now = datetime.fromtimestamp(self.clock(), UTC)
        anchor = datetime.fromtimestamp(route.anchor, UTC)
        mark = await self.client.get(route.mark_key)
        enabled = datetime.fromtimestamp(max(route.anchor, route.enabled_since), UTC) - SLACK
        marked = datetime.fromtimestamp(int(mark) / 1000, UTC) if mark is not None else None
        since = max(marked, enabled) if marked is not None else enabled  # none while DISABLED
        expression = parse(route.expression, route.timezone, anchor=anchor)
        missed = missed_policy(
            expression, since=since, now=now, maximum_event_age_seconds=route.maximum_event_age
        )
        if missed.skipped:
            await self._skip(route, missed.skipped, now)
        sent = 0
        for fired in missed.deliver:
            seed = f"{route.arn}@{fired.isoformat()}"
            delay = flexible_delay(
                "FLEXIBLE" if route.flexible_window_minutes else "OFF",
                route.flexible_window_minutes,
                seed,
            )
            if fired + timedelta(seconds=delay) > now:
                break  # its window has not come yet: later ticks, in order
            outcome = await self._hand_over(route, fired, now)
            if outcome is None:
                break  # refused: tried again next tick, before any later firing
            sent += outcome
        return sent

    async def _hand_over(self, route: ScheduleRoute, fired: datetime, now: datetime) -> int | None:
        """Sends one firing: 1 when this scheduler sent it, 0 when another had or it was given
        up, None when it is to be tried again."""
        fired_ms = int(fired.timestamp() * 1000)
        event = AsyncEvent(
            firing_id(route.arn, fired),
            route.namespace,
            route.function,
            route.qualifier,
            route.input if route.input is not None else json.dumps(self._document(route, fired)),
            now.timestamp(),
        )
        key = (route.mark_key, fired_ms)
        try:
            sent = await self.queue.enqueue(event, mark=(route.mark_key, fired_ms))
        except LambdaError as e:
            attempts = self._attempts[key] = self._attempts.get(key, 0) + 1
            age = (now - fired).total_seconds()
            if attempts <= route.maximum_retry_attempts and age < route.maximum_event_age:
                log.info("schedule %s: firing %s refused (%s); again", route.name, fired, e)
                return None
            self._attempts.pop(key, None)
            await self._give_up(route, event, fired_ms, e.message, attempts)
            return 0
        self._attempts.pop(key, None)
        if sent:
            self.metrics.schedule_firings.labels(route.namespace, route.name, "sent").inc()
        return int(sent)

    async def _give_up(
        self, route: ScheduleRoute, event: AsyncEvent, fired_ms: int, why: str, attempts: int
    ) -> None:
        """To the dead-letter queue with EventBridge Scheduler's attributes, or dropped; the
        mark moves past the firing either way."""
        outcome = "dead-lettered" if route.dead_letter_key else "dropped"
        if route.dead_letter_key is not None:
            attributes = {
                name: {"stringValue": value, "dataType": "String"}
                for name, value in (
                    ("ERROR_CODE", "AsyncQueueFull"),
                    ("ERROR_MESSAGE", why),
                    ("EXHAUSTED_RETRY_CONDITION", "MaximumRetryAttemptsExceeded"),
                    ("RETRY_ATTEMPTS", str(attempts - 1)),  # after the first attempt
                    ("TARGET_ARN", self._function_arn(route)),
                )
            }
            fields = {"body": event.payload, "attributes": json.dumps(attributes)}
            try:
                await Queue(self.client, route.dead_letter_key).send(fields)
            except RedisError as e:
                log.error("schedule %s: dead-letter queue refused a firing: %s", route.name, e)
                outcome = "dropped"
        await self._advance(keys=[route.mark_key], args=[fired_ms])
        self.metrics.schedule_firings.labels(route.namespace, route.name, outcome).inc()
        log.warning("schedule %s: a firing was given up (%s): %s", route.name, outcome, why)

    async def _skip(self, route: ScheduleRoute, count: int, now: datetime) -> None:
        """Firings older than the maximum event age: counted and logged once, the mark moved
        to the age limit (only forward: another replica may be further on)."""
        cutoff_ms = int((now.timestamp() - route.maximum_event_age) * 1000)
        if await self._advance(keys=[route.mark_key], args=[cutoff_ms]):
            self.metrics.schedule_firings.labels(route.namespace, route.name, "skipped").inc(count)
            log.warning(
                "schedule %s: %d firing(s) older than %ds skipped (klambda was not running)",
                route.name,
                count,
                route.maximum_event_age,
            )

    def _document(self, route: ScheduleRoute, fired: datetime) -> dict[str, object]:
        return scheduled_event(
            schedule_arn=route.arn,
            region=route.region,
            account=route.account,
            fired_at=fired,
            event_id=firing_id(route.arn, fired),
        )

    @staticmethod
    def _function_arn(route: ScheduleRoute) -> str:
        tail = f":{route.qualifier}" if route.qualifier else ""
        return f"arn:aws:lambda:{route.region}:{route.account}:function:{route.function}{tail}"
