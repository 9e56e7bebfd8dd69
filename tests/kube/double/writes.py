"""Create, update and patch, with the API server's rules.

Create: namespace must exist (and not be terminating) and match the URL, ``generateName`` is
expanded, uid/creationTimestamp/resourceVersion/generation are set, ``status`` is dropped for
kinds with a status subresource, existing names get 409 AlreadyExists. Update and patch: a stale
``metadata.resourceVersion`` is a 409 Conflict, custom resources refuse a PUT without one (422),
the main endpoint keeps the stored status and ``/status`` keeps everything but status,
``generation`` moves on spec (or any non-metadata) changes, no-op writes do not bump the
resourceVersion, and a being-deleted object that loses its last finalizer is deleted.
Deletion is in ``deletes.py``, reads in ``reads.py``.
"""

from __future__ import annotations

import copy
import json
import secrets
from typing import Any

import yaml

from . import deletes
from .apply import server_side_apply
from .conversion import from_storage, to_storage
from .errors import (
    ApiError,
    FieldError,
    GoLiteral,
    already_exists,
    bad_request,
    forbidden_error,
    invalid,
    invalid_kind,
    invalid_object,
    namespace_not_found,
    not_found,
    stale,
    unsupported_media_type,
)
from .kinds import ResourceType
from .meta import metadata_errors, new_uid, normalize_metadata, rfc3339
from .params import Query
from .patch import json_patch, merge_patch
from .reads import current, scale_view
from .routing import Target
from .settings import Cluster
from .strategic import builtin_rules, schema_rules, strategic_merge
from .strategies import strategy_for

Obj = dict[str, Any]
Outcome = tuple[int, Obj, list[str]]
"""HTTP status, body, warnings."""

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"
_SYSTEM_FIELDS = (
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "selfLink",
)
NAME_MISMATCH = "the name of the object does not match the name on the URL"
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"


def patch_types(rtype: ResourceType) -> list[str]:
    types = [JSON_PATCH, MERGE, APPLY]
    return types if rtype.custom else [JSON_PATCH, MERGE, STRATEGIC, APPLY]


def decode_object(body: Any, rtype: ResourceType) -> Obj:
    if not isinstance(body, dict):
        raise bad_request(
            f"the object provided is unrecognized (must be of type {rtype.kind}): "
            "expected an object"
        )
    api_version, kind = body.get("apiVersion"), body.get("kind")
    if (api_version and api_version != rtype.api_version) or (kind and kind != rtype.kind):
        raise bad_request(
            f"the API version in the data ({api_version}) does not match the expected API "
            f"version ({rtype.api_version})"
            if api_version != rtype.api_version
            else f"the kind in the data ({kind}) does not match the expected kind ({rtype.kind})"
        )
    meta = body.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise bad_request("metadata must be an object")
    body["apiVersion"], body["kind"] = rtype.api_version, rtype.kind
    return body


def _check_namespace(cluster: Cluster, target: Target, meta: Obj, creating: bool) -> None:
    if not target.rtype.namespaced:
        meta.pop("namespace", None)
        return
    if meta.get("namespace") and meta["namespace"] != target.namespace:
        raise bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
        )
    meta["namespace"] = target.namespace
    if not creating:
        return
    namespace = cluster.store.get(("", "namespaces"), "", target.namespace)
    if namespace is None:
        raise namespace_not_found(target.namespace)
    if namespace["metadata"].get("deletionTimestamp"):
        why = (
            f"unable to create new content in namespace {target.namespace} "
            "because it is being terminated"
        )
        error = forbidden_error(target.rtype, meta.get("name") or meta.get("generateName", ""), why)
        cause = {
            "reason": "NamespaceTerminating",
            "message": f"namespace {target.namespace} is being terminated",
            "field": "metadata.namespace",
        }
        error.details = {**(error.details or {}), "causes": [cause]}
        raise error


def field_warnings(unknown: list[str], query: Query) -> list[str]:
    """``fieldValidation``: Strict rejects unknown fields (400), Warn (the default) warns."""
    messages = [f'unknown field "{path}"' for path in unknown]
    if not messages or query.field_validation == "Ignore":
        return []
    if query.field_validation == "Strict":
        raise bad_request("strict decoding error: " + ", ".join(messages))
    return messages


