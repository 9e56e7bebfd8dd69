"""Server-side printing: ``Table`` answers for ``kubectl get``.

kubectl asks for ``application/json;as=Table;v=v1;g=meta.k8s.io``. Custom resources get their
``additionalPrinterColumns`` (JSONPath subset: ``.a.b``, ``.a[0]``, ``.a[*].b``,
``.a[?(@.k=="v")].b``) after Name, or Name and Age when they declare none; built-in kinds get
Name and Age (the real server prints more columns for some of them). Rows carry the object as
PartialObjectMetadata unless ``includeObject`` says otherwise.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .kinds import PrinterColumn, ResourceType
from .meta import Clock, human_duration, parse_rfc3339

Obj = dict[str, Any]
_NAME_HELP = (
    "Name must be unique within a namespace. Is required when creating resources, although some "
    "resources may allow a client to request the generation of an appropriate name "
    "automatically. Name is primarily intended for creation idempotence and configuration "
    "definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
_NAME = {
    "name": "Name",
    "type": "string",
    "format": "name",
    "description": _NAME_HELP,
    "priority": 0,
}
_AGE = PrinterColumn("Age", "date", ".metadata.creationTimestamp")
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+|\*)\]|\[\?\(@\.([\w.]+)\s*==\s*[\"']([^\"']*)[\"']\)\]")


def wants_table(accept: str) -> bool:
    return "as=Table" in accept


def json_path(obj: Any, path: str) -> list[Any]:
    """Evaluate the JSONPath subset printer columns use; returns all results."""
    nodes = [obj]
    pos = 0
    path = path.strip().removeprefix("{").removesuffix("}").removeprefix("$")
    while pos < len(path):
        match = _STEP.match(path, pos)
        if not match:
            return []
        pos = match.end()
        field, index, filter_key, filter_value = match.groups()
        nodes = [n for node in nodes for n in _step(node, field, index, filter_key, filter_value)]
    return nodes


def _step(
    node: Any, field: str | None, index: str | None, key: str | None, value: str | None
) -> list[Any]:
    if field is not None:
        return [node[field]] if isinstance(node, dict) and field in node else []
    if not isinstance(node, list):
        return []
    if index == "*":
        return list(node)
    if index is not None:
        return [node[int(index)]] if int(index) < len(node) else []
    return [item for item in node if isinstance(item, dict) and _lookup(item, key or "") == value]


def _lookup(item: dict[str, Any], dotted: str) -> Any:
    node: Any = item
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _go_print(value: Any) -> str:
    """How kubectl's JSONPath printer shows a value in a string column."""
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go_print(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_go_print(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _cell(column: PrinterColumn, obj: Obj, clock: Clock) -> Any:
    results = json_path(obj, column.json_path)
    if not results or results[0] is None:
        return None
    value = results[0]
    if column.type == "string":
        return _go_print(value)
    if column.type == "date":
        moment = parse_rfc3339(value) if isinstance(value, str) else None
        return human_duration((clock() - moment).total_seconds()) if moment else None
    if column.type == "integer":
        return (
            int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        )
    if column.type == "number":
        return value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if column.type == "boolean":
        return value if isinstance(value, bool) else None
    return json.dumps(value)


def _row_object(obj: Obj, include: str) -> Obj | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata", {}),
    }


def to_table(
    rtype: ResourceType, objects: list[Obj], list_meta: Obj, include: str, clock: Clock
) -> Obj:
    columns = list(rtype.printer_columns) if rtype.custom and rtype.printer_columns else [_AGE]
    definitions = [_NAME] + [
        {
            "name": c.name,
            "type": c.type,
            "format": c.format,
            "description": c.description,
            "priority": c.priority,
        }
        for c in columns
    ]
    rows = []
    for obj in objects:
        row: Obj = {"cells": [obj["metadata"]["name"], *(_cell(c, obj, clock) for c in columns)]}
        row_object = _row_object(obj, include)
        if row_object is not None:
            row["object"] = row_object
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": definitions,
        "rows": rows,
    }
