"""Streams on a real redis-server: the engine (shards, retention, positions) and the poller
(order per key, bisection, failure records, checkpoints, shards shared and taken over)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import pytest
import redis.asyncio as aioredis

from klambda.api.async_settings import Target
from klambda.api.routes import EventSourceRoute, StreamRoute
from klambda.gateway.invoking import Invocation, InvokeResult
from klambda.gateway.stream_poller import StreamPoller
from klambda.gateway.streams import START, Stream, declare, declared
from klambda.gateway.targets import Targets
from tests.component.async_fakes import FakeInvoker, ok

PREFIX = "klambda:stream:default:clicks"
ARN = "arn:aws:kinesis:us-east-1:000000000000:stream/clicks"


def route(shards: int = 4, **stream: Any) -> EventSourceRoute:
    batch = stream.pop("batch_size", 100)
    report = stream.pop("report_failures", False)
    return EventSourceRoute(
        "default",
        "clicks-to-fn",
        "fn",
        None,
        stream=StreamRoute(PREFIX, ARN, shards, **{"starting_position": "TRIM_HORIZON", **stream}),
        batch_size=batch,
        report_failures=report,
        uuid="u-1",
    )


class Recorder:
    """The function: records each batch's records (key, data) in order."""

    def __init__(self, fail: Callable[[list[dict[str, Any]]], str | None] | None = None) -> None:
        self.batches: list[list[tuple[str, str]]] = []
        self.fail = fail

    async def __call__(self, invocation: Invocation) -> InvokeResult:
        records = json.loads(invocation.payload)["Records"]
        self.batches.append(
            [
                (r["kinesis"]["partitionKey"], base64.b64decode(r["kinesis"]["data"]).decode())
                for r in records
            ]
        )
        error = self.fail(records) if self.fail else None
        return ok(invocation, b'{"errorMessage": "poison"}' if error else b"null", error or "")

    def delivered(self) -> list[tuple[str, str]]:
        return [r for b in self.batches for r in b]


