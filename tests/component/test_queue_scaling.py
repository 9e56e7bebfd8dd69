"""Queue mappings scale as Lambda's SQS pollers do, on a real redis-server: five batches at
first, more while messages wait, never past maximumConcurrency even with two replicas polling,
the work spread over the replicas, back down when the queue is idle."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import pytest
import redis.asyncio as aioredis

from klambda.api.routes import EventSourceRoute, QueueRoute
from klambda.gateway import queue_scaling
from klambda.gateway.event_sources import QueuePoller
from klambda.gateway.invoking import Invocation, InvokeResult
from klambda.gateway.queue_scaler import QueueScaler, Slots
from klambda.gateway.queues import Queue
from tests.component.async_fakes import FakeInvoker, ok, routing_table

KEY = "klambda:queue:default:work"


def route(maximum: int | None = None) -> EventSourceRoute:
    queue = QueueRoute(KEY, "arn:aws:sqs:us-east-1:000000000000:work", maximum_concurrency=maximum)
    return EventSourceRoute(
        "default", "work-to-fn", "fn", None, queue=queue, batch_size=1, uuid="u"
    )


class Slow:
    """The function: each batch takes ``seconds``; records how many run at once."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.running = 0
        self.most = 0
        self.done = 0

    async def __call__(self, invocation: Invocation) -> InvokeResult:
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await asyncio.sleep(self.seconds)
        finally:
            self.running -= 1
        self.done += 1
        return ok(invocation)


@asynccontextmanager
async def polling(
    client: aioredis.Redis, r: EventSourceRoute, invoker: FakeInvoker, owner: str
) -> AsyncIterator[QueueScaler]:
    scaler = QueueScaler(r, client, invoker, owner, tick=0.1)  # type: ignore[arg-type]

    def poll(index: int, slots: Slots) -> Coroutine[Any, Any, None]:
        return QueuePoller(r, client, invoker, index, slots).run()  # type: ignore[arg-type]

    task = asyncio.create_task(scaler.run(poll))
    try:
        yield scaler
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def until(check: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def send(client: aioredis.Redis, n: int) -> None:
    queue = Queue(client, KEY, "klambda")
    await queue.ensure()
    for i in range(n):
        await queue.send({"body": str(i)})


async def test_two_replicas_together_never_pass_the_mapping_limit_and_share_it(
    client: aioredis.Redis,
) -> None:
    await send(client, 40)
    function = Slow(0.1)
    a = FakeInvoker(("default", "fn"), answer=function)
    b = FakeInvoker(("default", "fn"), answer=function)
    async with polling(client, route(4), a, "a"), polling(client, route(4), b, "b"):
        await until(lambda: function.done >= 40)
    assert 2 <= function.most <= 4  # batches at once, never past maximumConcurrency
    assert a.count > 0 and b.count > 0, (a.count, b.count)  # both replicas polled
    assert a.count + b.count == 40  # each message once


async def test_pollers_start_at_five_and_add_more_while_messages_wait(
    client: aioredis.Redis,
) -> None:
    await send(client, 400)
    function = Slow(0.5)
    invoker = FakeInvoker(("default", "fn"), answer=function)
    async with polling(client, route(), invoker, "a"):
        await asyncio.sleep(0.3)
        early = function.most
        await until(lambda: function.running >= 12, timeout=20)
    # five at first, then no faster than 300 a minute (5 a second: ~1.5 more in 0.3 s)
    assert queue_scaling.START_BATCHES <= early <= queue_scaling.START_BATCHES + 2
    assert function.most >= 12  # then more while the backlog lasts


async def test_the_function_reserved_concurrency_caps_the_batches(
    client: aioredis.Redis,
) -> None:
    await send(client, 30)
    function = Slow(0.2)
    invoker = FakeInvoker(("default", "fn"), answer=function)
    invoker.table = routing_table(("default", "fn"), reserved_concurrency=2)
    async with polling(client, route(), invoker, "a"):
        await until(lambda: function.done >= 30)
    assert function.most == 2


async def test_an_idle_queue_scales_back_to_the_start(
    client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queue_scaling, "IDLE_SECONDS", 1.0)
    await send(client, 100)
    function = Slow(0.2)
    invoker = FakeInvoker(("default", "fn"), answer=function)
    async with polling(client, route(), invoker, "a") as scaler:
        await until(lambda: scaler.scale.target >= 10)
        await until(lambda: function.done >= 100)
        await until(lambda: scaler.scale.target == queue_scaling.START_BATCHES, timeout=10)
        pollers = invoker.metrics.esm_pollers.labels("default", "work-to-fn")
        await until(lambda: pollers._value.get() <= queue_scaling.START_BATCHES, timeout=10)


async def test_a_thousand_messages_are_each_delivered_exactly_once(
    client: aioredis.Redis,
) -> None:
    await send(client, 1000)
    bodies: list[str] = []

    async def record(invocation: Invocation) -> InvokeResult:
        bodies.extend(r["body"] for r in json.loads(invocation.payload)["Records"])
        await asyncio.sleep(0.01)
        return ok(invocation)

    a = FakeInvoker(("default", "fn"), answer=record)
    b = FakeInvoker(("default", "fn"), answer=record)
    r = replace(route(), batch_size=10)
    async with polling(client, r, a, "a"), polling(client, r, b, "b"):
        await until(lambda: len(bodies) >= 1000)
        await asyncio.sleep(0.5)  # anything delivered twice would show by now
    assert sorted(bodies, key=int) == [str(i) for i in range(1000)]
    counts = await Queue(client, KEY, "klambda").counts()
    assert (counts.visible, counts.in_flight) == (0, 0)  # all deleted
