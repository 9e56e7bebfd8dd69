"""Attack: one tenant floods Event invocations (throttled ones are kept for up to 6 h) to fill
the Redis every tenant's events live in. Each namespace has a quota of waiting events; past it
a caller gets 429, and delivered or dropped events free their place. On a real Redis."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from klambda.gateway.async_dispatch import Dispatcher
from klambda.gateway.async_queue import QUEUED, STREAM, AsyncEvent, AsyncQueue
from klambda.gateway.errors import TooManyRequests
from tests.component.async_fakes import FakeInvoker


def event(namespace: str, i: int) -> AsyncEvent:
    return AsyncEvent(f"{namespace}-{i}", namespace, "fn", None, "{}", time.time())


async def test_a_namespace_past_its_quota_gets_429_and_others_do_not(
    client: aioredis.Redis,
) -> None:
    queue = AsyncQueue(client, limit=5)
    for i in range(5):
        await queue.enqueue(event("team-a", i))
    with pytest.raises(TooManyRequests) as full:
        await queue.enqueue(event("team-a", 5))
    assert full.value.status == 429 and "team-a" in full.value.message
    await queue.enqueue(event("team-b", 0))  # another tenant is not affected
    assert await client.xlen(STREAM) == 6  # the refused one was never stored

    invoker = FakeInvoker(("team-a", "fn"), ("team-b", "fn"))
    dispatcher = Dispatcher(client, invoker, consumer="gw")  # type: ignore[arg-type]
    running = asyncio.create_task(dispatcher.run())

    async def drained() -> bool:
        return invoker.count >= 6 and not int(await client.hget(QUEUED, "team-a") or 0)

    try:
        for _ in range(200):  # 10 s at most
            if await drained():
                break
            await asyncio.sleep(0.05)
        assert await drained()
    finally:
        dispatcher.stop()
        await asyncio.wait_for(running, 10)
    await queue.enqueue(event("team-a", 6))  # delivered events freed their places
