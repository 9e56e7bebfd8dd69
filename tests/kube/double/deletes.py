"""DELETE and DELETE collection: finalizers, deletionTimestamp, propagation policies.

An object without finalizers goes at once (DELETED event). One with finalizers, or deleted with
``propagationPolicy`` Orphan/Foreground (which add the ``orphan``/``foregroundDeletion``
finalizers the garbage collector works on), gets ``deletionTimestamp`` (and generation + 1) and
stays until its finalizers are removed. Namespaces always go through termination. Background
dependents are left for the garbage collector (``controllers.py``): nothing cascades inside the
request, as in Kubernetes.
"""

from __future__ import annotations

from typing import Any

from .conversion import from_storage
from .errors import ApiError, FieldError, conflict, invalid_kind
from .kinds import ResourceType
from .meta import rfc3339
from .params import Query
from .reads import current, list_objects
from .routing import Target
from .settings import Cluster
from .strategies import strategy_for

Obj = dict[str, Any]
Outcome = tuple[int, Obj, list[str]]
POLICIES = ("Orphan", "Background", "Foreground")


def remove(cluster: Cluster, rtype: ResourceType, stored: Obj) -> Obj:
    """Delete ``stored`` for good; returns it as ``rtype`` shows it."""
    strategy_for(rtype).on_delete(stored, cluster)
    uid = stored["metadata"].get("uid")
    for key in [k for k in cluster.applied if k[0] == uid]:
        del cluster.applied[key]
    gone = cluster.store.remove(rtype.storage_key, stored)
    cluster.changed.set()
    return from_storage(gone, rtype)


def _policy(options: Obj, query: Query) -> str:
    policy = options.get("propagationPolicy") or query.propagation_policy
    orphan = options.get("orphanDependents", query.orphan_dependents)
    if not policy:
        policy = "Orphan" if orphan else "Background"
    if policy not in POLICIES:
        detail = 'supported values: "Foreground", "Background", "Orphan"'
        raise invalid_kind(
            "DeleteOptions",
            "meta.k8s.io",
            "",
            [FieldError("NotSupported", "propagationPolicy", policy, detail)],
        )
    return policy


def _check_preconditions(target: Target, stored: Obj, options: Obj) -> None:
    wanted = options.get("preconditions") or {}
    meta = stored["metadata"]
    for field, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
        if wanted.get(field) and wanted[field] != meta.get(field):
            why = (
                f"Precondition failed: {label} in precondition: {wanted[field]}, "
                f"{label} in object meta: {meta.get(field)}"
            )
            raise conflict(target.rtype, target.name, why)


def delete(cluster: Cluster, target: Target, options: Obj, query: Query) -> Outcome:
    stored = current(cluster, target)
    _check_preconditions(target, stored, options)
    policy = _policy(options, query)
    if query.dry_run or options.get("dryRun") == ["All"]:
        return 200, from_storage(stored, target.rtype), []
    return 200, mark_deleted(cluster, target.rtype, stored, policy), []


def mark_deleted(cluster: Cluster, rtype: ResourceType, stored: Obj, policy: str) -> Obj:
    """Delete now, or start graceful deletion; returns the response body."""
    meta = stored["metadata"]
    finalizers = list(meta.get("finalizers") or [])
    gc_finalizer = {"Orphan": "orphan", "Foreground": "foregroundDeletion"}.get(policy)
    if gc_finalizer and gc_finalizer not in finalizers and not meta.get("deletionTimestamp"):
        finalizers.append(gc_finalizer)
    if rtype.storage_key == ("", "namespaces"):
        if not meta.get("deletionTimestamp"):
            meta["deletionTimestamp"] = rfc3339(cluster.clock())
            meta["deletionGracePeriodSeconds"] = 0
            stored.setdefault("status", {})["phase"] = "Terminating"
            stored = cluster.store.put(rtype.storage_key, stored, "MODIFIED")
            cluster.changed.set()
        return from_storage(stored, rtype)
    if not finalizers:
        gone = remove(cluster, rtype, stored)
        return gone if rtype.custom or rtype.storage_key == ("", "pods") else _success(rtype, gone)
    if meta.get("deletionTimestamp") and finalizers == meta.get("finalizers"):
        return from_storage(stored, rtype)
    meta["finalizers"] = finalizers
    if not meta.get("deletionTimestamp"):
        meta["deletionTimestamp"] = rfc3339(cluster.clock())
        meta["deletionGracePeriodSeconds"] = 0
        if "generation" in meta:
            meta["generation"] += 1
    saved = cluster.store.put(rtype.storage_key, stored, "MODIFIED")
    cluster.changed.set()
    return from_storage(saved, rtype)


def _success(rtype: ResourceType, gone: Obj) -> Obj:
    details: dict[str, Any] = {"name": gone["metadata"]["name"]}
    if rtype.group:
        details["group"] = rtype.group
    details["kind"] = rtype.plural
    details["uid"] = gone["metadata"].get("uid", "")
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    }


def delete_collection(cluster: Cluster, target: Target, options: Obj, query: Query) -> Outcome:
    listing = list_objects(
        cluster,
        target,
        Query(label_selector=query.label_selector, field_selector=query.field_selector),
    )
    policy = _policy(options, query)
    deleted = []
    for item in listing["items"]:
        meta = item["metadata"]
        stored = cluster.store.get(
            target.rtype.storage_key, meta.get("namespace", ""), meta["name"]
        )
        if stored is None:
            continue
        if query.dry_run:
            deleted.append(from_storage(stored, target.rtype))
            continue
        result = mark_deleted(cluster, target.rtype, stored, policy)
        deleted.append(
            result if result.get("kind") != "Status" else from_storage(stored, target.rtype)
        )
    listing["items"] = deleted
    return 200, listing, []


def check_delete_body(body: Any) -> Obj:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ApiError(400, "BadRequest", "the body of the request was in an unknown format")
    return body
