"""Label and field selectors (``labels.Parse`` and ``fields.ParseSelector`` semantics).

Labels: ``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k``, ``!k``, ``k>n``,
``k<n``; comma is AND; ``!=`` and ``notin`` match objects without the label. Fields: ``=``,
``==``, ``!=`` on metadata.name, metadata.namespace and the kind's own field labels; any other
key is a 400, as in Kubernetes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import ApiError, bad_request
from .kinds import ResourceType

Matcher = Callable[[dict[str, Any]], bool]


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        has = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return has
        if self.op == "!":
            return not has
        if self.op in ("=", "==", "in"):
            return has and value in self.values
        if self.op in ("!=", "notin"):
            return not has or value not in self.values
        if not has or value is None or not value.lstrip("-").isdigit():
            return False
        bound = int(self.values[0])
        return int(value) > bound if self.op == ">" else int(value) < bound


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside ``( )``."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p for p in (x.strip() for x in parts) if p]


_EQUALITY = re.compile(r"\s*([^\s!=<>,()]+)\s*(==|=|!=|>|<)\s*([^\s,()]*)\s*")
_SET = re.compile(r"\s*([^\s!=<>,()]+)\s+(in|notin)\s*\(([^()]*)\)\s*")
_EXISTS = re.compile(r"\s*(!?)\s*([^\s!=<>,()]+)\s*")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


def _requirement(text: str) -> Requirement:
    if match := _SET.fullmatch(text):
        key, op = match.group(1), match.group(2)
        values = tuple(v.strip() for v in match.group(3).split(",") if v.strip())
    elif match := _EQUALITY.fullmatch(text):
        key, op, values = match.group(1), match.group(2), (match.group(3),)
        if op in (">", "<") and not values[0].lstrip("-").isdigit():
            raise bad_request(
                "unable to parse requirement: "
                "for 'Gt', 'Lt' operators, the value must be an integer"
            )
    elif match := _EXISTS.fullmatch(text):
        key, op, values = match.group(2), "!" if match.group(1) else "exists", ()
    else:
        raise bad_request(
            f"unable to parse requirement: found '{text.strip()}', expected: identifier"
        )
    for value in values:
        if not _LABEL_VALUE.fullmatch(value) or len(value) > 63:
            raise bad_request(
                f'unable to parse requirement: values[0][{key}]: Invalid value: "{value}": a valid '
                "label must be an empty string or consist of alphanumeric characters, '-', '_' or "
                "'.', and must start and end with an alphanumeric character"
            )
    return Requirement(key, op, values)


def parse_labels(text: str) -> Matcher:
    requirements = [_requirement(part) for part in _split_top(text)]

    def match(obj: dict[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(r.matches(labels) for r in requirements)

    return match


def _field_value(obj: dict[str, Any], path: str) -> str:
    if path == "source" and obj.get("kind") == "Event":
        path = "source.component"
    node: Any = obj
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, bool):
        return "true" if node else "false"
    return "" if node is None else str(node)


def _split_unescaped(text: str, sep: str) -> list[str]:
    return [p.replace("\\" + sep, sep) for p in re.split(r"(?<!\\)" + re.escape(sep), text)]


def parse_fields(text: str, rtype: ResourceType) -> Matcher:
    known = ("metadata.name", "metadata.namespace", *rtype.field_labels)
    terms: list[tuple[str, bool, str]] = []
    for part in _split_unescaped(text, ","):
        if not part.strip():
            continue
        match = re.match(r"^([^=!]+)(==|=|!=)(.*)$", part)
        if not match:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        key, op, value = match.group(1).strip(), match.group(2), match.group(3).replace("\\,", ",")
        if key not in known:
            raise _unknown_field(rtype, key)
        terms.append((key, op != "!=", value))

    def matches(obj: dict[str, Any]) -> bool:
        return all((_field_value(obj, key) == value) == equal for key, equal, value in terms)

    return matches


def _unknown_field(rtype: ResourceType, key: str) -> ApiError:
    if rtype.custom:
        return bad_request(
            f'"{key}" is not a known field selector: only "metadata.name", "metadata.namespace"'
        )
    return bad_request(f"field label not supported: {key}")


def selector(label_text: str, field_text: str, rtype: ResourceType) -> Matcher:
    """One predicate for both selectors (an empty selector matches everything)."""
    by_labels = parse_labels(label_text) if label_text.strip() else None
    by_fields = parse_fields(field_text, rtype) if field_text.strip() else None

    def match(obj: dict[str, Any]) -> bool:
        return (by_labels is None or by_labels(obj)) and (by_fields is None or by_fields(obj))

    return match
