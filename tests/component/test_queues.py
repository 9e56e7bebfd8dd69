"""The queue engine on a real redis-server: SQS's semantics, each message in exactly one place."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from klambda.gateway.queues import Queue, QueueFull, Quota


async def test_send_receive_delete(client: aioredis.Redis) -> None:
    q = Queue(client, "q:test")
    await q.ensure()
    sent = [await q.send({"body": f"m{i}"}) for i in range(3)]
    got = await q.receive("c1", 10, visibility_timeout=30)
    assert [m.id for m in got] == sent and [m.fields["body"] for m in got] == ["m0", "m1", "m2"]
    assert {m.receive_count for m in got} == {1}
    assert await q.receive("c2", 10, visibility_timeout=30, block=0.05) == []  # all held
    assert await q.delete([m.id for m in got[:2]]) == 2
    assert await q.delete([got[0].id]) == 0  # deleted once only
    assert await q.depth() == 1


async def test_a_message_not_deleted_within_its_visibility_timeout_comes_back(
    client: aioredis.Redis,
) -> None:
    q = Queue(client, "q:test")
    await q.ensure()
    await q.send({"body": "x"})
    (first,) = await q.receive("c1", 10, visibility_timeout=0.2)
    assert await q.receive("c2", 10, visibility_timeout=0.2, block=0.05) == []
    await asyncio.sleep(0.3)
    (again,) = await q.receive("c2", 10, visibility_timeout=0.2)
    assert again.id == first.id and again.receive_count == 2


async def test_extend_keeps_a_held_message_from_others(client: aioredis.Redis) -> None:
    q = Queue(client, "q:test")
    await q.ensure()
    await q.send({"body": "x"})
    (held,) = await q.receive("c1", 10, visibility_timeout=0.3)
    for _ in range(3):  # a live worker's heartbeat
        await asyncio.sleep(0.15)
        await q.extend("c1", [held.id])
        assert await q.receive("c2", 10, visibility_timeout=0.3) == []
    await asyncio.sleep(0.35)  # the worker died: reclaimed
    assert [m.id for m in await q.receive("c2", 10, visibility_timeout=0.3)] == [held.id]


async def test_a_restarted_consumer_resumes_what_it_held(client: aioredis.Redis) -> None:
    q = Queue(client, "q:test")
    await q.ensure()
    await q.send({"body": "x"})
    (held,) = await q.receive("worker-1", 10, visibility_timeout=600)
    assert [m.id for m in await q.resume("worker-1", 10)] == [held.id]
    assert await q.resume("worker-2", 10) == []


async def test_delay_takes_a_message_off_until_due(client: aioredis.Redis) -> None:
    q = Queue(client, "q:test")
    await q.ensure()
    await q.send({"body": "x", "attempt": "0"})
    (held,) = await q.receive("c1", 10, visibility_timeout=30)
    assert await q.delay(held.id, {"body": "x", "attempt": "1"}, 0.2)
    assert not await q.delay(held.id, {"body": "x"}, 0.2)  # no longer held: not twice
    assert await q.release_due() == 0
    assert await q.depth() == 1  # delayed, not lost
    await asyncio.sleep(0.25)
    assert await q.release_due() == 1
    (back,) = await q.receive("c1", 10, visibility_timeout=30)
    assert back.fields == {"body": "x", "attempt": "1"} and back.receive_count == 1


async def test_move_is_all_or_nothing(client: aioredis.Redis) -> None:
    q, dlq = Queue(client, "q:test"), Queue(client, "q:dlq")
    await q.ensure()
    await q.send({"body": "x"})
    (held,) = await q.receive("c1", 10, visibility_timeout=30)
    await client.set("q:dlq", "not a stream")
    with pytest.raises(ResponseError, match="not a queue"):
        await q.move([(held.id, held.fields)], to=dlq)
    assert [m.id for m in await q.resume("c1", 10)] == [held.id]  # still exactly here
    await client.delete("q:dlq")
    await q.move([(held.id, {"body": "x", "why": "dead"})], to=dlq)
    assert await q.resume("c1", 10) == [] and await q.depth() == 0
    await dlq.ensure()
    (moved,) = await dlq.receive("c1", 10, visibility_timeout=30)
    assert moved.fields == {"body": "x", "why": "dead"}


async def test_a_quota_counts_what_is_in_the_queue(client: aioredis.Redis) -> None:
    q, other = Queue(client, "q:test"), Queue(client, "q:other")
    await q.ensure()
    quota = Quota("q:held", "team-a", 2)
    await q.send({"body": "1"}, quota)
    await q.send({"body": "2"}, quota)
    with pytest.raises(QueueFull):
        await q.send({"body": "3"}, quota)
    await q.send({"body": "b"}, Quota("q:held", "team-b", 2))  # another owner's own quota
    a1, a2, _ = await q.receive("c1", 10, visibility_timeout=30)
    await q.move([(a1.id, a1.fields)])  # a requeue still counts
    with pytest.raises(QueueFull):
        await q.send({"body": "3"}, quota)
    await q.delete([a2.id], quota)
    await q.send({"body": "3"}, quota)
    (again, _) = await q.receive("c1", 10, visibility_timeout=30)
    await q.move([(again.id, again.fields)], to=other, leaving=quota)  # out of this queue
    await q.send({"body": "4"}, quota)
    assert await client.hget("q:held", "team-a") == b"2"
    # handed to another owner within the queue (a record for another namespace's function)
    (mine,) = [m for m in await q.receive("c1", 10, 30) if m.fields["body"] == "4"]
    await q.move([(mine.id, mine.fields)], leaving=quota, entering=Quota("q:held", "team-b", 2))
    held = await client.hgetall("q:held")
    assert (held[b"team-a"], held[b"team-b"]) == (b"1", b"2")


async def test_counts_are_sqs_approximate_attributes(client: aioredis.Redis) -> None:
    q = Queue(client, "q:counted")
    await q.ensure()
    assert (await q.counts()).visible == 0
    for i in range(4):
        await q.send({"body": str(i)})
    held = await q.receive("c1", 1, visibility_timeout=30)
    await q.delay(held[0].id, held[0].fields, 60)  # a retry waiting its turn
    await q.receive("c1", 1, visibility_timeout=30)
    counts = await q.counts()
    assert (counts.visible, counts.in_flight, counts.delayed) == (2, 1, 1)
    assert 0 <= counts.oldest_age < 5
