"""An informer-backed, read-only cache of klambda objects, parsed with the API model.

The operator's store (klambda.controller.kube.store) and the gateway's view of the cluster both
sit on it, each watching only the kinds it needs (the gateway does not watch ConfigMaps). Only
changes a reader must react to reach its subscribers, one object at a time (old, new): a new
or deleted object, a new generation, new labels, new ConfigMap data; status writes do not. An
object the API server accepted but the model refuses is left out (a deletion to subscribers)
and reported to ``on_refused``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from klambda.api.objects import ApiObject, FunctionKey, ObjectIndex, revive
from klambda.api.schema import ValidationError
from klambda.api.types import GROUP, KINDS, VERSION
from klambda.kube.client import KubeClient, path_for
from klambda.kube.informer import Informer, Informers

Refused = Callable[[dict[str, Any], ValidationError], None]
Changed = Callable[[ApiObject | None, ApiObject | None], None]
"""(old, new): a subscriber's view of one change; None for absent."""


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
        selectors: dict[str, str] | None = None,
        status_changes: bool = False,
    ) -> None:
        """``status_changes``: report status-only changes too (the gateway routes by status:
        version numbers, Ready reasons; the operator writes status and needs not hear it)."""
        self.status_changes = status_changes
        self.client = client
        self.namespaces = namespaces
        self.kinds = tuple(kinds)
        self._on_refused = on_refused
        self._subscribers: list[Changed] = []
        self._index = ObjectIndex()
        scopes: list[str | None] = list(namespaces) if namespaces else [None]  # None: all
        selectors = selectors or {}
        self.informers = Informers(
            [
                Informer(
                    client,
                    object_path(kind, ns),
                    self._on_change,
                    label_selector=selectors.get(kind),
                )
                for kind in self.kinds
                for ns in scopes
            ]
        )

    async def start(self) -> None:
        self.informers.start()
        await self.informers.wait_synced()

    async def stop(self) -> None:
        await self.informers.stop()

    def subscribe(self, changed: Changed) -> None:
        """Calls ``changed(old, new)`` for every change a reader must react to."""
        self._subscribers.append(changed)

    def _on_change(self, kind: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        obj = new or old
        assert obj is not None
        meta = obj.get("metadata", {})
        key = (obj.get("kind", ""), meta.get("namespace", ""), meta.get("name", ""))
        parsed = self._parse(new) if new is not None else None
        before = self._index.pop(key)
        if parsed is not None:
            self._index.put(parsed)
        if before is None and parsed is None:
            return
        if (
            old is None
            or new is None
            or parsed is None
            or self.status_changes
            or _meaningful(old, new)
        ):
            for changed in self._subscribers:
                changed(before, parsed)

    def _parse(self, raw: dict[str, Any]) -> ApiObject | None:
        try:
            return revive(raw)
        except ValidationError as e:
            if self._on_refused is not None:
                self._on_refused(raw, e)
            return None

    def find(self, kind: str, namespace: str, name: str) -> ApiObject | None:
        return self._index.get(kind, namespace, name)

    def parts(self, kind: str, function: FunctionKey) -> list[ApiObject]:
        return self._index.parts(kind, function)

    def list(self, kind: str, namespace: str | None = None) -> list[ApiObject]:
        return self._index.list(kind, namespace)


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
