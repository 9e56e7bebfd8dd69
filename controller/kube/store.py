"""The controller's store on Kubernetes: informer caches of klambda's kinds and ConfigMaps.

It offers the controller what the local ObjectStore does (list, set_status, change
notifications), so the reconcile loop is the same on both platforms. Only changes the
controller must react to wake it: a new or deleted object, a new generation, new ConfigMap data;
its own status writes do not. Objects the API server accepted but klambda's own rules refuse
(e.g. a malformed resource policy) get a Ready=False/InvalidSpec status and are left out.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from datetime import UTC, datetime
from typing import Any

from klambda.controller.api.objects import ApiObject, parse_object
from klambda.controller.api.schema import ValidationError
from klambda.controller.api.types import GROUP, KINDS, VERSION
from klambda.controller.kube.client import KubeClient, KubeError, NotFound, path_for
from klambda.controller.kube.informer import Informer, Informers

log = logging.getLogger(__name__)


class KubeStore:
    def __init__(self, client: KubeClient, namespaces: list[str] | None = None) -> None:
        self.client = client
        self.namespaces = namespaces
        self._revision = 0
        self._changed = asyncio.Event()
        self._writes: set[asyncio.Task[None]] = set()
        self._objects: dict[tuple[str, str, str], ApiObject] = {}
        self._refused: dict[tuple[str, str, str], int] = {}
        informers = []
        for kind in ("Function", "Version", "Alias", "EventSourceMapping", "ConfigMap"):
            for ns in namespaces or [None]:
                informers.append(Informer(client, self._path(kind, ns), self._on_change))
        self.informers = Informers(informers)

    @staticmethod
    def _path(
        kind: str, namespace: str | None, name: str | None = None, sub: str | None = None
    ) -> str:
        if kind == "ConfigMap":
            return path_for("", "v1", "configmaps", namespace, name, sub)
        return path_for(GROUP, VERSION, KINDS[kind].plural, namespace, name, sub)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self.informers.start()
        await self.informers.wait_synced()

    async def stop(self) -> None:
        await self.informers.stop()
        for task in list(self._writes):
            task.cancel()
        await asyncio.gather(*self._writes, return_exceptions=True)

    # ------------------------------------------------------------------ change tracking

    @property
    def revision(self) -> int:
        return self._revision

    async def wait_for_change(self, seen: int) -> int:
        while self._revision == seen:
            self._changed.clear()
            await self._changed.wait()
        return self._revision

    def _on_change(self, kind: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        obj = new or old
        assert obj is not None
        k = obj.get("kind", "")
        meta = obj.get("metadata", {})
        key = (k, meta.get("namespace", ""), meta.get("name", ""))
        if new is None:
            self._objects.pop(key, None)
            self._bump()
            return
        parsed = self._parse(new)
        if parsed is None:
            self._objects.pop(key, None)
        else:
            self._objects[key] = parsed
        if old is None or _meaningful(old, new):
            self._bump()

    def _bump(self) -> None:
        self._revision += 1
        self._changed.set()

    def _parse(self, raw: dict[str, Any]) -> ApiObject | None:
        doc = copy.deepcopy(raw)
        status = doc.pop("status", None) or {}
        meta = doc.get("metadata", {})
        try:
            obj = parse_object(doc)
        except ValidationError as e:
            self._refuse(raw, e)
            return None
        obj.manifest["metadata"] = meta
        obj.status = status
        return obj

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
                    "reason": "InvalidSpec",
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

    # ------------------------------------------------------------------ reads and writes

    def list(self, kind: str, namespace: str | None = None) -> list[ApiObject]:
        return sorted(
            (
                o
                for (k, ns, _), o in self._objects.items()
                if k == kind and (namespace is None or ns == namespace)
            ),
            key=lambda o: (o.namespace, o.name),
        )

    def get(self, kind: str, namespace: str, name: str) -> ApiObject | None:
        return self._objects.get((kind, namespace, name))

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
            await self.client.patch(self._path(kind, namespace, name, "status"), {"status": status})
        except NotFound:
            pass
        except KubeError as e:
            log.warning("status of %s %s/%s not written: %s", kind, namespace, name, e)


def _ready(status: dict[str, Any]) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions", []) if c.get("type") == "Ready"), None)


def _meaningful(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """A change the controller must reconcile (not its own status write)."""
    if new.get("kind") == "ConfigMap":
        return old.get("data") != new.get("data") or old.get("binaryData") != new.get("binaryData")
    om, nm = old.get("metadata", {}), new.get("metadata", {})
    return (
        om.get("generation") != nm.get("generation")
        or om.get("deletionTimestamp") != nm.get("deletionTimestamp")
        or om.get("labels") != nm.get("labels")
    )
