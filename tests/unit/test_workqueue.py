"""The controller's work queue, and what each change queues."""

from __future__ import annotations

import asyncio
from pathlib import Path

from klambda.api.objects import parse_object
from klambda.controller.controller import Controller
from klambda.controller.settings import ControllerSettings
from klambda.controller.store import ObjectStore
from klambda.controller.workqueue import WorkQueue
from tests.unit.test_function_reconciler import FakePlatform, Routes, function, part, queue


async def drain(q: WorkQueue[str]) -> list[str]:
    out = []
    while q.waiting():
        key = await q.get()
        out.append(key)
        q.done(key)
    return out


async def test_a_key_waits_once_however_many_changes_name_it() -> None:
    q: WorkQueue[str] = WorkQueue()
    for key in ("a", "b", "a", "a", "c", "b"):
        q.add(key)
    assert await drain(q) == ["a", "b", "c"]


async def test_a_key_added_while_handled_goes_round_again_after_but_never_twice_at_once() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    key = await q.get()
    q.add("a")  # changed while being handled
    assert q.waiting() == 0  # not handed to a second worker meanwhile
    q.done(key)
    assert await drain(q) == ["a"]  # handled again, once
    await asyncio.wait_for(q.wait_idle(), 1)


async def test_failures_back_off_per_key_and_forget_resets() -> None:
    q: WorkQueue[str] = WorkQueue(base_delay=0.5, max_delay=4.0)
    assert [q.retry("a") for _ in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert q.retry("b") == 0.5  # another key is not slowed
    q.forget("a")
    assert q.retry("a") == 0.5
    q.close()


async def test_add_after_keeps_the_earliest_time() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add_after("a", 10.0)
    q.add_after("a", 0.05)
    q.add_after("a", 5.0)
    assert q.waiting() == 0
    key = await asyncio.wait_for(q.get(), 1.0)  # the 0.05 s one, not 5 or 10
    assert key == "a"
    q.done(key)
    q.close()


async def test_each_change_queues_the_objects_it_concerns() -> None:
    store = ObjectStore()
    controller = Controller(
        store, FakePlatform(), Routes(), ControllerSettings(data_dir=Path("/nonexistent"))
    )
    q = controller.queue

    async def queued() -> set[tuple[str, str, str]]:
        out = set()
        while q.waiting():
            key = await q.get()
            out.add(key)
            q.done(key)
        return out

    await store.apply(function())
    await store.apply(function("other"))
    assert await queued() == {("Function", "default", "fn"), ("Function", "default", "other")}
    await store.apply(part("Version", "v1"))
    await store.apply(part("Alias", "live", functionVersion="1"))
    assert await queued() == {("Function", "default", "fn")}  # their function, only
    await store.apply(part("EventSourceMapping", "m", source={"queue": "jobs"}))
    assert await queued() == {("EventSourceMapping", "default", "m")}
    await store.apply(queue("jobs", visibilityTimeout=60))  # the mappings that read it too
    assert await queued() == {("Queue", "default", "jobs"), ("EventSourceMapping", "default", "m")}
    await store.apply(queue("dlq"))
    await store.apply(queue("jobs", redrivePolicy={"deadLetterQueue": "dlq", "maxReceiveCount": 3}))
    assert await queued() == {
        ("Queue", "default", "dlq"),
        ("Queue", "default", "jobs"),
        ("EventSourceMapping", "default", "m"),
    }
    await store.apply(queue("dlq", visibilityTimeout=5))  # the queues it is the DLQ of too
    assert await queued() == {("Queue", "default", "dlq"), ("Queue", "default", "jobs")}
    await store.apply(queue("events", kind="Stream", shards=2))
    assert await queued() == {("Stream", "default", "events")}
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "b"}}
    await store.apply(parse_object(cm))
    assert await queued() == {("Function", "default", "fn"), ("Function", "default", "other")}
    controller.shim_changed(("default", "other", "$LATEST"))
    assert await queued() == {("Function", "default", "other")}
    await store.set_status(store.get("Function", "default", "fn"), {"state": "Active"})
    assert await queued() == set()  # a status write is the controller's own output
    await store.delete("Function", "default", "fn")
    assert await queued() == {("Function", "default", "fn")}
