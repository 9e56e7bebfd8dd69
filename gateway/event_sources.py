"""Event source mappings: queues on Redis with SQS semantics, polled into functions in batches.

A queue is a Redis stream (``klambda:queue:<namespace>:<name>``; producers ``XADD`` a ``body``
field). Every mapping of a queue reads it through one consumer group, so messages are shared, as
SQS consumers share them. The group's pending-entries list is the in-flight set; a message not
deleted within the visibility timeout is received again (``XAUTOCLAIM`` with that minimum idle
time), and its delivery counter is SQS's ApproximateReceiveCount. After ``maxReceiveCount``
receives a message moves to the dead-letter queue instead of reaching the function. A batch is
deleted when the function succeeds; with ReportBatchItemFailures only the messages it names
stay. Function errors, throttles and platform errors delete nothing: the messages come back
after the visibility timeout, as with Lambda. Nothing accepted is dropped.

The record shapes and the response rules are pure functions in ``sqs_records``; FIFO queues
(``fifo_queues``) are read the same way, one batch of a message group at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Coroutine
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from klambda.api.event_filter import parse_filters
from klambda.api.routes import EventSourceRoute
from klambda.gateway import queues
from klambda.gateway.async_policy import MAX_LINEAGE
from klambda.gateway.errors import LambdaError
from klambda.gateway.fifo_queues import queue_for
from klambda.gateway.invoking import Invocation, Invoker
from klambda.gateway.queue_scaler import QueueScaler, Slots
from klambda.gateway.routing import RoutingTable
from klambda.gateway.sqs_records import (
    Message,
    failed_items,
    fifo_kept,
    sqs_event,
    sqs_event_json,
    to_dead_letter,
)
from klambda.gateway.stream_poller import LEASE_SECONDS, StreamPoller
from klambda.gateway.targets import Targets

log = logging.getLogger(__name__)

GROUP = "klambda"
IDLE_BLOCK_MS = 1000
ERROR_PAUSE = 1.0
FIRST_RECEIVE_MEMORY = 10_000
MAINTAIN_EVERY = 1.0
SLOT_WAIT = 1.0
RECLAIM_EVERY = 1.0
"""Seconds between looks for messages whose visibility timeout ran out (XAUTOCLAIM scans the
pending list): they come back within a second of it, and a busy poller skips the scan."""


class QueuePoller:
    """Delivers one mapping's queue: receive a batch, invoke, delete what succeeded."""

    def __init__(
        self,
        route: EventSourceRoute,
        client: aioredis.Redis,
        invoker: Invoker,
        index: int = 0,
        slots: Slots | None = None,
    ) -> None:
        assert route.queue is not None
        self.route = route
        self.source = route.queue
        fifo = route.queue.fifo
        self.queue = queue_for(client, route.queue.key, fifo)
        dead_letter_key = route.queue.dead_letter_key
        self.dead_letter = queue_for(client, dead_letter_key, fifo) if dead_letter_key else None
        self.invoker = invoker
        self.index = index
        self.slots = slots
        """The mapping's batch slots (the scaler's limit); None: this poller is not limited."""
        self.consumer = f"{socket.gethostname()}-{route.name}-{index}"
        self.filters = parse_filters(list(route.filters), source="sqs")
        self.labels = (route.namespace, route.name)
        self._first_receive: dict[str, int] = {}
        self._maintained = 0.0
        self._reclaimed = -RECLAIM_EVERY

    async def run(self) -> None:
        """Polls until cancelled, or (scaled down) until its index is above the target; a
        failure pauses it, never ends it (messages wait in Redis)."""
        try:
            while True:
                try:
                    await self.queue.ensure()
                    while True:
                        if self.slots is None or await self.slots.hold():
                            await self.poll_once()
                        elif self.index >= self.slots.limit:
                            return  # scaled down: this replica needs fewer pollers
                        else:  # every slot below the target is another poller's
                            await asyncio.sleep(SLOT_WAIT)
                except (RedisError, OSError) as e:
                    log.warning("queue %s: %s; retrying", self.source.key, e)
                except Exception:
                    log.exception("queue %s: poller failed; retrying", self.source.key)
                await asyncio.sleep(ERROR_PAUSE)
        finally:
            if self.slots is not None:
                with contextlib.suppress(RedisError, OSError):
                    await self.slots.let_go()

    async def poll_once(self) -> int:
        """Receives and delivers one batch; returns how many messages it held."""
        await self._maintain()
        messages = await self._receive()
        if not messages:
            return 0
        dead = to_dead_letter(messages, self.source.max_receive_count)
        looping = [m for m in messages if m not in dead and self._looping(m)]
        if looping:
            await self._stop_loop(looping)
        if dead:
            await self._redrive(dead)
        rest = [m for m in messages if m not in dead and m not in looping]
        if rest and self.filters.patterns:
            rest = await self._filter(rest)
        if rest:
            await self._deliver(rest)
        return len(messages)

    async def _maintain(self) -> None:
        """Once a second (the first poller of an unscaled mapping; the scaler's leader does it
        otherwise): delayed messages whose time has come go on the queue, messages past the
        retention period go."""
        now = time.monotonic()
        if self.slots is not None or self.index != 0 or now - self._maintained < MAINTAIN_EVERY:
            return
        self._maintained = now
        await self.queue.release_due()
        await self.queue.expire(self.source.retention)

    async def _filter(self, messages: list[Message]) -> list[Message]:
        """The messages a filter matches; the others are deleted (Lambda deletes them)."""
        records = sqs_event(self.route, messages)["Records"]
        keep = [m for m, r in zip(messages, records, strict=True) if self.filters.matches_sqs(r)]
        dropped = [m.message_id for m in messages if m not in keep]
        if dropped:
            await self.queue.delete(dropped)
            self.invoker.metrics.esm_records.labels(*self.labels, "filtered").inc(len(dropped))
        return keep

    async def _receive(self) -> list[Message]:
        """Up to batch_size messages: reclaimed ones first, then new ones, waiting up to a
        second for the first and then up to the batching window for the batch to fill."""
        r = self.route
        received: list[queues.Message] = []
        window_ends = time.monotonic() + r.batching_window
        while len(received) < r.batch_size:
            wait = window_ends - time.monotonic() if received else IDLE_BLOCK_MS / 1000
            if wait <= 0:
                break
            now = time.monotonic()
            reclaim = now - self._reclaimed >= RECLAIM_EVERY
            if reclaim:
                self._reclaimed = now
            more = await self.queue.receive(
                self.consumer,
                r.batch_size - len(received),
                self.source.visibility_timeout,
                block=wait,
                reclaim=reclaim,
            )
            received += more
            if not received:
                break  # a quiet second: go round, reclaiming again
        return self._messages(received)

    def _messages(self, received: list[queues.Message]) -> list[Message]:
        now_ms = int(time.time() * 1000)
        if len(self._first_receive) > FIRST_RECEIVE_MEMORY:  # approximate, as SQS says
            self._first_receive.clear()
        out = []
        for m in received:
            first = self._first_receive.setdefault(m.id, now_ms)
            body = m.fields.get("body", "")
            attributes, lineage = _extras(m.fields)
            group, dedup = m.fields.get("group", ""), m.fields.get("dedup", "")
            out.append(
                Message(m.id, body, m.receive_count, first, attributes, lineage, group, dedup)
            )
        return out

    def _looping(self, m: Message) -> bool:
        fn = self.invoker.table.get(self.route.namespace, self.route.function)
        settings = fn.async_settings_of(self.route.qualifier) if fn else None
        allowed = settings is not None and settings.recursive_loop == "Allow"
        return m.lineage >= MAX_LINEAGE and not allowed

    async def _stop_loop(self, looping: list[Message]) -> None:
        """A message gone round ``MAX_LINEAGE`` times is not delivered (Lambda's loop
        detection): to the dead-letter queue, or dropped, logged and counted."""
        r = self.route
        self.invoker.metrics.recursive_dropped.labels(r.namespace, r.function).inc(len(looping))
        log.warning(
            "queue %s: %d message(s) stopped as a recursive loop", self.source.key, len(looping)
        )
        if self.dead_letter is not None:
            await self._redrive(looping)
            return
        self.invoker.metrics.async_dropped.labels(
            r.namespace, r.function, "RecursiveInvocationException"
        ).inc(len(looping))
        await self.queue.delete([m.message_id for m in looping])

    async def _redrive(self, dead: list[Message]) -> None:
        """Onto the dead-letter queue and off this one, atomically (the engine's move); on
        failure the messages stay where they were."""
        assert self.dead_letter is not None
        await self.queue.move([(m.message_id, _fields(m)) for m in dead], to=self.dead_letter)
        for m in dead:
            self._first_receive.pop(m.message_id, None)
        self.invoker.metrics.esm_records.labels(*self.labels, "dead-lettered").inc(len(dead))
        log.info("queue %s: %d message(s) to the dead-letter queue", self.source.key, len(dead))

    async def _deliver(self, messages: list[Message]) -> None:
        r = self.route
        payload = sqs_event_json(r, messages)
        lineage = max(m.lineage for m in messages)
        try:
            result = await self.invoker.invoke(
                Invocation(r.namespace, r.function, r.qualifier, payload, lineage=lineage)
            )
        except LambdaError as e:  # throttled or not ready: the messages come back later
            log.info("queue %s: batch not delivered: %s", self.source.key, e)
            return
        if result.function_error:
            return  # nothing deleted: received again after the visibility timeout
        ids = [m.message_id for m in messages]
        keep = failed_items(result.payload, ids) if r.report_failures else set()
        if keep and self.source.fifo:
            keep = fifo_kept(messages, keep)
        done = [i for i in ids if i not in keep]
        await self.queue.delete(done)
        self.invoker.metrics.esm_records.labels(*self.labels, "delivered").inc(len(done))
        for i in done:
            self._first_receive.pop(i, None)


