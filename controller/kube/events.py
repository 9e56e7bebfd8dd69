"""Kubernetes Events for Ready transitions, sent in the background on their own budget.

``kubectl describe`` tells an object's story from its Events, but an Event is a report, not
part of the work: as client-go's broadcaster does, they are queued (bounded: the oldest are
dropped first when the API server cannot keep up) and sent by one task with its own client and
rate limit, so recording them never delays a reconcile or spends the operator's request budget.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from datetime import UTC, datetime
from typing import Any

from klambda.api.objects import ApiObject
from klambda.kube.client import KubeClient, KubeError, path_for

log = logging.getLogger(__name__)

QUEUE_LIMIT = 1000
EVENTS_QPS = 10.0
"""Events per second the recorder's own client sends, sustained."""
EVENTS_BURST = 25


def make_event(obj: ApiObject, condition: dict[str, Any], now: str) -> dict[str, Any]:
    meta = obj.manifest["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{obj.name}.", "namespace": obj.namespace},
        "involvedObject": {
            "apiVersion": obj.manifest.get("apiVersion", ""),
            "kind": obj.kind,
            "name": obj.name,
            "namespace": obj.namespace,
            "uid": meta.get("uid", ""),
            "resourceVersion": str(meta.get("resourceVersion", "")),
        },
        "reason": condition.get("reason", ""),
        "message": condition.get("message", ""),
        "type": "Normal" if condition.get("status") == "True" else "Warning",
        "source": {"component": "klambda-operator"},
        "reportingComponent": "klambda-operator",
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


class EventRecorder:
    def __init__(self, client: KubeClient) -> None:
        self.client = client
        self._queue: collections.deque[dict[str, Any]] = collections.deque(maxlen=QUEUE_LIMIT)
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    def record(self, obj: ApiObject, condition: dict[str, Any]) -> None:
        if len(self._queue) == QUEUE_LIMIT:
            self.dropped += 1
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._queue.append(make_event(obj, condition, now))
        self._ready.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._send_forever(), name="events")

    async def stop(self) -> None:
        """Stops sending; Events still queued are dropped (they are reports, not work)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.client.close()

    async def _send_forever(self) -> None:
        while True:
            while not self._queue:
                self._ready.clear()
                await self._ready.wait()
            event = self._queue.popleft()
            namespace = event["metadata"]["namespace"]
            try:
                await self.client.create(path_for("", "v1", "events", namespace), event)
            except KubeError as e:
                involved = event["involvedObject"]
                log.debug(
                    "event for %s %s/%s not recorded: %s",
                    involved["kind"],
                    namespace,
                    involved["name"],
                    e,
                )
