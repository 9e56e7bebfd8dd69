"""Where the operator's workloads live, and which pods serve a version (pure).

The operator creates them; the gateway reads them to find endpoints and to report demand. A
pod serves a version only when Kubernetes made it for the version's Deployment: its controller
is a ReplicaSet whose controller is that Deployment. Labels alone prove nothing, since anyone
who may create pods in the namespace can copy them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from klambda.kube import names
from klambda.kube.paths import path_for

VersionKey = tuple[str, str, str]
"""(namespace, function, version)."""


def deployments_path(
    namespace: str | None = None, name: str | None = None, sub: str | None = None
) -> str:
    return path_for("apps", "v1", "deployments", namespace, name, sub)


def pods_path(namespace: str | None = None) -> str:
    return path_for("", "v1", "pods", namespace)


def replicasets_path(namespace: str | None = None) -> str:
    return path_for("apps", "v1", "replicasets", namespace)


def controller_of(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The ownerReference marked ``controller`` (the object's one managing owner)."""
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    return next((r for r in refs if r.get("controller")), None)


def version_replica_sets(replica_sets: Iterable[dict[str, Any]], key: VersionKey) -> set[str]:
    """Uids of the ReplicaSets the version's Deployment controls."""
    namespace, function, version = key
    deployment = names.deployment_name(function, version)
    out = set()
    for rs in replica_sets:
        meta = rs.get("metadata", {})
        owner = controller_of(rs)
        if (
            meta.get("namespace") == namespace
            and owner is not None
            and owner.get("kind") == "Deployment"
            and owner.get("name") == deployment
        ):
            out.add(str(meta.get("uid", "")))
    return out


def version_key_of(obj: dict[str, Any]) -> VersionKey | None:
    """(namespace, function, version) of a Deployment or pod of klambda's, from its labels."""
    meta = obj.get("metadata", {})
    labels = meta.get("labels") or {}
    function, slug = labels.get(names.FUNCTION_LABEL), labels.get(names.VERSION_LABEL)
    if not function or not slug:
        return None
    return (meta.get("namespace", ""), function, names.version_of_slug(slug))


def function_key_of(obj: dict[str, Any]) -> tuple[str, str] | None:
    """(namespace, function) of a Deployment or pod of klambda's."""
    key = version_key_of(obj)
    return None if key is None else (key[0], key[1])


def ready_endpoints(
    pods: Iterable[dict[str, Any]], key: VersionKey, owners: Collection[str]
) -> tuple[str, ...]:
    """gRPC addresses of a version's pods that are Ready and not terminating, made by one of
    ``owners`` (``version_replica_sets``): a look-alike pod never gets the version's traffic."""
    namespace, function, version = key
    slug = names.version_slug(version)
    out = []
    for pod in pods:
        meta = pod.get("metadata", {})
        labels = meta.get("labels", {})
        if (
            meta.get("namespace") != namespace
            or labels.get(names.FUNCTION_LABEL) != function
            or labels.get(names.VERSION_LABEL) != slug
            or meta.get("deletionTimestamp")
        ):
            continue
        owner = controller_of(pod)
        if owner is None or owner.get("kind") != "ReplicaSet" or owner.get("uid") not in owners:
            continue
        status = pod.get("status", {})
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions", [])
        )
        if ready and status.get("podIP"):
            out.append(f"{status['podIP']}:{names.DATA_PORT}")
    return tuple(sorted(out))
