"""Strategic merge patch for built-in kinds, and list rules shared with server-side apply.

Lists are merged by their ``patchMergeKey`` (containers by name, env by name, container ports by
containerPort, volumes by name, volumeMounts by mountPath, ...) instead of being replaced, and
the ``$patch`` (replace/delete/merge), ``$retainKeys``, ``$deleteFromPrimitiveList/<f>`` and
``$setElementOrder/<f>`` directives are honoured, as in apimachinery's ``strategicpatch``. The
merge keys come from the Go struct tags of the kinds the double serves (:func:`builtin_rules`);
custom resources get theirs from ``x-kubernetes-list-type`` (:func:`schema_rules`), which is what
server-side apply uses.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

Path = tuple[str, ...]
ListRule = tuple[str, tuple[str, ...]]
"""(``merge`` | ``replace``, merge keys); ``merge`` without keys is a set of primitives."""
ListRules = Callable[[Path], ListRule]

REPLACE: ListRule = ("replace", ())
_CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")
_BY_FIELD: dict[str, ListRule] = {
    "containers": ("merge", ("name",)),
    "initContainers": ("merge", ("name",)),
    "ephemeralContainers": ("merge", ("name",)),
    "env": ("merge", ("name",)),
    "volumes": ("merge", ("name",)),
    "volumeMounts": ("merge", ("mountPath",)),
    "volumeDevices": ("merge", ("devicePath",)),
    "imagePullSecrets": ("merge", ("name",)),
    "hostAliases": ("merge", ("ip",)),
    "topologySpreadConstraints": ("merge", ("topologyKey",)),
    "resourceClaims": ("merge", ("name",)),
    "conditions": ("merge", ("type",)),
    "ownerReferences": ("merge", ("uid",)),
    "finalizers": ("merge", ()),
}


def builtin_rules(kind: str) -> ListRules:
    """Merge keys of the built-in kinds' Go types (``patchStrategy``/``patchMergeKey`` tags)."""

    def rule(path: Path) -> ListRule:
        name = path[-1]
        if name == "ports":
            if len(path) >= 2 and path[-2] in _CONTAINER_LISTS:
                return ("merge", ("containerPort",))
            if kind == "Service" and path == ("spec", "ports"):
                return ("merge", ("port",))
            return REPLACE
        if name == "finalizers" and path != ("metadata", "finalizers"):
            return REPLACE
        return _BY_FIELD.get(name, REPLACE)

    return rule


def schema_rules(schema: dict[str, Any]) -> ListRules:
    """List rules of a structural schema: ``map`` lists merge by keys, ``set`` lists by value."""

    def rule(path: Path) -> ListRule:
        if path[:1] == ("metadata",):
            return _BY_FIELD.get(path[-1], REPLACE) if len(path) == 2 else REPLACE
        node: dict[str, Any] | None = schema
        for part in path:
            if node is None:
                return REPLACE
            if node.get("type") == "array":
                node = node.get("items")
            if node is None:
                return REPLACE
            props = node.get("properties") or {}
            extra = node.get("additionalProperties")
            node = props.get(part) or (extra if isinstance(extra, dict) else None)
        if node is None:
            return REPLACE
        kind = node.get("x-kubernetes-list-type")
        if kind == "map":
            return ("merge", tuple(node.get("x-kubernetes-list-map-keys") or ()))
        if kind == "set":
            return ("merge", ())
        return REPLACE

    return rule


def strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [
            strip_directives(v) for v in value if not (isinstance(v, dict) and set(v) == {"$patch"})
        ]
    return copy.deepcopy(value)


def strategic_merge(original: Any, patch: Any, rules: ListRules, path: Path = ()) -> Any:
    """Apply a strategic merge patch; returns None when the patch deletes the map itself."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return strip_directives(patch)
    if directive == "delete":
        return None
    result = copy.deepcopy(original) if isinstance(original, dict) else {}
    orders: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            result[name] = [x for x in result.get(name) or [] if x not in value]
        elif key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = value
        elif value is None:
            result.pop(key, None)
        else:
            _merge_field(result, key, value, rules, (*path, key))
    for name, order in orders.items():
        if isinstance(result.get(name), list):
            result[name] = _reorder(result[name], order, rules((*path, name))[1])
    if isinstance(patch.get("$retainKeys"), list):
        result = {k: v for k, v in result.items() if k in patch["$retainKeys"]}
    return result


def _merge_field(
    result: dict[str, Any], key: str, value: Any, rules: ListRules, path: Path
) -> None:
    if isinstance(value, dict):
        merged = strategic_merge(result.get(key), value, rules, path)
        if merged is None:
            result.pop(key, None)
        else:
            result[key] = merged
    elif isinstance(value, list):
        strategy, keys = rules(path)
        current = result.get(key)
        if strategy == "merge" and isinstance(current, list):
            result[key] = _merge_list(current, value, keys, rules, path)
        else:
            result[key] = strip_directives(value)
    else:
        result[key] = copy.deepcopy(value)


def same_item(a: Any, b: Any, keys: tuple[str, ...]) -> bool:
    return isinstance(a, dict) and isinstance(b, dict) and all(a.get(k) == b.get(k) for k in keys)


def _merge_list(
    current: list[Any], patch: list[Any], keys: tuple[str, ...], rules: ListRules, path: Path
) -> list[Any]:
    if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
        kept = [p for p in patch if not (isinstance(p, dict) and p.get("$patch") == "replace")]
        return [strip_directives(p) for p in kept]
    result = copy.deepcopy(current)
    for item in patch:
        if not keys or not isinstance(item, dict):
            if item not in result:
                result.append(copy.deepcopy(item))
            continue
        if item.get("$patch") == "delete":
            result = [r for r in result if not same_item(r, item, keys)]
            continue
        index = next((i for i, r in enumerate(result) if same_item(r, item, keys)), None)
        if index is None:
            result.append(strip_directives(item))
        else:
            result[index] = strategic_merge(result[index], item, rules, path)
    return result


def _reorder(items: list[Any], order: list[Any], keys: tuple[str, ...]) -> list[Any]:
    def position(item: Any) -> int:
        for i, wanted in enumerate(order):
            if (keys and same_item(item, wanted, keys)) or (not keys and item == wanted):
                return i
        return len(order)

    return sorted(items, key=position)
