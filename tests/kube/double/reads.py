"""GET and LIST: objects as the requested version shows them, selectors, pagination.

Lists carry the store's current resourceVersion; ``limit``/``continue`` page through objects in
key order (the continue token holds the list's resourceVersion and the last key, like the API
server's); ``resourceVersionMatch=Exact`` can only be served for the current resourceVersion
(older snapshots are not kept, so those get 410 as after a compaction).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from .conversion import from_storage
from .errors import ApiError, bad_request, expired, not_found, too_large_rv
from .params import Query
from .routing import Target
from .selectors import selector
from .settings import Cluster

Obj = dict[str, Any]


def current(cluster: Cluster, target: Target) -> Obj:
    """The stored object a request names, or 404."""
    obj = cluster.store.get(target.rtype.storage_key, target.namespace, target.name)
    if obj is None:
        raise not_found(target.rtype, target.name)
    return obj


def scale_view(obj: Obj) -> Obj:
    """The ``autoscaling/v1`` Scale of a Deployment or ReplicaSet."""
    meta = obj["metadata"]
    labels = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in meta
        },
        "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 0)},
        "status": {
            "replicas": (obj.get("status") or {}).get("replicas", 0),
            "selector": ",".join(f"{k}={v}" for k, v in labels.items()),
        },
    }


def get(cluster: Cluster, target: Target) -> Obj:
    obj = from_storage(current(cluster, target), target.rtype)
    return scale_view(obj) if target.subresource == "scale" else obj


def check_resource_version(cluster: Cluster, query: Query) -> None:
    """Reject resourceVersions that are not numbers, or newer than the store (504)."""
    if query.resource_version in ("", "0"):
        return
    try:
        requested = int(query.resource_version)
    except ValueError as e:
        raise bad_request(f"invalid resource version: {query.resource_version}") from e
    if requested > cluster.store.rv:
        raise too_large_rv(requested, cluster.store.rv)


def list_objects(cluster: Cluster, target: Target, query: Query) -> Obj:
    rtype = target.rtype
    check_resource_version(cluster, query)
    if query.resource_version_match == "Exact" and query.resource_version != str(cluster.store.rv):
        raise expired(f"too old resource version: {query.resource_version} ({cluster.store.rv})")
    match = selector(query.label_selector, query.field_selector, rtype)
    items = [
        from_storage(o, rtype)
        for o in cluster.store.items(
            rtype.storage_key, target.namespace if rtype.namespaced and target.namespace else None
        )
    ]
    items = [o for o in items if match(o)]
    list_rv, start = (
        _continue_from(query.continue_token) if query.continue_token else (cluster.store.rv, None)
    )
    if start is not None:
        items = [o for o in items if _key(o) > start]
    meta: dict[str, Any] = {"resourceVersion": str(list_rv)}
    if query.limit and len(items) > query.limit:
        rest = len(items) - query.limit
        items = items[: query.limit]
        meta["continue"] = _continue_token(list_rv, _key(items[-1]))
        if not query.label_selector and not query.field_selector:
            meta["remainingItemCount"] = rest
    if not rtype.custom:
        for item in items:
            item.pop("apiVersion", None)
            item.pop("kind", None)
    return {
        "kind": f"{rtype.kind}List",
        "apiVersion": rtype.api_version,
        "metadata": meta,
        "items": items,
    }


def _key(obj: Obj) -> str:
    meta = obj["metadata"]
    return f"{meta.get('namespace', '')}/{meta['name']}"


def _continue_token(rv: int, start: str) -> str:
    raw = json.dumps(
        {"v": "meta.k8s.io/v1", "rv": rv, "start": start + "\x00"}, separators=(",", ":")
    )
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _continue_from(token: str) -> tuple[int, str]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return int(data["rv"]), str(data["start"]).rstrip("\x00")
    except (binascii.Error, ValueError, KeyError, TypeError) as e:
        raise ApiError(400, "BadRequest", f"continue key is not valid: {e}") from e
