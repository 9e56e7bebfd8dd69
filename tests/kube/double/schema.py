"""Structural OpenAPI v3 schemas of CRDs: pruning, defaulting and value validation.

Follows apiextensions-apiserver: unknown fields are pruned (and reported, for
``fieldValidation``), defaults fill absent fields of objects that exist, and validation errors
carry kube-openapi's wording converted to ``field.Error`` (``validation.go``'s
``kubeOpenAPIResultToFieldErrors``). CEL rules are evaluated separately (``cel.py``).
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import re2

from .errors import OMIT, FieldError, go_number, required

Schema = dict[str, Any]
_OBJECT_META_FIELDS = {
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
    "annotations", "ownerReferences", "finalizers", "managedFields",
}  # fmt: skip


def child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


# pruning ---------------------------------------------------------------------------------


def prune(obj: dict[str, Any], schema: Schema) -> list[str]:
    """Drop fields the schema does not know, in place; return their paths (``spec.foo``)."""
    unknown: list[str] = []
    for key in list(obj):
        if key in ("apiVersion", "kind"):
            continue
        if key == "metadata":
            if isinstance(obj[key], dict):
                for meta_key in [k for k in obj[key] if k not in _OBJECT_META_FIELDS]:
                    del obj[key][meta_key]
                    unknown.append(f"metadata.{meta_key}")
            continue
        _prune_property(obj, key, schema, "", unknown)
    return unknown


def _prune_property(
    obj: dict[str, Any], key: str, schema: Schema, path: str, unknown: list[str]
) -> None:
    props = schema.get("properties") or {}
    if key in props:
        _prune_value(obj[key], props[key], child(path, key), unknown)
    elif isinstance(schema.get("additionalProperties"), dict):
        _prune_value(obj[key], schema["additionalProperties"], child(path, key), unknown)
    elif not (
        schema.get("x-kubernetes-preserve-unknown-fields")
        or schema.get("additionalProperties") is True
    ):
        del obj[key]
        unknown.append(child(path, key))


def _prune_value(value: Any, schema: Schema, path: str, unknown: list[str]) -> None:
    if schema.get("x-kubernetes-int-or-string"):
        return
    if isinstance(value, dict):
        embedded = schema.get("x-kubernetes-embedded-resource")
        for key in list(value):
            if embedded and key in ("apiVersion", "kind", "metadata"):
                continue
            _prune_property(value, key, schema, path, unknown)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            _prune_value(item, schema["items"], f"{path}[{i}]", unknown)


# defaulting ------------------------------------------------------------------------------


def apply_defaults(value: Any, schema: Schema) -> None:
    """Fill defaults of absent properties of existing objects, in place (structural defaulting)."""
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for key, sub in props.items():
            if key in value and value[key] is None and not sub.get("nullable"):
                del value[key]  # null of a non-nullable field is pruned, then defaulted
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                apply_defaults(value[key], sub)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key in [k for k in value if k not in props]:
                apply_defaults(value[key], extra)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            apply_defaults(item, schema["items"])


# validation ------------------------------------------------------------------------------


def validate(value: Any, schema: Schema, path: str = "") -> list[FieldError]:
    """kube-openapi validation of ``value`` against ``schema``; ``path`` names ``value``."""
    if value is None:
        if schema.get("nullable") or not schema.get("type"):
            return []
        return [_type_error(path, value, schema["type"])]
    type_error = _check_type(value, schema, path)
    if type_error:
        return [type_error]
    errors = _check_value(value, schema, path)
    if isinstance(value, dict):
        errors += _check_object(value, schema, path)
    elif isinstance(value, list):
        errors += _check_array(value, schema, path)
    for sub in schema.get("allOf") or []:
        errors += validate(value, sub, path)
    errors += _check_combinators(value, schema, path)
    return errors


def _name(path: str) -> str:
    return path or "body"


def _type_error(path: str, value: Any, expected: str) -> FieldError:
    detail = f"{_name(path)} in body must be of type {expected}: {json.dumps(json_type(value))}"
    return FieldError("TypeInvalid", path, value if value is not None else "null", detail)


def _check_type(value: Any, schema: Schema, path: str) -> FieldError | None:
    expected = schema.get("type")
    actual = json_type(value)
    if schema.get("x-kubernetes-int-or-string"):
        ok = actual in ("integer", "string") or (actual == "number" and float(value).is_integer())
        return None if ok else _type_error(path, value, "integer,string")
    if not expected or expected == actual:
        return None
    if expected == "number" and actual == "integer":
        return None
    if expected == "integer" and actual == "number" and float(value).is_integer():
        return None
    return _type_error(path, value, expected)


def _check_value(value: Any, schema: Schema, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    name = _name(path)
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(
            json.dumps(v if isinstance(v, str) else json.dumps(v)) for v in schema["enum"]
        )
        errors.append(FieldError("NotSupported", path, value, f"supported values: {allowed}"))
    if isinstance(value, int | float) and not isinstance(value, bool):
        errors += _check_number(value, schema, path)
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(
                FieldError("TooLong", path, value, f"may not be longer than {schema['maxLength']}")
            )
        if "minLength" in schema and len(value) < schema["minLength"]:
            detail = f"{name} in body should be at least {schema['minLength']} chars long"
            errors.append(FieldError("Invalid", path, value, detail))
        if "pattern" in schema and not re2.search(schema["pattern"], value):  # Go's RE2 syntax
            detail = f"{name} in body should match '{schema['pattern']}'"
            errors.append(FieldError("Invalid", path, value, detail))
        errors += _check_format(value, schema, path)
    return errors


def _check_number(value: float, schema: Schema, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    name = _name(path)
    if "minimum" in schema:
        low, exclusive = schema["minimum"], schema.get("exclusiveMinimum", False)
        if value < low or (exclusive and value == low):
            words = "greater than" if exclusive else "greater than or equal to"
            errors.append(
                FieldError(
                    "Invalid", path, value, f"{name} in body should be {words} {go_number(low)}"
                )
            )
    if "maximum" in schema:
        high, exclusive = schema["maximum"], schema.get("exclusiveMaximum", False)
        if value > high or (exclusive and value == high):
            words = "less than" if exclusive else "less than or equal to"
            errors.append(
                FieldError(
                    "Invalid", path, value, f"{name} in body should be {words} {go_number(high)}"
                )
            )
    step = schema.get("multipleOf")
    if step and (value / step) != int(value / step):
        errors.append(
            FieldError(
                "Invalid", path, value, f"{name} in body should be a multiple of {go_number(step)}"
            )
        )
    return errors


_FORMATS = {
    "date-time": r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$",
    "date": r"^\d{4}-\d{2}-\d{2}$",
    "uuid": r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$",
}


def _check_format(value: str, schema: Schema, path: str) -> list[FieldError]:
    fmt = schema.get("format")
    if fmt in _FORMATS and not re.match(_FORMATS[fmt], value):
        detail = f"{_name(path)} in body must be of type {fmt}: {json.dumps(value)}"
        return [FieldError("Invalid", path, value, detail)]
    return []


def _check_object(value: dict[str, Any], schema: Schema, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    props = schema.get("properties") or {}
    for key in schema.get("required") or []:
        if key not in value:
            errors.append(required(child(path, key)))
    for key, sub in props.items():
        if key in value:
            errors += validate(value[key], sub, child(path, key))
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key in value:
            if key not in props:
                errors += validate(value[key], extra, child(path, key))
    count = len(value)
    if "maxProperties" in schema and count > schema["maxProperties"]:
        errors.append(_too_many(path, count, schema["maxProperties"]))
    if "minProperties" in schema and count < schema["minProperties"]:
        detail = f"{_name(path)} in body should have at least {schema['minProperties']} properties"
        errors.append(FieldError("Invalid", path, count, detail))
    return errors


def _too_many(path: str, actual: int, limit: int) -> FieldError:
    return FieldError(
        "TooMany", path, actual, f"must have at most {limit} item{'s' if limit != 1 else ''}"
    )


def _check_array(value: list[Any], schema: Schema, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(_too_many(path, len(value), schema["maxItems"]))
    if "minItems" in schema and len(value) < schema["minItems"]:
        detail = f"{_name(path)} in body should have at least {schema['minItems']} items"
        errors.append(FieldError("Invalid", path, len(value), detail))
    items = schema.get("items")
    if isinstance(items, dict):
        for i, item in enumerate(value):
            errors += validate(item, items, f"{path}[{i}]")
    errors += _check_list_type(value, schema, path)
    if schema.get("uniqueItems") and len({json.dumps(v, sort_keys=True) for v in value}) != len(
        value
    ):
        errors.append(FieldError("Duplicate", path, OMIT, ""))
    return errors


def _check_list_type(value: list[Any], schema: Schema, path: str) -> list[FieldError]:
    """``x-kubernetes-list-type``: ``set`` items and ``map`` keys must be unique."""
    kind = schema.get("x-kubernetes-list-type")
    seen: set[str] = set()
    errors: list[FieldError] = []
    for i, item in enumerate(value):
        if kind == "set":
            ident, shown = json.dumps(item, sort_keys=True), item
        elif kind == "map" and isinstance(item, dict):
            keys = schema.get("x-kubernetes-list-map-keys") or []
            shown = {k: item.get(k) for k in keys}
            ident = json.dumps(shown, sort_keys=True)
        else:
            continue
        if ident in seen:
            errors.append(FieldError("Duplicate", f"{path}[{i}]", shown))
        seen.add(ident)
    return errors


def _check_combinators(value: Any, schema: Schema, path: str) -> list[FieldError]:
    name = _name(path)
    errors: list[FieldError] = []
    if schema.get("anyOf") and not any(not validate(value, s, path) for s in schema["anyOf"]):
        errors.append(
            FieldError(
                "Invalid", path, value, f'"{name}" must validate at least one schema (anyOf)'
            )
        )
    if schema.get("oneOf"):
        passing = sum(1 for s in schema["oneOf"] if not validate(value, s, path))
        if passing != 1:
            errors.append(
                FieldError(
                    "Invalid",
                    path,
                    value,
                    f'"{name}" must validate one and only one schema (oneOf)',
                )
            )
    if isinstance(schema.get("not"), dict) and not validate(value, schema["not"], path):
        errors.append(
            FieldError("Invalid", path, value, f'"{name}" must not validate the schema (not)')
        )
    return errors


def is_blocking(errors: list[FieldError]) -> bool:
    """Type and enum errors stop CEL evaluation, as in apiextensions' ``hasBlockingErr``."""
    return any(e.type in ("TypeInvalid", "NotSupported") for e in errors)
