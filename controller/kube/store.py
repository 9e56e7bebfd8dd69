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
from typing import Any

from klambda.api.objects import ApiObject
from klambda.api.reasons import Reason
from klambda.api.schema import ValidationError
from klambda.api.types import KINDS
from klambda.controller.kube.events import EventRecorder
from klambda.kube import names
from klambda.kube.client import KubeClient, KubeError, NotFound
from klambda.kube.objects import ObjectCache, object_path

log = logging.getLogger(__name__)

KINDS_WATCHED = (*KINDS, "ConfigMap")
"""Every klambda kind, and ConfigMaps (code)."""
USERS_CONFIG_MAPS = f"app.kubernetes.io/managed-by!={names.MANAGED_BY}"
"""The ConfigMaps functions may read code from: users' own, not the code ConfigMaps the
operator writes (never referenced by a Function, and up to ~900 KB each)."""


class KubeStore(ObjectCache):
    def __init__(
        self,
        client: KubeClient,
        namespaces: list[str] | None = None,
        events: EventRecorder | None = None,
    ) -> None:
        super().__init__(
            client,
            KINDS_WATCHED,
            namespaces,
            on_refused=self._refuse,
            selectors={"ConfigMap": USERS_CONFIG_MAPS},
        )
        self.events = events
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
        current = self.find(*obj.key)
        if current is None or current.status == status:
            return
        before = _ready(current.status)
        current.status = copy.deepcopy(status)
        obj.status = current.status
        await self._patch_status(obj.kind, obj.namespace, obj.name, status)
        after = _ready(status)
        if after is None or self.events is None:
            return
        if before is None or _said(before) != _said(after):
            self.events.record(current, after)

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


def _said(condition: dict[str, Any]) -> tuple[Any, Any]:
    return condition.get("status"), condition.get("reason")


def _ready(status: dict[str, Any]) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions", []) if c.get("type") == "Ready"), None)
