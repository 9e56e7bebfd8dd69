"""Attack: code that can reach Redis XADDs an entry naming another tenant's function (the
dispatcher used to run whatever an entry named). Entries carry a seal only gateways can make;
an unsealed or re-sealed-wrong entry is refused, never run. On a real Redis."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from typing import Any

import redis.asyncio as aioredis

from klambda.gateway.async_dispatch import Dispatcher
from klambda.gateway.async_queue import STREAM, AsyncEvent, AsyncQueue
from tests.component.async_fakes import FakeInvoker

KEY = secrets.token_bytes(32)


async def test_only_sealed_entries_run(client: aioredis.Redis) -> None:
    victim = AsyncEvent("forged-1", "team-b", "payroll", None, '{"pay": "mallory"}', time.time())
    await client.xadd(STREAM, {"event": victim.encode()})  # plain, as before the seal
    fake = {"sealed": victim.encode(), "mac": "0" * 64}
    await client.xadd(STREAM, {"event": json.dumps(fake)})  # a made-up seal
    other_key = AsyncEvent("forged-2", "team-b", "payroll", None, "{}", time.time())
    await client.xadd(STREAM, {"event": other_key.encode(secrets.token_bytes(32))})
    real = AsyncEvent("real-1", "team-a", "fn", None, "{}", time.time())
    await AsyncQueue(client, key=KEY).enqueue(real)

    ran: list[Any] = []
    invoker = FakeInvoker(("team-a", "fn"), ("team-b", "payroll"))
    original = invoker.invoke

    async def recording(invocation: Any) -> Any:
        ran.append((invocation.namespace, invocation.name, invocation.request_id))
        return await original(invocation)

    invoker.invoke = recording  # type: ignore[method-assign]
    dispatcher = Dispatcher(client, invoker, consumer="gw", key=KEY)  # type: ignore[arg-type]
    running = asyncio.create_task(dispatcher.run())
    try:
        for _ in range(200):  # 10 s at most
            if dispatcher.refused == 3 and ran:
                break
            await asyncio.sleep(0.05)
    finally:
        dispatcher.stop()
        await asyncio.wait_for(running, 10)
    assert ran == [("team-a", "fn", "real-1")]
    assert dispatcher.refused == 3
    assert await client.xlen(STREAM) == 0  # refused entries do not linger to be retried
