"""An informer-backed, read-only cache of klambda objects, parsed with the API model.

The operator's store (klambda.controller.kube.store) and the gateway's view of the cluster both
sit on it, each watching only the kinds it needs (the gateway does not watch ConfigMaps). Only
changes a reader must react to bump ``revision``: a new or deleted object, a new generation,
new labels, new ConfigMap data; status writes do not. An object the API server accepted but the
model refuses is left out and reported to ``on_refused``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from klambda.api.objects import ApiObject, revive, select
from klambda.api.schema import ValidationError
from klambda.api.types import GROUP, KINDS, VERSION
from klambda.kube.client import KubeClient, path_for
from klambda.kube.informer import Informer, Informers

Refused = Callable[[dict[str, Any], ValidationError], None]


def object_path(
    kind: str, namespace: str | None, name: str | None = None, sub: str | None = None
) -> str:
    if kind == "ConfigMap":
        return path_for("", "v1", "configmaps", namespace, name, sub)
    return path_for(GROUP, VERSION, KINDS[kind].plural, namespace, name, sub)


class ObjectCache:
    def __init__(
        self,
        client: KubeClient,
        kinds: Iterable[str],
        namespaces: list[str] | None = None,
        on_refused: Refused | None = None,
    ) -> None:
        self.client = client
        self.namespaces = namespaces
        self.kinds = tuple(kinds)
        self._on_refused = on_refused
        self._revision = 0
        self._changed = asyncio.Event()
        self._objects: dict[tuple[str, str, str], ApiObject] = {}
        scopes: list[str | None] = list(namespaces) if namespaces else [None]  # None: all
        self.informers = Informers(
            [
                Informer(client, object_path(kind, ns), self._on_change)
                for kind in self.kinds
                for ns in scopes
            ]
        )

    async def start(self) -> None:
        self.informers.start()
        await self.informers.wait_synced()

    async def stop(self) -> None:
        await self.informers.stop()

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
        meta = obj.get("metadata", {})
        key = (obj.get("kind", ""), meta.get("namespace", ""), meta.get("name", ""))
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
        try:
            return revive(raw)
        except ValidationError as e:
            if self._on_refused is not None:
                self._on_refused(raw, e)
            return None

    def list(self, kind: str, namespace: str | None = None) -> list[ApiObject]:
        return select(self._objects, kind, namespace)

    def get(self, kind: str, namespace: str, name: str) -> ApiObject | None:
        return self._objects.get((kind, namespace, name))


def _meaningful(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """A change readers must react to (not a status write)."""
    if new.get("kind") == "ConfigMap":
        return old.get("data") != new.get("data") or old.get("binaryData") != new.get("binaryData")
    om, nm = old.get("metadata", {}), new.get("metadata", {})
    return (
        om.get("generation") != nm.get("generation")
        or om.get("deletionTimestamp") != nm.get("deletionTimestamp")
        or om.get("labels") != nm.get("labels")
    )
