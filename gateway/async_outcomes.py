"""What becomes of an async event once decided: a record to a destination, the dead-letter
queue, or dropped (logged and counted). Each takes the event off the async queue in the same
step as it puts it elsewhere (``queues.Queue.move``): it is always in exactly one place.

A function destination gets the record as a new async event (its namespace's to count); one in
another namespace must exist and allow the source function in its policy.
"""

from __future__ import annotations

import json
import logging
import time
import uuid

from redis.exceptions import RedisError

from klambda.api.async_settings import AsyncSettings, Target
from klambda.api.policy import Ask, Caller, evaluate, parse_policy
from klambda.api.routes import FunctionRoute, queue_key, stream_key
from klambda.gateway import async_policy as policy
from klambda.gateway.async_queue import QUEUED, AsyncEvent
from klambda.gateway.metrics import Metrics
from klambda.gateway.queues import Message, Queue, Quota
from klambda.gateway.routing import RoutingTable
from klambda.gateway.streams import declared

log = logging.getLogger(__name__)

_DESTINATION_IDENTITY = parse_policy(
    {"Statement": [{"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": "*"}]},
    resource_policy=False,
)


def labels(event: AsyncEvent) -> tuple[str, str]:
    return event.namespace, event.function


class Outcomes:
    def __init__(
        self,
        queue: Queue,
        table: RoutingTable,
        metrics: Metrics,
        key: bytes | None,
        queue_limit: int,
    ) -> None:
        self.queue = queue
        self.table = table
        self.metrics = metrics
        self.key = key
        self.queue_limit = queue_limit
        self.finished: dict[str, list[str]] = {}
        """Ids of events done with (by namespace), deleted at the next ``flush``."""

    async def succeed(
        self,
        message: Message,
        event: AsyncEvent,
        route: FunctionRoute,
        settings: AsyncSettings,
        response: policy.Response | None,
    ) -> None:
        target = settings.on_success
        if target is not None:
            doc = self._record(event, route, policy.Condition.SUCCESS, response)
            if await self._send_record(message, event, route, target, doc):
                return
        self.finished.setdefault(event.namespace, []).append(message.id)

    async def flush(self) -> None:
        """Deletes the events finished since the last flush, one call per namespace: an event
        that succeeded is done with in a batch (were the dispatcher to die first, it would be
        delivered again: at least once)."""
        finished, self.finished = self.finished, {}
        for namespace, ids in list(finished.items()):
            try:
                await self.queue.delete(ids, Quota(QUEUED, namespace, self.queue_limit))
            except RedisError:  # kept for the next flush (Redis is back by then, or not)
                for again, more in finished.items():
                    self.finished.setdefault(again, []).extend(more)
                raise
            del finished[namespace]

    async def fail(
        self,
        message: Message,
        event: AsyncEvent,
        route: FunctionRoute,
        settings: AsyncSettings,
        condition: policy.Condition,
        response: policy.Response | None,
    ) -> None:
        where, target = policy.failure_target(settings)
        if where == "destination" and target is not None:
            doc = self._record(event, route, condition, response)
            if await self._send_record(message, event, route, target, doc):
                return
            target = settings.dead_letter  # the destination failed: the DLQ, if any
        elif where == "dead-letter":
            target = settings.dead_letter
        if target is not None:
            attributes = policy.dead_letter_attributes(event.request_id, condition, response)
            fields = {
                "body": event.payload,
                "attributes": json.dumps(attributes),
                "lineage": str(event.lineage + 1),
            }
            try:
                await self.queue.move(
                    [(message.id, fields)],
                    Queue(self.queue.client, self._queue_key(event, target)),
                    leaving=self._quota(event),
                )
                return
            except RedisError as e:
                self.metrics.dead_letter_errors.labels(*labels(event)).inc()
                log.error("async event %s: dead-letter queue refused it: %s", event.request_id, e)
        await self.drop(message, event, str(condition))

    async def drop(self, message: Message, event: AsyncEvent, reason: str) -> None:
        """Given up on with nowhere to go: said in the log and counted, never silently."""
        log.warning(
            "async event %s of %s/%s dropped: %s",
            event.request_id,
            event.namespace,
            event.function,
            reason,
        )
        self.metrics.async_dropped.labels(*labels(event), reason).inc()
        await self.queue.delete([message.id], self._quota(event))

    async def _send_record(
        self,
        message: Message,
        event: AsyncEvent,
        route: FunctionRoute,
        target: Target,
        doc: dict[str, object],
    ) -> bool:
        """Delivers a record to ``target``, taking the event off the queue in the same step;
        False (counted, logged) when the target cannot take it."""
        body = json.dumps(doc)
        try:
            if target.kind == "queue":
                fields = {"body": body, "lineage": str(event.lineage + 1)}
                to = Queue(self.queue.client, self._queue_key(event, target))
                await self.queue.move([(message.id, fields)], to, leaving=self._quota(event))
                return True
            if target.kind == "stream":  # put, then deleted: at least once, not atomically
                prefix = stream_key(target.namespace or event.namespace, target.name)
                stream = await declared(self.queue.client, prefix)
                if stream is None:
                    raise DestinationRefused(f"no stream {target.arn}")
                await stream.put([(event.request_id, body.encode())])
                await self.queue.delete([message.id], self._quota(event))
                return True
            namespace = self._function_namespace(event, route, target)
            record_event = AsyncEvent(
                str(uuid.uuid4()),
                namespace,
                target.name,
                target.qualifier,
                body,
                time.time(),
                lineage=event.lineage + 1,
            )
            await self.queue.move(
                [(message.id, self.fields(record_event))],
                leaving=self._quota(event),
                entering=self._quota(record_event),
            )
            return True
        except (RedisError, DestinationRefused) as e:
            self.metrics.destination_failures.labels(*labels(event)).inc()
            log.error("async event %s: destination %s failed: %s", event.request_id, target.arn, e)
            return False

    def _function_namespace(self, event: AsyncEvent, route: FunctionRoute, target: Target) -> str:
        """The namespace of a function destination, checked: another namespace's function must
        exist and allow the source in its policy."""
        namespace = target.namespace or self.table.namespace_of(target.account)
        if namespace is None:
            raise DestinationRefused(f"no function {target.arn}")
        if namespace == event.namespace:
            return namespace
        other = self.table.get(namespace, target.name)
        if other is None:
            raise DestinationRefused(f"no function {target.arn}")
        ask = Ask(
            Caller(route.arn, route.account, event.namespace),
            "lambda:InvokeFunction",
            target.arn,
            other.account,
            {"aws:SourceArn": route.arn, "aws:SourceAccount": route.account},
            namespace,
        )
        decision = evaluate([_DESTINATION_IDENTITY], other.policy, ask)
        if not decision.allowed:
            raise DestinationRefused(f"{target.arn} does not allow {route.arn} ({decision.reason})")
        return namespace

    # ------------------------------------------------------------------ helpers

    def _record(
        self,
        event: AsyncEvent,
        route: FunctionRoute,
        condition: policy.Condition,
        response: policy.Response | None,
    ) -> dict[str, object]:
        arn = f"{route.arn}:{event.qualifier or '$LATEST'}"
        return policy.record(
            event.request_id,
            arn,
            condition,
            event.invocations,
            event.payload,
            response,
            time.time(),
        )

    def fields(self, event: AsyncEvent) -> dict[str, str]:
        return {"event": event.encode(self.key)}

    def _quota(self, event: AsyncEvent) -> Quota:
        return Quota(QUEUED, event.namespace, self.queue_limit)

    @staticmethod
    def _queue_key(event: AsyncEvent, target: Target) -> str:
        return queue_key(target.namespace or event.namespace, target.name)


class DestinationRefused(Exception):
    """A function destination that does not exist or does not allow the source."""
