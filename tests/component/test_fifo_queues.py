"""FIFO queues on a real redis-server: per-group order, one batch of a group at a time, groups
in parallel, failures that block their group, deduplication, redrive."""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from typing import Any

import pytest
import redis.asyncio as aioredis

from klambda.api.routes import EventSourceRoute, QueueRoute
from klambda.gateway.event_sources import QueuePoller
from klambda.gateway.fifo_queues import FifoQueue, MissingGroup, deduplication_id, fifo_fields
from klambda.gateway.invoking import Invocation, InvokeResult
from klambda.gateway.source_stats import RedisSourceStats
from tests.component.async_fakes import FakeInvoker, ok

KEY = "klambda:queue:default:orders.fifo"


async def send(q: FifoQueue, body: str, group: str, dedup: str | None = None) -> str:
    return await q.send(fifo_fields(body, group, dedup or body), dedup or body)


async def test_one_batch_of_a_group_at_a_time_in_order(client: aioredis.Redis) -> None:
    q = FifoQueue(client, KEY)
    for i in range(3):
        for group in ("a", "b"):
            await send(q, f"{group}{i}", group)
    first = await q.receive("c1", 2, visibility_timeout=30)
    assert [m.fields["body"] for m in first] == ["a0", "b0"]  # both groups, their heads
    assert await q.receive("c2", 10, visibility_timeout=30) == []  # both groups held
    await q.delete([first[0].id])  # a's batch done: a is free, b still held
    second = await q.receive("c2", 10, visibility_timeout=30)
    assert [m.fields["body"] for m in second] == ["a1", "a2"]
    counts = await q.counts()
    assert (counts.visible, counts.in_flight) == (2, 3)


async def test_a_failed_batch_blocks_its_group_until_it_comes_back(
    client: aioredis.Redis,
) -> None:
    q = FifoQueue(client, KEY)
    for i in range(2):
        await send(q, f"a{i}", "a")
    await q.receive("c1", 1, visibility_timeout=0.2)  # a0, whose batch then fails
    assert await q.receive("c2", 5, visibility_timeout=0.2) == []  # a1 waits behind a0
    await asyncio.sleep(0.3)  # a0's visibility timeout ran out: it is first again
    again = await q.receive("c2", 5, visibility_timeout=30)
    assert [(m.fields["body"], m.receive_count) for m in again] == [("a0", 2), ("a1", 1)]


async def test_sends_are_deduplicated_for_five_minutes(client: aioredis.Redis) -> None:
    q = FifoQueue(client, KEY)
    first = await send(q, "x", "g", "same")
    assert await send(q, "y", "g", "same") == first  # the first send's id, nothing added
    assert (await q.counts()).visible == 1
    assert 290 < await client.ttl(f"{KEY}:dedup:same") <= 300
    with pytest.raises(MissingGroup):
        await q.send({"body": "z"}, None)
    assert deduplication_id("body", None, content_based=True) == deduplication_id(
        "body", None, content_based=True
    )
    with pytest.raises(ValueError, match="ContentBasedDeduplication"):
        deduplication_id("body", None, content_based=False)


async def test_redrive_to_a_fifo_dead_letter_queue_frees_the_group(
    client: aioredis.Redis,
) -> None:
    q, dlq = FifoQueue(client, KEY), FifoQueue(client, KEY + "-dlq")
    await send(q, "poison", "g")
    await send(q, "next", "g")
    (m,) = await q.receive("c1", 1, visibility_timeout=30)
    await q.move([(m.id, m.fields)], to=dlq)
    (after,) = await q.receive("c1", 1, visibility_timeout=30)
    assert after.fields["body"] == "next"  # the group moved on at once
    (dead,) = await dlq.receive("c1", 1, visibility_timeout=30)
    assert (dead.fields["body"], dead.fields["group"]) == ("poison", "g")


def route(concurrency: int, **queue: Any) -> EventSourceRoute:
    return EventSourceRoute(
        "default",
        "orders",
        "fn",
        None,
        queue=QueueRoute(KEY, "arn:aws:sqs:us-east-1:0:orders.fifo", fifo=True, **queue),
        batch_size=3,
        report_failures=True,
    )


async def test_parallel_groups_keep_their_order_through_a_failure(
    client: aioredis.Redis,
) -> None:
    """Five groups, three pollers: groups run in parallel, each strictly in order; one message
    fails once (reported as a batch item failure): its group waits for it."""
    q = FifoQueue(client, KEY)
    for i in range(10):
        for g in range(5):
            await send(q, f"{g}:{i}", f"g{g}")
    done: list[tuple[str, int]] = []
    failed_once: set[str] = set()
    running: set[str] = set()
    overlapped: list[str] = []

    async def answer(invocation: Invocation) -> InvokeResult:
        records = json.loads(invocation.payload)["Records"]
        groups = {r["attributes"]["MessageGroupId"] for r in records}
        overlapped.extend(g for g in groups if g in running)
        running.update(groups)
        await asyncio.sleep(0.02)
        running.difference_update(groups)
        failures = []
        for r in records:
            group, n = r["body"].split(":")
            if r["body"] == "2:4" and r["body"] not in failed_once:
                failed_once.add(r["body"])
            if failures or (
                r["body"] in failed_once and r["attributes"]["ApproximateReceiveCount"] == "1"
            ):
                failures.append({"itemIdentifier": r["messageId"]})
                continue
            done.append((group, int(n)))
        return ok(invocation, json.dumps({"batchItemFailures": failures}).encode())

    invoker = FakeInvoker(("default", "fn"), answer=answer)
    r = route(3, visibility_timeout=2.0)  # longer than any batch takes, as Lambda requires
    pollers = [QueuePoller(r, client, invoker, i) for i in range(3)]  # type: ignore[arg-type]
    tasks = [asyncio.create_task(p.run()) for p in pollers]
    try:
        deadline = time.monotonic() + 30
        while len(done) < 50:
            assert time.monotonic() < deadline, f"{len(done)} of 50 delivered"
            await asyncio.sleep(0.05)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    by_group: dict[str, list[int]] = defaultdict(list)
    for group, n in done:
        by_group[group].append(n)
    assert {g: ns for g, ns in by_group.items()} == {str(g): list(range(10)) for g in range(5)}
    assert overlapped == []  # never two batches of one group at once
    assert failed_once == {"2:4"}


async def test_a_fifo_queue_status_counts_its_messages_in_flight(client: aioredis.Redis) -> None:
    """The controller's counts of a FIFO queue come from its own in-flight set (it has no
    consumer group): what `kubectl get kq` shows."""
    q = FifoQueue(client, KEY)
    for i in range(3):
        await send(q, f"a{i}", "a")
    await q.receive("c1", 2, visibility_timeout=30)
    counts = await RedisSourceStats(client).queue_counts("default", "orders.fifo", fifo=True)
    assert (counts.visible, counts.in_flight) == (1, 2)


async def test_messages_past_retention_leave_nothing_in_flight(client: aioredis.Redis) -> None:
    q = FifoQueue(client, KEY)
    await send(q, "old", "a")
    await q.receive("c1", 1, visibility_timeout=30)  # in flight when its retention ends
    await asyncio.sleep(1.1)
    await send(q, "new", "b")
    assert await q.expire(1) == 1
    counts = await q.counts()
    assert (counts.visible, counts.in_flight) == (1, 0)
    assert await client.hlen(q.counts_key) == 0  # its receive count is gone too
