"""``/openapi/v3``: small synthetic documents, enough for ``kubectl apply`` to validate.

kubectl (``--validate=strict``, its default) checks through ``/openapi/v3`` whether the PATCH
operation of a kind takes the ``fieldValidation`` query parameter; if so it leaves validation
to the server (``fieldValidation=Strict``) instead of validating client-side. Each group-version
document therefore lists, per kind, a PATCH operation with ``x-kubernetes-group-version-kind``
and that parameter. The request bodies offered leave out strategic merge patch, so kubectl
computes strategic patches from its compiled-in types (built-ins) and merge patches for custom
resources. Custom resources' schemas are included as components (``kubectl explain``).
``/openapi/v2`` is not served (404), which kubectl tolerates.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .errors import path_not_found
from .kinds import ResourceType
from .registry import Registry

Doc = dict[str, Any]
_PATCH_BODIES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
)
_QUERY = ("dryRun", "fieldManager", "fieldValidation", "force")


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _item_path(rtype: ResourceType) -> str:
    base = "/" + _gv_path(rtype.group, rtype.version)
    scope = "/namespaces/{namespace}" if rtype.namespaced else ""
    return f"{base}{scope}/{rtype.plural}/{{name}}"


def _component_name(rtype: ResourceType) -> str:
    reversed_group = (
        ".".join(reversed(rtype.group.split("."))) if rtype.group else "io.k8s.api.core"
    )
    return f"{reversed_group}.{rtype.version}.{rtype.kind}"


def group_version_document(registry: Registry, group: str, version: str) -> Doc:
    types = [t for t in registry.resources(group, version) if not t.create_only]
    if not registry.resources(group, version):
        raise path_not_found()
    paths: Doc = {}
    schemas: Doc = {}
    for rtype in types:
        gvk = {"group": rtype.group, "version": rtype.version, "kind": rtype.kind}
        ref = {
            "schema": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}
        }
        paths[_item_path(rtype)] = {
            "patch": {
                "operationId": f"patch{rtype.kind}",
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": gvk,
                "parameters": [
                    {"name": q, "in": "query", "schema": {"type": "string"}} for q in _QUERY
                ],
                "requestBody": {"content": {t: ref for t in _PATCH_BODIES}, "required": True},
                "responses": {"200": {"description": "OK"}},
            }
        }
        if rtype.custom and rtype.schema:
            schemas[_component_name(rtype)] = {
                **rtype.schema,
                "x-kubernetes-group-version-kind": [gvk],
            }
    schemas["io.k8s.apimachinery.pkg.apis.meta.v1.Patch"] = {"type": "object"}
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "unversioned"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def root(registry: Registry) -> Doc:
    paths: Doc = {}
    gvs = [("", "v1")] + [(g, v) for g, versions in registry.groups() if g for v in versions]
    for group, version in gvs:
        doc = group_version_document(registry, group, version)
        digest = hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32].upper()
        path = _gv_path(group, version)
        paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
    return {"paths": paths}
