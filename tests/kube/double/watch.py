"""Watch: a chunked stream of JSON lines, one event per line.

No resourceVersion (or ``0``): synthetic ADDED events for the objects that exist, then live
events. ``resourceVersion=N``: only events after N, from the store's bounded history; older than
the history -> 200, then one ERROR event with a 410 ``Expired`` Status. BOOKMARKs (kind,
apiVersion and ``metadata.resourceVersion`` only) when ``allowWatchBookmarks=true``, every
``Settings.bookmark_interval`` and before a timeout closes the stream. With selectors, objects
moving into the selection arrive as ADDED and out of it as DELETED, as the watch cache does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .conversion import from_storage
from .errors import expired
from .params import Query
from .reads import check_resource_version
from .routing import Target
from .selectors import Matcher, selector
from .settings import Cluster
from .store import Change
from .table import to_table

Event = dict[str, Any]


class _Filter:
    def __init__(self, target: Target, match: Matcher) -> None:
        self.rtype = target.rtype
        self.namespace = target.namespace if target.rtype.namespaced else ""
        self.match = match

    def _visible(self, obj: dict[str, Any] | None) -> bool:
        if obj is None:
            return False
        if self.namespace and obj["metadata"].get("namespace") != self.namespace:
            return False
        return self.match(obj)

    def event(self, change: Change) -> Event | None:
        obj = from_storage(change.obj, self.rtype)
        old = from_storage(change.old, self.rtype) if change.old is not None else None
        now, before = self._visible(obj), self._visible(old)
        if change.type == "DELETED":
            kind = "DELETED" if before or now else None
        elif change.type == "ADDED" or not before:
            kind = "ADDED" if now else None
        else:
            kind = "MODIFIED" if now else "DELETED"
        return {"type": kind, "object": obj} if kind else None


def _bookmark(target: Target, rv: int, initial_end: bool = False) -> Event:
    meta: dict[str, Any] = {"resourceVersion": str(rv)}
    if initial_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {
        "type": "BOOKMARK",
        "object": {
            "kind": target.rtype.kind,
            "apiVersion": target.rtype.api_version,
            "metadata": meta,
        },
    }


def _initial_events(cluster: Cluster, target: Target, query: Query, flt: _Filter) -> list[Event]:
    """What the watch sends first; computed right after subscribing, with no await between."""
    key = target.rtype.storage_key
    rv = query.resource_version
    if rv in ("", "0") or query.send_initial_events:
        namespace = flt.namespace or None
        objects = [from_storage(o, target.rtype) for o in cluster.store.items(key, namespace)]
        events: list[Event] = [{"type": "ADDED", "object": o} for o in objects if flt.match(o)]
        if query.send_initial_events and query.allow_watch_bookmarks:
            events.append(_bookmark(target, cluster.store.rv, initial_end=True))
        return events
    since = int(rv)
    oldest = cluster.store.oldest_resumable(key)
    if since < oldest:
        error = expired(f"too old resource version: {since} ({oldest})")
        return [{"type": "ERROR", "object": error.status()}]
    return [e for e in (flt.event(c) for c in cluster.store.changes_since(key, since)) if e]


async def serve(
    request: web.Request, cluster: Cluster, target: Target, query: Query, as_table: bool = False
) -> web.StreamResponse:
    """Stream events; ``as_table``: objects as one-row Tables (``kubectl get -w``)."""
    flt = _Filter(target, selector(query.label_selector, query.field_selector, target.rtype))

    async def send(event: Event) -> None:
        if as_table and event["type"] in ("ADDED", "MODIFIED", "DELETED"):
            meta = {"resourceVersion": event["object"]["metadata"].get("resourceVersion", "")}
            table = to_table(
                target.rtype, [event["object"]], meta, query.include_object, cluster.clock
            )
            event = {"type": event["type"], "object": table}
        await response.write(json.dumps(event, separators=(",", ":")).encode() + b"\n")

    check_resource_version(cluster, query)
    key = target.rtype.storage_key
    headers = {"Content-Type": "application/json", "Cache-Control": "no-cache, private"}
    response = web.StreamResponse(headers=headers)
    response.enable_chunked_encoding()
    queue = cluster.store.subscribe(key)
    try:
        initial = _initial_events(cluster, target, query, flt)
        await response.prepare(request)
        for event in initial:
            await send(event)
        if initial and initial[-1]["type"] == "ERROR":
            return response
        await _stream(send, cluster, target, query, flt, queue)
        return response
    except ConnectionResetError:  # the client went away
        return response
    finally:
        cluster.store.unsubscribe(key, queue)


async def _stream(
    send: Callable[[Event], Awaitable[None]],
    cluster: Cluster,
    target: Target,
    query: Query,
    flt: _Filter,
    queue: asyncio.Queue[Change | None],
) -> None:
    loop = asyncio.get_running_loop()
    timeout = (
        query.timeout_seconds
        if query.timeout_seconds is not None
        else cluster.settings.watch_timeout
    )
    deadline = loop.time() + timeout
    interval = cluster.settings.bookmark_interval
    next_bookmark = loop.time() + interval
    while (left := deadline - loop.time()) > 0:
        wait = min(left, next_bookmark - loop.time()) if query.allow_watch_bookmarks else left
        try:
            change = await asyncio.wait_for(queue.get(), max(wait, 0))
        except TimeoutError:
            if query.allow_watch_bookmarks and loop.time() >= next_bookmark:
                await send(_bookmark(target, cluster.store.rv))
                next_bookmark = loop.time() + interval
            continue
        if change is None:
            return
        event = flt.event(change)
        if event is not None:
            await send(event)
    if query.allow_watch_bookmarks:
        await send(_bookmark(target, cluster.store.rv))
