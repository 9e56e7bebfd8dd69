"""Object storage with one global resourceVersion counter and a bounded watch history.

Like etcd behind the API server's watch cache: every write takes the next resourceVersion;
each resource keeps the last ``history_size`` events so that watches can resume from a
resourceVersion, and a watch from before the window gets 410 Expired (``watch.py``). Objects go
in and out as deep copies. Everything runs on one event loop, so no locks are needed: a write is
atomic between awaits.
"""

from __future__ import annotations

import asyncio
import copy
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

Key = tuple[str, str]
"""A resource's storage: (group, plural)."""
Obj = dict[str, Any]


@dataclass(frozen=True)
class Change:
    """One stored event: the object after the write (before, for DELETED with its new RV)."""

    type: str
    rv: int
    key: Key
    obj: Obj
    old: Obj | None


@dataclass
class _History:
    events: deque[Change]
    evicted_upto: int = 0


@dataclass
class Store:
    history_size: int = 1000
    rv: int = 1
    _objects: dict[Key, dict[tuple[str, str], Obj]] = field(default_factory=dict)
    _uids: dict[str, tuple[Key, str, str]] = field(default_factory=dict)
    _history: dict[Key, _History] = field(default_factory=dict)
    _subscribers: dict[Key, set[asyncio.Queue[Change | None]]] = field(default_factory=dict)

    # reads -------------------------------------------------------------------------------

    def get(self, key: Key, namespace: str, name: str) -> Obj | None:
        obj = self._objects.get(key, {}).get((namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def items(self, key: Key, namespace: str | None = None) -> list[Obj]:
        """Objects sorted by (namespace, name), as etcd's key order gives them."""
        objects = self._objects.get(key, {})
        return [
            copy.deepcopy(objects[k])
            for k in sorted(objects)
            if namespace is None or k[0] == namespace
        ]

    def by_uid(self, uid: str) -> tuple[Key, Obj] | None:
        where = self._uids.get(uid)
        if where is None:
            return None
        obj = self.get(*where)
        return (where[0], obj) if obj is not None else None

    def all_objects(self) -> Iterator[tuple[Key, Obj]]:
        """Every stored object, NOT copied (read-only: write through ``get``'s copies).

        The garbage collector scans everything after every change; copying each object made
        the double, not the clients under test, the bottleneck at a few hundred objects.
        """
        for key, objects in list(self._objects.items()):
            for obj in list(objects.values()):
                yield key, obj

    def resource_keys(self) -> list[Key]:
        return list(self._objects)

    # writes ------------------------------------------------------------------------------

    def put(self, key: Key, obj: Obj, event_type: str) -> Obj:
        """Store ``obj`` under the next resourceVersion and tell the watchers."""
        meta = obj["metadata"]
        where = (meta.get("namespace", ""), meta["name"])
        old = self._objects.get(key, {}).get(where)
        self.rv += 1
        stored = copy.deepcopy(obj)
        stored["metadata"]["resourceVersion"] = str(self.rv)
        self._objects.setdefault(key, {})[where] = stored
        self._uids[meta["uid"]] = (key, *where)
        self._emit(Change(event_type, self.rv, key, stored, old))
        return copy.deepcopy(stored)

    def remove(self, key: Key, obj: Obj) -> Obj:
        """Delete ``obj``; the DELETED event carries it with a new resourceVersion."""
        meta = obj["metadata"]
        where = (meta.get("namespace", ""), meta["name"])
        old = self._objects.get(key, {}).pop(where, None)
        self._uids.pop(meta.get("uid", ""), None)
        self.rv += 1
        gone = copy.deepcopy(obj)
        gone["metadata"]["resourceVersion"] = str(self.rv)
        self._emit(Change("DELETED", self.rv, key, gone, old))
        return copy.deepcopy(gone)

    # watch support -----------------------------------------------------------------------

    def subscribe(self, key: Key) -> asyncio.Queue[Change | None]:
        queue: asyncio.Queue[Change | None] = asyncio.Queue()
        self._subscribers.setdefault(key, set()).add(queue)
        return queue

    def unsubscribe(self, key: Key, queue: asyncio.Queue[Change | None]) -> None:
        self._subscribers.get(key, set()).discard(queue)

    def close_watches(self) -> None:
        for queues in self._subscribers.values():
            for queue in queues:
                queue.put_nowait(None)

    def oldest_resumable(self, key: Key) -> int:
        """The smallest resourceVersion a watch of ``key`` can resume from."""
        history = self._history.get(key)
        return history.evicted_upto if history else 0

    def changes_since(self, key: Key, rv: int) -> list[Change]:
        history = self._history.get(key)
        return [c for c in history.events if c.rv > rv] if history else []

    def _emit(self, change: Change) -> None:
        history = self._history.setdefault(change.key, _History(deque()))
        if len(history.events) >= self.history_size:
            history.evicted_upto = history.events.popleft().rv
        history.events.append(change)
        for queue in self._subscribers.get(change.key, ()):
            queue.put_nowait(change)