def _extras(fields: dict[str, str]) -> tuple[dict[str, Any], int]:
    """A message's attributes and lineage, from the fields klambda writes beside ``body``."""
    try:
        attributes = json.loads(fields["attributes"]) if "attributes" in fields else {}
    except ValueError:
        attributes = {}
    lineage = fields.get("lineage", "0")
    return (attributes if isinstance(attributes, dict) else {}), int(
        lineage
    ) if lineage.isdigit() else 0


def _fields(m: Message) -> dict[str, str]:
    out = {"body": m.body}
    if m.attributes:
        out["attributes"] = json.dumps(m.attributes)
    if m.lineage:
        out["lineage"] = str(m.lineage)
    if m.group:  # a FIFO message keeps its group in the (FIFO) dead-letter queue
        out["group"] = m.group
        if m.deduplication_id:
            out["dedup"] = m.deduplication_id
    return out


class EventSourcePollers:
    """Keeps one poller per published mapping, restarting those whose settings change: queue
    pollers (one per batch in flight) and stream pollers (a share of the shards)."""

    def __init__(
        self,
        table: RoutingTable,
        client: aioredis.Redis,
        invoker: Invoker,
        targets: Targets,
        owner: str,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        self.table = table
        self.client = client
        self.invoker = invoker
        self.targets = targets
        self.owner = f"{owner}-{socket.gethostname()}-{os.getpid()}"
        """This process among the pollers sharing a stream's shards."""
        self.lease_seconds = lease_seconds
        self._running: dict[tuple[str, str], tuple[EventSourceRoute, list[asyncio.Task[None]]]] = {}

    async def run(self) -> None:
        try:
            while True:
                self.table.event_sources_changed.clear()
                self._sync()
                await self.table.event_sources_changed.wait()
        finally:
            await self._stop(list(self._running))

    def _sync(self) -> None:
        wanted = {(r.namespace, r.name): r for r in self.table.event_sources()}
        for key, (route, tasks) in list(self._running.items()):
            if wanted.get(key) != route:
                for task in tasks:
                    task.cancel()
                del self._running[key]
        for key, route in wanted.items():
            if key in self._running:
                continue
            if route.queue is not None:  # one poller per batch in flight, one consumer each
                scaler = QueueScaler(route, self.client, self.invoker, self.owner)
                tasks = [asyncio.create_task(scaler.run(self._queue_poller(route)))]
            else:
                poller = StreamPoller(
                    route, self.client, self.invoker, self.targets, self.owner, self.lease_seconds
                )
                tasks = [asyncio.create_task(poller.run(), name=f"esm-{key[0]}-{key[1]}")]
            self._running[key] = (route, tasks)

    def _queue_poller(
        self, route: EventSourceRoute
    ) -> Callable[[int, Slots], Coroutine[Any, Any, None]]:
        def poll(index: int, slots: Slots) -> Coroutine[Any, Any, None]:
            return QueuePoller(route, self.client, self.invoker, index, slots).run()

        return poll

    async def _stop(self, keys: list[tuple[str, str]]) -> None:
        tasks = [t for k in keys for t in self._running.pop(k)[1]]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
