"""The dead-letter move on a real Redis: a message is in exactly one place, whatever fails."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis.asyncio as aioredis

from klambda.api.routes import EventSourceRoute, QueueRoute
from klambda.gateway.event_sources import GROUP, QueuePoller
from tests.component.async_fakes import FakeInvoker

ROUTE = EventSourceRoute(
    namespace="default",
    name="m",
    function="fn",
    qualifier=None,
    queue=QueueRoute(
        key="klambda:queue:default:jobs",
        arn="arn:aws:sqs:us-east-1:000000000000:jobs",
        max_receive_count=1,
        dead_letter_key="klambda:queue:default:jobs-dlq",
    ),
)
JOBS = "klambda:queue:default:jobs"
DLQ = "klambda:queue:default:jobs-dlq"


async def _received_once(client: aioredis.Redis) -> tuple[QueuePoller, list[Any]]:
    await client.xadd(JOBS, {"body": "poison"})
    poller = QueuePoller(ROUTE, client, FakeInvoker(("default", "fn")))  # type: ignore[arg-type]
    await poller.queue.ensure()
    messages = await poller._receive()
    assert [m.body for m in messages] == ["poison"]
    return poller, messages


async def test_a_dead_letter_move_takes_the_message_off_the_queue(
    client: aioredis.Redis,
) -> None:
    poller, messages = await _received_once(client)
    await poller._redrive(messages)
    assert [f[b"body"] for _, f in await client.xrange(DLQ)] == [b"poison"]
    assert await client.xlen(JOBS) == 0
    assert (await client.xpending(JOBS, GROUP))["pending"] == 0


async def test_a_failed_dead_letter_move_leaves_the_message_where_it_was(
    client: aioredis.Redis,
) -> None:
    """The DLQ key holds a string (someone's mistake): XADD fails at run time, which MULTI/EXEC
    does not roll back; the message must stay in its queue, not vanish."""
    poller, messages = await _received_once(client)
    await client.set(DLQ, "not a stream")
    with pytest.raises(Exception, match=r"WRONGTYPE|not a stream"):
        await poller._redrive(messages)
    assert await client.get(DLQ) == b"not a stream"
    assert [f[b"body"] for _, f in await client.xrange(JOBS)] == [b"poison"]
    assert (await client.xpending(JOBS, GROUP))["pending"] == 1  # still in flight


async def test_a_message_16_hops_deep_goes_to_the_dead_letter_queue_not_the_function(
    client: aioredis.Redis,
) -> None:
    """A destination's record carries its hop count; a function -> queue -> function loop is
    stopped at 16 (Lambda's loop detection), the message kept in the dead-letter queue."""
    invoker = FakeInvoker(("default", "fn"))
    await client.xadd(JOBS, {"body": "again", "lineage": "16"})
    await client.xadd(JOBS, {"body": "fine", "lineage": "3"})
    poller = QueuePoller(ROUTE, client, invoker)  # type: ignore[arg-type]
    await poller.queue.ensure()
    assert await poller.poll_once() == 2
    assert [c.lineage for c in invoker.calls] == [3]  # only the other one was delivered
    assert json.loads(invoker.calls[0].payload)["Records"][0]["body"] == "fine"
    dead = await client.xrange(DLQ)
    assert [(f[b"body"], f[b"lineage"]) for _, f in dead] == [(b"again", b"16")]
    assert invoker.metrics.recursive_dropped.labels("default", "fn")._value.get() == 1
    fate = invoker.metrics.esm_records.labels(ROUTE.namespace, ROUTE.name, "dead-lettered")
    assert fate._value.get() == 1
