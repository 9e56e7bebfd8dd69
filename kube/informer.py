"""Informers: a cache of one resource kept current by list + watch, level-triggered.

List, then watch from the list's resourceVersion; resume from the last version seen (bookmarks
included) when the server closes the stream; re-list on 410 Gone; back off on transient errors.
Consumers read the cache and are told that something changed; they never act on a single event.
An optional index (client-go's Indexer) finds the cached objects sharing a value, e.g. the pods
of one function version, without a scan of the cache.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable
from typing import Any

from klambda.api.tasks import cancel_and_wait
from klambda.kube.client import Gone, KubeClient, KubeError

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name)
OnChange = Callable[[str, dict[str, Any] | None, dict[str, Any] | None], None]
"""(event type, old object, new object)"""
IndexOf = Callable[[dict[str, Any]], Hashable | None]
"""An object's index value, or None to leave it out of the index."""


class Informer:
    def __init__(
        self,
        client: KubeClient,
        path: str,
        on_change: OnChange,
        watch_timeout: int = 60,
        label_selector: str | None = None,
        index: IndexOf | None = None,
    ) -> None:
        self.client = client
        self.path = path
        self.label_selector = label_selector
        self.on_change = on_change
        self.watch_timeout = watch_timeout
        self.cache: dict[Key, dict[str, Any]] = {}
        self.index_of = index
        self._index: dict[Hashable, dict[Key, dict[str, Any]]] = {}
        self.synced = asyncio.Event()
        self._version = ""

    @staticmethod
    def key(obj: dict[str, Any]) -> Key:
        meta = obj.get("metadata", {})
        return (meta.get("namespace", ""), meta.get("name", ""))

    def indexed(self, value: Hashable) -> list[dict[str, Any]]:
        """The cached objects whose index value is ``value``."""
        return list(self._index.get(value, {}).values())

    def _put(self, key: Key, obj: dict[str, Any] | None) -> None:
        """Caches ``obj`` under ``key`` (None: removes it), keeping the index current."""
        old = self.cache.pop(key, None)
        if self.index_of is not None and old is not None:
            value = self.index_of(old)
            bucket = self._index.get(value)
            if bucket is not None:
                bucket.pop(key, None)
                if not bucket:
                    del self._index[value]
        if obj is None:
            return
        self.cache[key] = obj
        if self.index_of is not None:
            value = self.index_of(obj)
            if value is not None:
                self._index.setdefault(value, {})[key] = obj

    def assume(self, obj: dict[str, Any]) -> None:
        """Caches what a write of ours returned before its watch event arrives, so a reader
        right after the write sees it (the event then replaces it, or a newer one does)."""
        self._put(self.key(obj), obj)

    async def run(self) -> None:
        delay = 0.5
        while True:
            try:
                await self._list()
                delay = 0.5
                while True:
                    await self._watch()
            except Gone:
                log.info("%s: resourceVersion too old; re-listing", self.path)
            except KubeError as e:
                log.warning("%s: %s; retrying in %.1fs", self.path, e, delay)
                await asyncio.sleep(delay)
                delay = min(30.0, delay * 2)

    async def _list(self) -> None:
        listing = await self.client.list(self.path, self.label_selector)
        fresh = {self.key(o): o for o in listing.get("items", [])}
        kind = listing.get("kind", "").removesuffix("List")
        api_version = listing.get("apiVersion", "")
        for obj in fresh.values():
            obj.setdefault("kind", kind)
            obj.setdefault("apiVersion", api_version)
        old = dict(self.cache)
        for key in old.keys() - fresh.keys():
            self._put(key, None)
        for key, obj in fresh.items():
            self._put(key, obj)
        self._version = str(listing.get("metadata", {}).get("resourceVersion", ""))
        for key in old.keys() - fresh.keys():
            self.on_change("DELETED", old[key], None)
        for key, obj in fresh.items():
            if old.get(key) != obj:
                self.on_change("ADDED" if key not in old else "MODIFIED", old.get(key), obj)
        self.synced.set()

    async def _watch(self) -> None:
        async for kind, obj in self.client.watch(
            self.path, self._version, self.watch_timeout, self.label_selector
        ):
            version = obj.get("metadata", {}).get("resourceVersion")
            if version:
                self._version = str(version)
            if kind == "BOOKMARK":
                continue
            key = self.key(obj)
            old = self.cache.get(key)
            if kind == "DELETED":
                self._put(key, None)
                self.on_change(kind, old, None)
            else:
                self._put(key, obj)
                self.on_change(kind, old, obj)


class Informers:
    """Several informers run together; ``stop`` cancels them all."""

    def __init__(self, informers: list[Informer]) -> None:
        self.informers = informers
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(i.run(), name=f"informer {i.path}") for i in self.informers
        ]

    async def wait_synced(self) -> None:
        await asyncio.gather(*(i.synced.wait() for i in self.informers))

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
