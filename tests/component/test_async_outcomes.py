"""The async dispatcher on a real Redis: retries, records to destinations, the dead-letter queue,
age limits, loops and fairness, each event ending in exactly one place."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis

from klambda.api.arn import account_for, function_arn
from klambda.api.async_settings import AsyncSettings, Target
from klambda.api.policy import parse_policy
from klambda.api.routes import FunctionRoute, queue_key
from klambda.gateway.async_dispatch import Dispatcher
from klambda.gateway.async_queue import QUEUED, AsyncEvent, AsyncQueue
from klambda.gateway.errors import TooManyRequests
from klambda.gateway.invoking import Invocation, InvokeResult
from klambda.gateway.queues import Queue
from tests.component.async_fakes import FakeInvoker, ok

NS = "team-a"
ACCOUNT = account_for(NS)
FAILED = Target("queue", ACCOUNT, "failed", NS)
DONE = Target("queue", ACCOUNT, "done", NS)


def publish(
    invoker: FakeInvoker,
    name: str,
    namespace: str = NS,
    policy: dict[str, Any] | None = None,
    **settings: Any,
) -> None:
    account = account_for(namespace)
    invoker.table.publish(
        FunctionRoute(
            namespace,
            name,
            function_arn("us-east-1", account, name),
            account=account,
            async_settings={"$LATEST": AsyncSettings(**settings)},
            policy=parse_policy(policy, resource_policy=True) if policy else None,
        )
    )


@asynccontextmanager
async def dispatching(
    client: aioredis.Redis, invoker: FakeInvoker, concurrency: int = 16
) -> AsyncIterator[Dispatcher]:
    dispatcher = Dispatcher(
        client, invoker, concurrency, consumer="gw", retry_base=0.05, queue_limit=1000
    )  # type: ignore[arg-type]
    running = asyncio.create_task(dispatcher.run())
    try:
        yield dispatcher
    finally:
        dispatcher.stop()
        await asyncio.wait_for(running, 10)


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(0.05)


async def records(client: aioredis.Redis, name: str) -> list[dict[str, str]]:
    return [
        {k.decode(): v.decode() for k, v in fields.items()}
        for _, fields in await client.xrange(queue_key(NS, name))
    ]


async def waiting(client: aioredis.Redis) -> int:
    return int(await client.hget(QUEUED, NS) or 0)


def event(name: str = "fn", payload: str = '{"n": 1}', **kw: Any) -> AsyncEvent:
    return AsyncEvent(kw.pop("request_id", "req-1"), NS, name, None, payload, time.time(), **kw)


async def failing(invocation: Invocation) -> InvokeResult:
    return ok(invocation, b'{"errorMessage": "boom", "errorType": "Exception"}', "Unhandled")


async def test_a_failing_function_runs_1_plus_retries_times_then_its_record_goes_on_failure(
    client: aioredis.Redis,
) -> None:
    invoker = FakeInvoker(answer=failing)
    publish(invoker, "fn", maximum_retry_attempts=2, on_failure=FAILED)
    await AsyncQueue(client).enqueue(event())
    async with dispatching(client, invoker):
        await until(lambda: _has(client, "failed"))
    assert invoker.count == 3
    (message,) = await records(client, "failed")
    doc = json.loads(message["body"])
    assert doc["requestContext"] == {
        "requestId": "req-1",
        "functionArn": function_arn("us-east-1", ACCOUNT, "fn") + ":$LATEST",
        "condition": "RetriesExhausted",
        "approximateInvokeCount": 3,
    }
    assert doc["requestPayload"] == {"n": 1} and doc["version"] == "1.0"
    assert doc["responseContext"]["functionError"] == "Unhandled"
    assert doc["responsePayload"]["errorMessage"] == "boom"
    assert message["lineage"] == "1"
    assert await waiting(client) == 0  # no longer counted against the namespace's quota


async def test_a_success_record_is_a_new_async_event_of_the_destination_function(
    client: aioredis.Redis,
) -> None:
    invoker = FakeInvoker()
    handler = Target("function", ACCOUNT, "handler", NS)
    publish(invoker, "fn", on_success=handler)
    publish(invoker, "handler")
    await AsyncQueue(client).enqueue(event())
    async with dispatching(client, invoker):
        await until(lambda: _true(invoker.count == 2))
    first, second = invoker.calls
    assert (first.name, first.lineage) == ("fn", 0)
    assert (second.name, second.lineage) == ("handler", 1)
    doc = json.loads(second.payload)
    assert doc["requestContext"]["condition"] == "Success"
    assert doc["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    await until(lambda: _waiting_is(client, 0))


async def test_without_a_destination_a_failed_event_goes_to_the_dead_letter_queue(
    client: aioredis.Redis,
) -> None:
    invoker = FakeInvoker(answer=failing)
    publish(invoker, "fn", maximum_retry_attempts=0, dead_letter=FAILED)
    await AsyncQueue(client).enqueue(event())
    async with dispatching(client, invoker):
        await until(lambda: _has(client, "failed"))
    (message,) = await records(client, "failed")
    assert message["body"] == '{"n": 1}'  # the original event, unchanged
    attributes = json.loads(message["attributes"])
    assert attributes["RequestID"]["stringValue"] == "req-1"
    assert attributes["ErrorMessage"]["stringValue"] == "boom"
    assert invoker.count == 1


async def test_an_event_too_old_is_not_run_and_says_so(client: aioredis.Redis) -> None:
    invoker = FakeInvoker()
    publish(invoker, "fn", maximum_event_age=60, on_failure=FAILED)
    old = event()
    old.received -= 120  # accepted two minutes ago, throttled since
    await AsyncQueue(client).enqueue(old)
    async with dispatching(client, invoker):
        await until(lambda: _has(client, "failed"))
    doc = json.loads((await records(client, "failed"))[0]["body"])
    assert doc["requestContext"]["condition"] == "EventAgeExceeded"
    assert "responseContext" not in doc and invoker.count == 0


async def test_a_recursive_loop_stops_at_16_hops(client: aioredis.Redis) -> None:
    invoker = FakeInvoker()
    publish(invoker, "fn", on_failure=FAILED)
    await AsyncQueue(client).enqueue(event(lineage=16))
    await AsyncQueue(client).enqueue(event(request_id="req-2", lineage=15))
    async with dispatching(client, invoker):
        await until(lambda: _has(client, "failed"))
        await until(lambda: _true(invoker.count == 1))
    doc = json.loads((await records(client, "failed"))[0]["body"])
    assert doc["requestContext"]["condition"] == "RecursiveInvocationException"
    assert invoker.calls[0].request_id == "req-2"
    assert invoker.metrics.recursive_dropped.labels(NS, "fn")._value.get() == 1


async def test_throttles_are_retried_without_using_up_retry_attempts(
    client: aioredis.Redis,
) -> None:
    answers = iter(["throttle", "throttle", "fail", "ok"])

    async def answer(invocation: Invocation) -> InvokeResult:
        a = next(answers)
        if a == "throttle":
            raise TooManyRequests("Rate Exceeded.")
        return await failing(invocation) if a == "fail" else ok(invocation)

    invoker = FakeInvoker(answer=answer)
    publish(invoker, "fn", maximum_retry_attempts=1, on_success=DONE, on_failure=FAILED)
    await AsyncQueue(client).enqueue(event())
    async with dispatching(client, invoker):
        await until(lambda: _has(client, "done"))  # 1 s + 2 s of backoff, then the retry
    doc = json.loads((await records(client, "done"))[0]["body"])
    assert doc["requestContext"]["approximateInvokeCount"] == 2  # throttles are not invokes
    assert await records(client, "failed") == []


async def test_a_flood_of_one_functions_events_does_not_hold_back_anothers(
    client: aioredis.Redis,
) -> None:
    release = asyncio.Event()

    async def slow_for_flood(invocation: Invocation) -> InvokeResult:
        if invocation.name == "flood":
            await release.wait()
        return ok(invocation)

    invoker = FakeInvoker(answer=slow_for_flood)
    publish(invoker, "flood")
    publish(invoker, "other")
    queue = AsyncQueue(client)
    for i in range(40):
        await queue.enqueue(event("flood", request_id=f"f{i}"))
    await queue.enqueue(event("other", request_id="o1"))
    async with dispatching(client, invoker, concurrency=4) as dispatcher:
        await until(lambda: _true(any(c.name == "other" for c in invoker.calls)))
        assert sum(c.name == "flood" for c in invoker.calls) <= 3  # its share of the slots
        release.set()
        await until(lambda: _true(dispatcher.delivered == 41), timeout=20)
    assert await waiting(client) == 0


async def test_another_namespaces_function_must_allow_the_destination(
    client: aioredis.Redis,
) -> None:
    invoker = FakeInvoker()
    other_account = account_for("team-b")
    target = Target(
        "function",
        other_account,
        "sink",
        None,
        None,
        function_arn("us-east-1", other_account, "sink"),
    )
    publish(invoker, "fn", on_success=target)
    publish(invoker, "sink", namespace="team-b")  # no policy: nobody else may invoke it
    await AsyncQueue(client).enqueue(event())
    async with dispatching(client, invoker):
        await until(
            lambda: _true(invoker.metrics.destination_failures.labels(NS, "fn")._value.get() == 1)
        )
    assert [c.name for c in invoker.calls] == ["fn"]
    await until(lambda: _waiting_is(client, 0))
    queue = Queue(client, "klambda:async:events", "dispatchers")
    assert await queue.depth() == 0  # done with (the success is logged), not left behind


async def test_another_namespaces_function_that_allows_it_gets_the_record(
    client: aioredis.Redis,
) -> None:
    invoker = FakeInvoker()
    other_account = account_for("team-b")
    arn = function_arn("us-east-1", other_account, "sink")
    publish(invoker, "fn", on_success=Target("function", other_account, "sink", arn=arn))
    allow = {
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": ACCOUNT},
                "Action": "lambda:InvokeFunction",
                "Resource": arn,
            }
        ]
    }
    publish(invoker, "sink", namespace="team-b", policy=allow)
    await AsyncQueue(client).enqueue(event())
    async with dispatching(client, invoker):
        await until(lambda: _true(invoker.count == 2))
    sink = invoker.calls[1]
    assert (sink.namespace, sink.name) == ("team-b", "sink")
    await until(lambda: _waiting_is(client, 0))
    assert int(await client.hget(QUEUED, "team-b") or 0) == 0


async def _has(client: aioredis.Redis, name: str) -> bool:
    return bool(await records(client, name))


async def _true(value: bool) -> bool:
    return value


async def _waiting_is(client: aioredis.Redis, n: int) -> bool:
    return await waiting(client) == n


async def test_a_redis_that_lost_its_data_gets_its_group_back_and_new_events_run(
    client: aioredis.Redis,
) -> None:
    """An external Redis without persistence restarted empty: the dispatcher says so, makes
    its consumer group again and delivers what is accepted from then on."""
    invoker = FakeInvoker()
    publish(invoker, "fn")
    await AsyncQueue(client).enqueue(event(request_id="before"))
    async with dispatching(client, invoker):
        await until(lambda: _true(invoker.count == 1))
        await client.flushall()  # as a restart without persistence leaves it
        await asyncio.sleep(0.6)  # the dispatcher's next reads find no group
        await AsyncQueue(client).enqueue(event(request_id="after"))
        await until(lambda: _true(invoker.count == 2))
    assert [c.request_id for c in invoker.calls] == ["before", "after"]