def create(cluster: Cluster, target: Target, body: Any, query: Query) -> Outcome:
    rtype = target.rtype
    obj = decode_object(body, rtype)
    meta = obj["metadata"]
    _check_namespace(cluster, target, meta, creating=True)
    if meta.get("resourceVersion"):
        raise ApiError(500, "", "resourceVersion should not be set on objects to be created")
    if not meta.get("name") and meta.get("generateName"):
        meta["name"] = meta["generateName"] + "".join(secrets.choice(_NAME_CHARS) for _ in range(5))
    for key in _SYSTEM_FIELDS:
        meta.pop(key, None)
    normalize_metadata(meta)
    if rtype.status:
        obj.pop("status", None)
    strategy = strategy_for(rtype)
    warnings = field_warnings(strategy.prepare(obj, None, cluster), query)
    errors = metadata_errors(rtype.plural, meta) + strategy.validate(obj, None, cluster)
    if errors:
        raise invalid_object(rtype, meta.get("name", ""), errors)
    if cluster.store.get(rtype.storage_key, meta.get("namespace", ""), meta["name"]) is not None:
        raise already_exists(rtype, meta["name"])
    meta["uid"] = new_uid()
    meta["creationTimestamp"] = rfc3339(cluster.clock())
    if rtype.generation != "none":
        meta["generation"] = 1
    if query.dry_run:
        return 201, from_storage(to_storage(obj, rtype), rtype), warnings
    stored = cluster.store.put(rtype.storage_key, to_storage(obj, rtype), "ADDED")
    if rtype.kind == "CustomResourceDefinition":
        cluster.changed.set()
    return 201, from_storage(stored, rtype), warnings


def update(cluster: Cluster, target: Target, body: Any, query: Query) -> Outcome:
    rtype = target.rtype
    stored = current(cluster, target)
    if target.subresource == "scale":
        return _write_scale(cluster, target, stored, body, query)
    obj = decode_object(body, rtype)
    meta = obj["metadata"]
    if meta.get("name") != target.name:
        raise bad_request(
            f"the name of the object ({meta.get('name', '')}) does not match the name on the URL "
            f"({target.name})"
        )
    _check_namespace(cluster, target, meta, creating=False)
    rv = meta.get("resourceVersion") or ""
    if not rv and (rtype.custom or rtype.kind == "CustomResourceDefinition"):
        error = invalid(
            "metadata.resourceVersion", GoLiteral("0x0"), "must be specified for an update"
        )
        raise invalid_object(rtype, target.name, [error])
    if rv and rv != stored["metadata"]["resourceVersion"]:
        raise stale(rtype, target.name)
    return commit(cluster, target, stored, obj, query)


def _finalizer_errors(new: Obj, old: Obj) -> list[FieldError]:
    if not old["metadata"].get("deletionTimestamp"):
        return []
    added = [
        f
        for f in new["metadata"].get("finalizers") or []
        if f not in (old["metadata"].get("finalizers") or [])
    ]
    if not added:
        return []
    shown = "[]string{" + ", ".join(json.dumps(f) for f in added) + "}"
    detail = (
        "no new finalizers can be added if the object is being deleted, "
        f"found new finalizers {shown}"
    )
    return [FieldError("Forbidden", "metadata.finalizers", detail=detail)]


def _bump_generation(rtype: ResourceType, new: Obj, old: Obj) -> None:
    if rtype.generation == "none" or "generation" not in old["metadata"]:
        return
    if rtype.generation == "spec":
        changed = new.get("spec") != old.get("spec")
    else:
        skip = {"metadata", "status"} if rtype.status else {"metadata"}
        changed = {k: v for k, v in new.items() if k not in skip} != {
            k: v for k, v in old.items() if k not in skip
        }
    if changed:
        new["metadata"]["generation"] = old["metadata"]["generation"] + 1


def _same(new: Obj, old: Obj) -> bool:
    def strip(obj: Obj) -> Obj:
        out = copy.deepcopy(obj)
        out["metadata"].pop("resourceVersion", None)
        out["metadata"].pop("managedFields", None)
        return out

    return strip(new) == strip(old)


def commit(cluster: Cluster, target: Target, stored: Obj, new: Obj, query: Query) -> Outcome:
    """Finish an update or patch of ``stored`` (storage form) into ``new`` (request form)."""
    rtype = target.rtype
    old = from_storage(stored, rtype)
    meta = new.setdefault("metadata", {})
    for key in (*_SYSTEM_FIELDS, "name", "namespace"):
        if key in old["metadata"]:
            meta[key] = old["metadata"][key]
        else:
            meta.pop(key, None)
    meta["resourceVersion"] = old["metadata"]["resourceVersion"]
    normalize_metadata(meta)
    if target.subresource == "status":
        status = new.get("status")
        new = copy.deepcopy(old)
        if status is None:
            new.pop("status", None)
        else:
            new["status"] = status
    elif rtype.status:
        new.pop("status", None)
        if "status" in old:
            new["status"] = copy.deepcopy(old["status"])
    strategy = strategy_for(rtype)
    warnings = field_warnings(strategy.prepare(new, old, cluster), query)
    errors = metadata_errors(rtype.plural, new["metadata"]) + _finalizer_errors(new, old)
    errors += strategy.validate(new, old, cluster)
    if errors:
        raise invalid_object(rtype, target.name, errors)
    _bump_generation(rtype, new, old)
    if _same(new, old) or query.dry_run:
        return 200, new if query.dry_run else old, warnings
    if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
        return 200, deletes.remove(cluster, rtype, to_storage(new, rtype)), warnings
    saved = cluster.store.put(rtype.storage_key, to_storage(new, rtype), "MODIFIED")
    if rtype.kind == "CustomResourceDefinition":
        cluster.changed.set()
    return 200, from_storage(saved, rtype), warnings


