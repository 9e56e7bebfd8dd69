"""Asynchronous invocations (``X-Amz-Invocation-Type: Event``): the event and its intake.

An accepted event is sealed (so only a gateway can make one) and sent to the async queue
(``queues.Queue`` on ``STREAM``) before the 202 goes out, counted against its namespace's
quota. ``async_dispatch`` delivers it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import asdict, dataclass, fields

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from klambda.api import defaults
from klambda.gateway.errors import ServiceError, TooManyRequests
from klambda.gateway.queues import Queue, QueueFull, Quota

log = logging.getLogger(__name__)

STREAM = "klambda:async:events"
QUEUED = "klambda:async:queued"
"""Hash: namespace -> its events accepted and not finished (queued, delayed or in flight)."""
QUEUE_LIMIT = defaults.ASYNC_QUEUE_LIMIT
"""Events one namespace may have waiting at once: one tenant's throttled flood (retried for up
to 6 h) must not fill the Redis every tenant's events live in."""
GROUP = "dispatchers"


@dataclass
class AsyncEvent:
    request_id: str
    namespace: str
    function: str
    qualifier: str | None
    payload: str
    received: float
    attempt: int = 0
    """Deliveries that did not run the function (throttled, platform errors)."""
    invocations: int = 0
    """Times the function ran it (retries of function errors included)."""
    lineage: int = 0
    """Hops through klambda before this one (async invocations, destinations, queues)."""

    def encode(self, key: bytes | None = None) -> str:
        """The event as stored, sealed with ``key`` (an HMAC over it): a process that can
        write to Redis but holds no key cannot make an entry the dispatcher will run."""
        body = json.dumps(asdict(self), sort_keys=True)
        if key is None:
            return body
        return json.dumps({"sealed": body, "mac": _mac(key, body)})

    @classmethod
    def decode(cls, raw: str | bytes, key: bytes | None = None) -> AsyncEvent:
        """The stored event; raises ForgedEvent when ``key`` is set and its seal is missing
        or wrong."""
        doc = json.loads(raw)
        if key is None:
            return cls._of(json.loads(doc["sealed"]) if "sealed" in doc else doc)
        body, mac = doc.get("sealed"), doc.get("mac")
        if not isinstance(body, str) or not isinstance(mac, str):
            raise ForgedEvent("the entry is not sealed")
        if not hmac.compare_digest(mac, _mac(key, body)):
            raise ForgedEvent("the entry's seal does not match")
        return cls._of(json.loads(body))

    @classmethod
    def _of(cls, doc: dict[str, object]) -> AsyncEvent:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in known})  # type: ignore[arg-type]


class ForgedEvent(ValueError):
    """A stream entry the platform did not write."""


def _mac(key: bytes, body: str) -> str:
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def async_key(platform_key: bytes) -> bytes:
    """The key async events are sealed with, derived from the platform key (Kubernetes: the
    Secret every gateway reads, so any gateway opens any gateway's events, across restarts)."""
    return hmac.new(platform_key, b"klambda async events v1", hashlib.sha256).digest()


class AsyncQueue:
    def __init__(
        self, client: aioredis.Redis, limit: int = QUEUE_LIMIT, key: bytes | None = None
    ) -> None:
        self.queue = Queue(client, STREAM, GROUP)
        self.limit = limit
        self.key = key

    def quota(self, namespace: str) -> Quota:
        return Quota(QUEUED, namespace, self.limit)

    async def enqueue(self, event: AsyncEvent, mark: tuple[str, int] | None = None) -> bool:
        """Stores the event durably; raises TooManyRequests when its namespace already has
        ``limit`` events waiting, ServiceError when Redis cannot take it. With ``mark``
        (``queues.Queue.send``), False when the mark was already there: nothing stored."""
        try:
            fields = {"event": event.encode(self.key)}
            return bool(await self.queue.send(fields, self.quota(event.namespace), mark))
        except QueueFull:
            raise TooManyRequests(
                "AsyncQueueFull",
                f"Namespace {event.namespace} has {self.limit} asynchronous events waiting "
                "(its quota); try again once they are delivered",
            ) from None
        except RedisError as e:
            raise ServiceError(f"cannot queue the event: {e}") from e
