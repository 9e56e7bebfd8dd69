"""CEL ``x-kubernetes-validations`` on custom resources, evaluated with cel-python (``celpy``).

Mirrors apiextensions' ``schema/cel/validation.go``: rules run at every schema node that has
them, with ``self`` typed by the schema (``number`` is a double, ``integer`` an int) and, on
updates, ``oldSelf`` correlated by property, map key or list-map key; rules that mention
``oldSelf`` are skipped where there is no old value. Failures become ``field.Error``s worded as
the API server words them. Kubernetes' CEL libraries are added where cel-python lacks them
(strings, lists, regex ``find``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import celpy
import re2
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError

from .errors import FieldError, invalid

Schema = dict[str, Any]
_OLD_SELF = re.compile(r"\boldSelf\b")


def _s(x: Any) -> celtypes.StringType:
    return celtypes.StringType(x)


def _index_of(x: Any, sub: Any, start: Any = 0) -> Any:
    if isinstance(x, list):
        return celtypes.IntType(next((i for i, v in enumerate(x) if v == sub), -1))
    return celtypes.IntType(str(x).find(str(sub), int(start)))


def _last_index_of(x: Any, sub: Any) -> Any:
    if isinstance(x, list):
        return celtypes.IntType(max((i for i, v in enumerate(x) if v == sub), default=-1))
    return celtypes.IntType(str(x).rfind(str(sub)))


def _split(text: Any, sep: Any, limit: Any = -1) -> celtypes.ListType:
    limit = int(limit)
    if limit == 0:
        return celtypes.ListType([])
    parts = str(text).split(str(sep), limit - 1 if limit > 0 else -1)
    return celtypes.ListType([_s(p) for p in parts])


def _find(text: Any, pattern: Any) -> celtypes.StringType:
    match = re2.search(str(pattern), str(text))
    return _s(match.group(0) if match else "")


def _find_all(text: Any, pattern: Any, limit: Any = -1) -> celtypes.ListType:
    found = [_s(m.group(0)) for m in re2.finditer(str(pattern), str(text))]
    return celtypes.ListType(found if int(limit) < 0 else found[: int(limit)])


K8S_FUNCTIONS: dict[str, Callable[..., Any]] = {
    # k8s strings library (cel-go ext.Strings)
    "charAt": lambda s, i: _s(str(s)[int(i)] if int(i) < len(str(s)) else ""),
    "indexOf": _index_of,
    "lastIndexOf": _last_index_of,
    "lowerAscii": lambda s: _s(str(s).lower()),
    "upperAscii": lambda s: _s(str(s).upper()),
    "replace": lambda s, old, new, n=-1: _s(str(s).replace(str(old), str(new), int(n))),
    "split": _split,
    "substring": lambda s, a, b=None: _s(str(s)[int(a) : None if b is None else int(b)]),
    "trim": lambda s: _s(str(s).strip()),
    "join": lambda xs, sep="": _s(str(sep).join(str(x) for x in xs)),
    # k8s lists library
    "isSorted": lambda xs: celtypes.BoolType(list(xs) == sorted(xs)),
    "sum": lambda xs: sum(xs[1:], xs[0]) if xs else celtypes.IntType(0),
    "min": lambda xs: min(xs),
    "max": lambda xs: max(xs),
    # k8s regex library
    "find": _find,
    "findAll": _find_all,
}


def to_cel(value: Any, schema: Schema) -> Any:
    """Convert a JSON value into CEL, typed by its structural schema."""
    if value is None:
        return None
    kind = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        return celtypes.IntType(value) if isinstance(value, int) else _s(value)
    if kind == "object" and isinstance(value, dict):
        return _object_to_cel(value, schema)
    if kind == "array" and isinstance(value, list):
        items = schema.get("items") or {}
        return celtypes.ListType([to_cel(v, items) for v in value])
    if kind == "integer" and isinstance(value, int | float):
        return celtypes.IntType(int(value))
    if kind == "number" and isinstance(value, int | float):
        return celtypes.DoubleType(float(value))
    return json_to_cel(value)


def _object_to_cel(value: dict[str, Any], schema: Schema) -> celtypes.MapType:
    props = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    out: dict[Any, Any] = {}
    for key, item in value.items():
        if key in props:
            out[_s(key)] = to_cel(item, props[key])
        elif isinstance(extra, dict):
            out[_s(key)] = to_cel(item, extra)
        else:
            out[_s(key)] = json_to_cel(item)
    return celtypes.MapType(out)


@dataclass(frozen=True)
class Rule:
    rule: str
    message: str
    message_expression: str
    field_path: str
    reason: str
    uses_old_self: bool

    @classmethod
    def from_schema(cls, raw: dict[str, Any]) -> Rule:
        text = raw.get("rule", "")
        return cls(
            rule=text,
            message=(raw.get("message") or "").strip(),
            message_expression=raw.get("messageExpression") or "",
            field_path=raw.get("fieldPath") or "",
            reason=raw.get("reason") or "",
            uses_old_self=bool(_OLD_SELF.search(text)) and not raw.get("optionalOldSelf"),
        )

    @property
    def error_string(self) -> str:
        """``ruleErrorString``: the message if there is one, else the rule."""
        return self.message or self.rule.strip()


class CelEvaluator:
    """Compiles rules once and evaluates them over objects."""

    def __init__(self) -> None:
        self._env = celpy.Environment()
        self._programs: dict[str, Any] = {}

    def compile_error(self, expression: str) -> str | None:
        """The compile error of ``expression``, or None if it compiles."""
        try:
            self._program(expression)
        except CELParseError as e:
            return f"compilation failed: {str(e).splitlines()[0] if str(e) else e}"
        return None

    def _program(self, expression: str) -> Any:
        if expression not in self._programs:
            self._programs[expression] = self._env.program(
                self._env.compile(expression), functions=K8S_FUNCTIONS
            )
        return self._programs[expression]

    def evaluate(self, expression: str, activation: dict[str, Any]) -> Any:
        """Evaluate; raises ``CELEvalError`` on runtime errors, returned or raised."""
        result = self._program(expression).evaluate(activation)
        if isinstance(result, CELEvalError):
            raise result
        return result

    # validation walk ---------------------------------------------------------------------

    def validate(self, new: Any, old: Any, schema: Schema) -> list[FieldError]:
        """All rule failures in ``new`` (``old`` is None on create)."""
        errors: list[FieldError] = []
        self._walk(
            _root_view(new), _root_view(old) if old is not None else None, schema, None, errors
        )
        return errors

    def _walk(
        self, new: Any, old: Any, schema: Schema, path: str | None, errors: list[FieldError]
    ) -> None:
        if new is None:
            return
        for raw in schema.get("x-kubernetes-validations") or []:
            error = self._check(Rule.from_schema(raw), new, old, schema, path)
            if error is not None:
                errors.append(error)
        if isinstance(new, dict):
            self._walk_object(new, old if isinstance(old, dict) else None, schema, path, errors)
        elif isinstance(new, list) and isinstance(schema.get("items"), dict):
            items = schema["items"]
            for i, item in enumerate(new):
                self._walk(item, _correlate(item, old, schema), items, f"{path or ''}[{i}]", errors)

    def _walk_object(
        self,
        new: dict[str, Any],
        old: dict[str, Any] | None,
        schema: Schema,
        path: str | None,
        errors: list[FieldError],
    ) -> None:
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, value in new.items():
            old_value = old.get(key) if old is not None else None
            if key in props:
                self._walk(value, old_value, props[key], f"{path}.{key}" if path else key, errors)
            elif isinstance(extra, dict):
                self._walk(value, old_value, extra, f"{path or ''}[{key}]", errors)

    def _check(
        self, rule: Rule, new: Any, old: Any, schema: Schema, path: str | None
    ) -> FieldError | None:
        if rule.uses_old_self and old is None:
            return None  # transition rules only run when there is an old value
        shown = schema.get("type", "")
        where = (
            (path or "") + rule.field_path
            if rule.field_path
            else (path if path is not None else "<nil>")
        )
        activation = {"self": to_cel(new, schema)}
        if rule.uses_old_self:
            activation["oldSelf"] = to_cel(old, schema)
        try:
            ok = self.evaluate(rule.rule, activation)
        except CELEvalError as e:
            return invalid(
                where, shown, f"{_eval_error_text(e)} evaluating rule: {rule.error_string}"
            )
        if ok is True or (isinstance(ok, celtypes.BoolType) and bool(ok)):
            return None
        return _failure(rule, where, shown, self._message(rule, activation))

    def _message(self, rule: Rule, activation: dict[str, Any]) -> str:
        if rule.message_expression:
            try:
                text = str(self.evaluate(rule.message_expression, activation)).strip()
                if text:
                    return text
            except CELEvalError:
                pass
        return rule.message or f"failed rule: {rule.rule.strip()}"


def _failure(rule: Rule, where: str, shown: str, message: str) -> FieldError:
    if rule.reason == "FieldValueForbidden":
        return FieldError("Forbidden", where, detail=message)
    if rule.reason == "FieldValueRequired":
        return FieldError("Required", where, detail=message)
    if rule.reason == "FieldValueDuplicate":
        return FieldError("Duplicate", where, shown)
    return invalid(where, shown, message)


def _eval_error_text(error: CELEvalError) -> str:
    text = str(error.args[0]) if error.args else str(error)
    missing = re.match(r"no such member in mapping: '(.*)'", text)
    return f"no such key: {missing.group(1)}" if missing else text


def _root_view(obj: Any) -> Any:
    """At the root, CEL sees only ``metadata.name`` and ``metadata.generateName``."""
    if not isinstance(obj, dict):
        return obj
    view = dict(obj)
    meta = obj.get("metadata") or {}
    view["metadata"] = {k: meta[k] for k in ("name", "generateName") if k in meta}
    return view


def _correlate(item: Any, old: Any, schema: Schema) -> Any:
    """The old item matching ``item`` by ``x-kubernetes-list-map-keys`` (or equal, for sets)."""
    if not isinstance(old, list):
        return None
    kind = schema.get("x-kubernetes-list-type")
    if kind == "map" and isinstance(item, dict):
        keys = schema.get("x-kubernetes-list-map-keys") or []
        return next(
            (o for o in old if isinstance(o, dict) and all(o.get(k) == item.get(k) for k in keys)),
            None,
        )
    if kind == "set":
        return item if item in old else None
    return None