def _decode_patch(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null")
    except ValueError as e:
        raise bad_request(f"error decoding patch: {e}") from e


def patch(cluster: Cluster, target: Target, raw: bytes, content_type: str, query: Query) -> Outcome:
    rtype = target.rtype
    if content_type not in patch_types(rtype):
        raise unsupported_media_type(patch_types(rtype))
    if content_type == APPLY:
        return apply(cluster, target, raw, query)
    stored = current(cluster, target)
    view = from_storage(stored, rtype)
    base = scale_view(view) if target.subresource == "scale" else view
    doc = _decode_patch(raw)
    if content_type == MERGE:
        patched = merge_patch(base, doc)
    elif content_type == JSON_PATCH:
        patched = json_patch(base, doc)
    else:
        if not isinstance(doc, dict):
            raise bad_request(
                "json: cannot unmarshal array into Go value of type map[string]interface {}"
            )
        patched = strategic_merge(base, doc, builtin_rules(rtype.kind))
    if not isinstance(patched, dict):
        raise ApiError(422, "Invalid", "patched object is not a JSON object")
    if target.subresource == "scale":
        return _write_scale(cluster, target, stored, patched, query)
    rv = (patched.get("metadata") or {}).get("resourceVersion")
    if rv and rv != stored["metadata"]["resourceVersion"]:
        raise stale(rtype, target.name)
    if (patched.get("metadata") or {}).get("name") != target.name:
        raise bad_request(NAME_MISMATCH)
    return commit(cluster, target, stored, decode_object(patched, rtype), query)


def apply(cluster: Cluster, target: Target, raw: bytes, query: Query) -> Outcome:
    """Server-side apply (see ``apply.py`` for what is approximated)."""
    rtype = target.rtype
    if not query.field_manager:
        raise invalid_kind(
            "PatchOptions",
            "meta.k8s.io",
            "",
            [FieldError("Required", "fieldManager", detail="is required for apply patch")],
        )
    try:
        applied = yaml.safe_load(raw.decode() or "null")
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise bad_request(f"error decoding YAML: {e}") from e
    if not isinstance(applied, dict) or not applied.get("apiVersion") or not applied.get("kind"):
        raise bad_request("invalid object type: apiVersion and kind must be set")
    decode_object(applied, rtype)
    if (applied.get("metadata") or {}).get("name") != target.name:
        raise bad_request(NAME_MISMATCH)
    rules = schema_rules(rtype.schema or {}) if rtype.custom else builtin_rules(rtype.kind)
    stored = cluster.store.get(rtype.storage_key, target.namespace, target.name)
    if stored is None:
        if target.subresource:
            raise not_found(rtype, target.name)
        outcome = create(cluster, target, server_side_apply(None, applied, None, rules), query)
    else:
        previous = cluster.applied.get((stored["metadata"]["uid"], query.field_manager))
        rv = applied["metadata"].get("resourceVersion")
        if rv and rv != stored["metadata"]["resourceVersion"]:
            raise stale(rtype, target.name)
        merged = server_side_apply(from_storage(stored, rtype), applied, previous, rules)
        outcome = commit(cluster, target, stored, merged, query)
    uid = outcome[1].get("metadata", {}).get("uid")
    if uid and not query.dry_run:
        cluster.applied[(uid, query.field_manager)] = copy.deepcopy(applied)
    return outcome


def _write_scale(
    cluster: Cluster, target: Target, stored: Obj, scale: Any, query: Query
) -> Outcome:
    if not isinstance(scale, dict) or not isinstance(
        (scale.get("spec") or {}).get("replicas", 0), int
    ):
        raise bad_request("the object provided is unrecognized (must be of type Scale)")
    replicas = (scale.get("spec") or {}).get("replicas", 0)
    if replicas < 0:
        error = invalid("spec.replicas", replicas, "must be greater than or equal to 0")
        raise invalid_kind("Scale", "autoscaling", target.name, [error])
    rv = (scale.get("metadata") or {}).get("resourceVersion")
    if rv and rv != stored["metadata"]["resourceVersion"]:
        raise stale(target.rtype, target.name)
    new = from_storage(stored, target.rtype)
    new.setdefault("spec", {})["replicas"] = replicas
    status, obj, warnings = commit(cluster, target.main(), stored, new, query)
    return status, scale_view(obj), warnings
