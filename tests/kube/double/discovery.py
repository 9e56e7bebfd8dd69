"""``/version`` and legacy discovery (APIVersions, APIGroupList, APIResourceList).

kubectl first asks for aggregated discovery (``as=APIGroupDiscoveryList``) through Accept; a
plain ``application/json`` answer makes it fall back to these documents, which list every
served kind (CRD kinds once Established) with verbs, short names, categories and the
status/scale/token subresources.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from .errors import path_not_found
from .kinds import ResourceType
from .registry import Registry

Doc = dict[str, Any]


def version(git_version: str) -> Doc:
    major, minor = git_version.lstrip("v").split(".")[:2]
    return {
        "major": major,
        "minor": minor,
        "gitVersion": git_version,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2024-12-11T00:00:00Z",
        "goVersion": "go1.23.4",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def api_versions(address: str) -> Doc:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}],
    }


def _group(name: str, versions: list[str]) -> Doc:
    listed = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": listed, "preferredVersion": listed[0]}


def api_group_list(registry: Registry) -> Doc:
    groups = [_group(g, vs) for g, vs in registry.groups() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(registry: Registry, name: str) -> Doc:
    for group, versions in registry.groups():
        if group == name and group:
            return {"kind": "APIGroup", "apiVersion": "v1", **_group(group, versions)}
    raise path_not_found()


def _storage_hash(rtype: ResourceType) -> str:
    digest = hashlib.sha256(f"{rtype.group}/{rtype.version}/{rtype.kind}".encode()).digest()
    return base64.b64encode(digest[:8]).decode()


def _resources(rtype: ResourceType) -> list[Doc]:
    main: Doc = {
        "name": rtype.plural,
        "singularName": rtype.singular,
        "namespaced": rtype.namespaced,
        "kind": rtype.kind,
        "verbs": list(rtype.verbs),
    }
    if rtype.short_names:
        main["shortNames"] = list(rtype.short_names)
    if rtype.categories:
        main["categories"] = list(rtype.categories)
    if not rtype.create_only:
        main["storageVersionHash"] = _storage_hash(rtype)
    out = [main]
    sub = {"singularName": "", "namespaced": rtype.namespaced}
    if rtype.status:
        out.append(
            {
                "name": f"{rtype.plural}/status",
                **sub,
                "kind": rtype.kind,
                "verbs": ["get", "patch", "update"],
            }
        )
    if rtype.scale:
        scale = {
            "group": "autoscaling",
            "version": "v1",
            "kind": "Scale",
            "verbs": ["get", "patch", "update"],
        }
        out.append({"name": f"{rtype.plural}/scale", **sub, **scale})
    if rtype.plural == "serviceaccounts" and not rtype.group:
        token = {
            "group": "authentication.k8s.io",
            "version": "v1",
            "kind": "TokenRequest",
            "verbs": ["create"],
        }
        out.append({"name": "serviceaccounts/token", **sub, **token})
    if rtype.plural == "namespaces" and not rtype.group:
        out.append({"name": "namespaces/finalize", **sub, "kind": "Namespace", "verbs": ["update"]})
    return out


def api_resource_list(registry: Registry, group: str, version_name: str) -> Doc:
    types = registry.resources(group, version_name)
    if not types:
        raise path_not_found()
    resources = [r for t in sorted(types, key=lambda t: t.plural) for r in _resources(t)]
    group_version = f"{group}/{version_name}" if group else version_name
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }
