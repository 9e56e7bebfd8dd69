"""``klambda get`` tables, from the same printer columns the CRDs give ``kubectl get``."""

from __future__ import annotations

import json
import re
import time
from typing import Any, TextIO

from klambda.api.types import KINDS, Column

_PART = re.compile(r"[^.\[]+(?:\[[^\]]*\])?")
_FILTER = re.compile(r'^(\w+)\[\?\(@\.(\w+)=="([^"]*)"\)\]$')


def jsonpath(obj: Any, path: str) -> Any:
    """The subset of kubectl's JSONPath the printer columns use: ``.a.b`` and
    ``.list[?(@.key=="value")]``."""
    for part in _PART.findall(path):
        if obj is None:
            return None
        m = _FILTER.match(part)
        if m:
            items = obj.get(m[1]) if isinstance(obj, dict) else None
            obj = next(
                (i for i in items or [] if isinstance(i, dict) and i.get(m[2]) == m[3]), None
            )
        elif isinstance(obj, dict):
            obj = obj.get(part)
        else:
            return None
    return obj


def _age(timestamp: str, now: float) -> str:
    try:
        then = time.mktime(time.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    except (ValueError, TypeError):
        return "<unknown>"
    seconds = max(0, int(now - then))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _cell(value: Any, column: Column, now: float) -> str:
    if value is None or value == "" or value == {}:
        return "<none>"
    if column.type == "date":
        return _age(str(value), now)
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def print_table(
    out: TextIO, kind: str, items: list[dict[str, Any]], *, namespaces: bool, wide: bool
) -> None:
    now = time.time()
    columns = [c for c in KINDS[kind].columns if wide or not c.priority] if kind in KINDS else []
    head = ["NAME", *(c.name.upper() for c in columns)]
    if kind in ("ConfigMap", "Secret"):
        head.append("DATA")
    rows = []
    for item in items:
        row = [
            item["metadata"]["name"],
            *(_cell(jsonpath(item, c.json_path), c, now) for c in columns),
        ]
        if kind in ("ConfigMap", "Secret"):
            row.append(str(len(item.get("data", {}))))
        rows.append([item["metadata"]["namespace"], *row] if namespaces else row)
    if namespaces:
        head = ["NAMESPACE", *head]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        print("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip(), file=out)
