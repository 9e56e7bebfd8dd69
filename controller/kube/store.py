"""The controller's store on Kubernetes: the object cache of klambda's kinds and ConfigMaps,
plus status writes.

It offers the controller what the local ObjectStore does (list, set_status, change
notifications), so the reconcile loop is the same on both platforms. Objects the API server
accepted but klambda's own rules refuse (e.g. a malformed resource policy) get a
Ready=False/InvalidSpec status and are left out. Ready transitions are recorded as Events.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from datetime import UTC, datetime
from typing import Any

from klambda.api.objects import ApiObject
from klambda.api.reasons import Reason
from klambda.api.schema import ValidationError
from klambda.kube.client import KubeClient, KubeError, NotFound, path_for
from klambda.kube.objects import ObjectCache, object_path

log = logging.getLogger(__name__)

KINDS_WATCHED = ("Function", "Version", "Alias", "EventSourceMapping", "ConfigMap")


class KubeStore(ObjectCache):
    def __init__(self, client: KubeClient, namespaces: list[str] | None = None) -> None:
        super().__init__(client, KINDS_WATCHED, namespaces, on_refused=self._refuse)
        self._writes: set[asyncio.Task[None]] = set()
        self._refused: dict[tuple[str, str, str], int] = {}

    async def stop(self) -> None:
        await super().stop()
        for task in list(self._writes):
            task.cancel()
        await asyncio.gather(*self._writes, return_exceptions=True)

    def _refuse(self, raw: dict[str, Any], e: ValidationError) -> None:
        meta = raw.get("metadata", {})
        key = (raw.get("kind", ""), meta.get("namespace", ""), meta.get("name", ""))
        generation = int(meta.get("generation", 0))
        if self._refused.get(key) == generation or raw.get("kind") == "ConfigMap":
            return
        self._refused[key] = generation
        log.warning("%s %s/%s refused: %s", key[0], key[1], key[2], e)
        status = {
            "observedGeneration": generation,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": Reason.INVALID_SPEC,
                    "message": str(e),
                    "observedGeneration": generation,
                }
            ],
        }
        task = asyncio.get_running_loop().create_task(
            self._patch_status(key[0], key[1], key[2], status)
        )
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def set_status(self, obj: ApiObject, status: dict[str, Any]) -> None:
        """Writes status through the /status subresource when it changed."""
        current = self._objects.get(obj.key)
        if current is None or current.status == status:
            return
        before = _ready(current.status)
        current.status = copy.deepcopy(status)
        obj.status = current.status
        await self._patch_status(obj.kind, obj.namespace, obj.name, status)
        after = _ready(status)
        if after and (
            before is None
            or (before.get("status"), before.get("reason"))
            != (after.get("status"), after.get("reason"))
        ):
            await self._event(current, after)

    async def _event(self, obj: ApiObject, condition: dict[str, Any]) -> None:
        """A Kubernetes Event for a Ready transition, so ``kubectl describe`` tells the story."""
        meta = obj.manifest["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
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
        try:
            await self.client.create(path_for("", "v1", "events", obj.namespace), event)
        except KubeError as e:
            log.debug("event for %s %s/%s not recorded: %s", obj.kind, obj.namespace, obj.name, e)

    async def _patch_status(
        self, kind: str, namespace: str, name: str, status: dict[str, Any]
    ) -> None:
        try:
            await self.client.patch(
                object_path(kind, namespace, name, "status"), {"status": status}
            )
        except NotFound:
            pass
        except KubeError as e:
            log.warning("status of %s %s/%s not written: %s", kind, namespace, name, e)


def _ready(status: dict[str, Any]) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions", []) if c.get("type") == "Ready"), None)
