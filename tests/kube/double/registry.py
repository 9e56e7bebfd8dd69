"""The live set of resource types: built-ins plus the kinds of established CRDs.

Request routing (``routing.py``), discovery and OpenAPI (``discovery.py``, ``openapi.py``) and
the controllers read it; ``controllers.py`` adds and removes CRD kinds as CRDs become
Established or go away.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .kinds import BUILTIN_TYPES, ResourceType
from .store import Key


@dataclass
class Registry:
    _types: dict[tuple[str, str, str], ResourceType] = field(default_factory=dict)
    _crd_types: dict[str, list[ResourceType]] = field(default_factory=dict)
    _order: list[str] = field(default_factory=list)
    """Groups in the order they appeared (built-ins first), as discovery lists them."""

    @classmethod
    def with_builtins(cls) -> Registry:
        registry = cls()
        for rtype in BUILTIN_TYPES:
            registry._add(rtype)
        return registry

    def _add(self, rtype: ResourceType) -> None:
        self._types[(rtype.group, rtype.version, rtype.plural)] = rtype
        if rtype.group not in self._order:
            self._order.append(rtype.group)

    def resolve(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._types.get((group, version, plural))

    def set_crd(self, crd_name: str, types: list[ResourceType]) -> None:
        self.remove_crd(crd_name)
        self._crd_types[crd_name] = types
        for rtype in types:
            self._add(rtype)

    def remove_crd(self, crd_name: str) -> None:
        for rtype in self._crd_types.pop(crd_name, []):
            self._types.pop((rtype.group, rtype.version, rtype.plural), None)
        groups = {t.group for t in self._types.values()}
        self._order = [g for g in self._order if g in groups]

    def crd_types(self, crd_name: str) -> list[ResourceType]:
        return list(self._crd_types.get(crd_name, []))

    def groups(self) -> list[tuple[str, list[str]]]:
        """(group, versions with the preferred first) for every served group."""
        out = []
        for group in self._order:
            versions: list[str] = []
            for g, v, _ in self._types:
                if g == group and v not in versions:
                    versions.append(v)
            out.append((group, versions))
        return out

    def resources(self, group: str, version: str) -> list[ResourceType]:
        return [t for (g, v, _), t in self._types.items() if g == group and v == version]

    def all(self) -> list[ResourceType]:
        return list(self._types.values())

    def for_storage(self, key: Key) -> ResourceType | None:
        """The type objects of ``key`` are stored as (the storage version)."""
        candidates = [
            t for t in self._types.values() if t.storage_key == key and t.storage_group is None
        ]
        for rtype in candidates:
            if not rtype.custom or rtype.version == rtype.storage_version:
                return rtype
        return candidates[0] if candidates else None

    def for_kind(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        for rtype in self._types.values():
            if rtype.group == group and rtype.version == version and rtype.kind == kind:
                return rtype
        return None
