"""The local platform's object store: the part of a Kubernetes API server that klambda needs.

Objects keep Kubernetes' bookkeeping (uid, resourceVersion from one counter, generation bumped
only by spec changes, creationTimestamp), so the controller reconciles them exactly as it would
reconcile custom resources. Subscribers hear of each change (old, new), as an informer's
handlers do; status writes, the controller's own output, are not changes.
"""

from __future__ import annotations

import copy
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, Literal, Protocol

from klambda.api.objects import ApiObject, FunctionKey, ObjectIndex, revive
from klambda.api.schema import FieldError, ValidationError, camel
from klambda.api.types import IMMUTABLE_VERSION_FIELDS
from klambda.controller.persistence import Key, Row, StateFile

log = logging.getLogger(__name__)

ApplyResult = Literal["created", "configured", "unchanged"]


class NotFound(KeyError):
    """No such object."""


Changed = Callable[[ApiObject | None, ApiObject | None], None]
"""(old, new) of one change; None for absent."""


class Store(Protocol):
    """What the controller reads and writes: the local store, or Kubernetes' informers."""

    def subscribe(self, changed: Changed) -> None:
        """Calls ``changed(old, new)`` on every change of an object's spec, labels or
        existence (not on status writes)."""
        ...

    def find(self, kind: str, namespace: str, name: str) -> ApiObject | None: ...

    def parts(self, kind: str, function: FunctionKey) -> list[ApiObject]:
        """The Versions, Aliases or EventSourceMappings naming ``function``."""
        ...

    async def set_status(self, obj: ApiObject, status: dict[str, Any]) -> None: ...

    def list(self, kind: str, namespace: str | None = None) -> list[ApiObject]: ...


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class ObjectStore:
    """Objects in memory, written through to ``state`` (when given) before a change returns."""

    def __init__(self, state: StateFile | None = None) -> None:
        self._index = ObjectIndex()
        self._resource_version = 0
        self._subscribers: list[Changed] = []
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
            self._index.put(obj)
        if rows:
            log.info("restored %d objects from %s", len(self._index), state.path)

    async def _save(self, changed: list[ApiObject], deleted: list[Key] | None = None) -> None:
        if self._state is None:
            return
        rows = [Row(o.key, o.manifest, o.status) for o in changed]
        await self._state.put(rows, deleted or [], self._resource_version)

    def subscribe(self, changed: Changed) -> None:
        self._subscribers.append(changed)

    def _next_resource_version(self) -> str:
        self._resource_version += 1
        return str(self._resource_version)

    def _notify(self, old: ApiObject | None, new: ApiObject | None) -> None:
        for changed in self._subscribers:
            changed(old, new)

    async def apply(self, obj: ApiObject) -> tuple[ApiObject, ApplyResult]:
        """Creates or updates an object (by kind, namespace, name), as ``kubectl apply`` does."""
        existing = self._index.get(*obj.key)
        meta = obj.manifest["metadata"]
        if existing is None:
            meta.update(
                uid=str(uuid.uuid4()),
                generation=1,
                creationTimestamp=_now(),
                resourceVersion=self._next_resource_version(),
            )
            self._index.put(obj)
            await self._save([obj])
            self._notify(None, obj)
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
            resourceVersion=self._next_resource_version(),
        )
        obj.status = existing.status
        self._index.put(obj)
        await self._save([obj])
        self._notify(existing, obj)
        return obj, "configured"

    def check_update(self, obj: ApiObject) -> list[FieldError]:
        """Why applying ``obj`` over the stored object is refused (immutable fields)."""
        existing = self._index.get(*obj.key)
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
        obj = self._index.pop((kind, namespace, name))
        if obj is None:
            raise NotFound(f'{kind.lower()} "{name}" not found in namespace "{namespace}"')
        deleted = [obj]
        if kind == "Function":
            for part in ("Version", "Alias"):
                for dep in self._index.parts(part, (namespace, name)):
                    self._index.pop(dep.key)
                    deleted.append(dep)
        self._next_resource_version()
        await self._save([], [o.key for o in deleted])
        for gone in deleted:
            self._notify(gone, None)
        return obj

    def get(self, kind: str, namespace: str, name: str) -> ApiObject:
        obj = self._index.get(kind, namespace, name)
        if obj is None:
            raise NotFound(f'{kind.lower()} "{name}" not found in namespace "{namespace}"')
        return obj

    def find(self, kind: str, namespace: str, name: str) -> ApiObject | None:
        return self._index.get(kind, namespace, name)

    def parts(self, kind: str, function: FunctionKey) -> list[ApiObject]:
        return self._index.parts(kind, function)

    async def set_status(self, obj: ApiObject, status: dict[str, Any]) -> None:
        """Writes status (the /status subresource): no generation bump, no controller wake-up."""
        current = self._index.get(*obj.key)
        if current is None or current.status == status:
            return
        current.status = copy.deepcopy(status)
        current.manifest["metadata"]["resourceVersion"] = self._next_resource_version()
        await self._save([current])

    def list(self, kind: str, namespace: str | None = None) -> list[ApiObject]:
        return self._index.list(kind, namespace)


def _content(manifest: dict[str, Any]) -> Any:
    return manifest.get("spec", manifest.get("data"))
