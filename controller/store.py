"""The local platform's object store: the part of a Kubernetes API server that klambda needs.

Objects keep Kubernetes' bookkeeping (uid, resourceVersion from one counter, generation bumped
only by spec changes, creationTimestamp), so the controller reconciles them exactly as it would
reconcile custom resources. Watchers wait on ``changed`` and re-read everything (level-based).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
import uuid
from typing import Any, Literal, Protocol

from klambda.api.objects import ApiObject, revive, select
from klambda.api.schema import FieldError, ValidationError, camel
from klambda.api.types import IMMUTABLE_VERSION_FIELDS
from klambda.controller.persistence import Key, Row, StateFile

log = logging.getLogger(__name__)

ApplyResult = Literal["created", "configured", "unchanged"]


class NotFound(KeyError):
    """No such object."""


class Store(Protocol):
    """What the controller reads and writes: the local store, or Kubernetes' informers."""

    @property
    def revision(self) -> int: ...

    async def wait_for_change(self, seen: int) -> int: ...

    def list(self, kind: str, namespace: str | None = None) -> list[ApiObject]: ...

    async def set_status(self, obj: ApiObject, status: dict[str, Any]) -> None: ...


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class ObjectStore:
    """Objects in memory, written through to ``state`` (when given) before a change returns."""

    def __init__(self, state: StateFile | None = None) -> None:
        self._objects: dict[tuple[str, str, str], ApiObject] = {}
        self._resource_version = 0
        self._revision = 0
        self._changed = asyncio.Condition()
        self._state = state
        if state is not None:
            self._restore(state)

    def _restore(self, state: StateFile) -> None:
        rows, self._resource_version = state.load()
        for row in rows:
            try:
                obj = revive(row.manifest, row.status)
            except ValidationError as e:  # kept in the file, not served: say so, lose nothing
                log.error("stored %s %s/%s no longer validates: %s", *row.key, e)
                continue
            self._objects[obj.key] = obj
        if rows:
            log.info("restored %d objects from %s", len(self._objects), state.path)

    async def _save(self, changed: list[ApiObject], deleted: list[Key] | None = None) -> None:
        if self._state is None:
            return
        rows = [Row(o.key, o.manifest, o.status) for o in changed]
        await self._state.put(rows, deleted or [], self._resource_version)

    @property
    def revision(self) -> int:
        """Counts changes the controller must react to (not status writes, its own output)."""
        return self._revision

    def _bump(self) -> str:
        self._revision += 1
        return self._next_resource_version()

    def _next_resource_version(self) -> str:
        self._resource_version += 1
        return str(self._resource_version)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for_change(self, seen: int) -> int:
        """Returns the current revision once it differs from ``seen``."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._revision != seen)
            return self._revision

    async def apply(self, obj: ApiObject) -> tuple[ApiObject, ApplyResult]:
        """Creates or updates an object (by kind, namespace, name), as ``kubectl apply`` does."""
        existing = self._objects.get(obj.key)
        meta = obj.manifest["metadata"]
        if existing is None:
            meta.update(
                uid=str(uuid.uuid4()),
                generation=1,
                creationTimestamp=_now(),
                resourceVersion=self._bump(),
            )
            self._objects[obj.key] = obj
            await self._save([obj])
            await self._notify()
            return obj, "created"
        old_meta = existing.manifest["metadata"]
        content = _content(obj.manifest)
        if (
            content == _content(existing.manifest)
            and meta.get("labels") == old_meta.get("labels")
            and meta.get("annotations") == old_meta.get("annotations")
        ):
            return existing, "unchanged"
        generation = int(old_meta["generation"])
        if content != _content(existing.manifest):
            generation += 1
        meta.update(
            uid=old_meta["uid"],
            creationTimestamp=old_meta["creationTimestamp"],
            generation=generation,
            resourceVersion=self._bump(),
        )
        obj.status = existing.status
        self._objects[obj.key] = obj
        await self._save([obj])
        await self._notify()
        return obj, "configured"

    def check_update(self, obj: ApiObject) -> list[FieldError]:
        """Why applying ``obj`` over the stored object is refused (immutable fields)."""
        existing = self._objects.get(obj.key)
        if existing is None or obj.kind != "Version":
            return []
        return [
            FieldError(f"spec.{camel(name)}", "field is immutable: publish a new Version instead")
            for name in IMMUTABLE_VERSION_FIELDS
            if getattr(obj.spec, name) != getattr(existing.spec, name)
        ]

    async def delete(self, kind: str, namespace: str, name: str) -> ApiObject:
        """Deletes an object; deleting a Function also deletes its Versions and Aliases, as
        Kubernetes' garbage collector does for objects it owns."""
        obj = self._objects.pop((kind, namespace, name), None)
        if obj is None:
            raise NotFound(f'{kind.lower()} "{name}" not found in namespace "{namespace}"')
        deleted = [obj.key]
        if kind == "Function":
            for key, dep in list(self._objects.items()):
                owned = dep.kind in ("Version", "Alias") and dep.namespace == namespace
                if owned and dep.spec.function_name == name:
                    del self._objects[key]
                    deleted.append(key)
        self._bump()
        await self._save([], deleted)
        await self._notify()
        return obj

    def get(self, kind: str, namespace: str, name: str) -> ApiObject:
        obj = self._objects.get((kind, namespace, name))
        if obj is None:
            raise NotFound(f'{kind.lower()} "{name}" not found in namespace "{namespace}"')
        return obj

    def list(self, kind: str, namespace: str | None = None) -> list[ApiObject]:
        return select(self._objects, kind, namespace)

    async def set_status(self, obj: ApiObject, status: dict[str, Any]) -> None:
        """Writes status (the /status subresource): no generation bump, no controller wake-up."""
        current = self._objects.get(obj.key)
        if current is None or current.status == status:
            return
        current.status = copy.deepcopy(status)
        current.manifest["metadata"]["resourceVersion"] = self._next_resource_version()
        await self._save([current])


def _content(manifest: dict[str, Any]) -> Any:
    return manifest.get("spec", manifest.get("data"))
