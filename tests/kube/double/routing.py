"""Request paths to resource targets.

``/api/v1/...`` and ``/apis/{group}/{version}/...`` in the shapes the API server serves:
``{plural}[/{name}[/{subresource}]]`` for cluster-scoped kinds and all-namespaces lists, and
``namespaces/{ns}/{plural}[/{name}[/{subresource}]]`` for namespaced ones. Discovery paths
are answered by ``discovery.py`` before this is asked.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import path_not_found
from .kinds import ResourceType
from .registry import Registry

SUBRESOURCES = {"status", "scale", "token", "finalize"}


@dataclass(frozen=True)
class Target:
    rtype: ResourceType
    namespace: str = ""
    """The namespace of the request; empty for cluster-scoped kinds and all-namespaces lists."""
    name: str = ""
    """Empty for the collection."""
    subresource: str = ""

    def main(self) -> Target:
        return Target(self.rtype, self.namespace, self.name)


def resolve(registry: Registry, parts: list[str]) -> Target:
    """``parts``: the path after ``/api/v1`` or ``/apis/{g}/{v}``, with the group and version
    as the first two items."""
    group, version, rest = parts[0], parts[1], parts[2:]
    if not rest:
        raise path_not_found()
    if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in SUBRESOURCES:
        rtype = registry.resolve(group, version, rest[2])
        if rtype is None or not rtype.namespaced or len(rest) > 5:
            raise path_not_found()
        target = Target(rtype, rest[1], *[*rest[3:5], "", ""][:2])
    else:
        rtype = registry.resolve(group, version, rest[0])
        if rtype is None or len(rest) > 3:
            raise path_not_found()
        if rtype.namespaced and len(rest) > 1:
            raise path_not_found()
        target = Target(rtype, "", *[*rest[1:3], "", ""][:2])
    if target.subresource and not _has_subresource(target.rtype, target.subresource):
        raise path_not_found()
    return target


def _has_subresource(rtype: ResourceType, name: str) -> bool:
    if name == "status":
        return rtype.status
    if name == "scale":
        return rtype.scale
    if name == "token":
        return rtype.plural == "serviceaccounts" and not rtype.group
    if name == "finalize":
        return rtype.plural == "namespaces" and not rtype.group
    return False
