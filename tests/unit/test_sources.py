"""The Queue and Stream reconciler: readiness, ARNs and what each holds, from a stats port."""

from __future__ import annotations

from typing import Any

import pytest

from klambda.api.routes import QueueCounts, ShardCounts
from klambda.controller.sources import SourceReconciler, shard_ids
from klambda.controller.store import ObjectStore
from tests.unit.test_function_reconciler import queue


class Stats:
    """Counts as Redis would report them, or its failure."""

    def __init__(self) -> None:
        self.queue = QueueCounts(visible=3, in_flight=2, delayed=1, oldest_age=42.7)
        self.down = False

    async def declare_stream(
        self, namespace: str, name: str, shards: int, retention_hours: int
    ) -> None:
        if self.down:
            raise ConnectionError("Redis is down")
        self.declared = (namespace, name, shards, retention_hours)

    async def queue_counts(self, namespace: str, name: str, fifo: bool) -> QueueCounts:
        if self.down:
            raise ConnectionError("Redis is down")
        return self.queue

    async def stream_counts(self, namespace: str, name: str, shards: int) -> list[ShardCounts]:
        if self.down:
            raise ConnectionError("Redis is down")
        return [ShardCounts(records=i * 10, newest_sequence_number=str(i)) for i in range(shards)]


def ready(obj: Any) -> tuple[str, str, str]:
    (cond,) = obj.status["conditions"]
    return cond["status"], cond["reason"], cond["message"]


async def test_a_queue_reports_what_it_holds_and_keeps_it_while_redis_is_down() -> None:
    store, stats = ObjectStore(), Stats()
    sources = SourceReconciler(store, "eu-west-1", stats, period=5.0)
    await store.apply(queue("jobs"))
    assert await sources.reconcile("Queue", "default", "jobs") == 5.0  # looked at again
    status = store.get("Queue", "default", "jobs").status
    assert status["queueArn"].startswith("arn:aws:sqs:eu-west-1:") and status["queueArn"].endswith(
        ":jobs"
    )
    assert (
        status["approximateNumberOfMessages"],
        status["approximateNumberOfMessagesNotVisible"],
        status["approximateNumberOfMessagesDelayed"],
        status["oldestMessageAge"],
    ) == (3, 2, 1, 42)
    assert ready(store.get("Queue", "default", "jobs"))[:2] == ("True", "QueueReady")
    stats.down = True
    await sources.reconcile("Queue", "default", "jobs")
    assert store.get("Queue", "default", "jobs").status["approximateNumberOfMessages"] == 3


@pytest.mark.parametrize(
    ("spec", "others", "expected"),
    [
        ({"fifo": True}, [], ("True", "QueueReady", "FIFO queue ready")),
        (
            {"redrivePolicy": {"deadLetterQueue": "dlq", "maxReceiveCount": 2}},
            [],
            ("False", "QueueNotFound", 'dead-letter queue "dlq" not found'),
        ),
        (
            {"redrivePolicy": {"deadLetterQueue": "dlq", "maxReceiveCount": 2}},
            [queue("dlq")],
            ("True", "QueueReady", "queue ready"),
        ),
    ],
)
async def test_queue_readiness(spec: dict[str, Any], others: list[Any], expected: Any) -> None:
    store = ObjectStore()
    for other in others:
        await store.apply(other)
    await store.apply(queue("jobs", **spec))
    assert await SourceReconciler(store, "us-east-1").reconcile("Queue", "default", "jobs") is None
    assert ready(store.get("Queue", "default", "jobs")) == expected


async def test_a_stream_reports_its_shards() -> None:
    store = ObjectStore()
    await store.apply(queue("clicks", kind="Stream", shards=3))
    stats = Stats()
    await SourceReconciler(store, "us-east-1", stats).reconcile("Stream", "default", "clicks")
    assert stats.declared == ("default", "clicks", 3, 24)  # producers find the shards
    status = store.get("Stream", "default", "clicks").status
    assert status["streamArn"].endswith(":stream/clicks")
    assert (
        [s["shardId"] for s in status["shards"]]
        == shard_ids(3)
        == [
            "shardId-000000000000",
            "shardId-000000000001",
            "shardId-000000000002",
        ]
    )
    assert status["records"] == 30
    assert ready(store.get("Stream", "default", "clicks"))[:2] == ("True", "StreamReady")
