"""The scheduler on a real redis-server under an injected clock: rate, cron and at firings,
exactly once with two schedulers, missed firings, refusals and the dead-letter queue."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis

from klambda.api.routes import ScheduleRoute
from klambda.gateway.async_queue import STREAM, AsyncEvent, AsyncQueue
from klambda.gateway.metrics import Metrics
from klambda.gateway.routing import RoutingTable
from klambda.gateway.scheduler import Scheduler

T0 = datetime(2026, 12, 1, 11, 58, 0, tzinfo=UTC)
ARN = "arn:aws:scheduler:us-east-1:000000000000:schedule/default/tick"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now.timestamp()

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def route(expression: str, **kw: Any) -> ScheduleRoute:
    return ScheduleRoute(
        "default",
        "tick",
        "u-1",
        ARN,
        expression,
        "fn",
        anchor=T0.timestamp(),
        account="000000000000",
        **kw,
    )


def scheduler(
    client: aioredis.Redis, r: ScheduleRoute, clock: Clock, limit: int = 1000
) -> Scheduler:
    table = RoutingTable()
    table.publish_schedule(r)
    return Scheduler(table, client, AsyncQueue(client, limit), Metrics(), clock=clock)


async def events(client: aioredis.Redis) -> list[AsyncEvent]:
    entries = await client.xrange(STREAM)
    return [AsyncEvent.decode(fields[b"event"]) for _, fields in entries]


async def test_a_rate_fires_at_creation_then_every_period(client: aioredis.Redis) -> None:
    clock = Clock()
    s = scheduler(client, route("rate(5 minutes)"), clock)
    assert await s.tick_once() == 1  # EventBridge Scheduler starts at once
    clock.advance(minutes=4, seconds=59)
    assert await s.tick_once() == 0
    clock.advance(seconds=1)
    assert await s.tick_once() == 1
    clock.advance(minutes=10)
    assert await s.tick_once() == 2  # two periods passed: both firings, once each
    assert await s.tick_once() == 0
    fired = [json.loads(e.payload)["time"] for e in await events(client)]
    assert fired == [
        "2026-12-01T11:58:00Z",
        "2026-12-01T12:03:00Z",
        "2026-12-01T12:08:00Z",
        "2026-12-01T12:13:00Z",
    ]


async def test_a_cron_fires_at_its_times_in_its_timezone(client: aioredis.Redis) -> None:
    clock = Clock()
    s = scheduler(client, route("cron(0 7 * * ? *)", timezone="America/New_York"), clock)
    assert await s.tick_once() == 0  # 06:58 in New York
    clock.advance(minutes=2)
    assert await s.tick_once() == 1  # 07:00 EST = 12:00Z
    clock.advance(hours=23, minutes=59)
    assert await s.tick_once() == 0
    clock.advance(minutes=1)
    assert await s.tick_once() == 1


async def test_the_scheduled_event_shape_and_an_input_instead(client: aioredis.Redis) -> None:
    clock = Clock()
    await scheduler(client, route("rate(1 hour)"), clock).tick_once()
    (event,) = await events(client)
    doc = json.loads(event.payload)
    assert doc["detail-type"] == "Scheduled Event" and doc["source"] == "aws.events"
    assert doc["resources"] == [ARN] and doc["detail"] == {} and doc["version"] == "0"
    assert doc["id"] == event.request_id  # the firing's id, the same on every replica
    assert (event.namespace, event.function) == ("default", "fn")
    other = route("rate(1 hour)", input='{"job": "nightly"}', qualifier="live")
    other = ScheduleRoute(**{**other.__dict__, "name": "other", "uid": "u-2"})
    await scheduler(client, other, clock).tick_once()
    second = (await events(client))[1]
    assert json.loads(second.payload) == {"job": "nightly"} and second.qualifier == "live"


async def test_two_schedulers_send_each_firing_once(client: aioredis.Redis) -> None:
    clock = Clock()
    r = route("rate(1 minute)")
    a, b = scheduler(client, r, clock), scheduler(client, r, clock)
    total = 0
    for _ in range(30):
        clock.advance(seconds=20)
        total += sum(await asyncio.gather(a.tick_once(), b.tick_once()))
    assert total == len(await events(client)) == 11  # 11:58 .. 12:08, each once
    ids = [e.request_id for e in await events(client)]
    assert len(set(ids)) == len(ids)


async def test_firings_missed_while_down_within_the_event_age_are_delivered(
    client: aioredis.Redis,
) -> None:
    clock = Clock()
    r = route("rate(10 minutes)", maximum_event_age=1800)
    s = scheduler(client, r, clock)
    await s.tick_once()
    clock.advance(hours=2)  # down for two hours: 12 firings missed
    assert await s.tick_once() == 3  # the last 30 minutes' (age 30, 20, 10 and 0 min: 3 + now)
    skipped = s.metrics.schedule_firings.labels("default", "tick", "skipped")._value.get()
    assert skipped == 9
    assert await s.tick_once() == 0 and (
        s.metrics.schedule_firings.labels("default", "tick", "skipped")._value.get() == 9
    )  # counted once


async def test_a_refused_firing_is_retried_then_dead_lettered(client: aioredis.Redis) -> None:
    clock = Clock()
    r = route(
        "rate(1 hour)",
        maximum_retry_attempts=2,
        dead_letter_key="klambda:queue:default:missed",
    )
    s = scheduler(client, r, clock, limit=0)  # the namespace's async quota is full
    for _ in range(2):  # the first attempt and the first retry: refused, tried again
        assert await s.tick_once() == 0
        assert await client.xlen("klambda:queue:default:missed") == 0
    await s.tick_once()  # the second retry refused too: given up
    ((_, fields),) = await client.xrange("klambda:queue:default:missed")
    attributes = json.loads(fields[b"attributes"])
    assert attributes["RETRY_ATTEMPTS"]["stringValue"] == "2"
    assert attributes["EXHAUSTED_RETRY_CONDITION"]["stringValue"] == "MaximumRetryAttemptsExceeded"
    assert attributes["TARGET_ARN"]["stringValue"].endswith(":function:fn")
    assert json.loads(fields[b"body"])["detail-type"] == "Scheduled Event"
    assert await s.tick_once() == 0  # the mark moved past it


async def test_a_schedule_disabled_fires_no_more_and_enabled_again_goes_on(
    client: aioredis.Redis,
) -> None:
    """DISABLED withdraws the schedule's route (the reconciler's part, tested there): the
    scheduler sends nothing for it, due or not; enabled again, it fires from then on."""
    clock = Clock()
    r = route("rate(1 minute)")
    s = scheduler(client, r, clock)
    assert await s.tick_once() == 1
    s.table.withdraw_schedule("default", "tick")  # state: DISABLED
    clock.advance(minutes=10, seconds=30)
    assert await s.tick_once() == 0
    assert len(await events(client)) == 1
    s.table.publish_schedule(replace(r, enabled_since=clock()))  # ENABLED again, at 12:08:30
    assert await s.tick_once() == 0  # none of the ten due while it was DISABLED
    clock.advance(seconds=30)
    assert await s.tick_once() == 1  # 12:09, its next firing
