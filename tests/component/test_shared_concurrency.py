"""Concurrency limits kept in a real redis-server by three gateway replicas: reserved
concurrency 4 with 12 concurrent calls spread over the replicas admits exactly 4 at a time
(the others throttled with Lambda's reason), the regional pool likewise, and a replica that
dies gives its places back within the lease."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from klambda.api.routes import VersionTarget
from klambda.gateway.concurrency import ACCOUNT_EXCEEDED, RESERVED_EXCEEDED
from klambda.gateway.errors import TooManyRequests
from klambda.gateway.invoking import Invocation, Invoker
from klambda.gateway.metrics import Metrics
from klambda.gateway.settings import GatewaySettings
from klambda.gateway.shared_concurrency import SharedConcurrency
from klambda.protos import shim_pb2
from tests.component.async_fakes import routing_table

FN = ("default", "fn")


async def calls(
    replicas: list[SharedConcurrency], n: int, reserved: int | None, pool: int = 1000
) -> tuple[int, list[str], int]:
    """``n`` calls at once, spread round-robin over the replicas, each holding its place for
    0.3 s: (most in flight together, throttle reasons, admitted)."""
    running = most = admitted = 0
    reasons: list[str] = []

    async def call(i: int) -> None:
        nonlocal running, most, admitted
        replica = replicas[i % len(replicas)]
        try:
            holder = await replica.acquire(FN, reserved, pool)
        except TooManyRequests as e:
            reasons.append(e.extra["Reason"])
            return
        admitted += 1
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.3)
        running -= 1
        await replica.release(holder)

    await asyncio.gather(*(call(i) for i in range(n)))
    return most, reasons, admitted


async def test_reserved_concurrency_holds_across_three_replicas(client: aioredis.Redis) -> None:
    replicas = [SharedConcurrency(client, f"gw-{i}") for i in range(3)]
    most, reasons, admitted = await calls(replicas, 12, reserved=4)
    assert (most, admitted) == (4, 4)  # not 4 per replica: 4 in all
    assert reasons == [RESERVED_EXCEEDED] * 8
    again = await calls(replicas, 4, reserved=4)  # released: the places are free again
    assert again[2] == 4


async def test_the_regional_pool_holds_across_replicas(client: aioredis.Redis) -> None:
    replicas = [SharedConcurrency(client, f"gw-{i}") for i in range(3)]
    most, reasons, admitted = await calls(replicas, 9, reserved=None, pool=5)
    assert (most, admitted) == (5, 5)
    assert reasons == [ACCOUNT_EXCEEDED] * 4


async def test_a_dead_replicas_places_come_back_within_the_lease(client: aioredis.Redis) -> None:
    alive = SharedConcurrency(client, "gw-alive", lease=1.0)
    dead = SharedConcurrency(client, "gw-dead", lease=1.0)
    renewing = asyncio.create_task(alive.run())
    try:
        held = [await dead.acquire(FN, 2, 1000) for _ in range(2)]  # and then it dies
        assert held
        with pytest.raises(TooManyRequests):
            await alive.acquire(FN, 2, 1000)
        mine = await asyncio.wait_for(retry(alive), 5)  # the dead one renews nothing
        await asyncio.sleep(1.5)  # longer than the lease: the live replica's place stays
        with pytest.raises(TooManyRequests):
            await alive.acquire(FN, 1, 1000)  # still held (renewed), so 1 is full
        await alive.release(mine)
    finally:
        renewing.cancel()
        await asyncio.gather(renewing, return_exceptions=True)


async def retry(replica: SharedConcurrency) -> str:
    while True:
        try:
            return await replica.acquire(FN, 2, 1000)
        except TooManyRequests:
            await asyncio.sleep(0.1)


class SlowShim:
    """The shims, as the invoker sees them: each call takes 0.3 s."""

    def __init__(self) -> None:
        self.inflight: dict[str, int] = {}

    def pick(self, endpoints: tuple[str, ...]) -> str:
        return endpoints[0]

    async def invoke(self, address: str, request: Any, deadline: float, version: Any) -> Any:
        await asyncio.sleep(0.3)
        return shim_pb2.InvokeResponse(payload=b"null", executed_version="$LATEST")


async def test_three_gateways_invokers_admit_exactly_the_reservation(
    client: aioredis.Redis,
) -> None:
    """The invoker path: three replicas' invokers, one function with reserved concurrency 4,
    12 calls at once spread over them: 4 run, 8 get Lambda's 429, counted as throttles."""
    routes = {"$LATEST": VersionTarget("$LATEST", endpoints=("shim:9000",))}
    table = routing_table(FN, reserved_concurrency=4, versions=routes)
    invokers = [
        Invoker(
            table,
            SlowShim(),  # type: ignore[arg-type]
            Metrics(),
            GatewaySettings(),
            shared=SharedConcurrency(client, f"gw-{i}"),
        )
        for i in range(3)
    ]

    async def call(i: int) -> str:
        try:
            await invokers[i % 3].invoke(Invocation("default", "fn", None, b"{}"))
        except TooManyRequests as e:
            return str(e.extra["Reason"])
        return "ran"

    outcomes = await asyncio.gather(*(call(i) for i in range(12)))
    assert sorted(outcomes).count("ran") == 4
    assert outcomes.count(RESERVED_EXCEEDED) == 8
    throttled = sum(i.metrics.throttles.labels("default", "fn")._value.get() for i in invokers)
    assert throttled == 8