async def until(check: Callable[[], Awaitable[bool] | bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def poller(
    client: aioredis.Redis,
    r: EventSourceRoute,
    invoker: FakeInvoker,
    owner: str = "p1",
    lease: float = 1.0,
) -> StreamPoller:
    return StreamPoller(r, client, invoker, Targets(client, None), owner, lease)  # type: ignore[arg-type]


async def test_records_go_to_the_shard_their_key_hashes_to(client: aioredis.Redis) -> None:
    stream = Stream(client, PREFIX, 4)
    placed = await stream.put([(f"k{i}", f"d{i}".encode()) for i in range(40)])
    for i, (shard, sequence) in enumerate(placed):
        hashed = int.from_bytes(hashlib.md5(f"k{i}".encode()).digest(), "big")
        assert shard == hashed * 4 // 2**128  # Kinesis's even split of the hash key space
        assert len(sequence) == 56
    counts = await stream.counts()
    assert sum(c.records for c in counts) == 40
    for shard in range(4):
        records = await stream.read(shard, START, 100)
        assert [r.data for r in records] == [
            f"d{i}".encode() for i, (s, _) in enumerate(placed) if s == shard
        ]
        assert counts[shard].newest_sequence_number == (records[-1].sequence if records else "")


async def test_positions_and_declarations(client: aioredis.Redis) -> None:
    stream = Stream(client, PREFIX, 1)
    assert await stream.latest(0) == START
    await stream.put([("k", b"old")])
    await asyncio.sleep(0.01)  # arrival times are in milliseconds
    cut = time.time()
    await asyncio.sleep(0.01)
    await stream.put([("k", b"new")])
    assert [r.data for r in await stream.read(0, await stream.before(0, cut), 10)] == [b"new"]
    assert await stream.read(0, await stream.latest(0), 10) == []
    assert await declared(client, PREFIX) is None
    await declare(client, PREFIX, 3, 48)
    found = await declared(client, PREFIX)
    assert found is not None and (found.shards, found.retention_ms) == (3, 48 * 3600 * 1000)


@pytest.mark.parametrize("factor", [1, 5])
async def test_every_record_once_and_each_keys_in_order(
    client: aioredis.Redis, factor: int
) -> None:
    stream = Stream(client, PREFIX, 4)
    sent = [(f"key-{i % 10}", str(i)) for i in range(2000)]
    await stream.put([(k, d.encode()) for k, d in sent])
    function = Recorder()
    invoker = FakeInvoker(("default", "fn"), answer=function)
    task = asyncio.create_task(poller(client, route(parallelization_factor=factor), invoker).run())
    try:
        await until(lambda: len(function.delivered()) >= 2000, timeout=60)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    delivered = function.delivered()
    assert sorted(delivered, key=lambda r: int(r[1])) == sent  # each once
    by_key: dict[str, list[int]] = defaultdict(list)
    for key, data in delivered:
        by_key[key].append(int(data))
    assert all(values == sorted(values) for values in by_key.values())
    if factor > 1:  # lanes: batches hold some keys of a shard, not all
        assert max(len({k for k, _ in b}) for b in function.batches) < 10


async def test_bisection_isolates_a_poison_record_and_reports_it(client: aioredis.Redis) -> None:
    stream = Stream(client, PREFIX, 1)
    await stream.put([("k", f"r{i}".encode()) for i in range(8)])
    poison = (await stream.read(0, START, 8))[5]

    def fail(records: list[dict[str, Any]]) -> str | None:
        seqs = {r["kinesis"]["sequenceNumber"] for r in records}
        return "Unhandled" if poison.sequence in seqs else None

    function = Recorder(fail)
    invoker = FakeInvoker(("default", "fn"), answer=function)
    failures = Target("queue", "000000000000", "failed", "default")
    r = route(1, bisect=True, maximum_retry_attempts=1, on_failure=failures)
    task = asyncio.create_task(poller(client, r, invoker).run())
    dlq = "klambda:queue:default:failed"
    try:
        await until(lambda: client.xlen(dlq))
        await until(lambda: ("k", "r7") in function.delivered())
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    ((_, fields),) = await client.xrange(dlq)
    record = json.loads(fields[b"body"])
    info = record["KinesisBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (
        poison.sequence,
        poison.sequence,
        1,
    )  # bisected down to the one poison record
    assert info["shardId"] == "shardId-000000000000" and info["streamArn"] == ARN
    assert record["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert record["requestContext"]["approximateInvokeCount"] >= 2
    assert record["responseContext"]["functionError"] == "Unhandled"
    assert record["version"] == "1.0" and record["timestamp"].endswith("Z")
    good = [d for _, d in function.delivered() if d != "r5"]
    assert sorted(set(good)) == [f"r{i}" for i in range(8) if i != 5]


async def test_a_restarted_poller_resumes_from_its_checkpoint(client: aioredis.Redis) -> None:
    stream = Stream(client, PREFIX, 2)
    await stream.put([(f"k{i}", f"a{i}".encode()) for i in range(50)])
    function = Recorder()
    invoker = FakeInvoker(("default", "fn"), answer=function)
    first = asyncio.create_task(poller(client, route(2), invoker).run())
    await until(lambda: len(function.delivered()) == 50)
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    await stream.put([(f"k{i}", f"b{i}".encode()) for i in range(20)])
    second = asyncio.create_task(poller(client, route(2), invoker, owner="p2").run())
    try:
        await until(lambda: len(function.delivered()) == 70)
        await asyncio.sleep(0.5)
    finally:
        second.cancel()
        await asyncio.gather(second, return_exceptions=True)
    assert len(function.delivered()) == 70  # nothing again


async def test_two_pollers_split_the_shards_and_one_takes_over(client: aioredis.Redis) -> None:
    function = Recorder()
    invoker = FakeInvoker(("default", "fn"), answer=function)
    a, b = poller(client, route(4), invoker, "a"), poller(client, route(4), invoker, "b")
    tasks = {p: asyncio.create_task(p.run()) for p in (a, b)}
    try:
        await until(lambda: len(a.workers) == 2 and len(b.workers) == 2)
        assert set(a.workers).isdisjoint(b.workers)

        async def gone() -> None:  # as a killed process: its leases just expire
            pass

        a.leases.release = lambda shard: gone()  # type: ignore[method-assign]
        a.leases.leave = gone  # type: ignore[method-assign]
        tasks[a].cancel()
        await asyncio.gather(tasks[a], return_exceptions=True)
        await until(lambda: len(b.workers) == 4, timeout=10)  # within a few lease periods
        stream = Stream(client, PREFIX, 4)
        await stream.put([(f"k{i}", str(i).encode()) for i in range(40)])
        await until(lambda: len(function.delivered()) == 40)
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)


@pytest.mark.parametrize("position", ["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"])
async def test_starting_positions(client: aioredis.Redis, position: str) -> None:
    stream = Stream(client, PREFIX, 1)
    await stream.put([("k", b"before")])
    await asyncio.sleep(0.01)
    cut = time.time()
    await asyncio.sleep(0.01)
    await stream.put([("k", b"at")])
    function = Recorder()
    invoker = FakeInvoker(("default", "fn"), answer=function)
    r = route(1, starting_position=position, starting_timestamp=cut)
    task = asyncio.create_task(poller(client, r, invoker).run())
    try:
        checkpoints = "klambda:esm:default:clicks-to-fn:u-1:checkpoints"
        await until(lambda: client.hexists(checkpoints, "0"))  # it has taken its position
        await stream.put([("k", b"after")])
        await until(lambda: ("k", "after") in function.delivered())
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    expected = {
        "TRIM_HORIZON": ["before", "at", "after"],
        "LATEST": ["after"],
        "AT_TIMESTAMP": ["at", "after"],
    }[position]
    assert [d for _, d in function.delivered()] == expected


async def test_a_poller_stops_when_asked_even_while_its_shards_wait_for_records(
    client: aioredis.Redis,
) -> None:
    """A gateway shutting down (or a mapping deleted) cancels the poller while its workers block
    on empty shards (XREAD BLOCK): the stop must not hang. It did with redis-py 8.0/8.1, whose
    cancelled blocking reads never returned."""
    rounds = random.Random(7)
    for _ in range(30):
        task = asyncio.create_task(poller(client, route(), FakeInvoker(("default", "fn"))).run())
        await asyncio.sleep(rounds.uniform(0.0, 0.06))
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=10)
        assert done, "the poller did not stop within 10 s of being cancelled"


class Counting:
    """A tumbling-window function: counts its window's records in the state it returns, and
    notes every final invocation's state."""

    def __init__(self, answer_state: bool = True) -> None:
        self.finals: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.answer_state = answer_state

    async def __call__(self, invocation: Invocation) -> InvokeResult:
        event = json.loads(invocation.payload)
        self.events.append(event)
        if event["isFinalInvokeForWindow"]:
            self.finals.append(event)
            return ok(invocation, b"{}")
        state = {"count": event["state"].get("count", 0) + len(event["Records"])}
        body = {"state": state, "batchItemFailures": []} if self.answer_state else {}
        return ok(invocation, json.dumps(body).encode())

    def counted(self) -> int:
        return sum(f["state"].get("count", 0) for f in self.finals)


async def test_a_tumbling_window_carries_its_state_to_a_final_invocation(
    client: aioredis.Redis,
) -> None:
    stream = Stream(client, PREFIX, 1)
    await stream.put([("k", f"r{i}".encode()) for i in range(7)])
    function = Counting()
    invoker = FakeInvoker(("default", "fn"), answer=function)
    r = route(1, batch_size=3, tumbling_window=2)
    task = asyncio.create_task(poller(client, r, invoker).run())
    try:
        await until(lambda: function.counted() == 7, timeout=15)
        await stream.put([("k", b"later")])
        await until(lambda: function.counted() == 8, timeout=15)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    final = function.finals[0]
    assert final["Records"] == [] and final["isWindowTerminatedEarly"] is False
    start = datetime.fromisoformat(final["window"]["start"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(final["window"]["end"].replace("Z", "+00:00"))
    assert (end - start).total_seconds() == 2 and final["shardId"] == "shardId-000000000000"
    batches = [e for e in function.events if not e["isFinalInvokeForWindow"]]
    assert all(len(b["Records"]) <= 3 for b in batches)  # batchSize, never across windows
    assert all(b["window"] == final["window"] for b in batches[:1])
    assert function.finals[-1]["state"] == {"count": 1}  # the later window started afresh


async def test_a_window_goes_on_with_its_state_after_a_restart(client: aioredis.Redis) -> None:
    stream = Stream(client, PREFIX, 1)
    await stream.put([("k", f"r{i}".encode()) for i in range(4)])
    function = Counting()
    invoker = FakeInvoker(("default", "fn"), answer=function)
    r = route(1, batch_size=2, tumbling_window=900)  # a window longer than the test
    first = asyncio.create_task(poller(client, r, invoker).run())
    try:
        await until(lambda: sum(len(e["Records"]) for e in function.events) == 4)
    finally:
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
    await stream.put([("k", b"r4")])
    second = asyncio.create_task(poller(client, r, invoker, owner="p2").run())
    try:
        await until(lambda: sum(len(e["Records"]) for e in function.events) == 5)
    finally:
        second.cancel()
        await asyncio.gather(second, return_exceptions=True)
    assert function.events[-1]["state"] == {"count": 4}  # the stored state, not a fresh one


async def test_a_window_response_without_state_fails_the_batch(client: aioredis.Redis) -> None:
    stream = Stream(client, PREFIX, 1)
    await stream.put([("k", b"r0")])
    function = Counting(answer_state=False)
    invoker = FakeInvoker(("default", "fn"), answer=function)
    failures = Target("queue", "000000000000", "failed", "default")
    r = route(1, tumbling_window=900, maximum_retry_attempts=1, on_failure=failures)
    task = asyncio.create_task(poller(client, r, invoker).run())
    try:
        await until(lambda: client.xlen("klambda:queue:default:failed"))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert len(function.events) == 2  # the first try and one retry, then given up


async def test_a_state_past_one_megabyte_ends_the_window_early(client: aioredis.Redis) -> None:
    stream = Stream(client, PREFIX, 1)
    await stream.put([("k", f"r{i}".encode()) for i in range(2)])
    seen: list[dict[str, Any]] = []

    async def bloat(invocation: Invocation) -> InvokeResult:
        event = json.loads(invocation.payload)
        seen.append(event)
        return ok(invocation, json.dumps({"state": {"blob": "x" * 1_100_000}}).encode())

    invoker = FakeInvoker(("default", "fn"), answer=bloat)
    task = asyncio.create_task(
        poller(client, route(1, batch_size=1, tumbling_window=900), invoker).run()
    )
    try:
        await until(lambda: len(seen) >= 3)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    first, early, second = seen[:3]
    assert first["Records"] and not first["isFinalInvokeForWindow"]
    assert early["Records"] == [] and early["isFinalInvokeForWindow"]
    assert early["isWindowTerminatedEarly"] and len(early["state"]["blob"]) == 1_100_000
    assert second["state"] == {} and second["window"] == first["window"]  # same window, afresh
