"""Async events in flight when a dispatcher stops go back to the stream at once (a restarted
gateway with another name would otherwise find them only after ~16 minutes, as another
consumer's pending entries)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis.asyncio as aioredis

from klambda.gateway.async_dispatch import Dispatcher
from klambda.gateway.async_queue import GROUP, STREAM, AsyncEvent, AsyncQueue
from tests.component.async_fakes import FakeInvoker, never


async def test_events_in_flight_are_queued_again_when_the_dispatcher_stops(
    client: aioredis.Redis,
) -> None:
    event = AsyncEvent("req-1", "default", "fn", None, "{}", time.time())
    await AsyncQueue(client).enqueue(event)
    started = asyncio.Event()

    async def stuck(invocation: Any) -> Any:
        started.set()
        return await never(invocation)

    invoker = FakeInvoker(("default", "fn"), answer=stuck)
    dispatcher = Dispatcher(client, invoker, consumer="gateway-pod-a")  # type: ignore[arg-type]
    running = asyncio.create_task(dispatcher.run())
    await asyncio.wait_for(started.wait(), 10)
    dispatcher.stop()  # as the gateway stops it
    await asyncio.wait_for(running, 10)

    entries = await client.xrange(STREAM)
    assert [AsyncEvent.decode(f[b"event"]).request_id for _, f in entries] == ["req-1"]
    pending = await client.xpending(STREAM, GROUP)
    assert pending["pending"] == 0  # a new entry any dispatcher reads now, not a stuck one
