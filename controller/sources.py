"""The Queue and Stream reconciler: whether each works as declared, and what it holds.

Their problems are pure (``event_sources.queue_problem``); their counts come from Redis through
a ``SourceStats`` port that the caller wires in (the local platform, or an operator given a
Redis URL). With a port, each source is reconciled again every ``period`` seconds so its
status follows what it holds; without one, statuses say only whether it is ready.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Protocol, TypeVar

from klambda.api.arn import account_for, queue_arn, stream_arn
from klambda.api.event_sources import intake_of, queue_problem
from klambda.api.routes import QueueCounts, ShardCounts
from klambda.controller import status as status_mod
from klambda.controller.settings import RouteSink
from klambda.controller.store import Store

log = logging.getLogger(__name__)

STATS_PERIOD = 5.0
T = TypeVar("T")


class SourceStats(Protocol):
    """Queues and streams in Redis: their declarations (what producers read: a stream's
    shards) and what they hold now (read by the queue engine)."""

    async def declare_stream(
        self, namespace: str, name: str, shards: int, retention_hours: int
    ) -> None: ...

    async def queue_counts(self, namespace: str, name: str, fifo: bool) -> QueueCounts: ...

    async def last_fired(self, mark_key: str) -> int | None:
        """A schedule's last firing handed over (epoch ms), None when it has not fired."""
        ...

    async def stream_counts(self, namespace: str, name: str, shards: int) -> list[ShardCounts]: ...


def shard_ids(shards: int) -> list[str]:
    """Kinesis's shard ids: shardId-000000000000, shardId-000000000001, ..."""
    return [f"shardId-{i:012d}" for i in range(shards)]


class SourceReconciler:
    def __init__(
        self,
        store: Store,
        region: str,
        stats: SourceStats | None = None,
        period: float = STATS_PERIOD,
        routes: RouteSink | None = None,
    ) -> None:
        """``routes``: where producers' view of each source goes (the local gateway's
        table; on Kubernetes gateways build their own)."""
        self.store = store
        self.routes = routes
        self.region = region
        self.stats = stats
        self.period = period
        self._unreadable: set[tuple[str, str, str]] = set()

    async def reconcile(self, kind: str, namespace: str, name: str) -> float | None:
        """Writes the source's status; returns when to look again (None: on change only)."""
        obj = self.store.find(kind, namespace, name)
        if obj is None:
            if self.routes is not None:
                self.routes.withdraw_intake(kind, namespace, name)
            return None
        if self.routes is not None:
            self.routes.publish_intake(intake_of(obj, self.region))
        account = account_for(namespace)
        if kind == "Queue":
            redrive = obj.spec.redrive_policy
            dead = (
                self.store.find("Queue", namespace, redrive.dead_letter_queue) if redrive else None
            )
            counts = await self._read(obj.key, self._queue_counts(namespace, name, obj.spec.fifo))
            status = status_mod.queue_status(
                obj, queue_arn(self.region, account, name), queue_problem(obj, dead), counts
            )
        else:
            ids = shard_ids(obj.spec.shards)
            await self._read(
                obj.key,
                self._declare(namespace, name, obj.spec.shards, obj.spec.retention_hours),
            )
            shard_counts = await self._read(obj.key, self._stream_counts(namespace, name, len(ids)))
            status = status_mod.stream_status(
                obj, stream_arn(self.region, account, name), ids, shard_counts
            )
        await self.store.set_status(obj, status)
        return self.period if self.stats is not None else None

    async def _queue_counts(self, namespace: str, name: str, fifo: bool) -> QueueCounts | None:
        return await self.stats.queue_counts(namespace, name, fifo) if self.stats else None

    async def _stream_counts(
        self, namespace: str, name: str, shards: int
    ) -> list[ShardCounts] | None:
        return await self.stats.stream_counts(namespace, name, shards) if self.stats else None

    async def _declare(self, namespace: str, name: str, shards: int, hours: int) -> bool:
        if self.stats is not None:
            await self.stats.declare_stream(namespace, name, shards, hours)
        return True

    async def _read(self, key: tuple[str, str, str], reading: Awaitable[T | None]) -> T | None:
        """The counts, or None (the status keeps its last ones) when Redis cannot be read;
        logged once per source until it can be read again."""
        try:
            found = await reading
        except Exception as e:  # the port's adapter raises its client's errors
            if key not in self._unreadable:
                log.warning("cannot read what %s %s/%s holds: %s", *key, e)
            self._unreadable.add(key)
            return None
        self._unreadable.discard(key)
        return found
