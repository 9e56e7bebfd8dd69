"""Delivery of asynchronous events: invoke, then retry, record or dead-letter, as Lambda does.

Dispatchers share the async queue through its consumer group. Each holds what it received
under a stable name (a restarted one resumes its own at once) and keeps it hidden from the
others with a heartbeat; a dispatcher that died stops beating, so its events are received
elsewhere ``VISIBILITY`` seconds later (at least once: an event cut off mid-invocation may run
twice). What happens after each attempt is ``async_policy``'s decision; every outcome leaves
the event in exactly one place (the queue, its delayed set, a destination, the dead-letter
queue), or dropped with a log line and a metric.

Fairness: one function may hold at most three quarters of the dispatcher's slots, so a flood
of its events (or a slow function) cannot hold back the others'; when its surplus fills the
buffer, some of it waits a second off the stream so that others' events are received.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import Counter
from dataclasses import replace

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from klambda.gateway import async_policy as policy
from klambda.gateway.async_outcomes import Outcomes, labels
from klambda.gateway.async_queue import GROUP, STREAM, AsyncEvent, ForgedEvent
from klambda.gateway.errors import LambdaError, ResourceNotFound, TooManyRequests
from klambda.gateway.invoking import Invocation, Invoker, InvokeResult
from klambda.gateway.metrics import Metrics
from klambda.gateway.queues import Message, Queue

log = logging.getLogger(__name__)

VISIBILITY = 30.0
"""Seconds before another dispatcher receives an event whose holder stopped beating."""
HEARTBEAT = 10.0
SURPLUS_WAIT = 1.0
RECLAIM_EVERY = 0.5
"""Seconds between looks for due retries and for events whose holder stopped beating."""
RETRY_BASE = 60.0
"""Seconds before the first retry of a function error (Lambda: about a minute)."""


class Dispatcher:
    """Delivers queued events through the gateway's invoker, ``concurrency`` at a time."""

    def __init__(
        self,
        client: aioredis.Redis,
        invoker: Invoker,
        concurrency: int = 16,
        consumer: str | None = None,
        key: bytes | None = None,
        retry_base: float = RETRY_BASE,
        metrics: Metrics | None = None,
        queue_limit: int = 0,
    ) -> None:
        """``consumer``: a stable name (default: the host's, a pod's name on Kubernetes);
        ``key``: what events are sealed with (entries without its seal are not run)."""
        self.client = client
        self.invoker = invoker
        self.key = key
        self.consumer = consumer or socket.gethostname()
        self.queue = Queue(client, STREAM, GROUP)
        self.concurrency = concurrency
        self._buffer = concurrency * 8
        """Events held at once: running, or received and waiting for a slot (the ones of a
        function at its share wait here while others' are received behind them)."""
        self.retry_base = retry_base
        self.metrics = metrics or invoker.metrics
        self.outcomes = Outcomes(self.queue, invoker.table, self.metrics, key, queue_limit)
        self._tasks: dict[asyncio.Task[None], Message] = {}
        self._per_function: Counter[tuple[str, str]] = Counter()
        self._waiting: list[tuple[Message, AsyncEvent]] = []
        """Received, not started yet (its function at its share of the slots)."""
        self._cut_off: list[Message] = []
        """Deliveries cancelled by shutdown, to queue again."""
        self._stopping = asyncio.Event()
        self._beat = 0.0
        self._reclaimed = 0.0
        self.delivered = 0
        self.refused = 0

    def stop(self) -> None:
        """Asks ``run`` to return after its current round (at most one blocking read, 0.5 s):
        deliveries in flight are then cut off and queued again. Stopping by a flag, not by
        cancelling the loop in the middle of a Redis command, where redis-py may swallow the
        cancellation and the loop would go on."""
        self._stopping.set()

    async def run(self) -> None:
        await self.queue.ensure()
        # Until the routes are known, "function not found" would drop events wrongly.
        await self.invoker.table.wait_synced()
        try:
            self._take(await self.queue.resume(self.consumer, 10_000))
            while not self._stopping.is_set():
                try:
                    await self._round()
                except ResponseError as e:
                    if "NOGROUP" not in str(e):
                        raise
                    log.warning("async dispatcher: consumer group gone (Redis lost its data?)")
                    await self.queue.ensure()
                except RedisError as e:
                    log.warning("async dispatcher: Redis unavailable (%s); retrying", e)
                    await asyncio.sleep(1.0)
                except Exception:  # one bad round must not stop deliveries
                    log.exception("async dispatcher round failed; retrying")
                    await asyncio.sleep(1.0)
        finally:
            await self._requeue_held()
            with contextlib.suppress(RedisError):
                await self.outcomes.flush()

    async def _round(self) -> None:
        await self.outcomes.flush()
        now = time.monotonic()
        if now - self._beat >= HEARTBEAT:
            self._beat = now
            await self.queue.extend(self.consumer, self._held_ids())
        reclaim = now - self._reclaimed >= RECLAIM_EVERY  # rare: a dispatcher died
        if reclaim:
            self._reclaimed = now
            await self.queue.release_due()
        room = self._buffer - len(self._tasks) - len(self._waiting)
        if room > 0:
            # waiting events start only between reads: then do not wait long for new ones
            block = 0.005 if self._waiting else 0.5
            received = await self.queue.receive(
                self.consumer, room, VISIBILITY, block=block, reclaim=reclaim
            )
            self._take(received)
        else:
            await asyncio.sleep(0.005)
        await self._start_fairly()

    def _held_ids(self) -> list[str]:
        return [m.id for m in self._tasks.values()] + [m.id for m, _ in self._waiting]

    def _take(self, messages: list[Message]) -> None:
        for message in messages:
            event = self._open(message)
            if event is not None:
                self._waiting.append((message, event))

    def _open(self, message: Message) -> AsyncEvent | None:
        try:
            return AsyncEvent.decode(message.fields["event"], self.key)
        except (ForgedEvent, ValueError, TypeError, KeyError) as e:
            # not written by a gateway (or unreadable): never run, never retried; said loudly
            log.error("async entry %s refused, not run: %s", message.id, e)
            task = asyncio.create_task(self._refuse(message))
            self._tasks[task] = message
            task.add_done_callback(self._done)
            self.refused += 1
            return None

    async def _refuse(self, message: Message) -> None:
        await self.queue.delete([message.id])

    async def _start_fairly(self) -> None:
        """Starts waiting events, oldest first, while slots are free, each function taking at
        most its share of the slots. Only when the buffer is full of events of functions at
        their share while slots are free do the newest of them wait a second off the stream,
        so that other functions' events can still be received."""
        share = self.concurrency - max(1, self.concurrency // 4)
        still: list[tuple[Message, AsyncEvent]] = []
        for message, event in self._waiting:
            fn = (event.namespace, event.function)
            if len(self._tasks) < self.concurrency and self._per_function[fn] < share:
                self._per_function[fn] += 1
                task = asyncio.create_task(self._deliver(message, event))
                self._tasks[task] = message
                task.add_done_callback(self._done)
            else:
                still.append((message, event))
        self._waiting = still
        free = self.concurrency - len(self._tasks)
        if free > 0 and len(self._tasks) + len(still) >= self._buffer:
            keep, surplus = still[:-free], still[-free:]
            for message, _ in surplus:
                await self.queue.delay(message.id, message.fields, SURPLUS_WAIT)
            self._waiting = keep

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("async delivery failed", exc_info=task.exception())

    async def _requeue_held(self) -> None:
        """On shutdown, events held go back to the stream as new entries, which any
        dispatcher receives at once (at least once: one cut off just after its invocation
        ended runs again)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        held = [(m.id, m.fields) for m in self._cut_off] + [
            (m.id, m.fields) for m, _ in self._waiting
        ]
        try:
            await self.queue.move(held)
        except RedisError as e:
            log.warning("async dispatcher: %d held events wait for reclaim (%s)", len(held), e)

    # ------------------------------------------------------------------ one event

    async def _deliver(self, message: Message, event: AsyncEvent) -> None:
        fn = (event.namespace, event.function)
        try:
            await self._attempt(message, event)
        except asyncio.CancelledError:
            self._cut_off.append(message)
            raise
        finally:
            self._per_function[fn] -= 1

    async def _attempt(self, message: Message, event: AsyncEvent) -> None:
        route = self.invoker.table.get(event.namespace, event.function)
        if route is None:
            await self.outcomes.drop(message, event, "the function no longer exists")
            return
        settings = route.async_settings_of(event.qualifier)
        age = time.time() - event.received
        self.metrics.async_event_age.labels(*labels(event)).observe(max(0.0, age))
        stop = policy.before_invoke(settings, age, event.lineage)
        if stop is not None:
            if stop.condition is policy.Condition.RECURSIVE_LOOP:
                self.metrics.recursive_dropped.labels(*labels(event)).inc()
                log.warning("async event %s stopped: a recursive loop", event.request_id)
            await self.outcomes.fail(message, event, route, settings, stop.condition, None)
            return
        result, response = await self._invoke(event)
        if result is not policy.Result.THROTTLED and result is not policy.Result.PLATFORM_ERROR:
            event = replace(event, invocations=event.invocations + 1)
        next_ = policy.after_invoke(
            settings,
            result,
            event.invocations,
            event.attempt,
            age,
            self.retry_base,
            reserved_zero=route.reserved_concurrency == 0,
        )
        if isinstance(next_, policy.Retry):
            if not next_.counts:
                event = replace(event, attempt=event.attempt + 1)
            await self.queue.delay(message.id, self.outcomes.fields(event), next_.delay)
        elif isinstance(next_, policy.Drop):
            await self.outcomes.drop(message, event, next_.reason)
        elif next_.condition is policy.Condition.SUCCESS:
            await self.outcomes.succeed(message, event, route, settings, response)
        else:
            await self.outcomes.fail(message, event, route, settings, next_.condition, response)

    async def _invoke(self, event: AsyncEvent) -> tuple[policy.Result, policy.Response | None]:
        invocation = Invocation(
            event.namespace,
            event.function,
            event.qualifier,
            event.payload.encode(),
            event.request_id,
            lineage=event.lineage,
        )
        try:
            result: InvokeResult = await self.invoker.invoke(invocation)
        except TooManyRequests:
            return policy.Result.THROTTLED, None
        except ResourceNotFound:
            return policy.Result.GONE, None
        except LambdaError as e:
            log.info("async event %s not delivered: %s", event.request_id, e.message)
            return policy.Result.PLATFORM_ERROR, None
        response = policy.Response(
            200, result.executed_version, result.function_error or None, result.payload
        )
        if result.function_error:
            log.info("async event %s: function error (%s)", event.request_id, result.error_type)
            return policy.Result.FUNCTION_ERROR, response
        self.delivered += 1
        return policy.Result.SUCCESS, response
