"""Dataclasses as the single source of truth for manifest schemas.

Spec classes declare their fields once, with limits in field metadata (``prop(...)``). From that
declaration this module derives the structural OpenAPI v3 schema written into the CRDs, and it
validates and defaults plain manifest dicts into typed instances for the local platform, with
errors that name the field path and the rule broken, as the Kubernetes API server does.
Neighbours: ``types`` declares the classes, ``crd`` renders CRDs from ``openapi()``.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field
from typing import Any, Literal, TypeVar, get_args, get_origin

T = TypeVar("T")
JSON = dict[str, Any]


@dataclass(frozen=True)
class FieldError:
    """One rule broken at one place of a manifest, e.g. ``spec.timeout: must be <= 900``."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ValidationError(ValueError):
    """A manifest broke one or more rules; ``errors`` lists every one found."""

    def __init__(self, errors: list[FieldError], subject: str = "") -> None:
        self.errors = errors
        self.subject = subject
        head = f"{subject} is invalid: " if subject else ""
        super().__init__(head + "; ".join(str(e) for e in errors))


def prop(
    *,
    doc: str,
    default: Any = MISSING,
    default_factory: Callable[[], Any] | None = None,
    name: str | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    exclusive_maximum: bool = False,
    pattern: str | None = None,
    pattern_message: str | None = None,
    min_length: int | None = None,
    max_length: int | None = None,
    min_items: int | None = None,
    max_items: int | None = None,
    max_properties: int | None = None,
    key_pattern: str | None = None,
    item_pattern: str | None = None,
    item_max_length: int | None = None,
) -> Any:
    """Declares a schema property: its documentation, default and limits."""
    meta = {
        "doc": doc,
        "name": name,
        "minimum": minimum,
        "maximum": maximum,
        "exclusive_minimum": exclusive_minimum,
        "exclusive_maximum": exclusive_maximum,
        "pattern": pattern,
        "pattern_message": pattern_message,
        "min_length": min_length,
        "max_length": max_length,
        "min_items": min_items,
        "max_items": max_items,
        "max_properties": max_properties,
        "key_pattern": key_pattern,
        "item_pattern": item_pattern,
        "item_max_length": item_max_length,
    }
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def wire_name(f: dataclasses.Field[Any]) -> str:
    return f.metadata.get("name") or camel(f.name)


# --------------------------------------------------------------------------- type analysis


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    if get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """Resolved annotations; cached, as resolving them dominated parsing every watched object."""
    return typing.get_type_hints(cls)


def _has_default(f: dataclasses.Field[Any]) -> bool:
    return f.default is not MISSING or f.default_factory is not MISSING


# --------------------------------------------------------------------------- OpenAPI


def openapi(cls: type) -> JSON:
    """The structural OpenAPI v3 schema of a spec dataclass (as a CRD embeds it)."""
    hints = _hints(cls)
    props: JSON = {}
    required: list[str] = []
    for f in dataclasses.fields(cls):
        tp, optional = _strip_optional(hints[f.name])
        schema = _type_schema(tp)
        schema.update(_limits_schema(f.metadata))
        if f.metadata.get("item_max_length") is not None:
            inner = schema.get("items") or schema.get("additionalProperties")
            assert inner is not None, f"item_max_length on {f.name}, which has no items"
            inner["maxLength"] = f.metadata["item_max_length"]
        schema["description"] = f.metadata.get("doc", "")
        if f.default is not MISSING and f.default is not None and not optional:
            schema["default"] = f.default
        elif f.default_factory is not MISSING and tp is not Any:
            produced = f.default_factory()
            if produced not in ({}, []) and not dataclasses.is_dataclass(produced):
                schema["default"] = produced
        if not _has_default(f) and not optional:
            required.append(wire_name(f))
        # key_pattern is not put in the CRD: structural schemas cannot constrain map keys, and a
        # CEL rule over keys is priced by the API server as if each key were as long as a whole
        # request, so it refuses such a CRD ("estimated rule cost exceeds budget"). The operator
        # checks keys with this module's validator and reports InvalidSpec in status instead.
        props[wire_name(f)] = dict(sorted(schema.items()))
    out: JSON = {"type": "object", "properties": props}
    if cls.__doc__:
        out["description"] = " ".join(cls.__doc__.split())
    if required:
        out["required"] = required
    rules = getattr(cls, "__cel__", ())
    if rules:
        out["x-kubernetes-validations"] = [{"rule": r, "message": m} for r, m in rules]
    return out


def _type_schema(tp: Any) -> JSON:
    origin = get_origin(tp)
    if tp is str:
        return {"type": "string"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is Any:
        return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    if origin is Literal:
        return {"type": "string", "enum": list(get_args(tp))}
    if origin is list:
        (item,) = get_args(tp)
        return {"type": "array", "items": _type_schema(item)}
    if origin is dict:
        _, value = get_args(tp)
        return {"type": "object", "additionalProperties": _type_schema(value)}
    if dataclasses.is_dataclass(tp):
        return openapi(tp)  # type: ignore[arg-type]
    raise TypeError(f"unsupported schema type {tp!r}")


def _limits_schema(meta: Mapping[str, Any]) -> JSON:
    out: JSON = {}
    pairs = {
        "minimum": "minimum",
        "maximum": "maximum",
        "pattern": "pattern",
        "min_length": "minLength",
        "max_length": "maxLength",
        "min_items": "minItems",
        "max_items": "maxItems",
        "max_properties": "maxProperties",
    }
    for key, wire in pairs.items():
        if meta.get(key) is not None:
            out[wire] = meta[key]
    if meta.get("exclusive_minimum"):
        out["exclusiveMinimum"] = True
    if meta.get("exclusive_maximum"):
        out["exclusiveMaximum"] = True
    return out


# --------------------------------------------------------------------------- validation


def parse(cls: type[T], data: Any, path: str) -> T:
    """Validates ``data`` against ``cls``'s schema, applies defaults, and builds the instance.

    Raises ValidationError listing every broken rule (not just the first), each with its path.
    """
    errors: list[FieldError] = []
    value = _parse_value(cls, data, path, {}, errors)
    if errors:
        raise ValidationError(errors)
    return typing.cast(T, value)


def _parse_object(cls: type, data: Any, path: str, errors: list[FieldError]) -> Any:
    if not isinstance(data, dict):
        errors.append(FieldError(path, f"must be an object, not {_json_type(data)}"))
        return None
    hints = _hints(cls)
    fields = {wire_name(f): f for f in dataclasses.fields(cls)}
    unknown = [FieldError(f"{path}.{key}", "unknown field") for key in data if key not in fields]
    kwargs: dict[str, Any] = {}
    before = len(errors)
    for wire, f in fields.items():
        tp, optional = _strip_optional(hints[f.name])
        sub = f"{path}.{wire}"
        if wire not in data or data[wire] is None:
            if _has_default(f) or optional:
                continue
            errors.append(FieldError(sub, "required value"))
            continue
        kwargs[f.name] = _parse_value(tp, data[wire], sub, f.metadata, errors)
    errors.extend(unknown)
    if len(errors) > before:
        return None
    try:
        instance = cls(**kwargs)
    except TypeError as e:  # pragma: no cover - schema and class disagree: a programming error
        raise AssertionError(f"{cls.__name__}: {e}") from e
    check = getattr(instance, "check", None)
    if check is not None:
        errors.extend(FieldError(f"{path}{p}", m) for p, m in check())
    return instance


def _parse_value(  # noqa: C901 - one branch per JSON type keeps the rules side by side
    tp: Any, data: Any, path: str, meta: Mapping[str, Any], errors: list[FieldError]
) -> Any:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _parse_object(tp, data, path, errors)  # type: ignore[arg-type]
    if tp is Any:
        if not isinstance(data, dict):
            errors.append(FieldError(path, f"must be an object, not {_json_type(data)}"))
        return data
    if origin is Literal:
        allowed = get_args(tp)
        if data not in allowed:
            shown = ", ".join(f'"{a}"' for a in allowed)
            errors.append(
                FieldError(path, f"Unsupported value: {data!r}: supported values: {shown}")
            )
        return data
    if tp is bool:
        return data if _expect(isinstance(data, bool), "boolean", data, path, errors) else None
    if tp is int:
        ok = isinstance(data, int) and not isinstance(data, bool)
        if _expect(ok, "integer", data, path, errors):
            _check_number(data, path, meta, errors)
        return data
    if tp is float:
        ok = isinstance(data, (int, float)) and not isinstance(data, bool)
        if _expect(ok, "number", data, path, errors):
            _check_number(data, path, meta, errors)
            return float(data)
        return data
    if tp is str:
        if _expect(isinstance(data, str), "string", data, path, errors):
            _check_string(data, path, meta, errors)
        return data
    if origin is list:
        return _parse_list(get_args(tp)[0], data, path, meta, errors)
    if origin is dict:
        return _parse_map(get_args(tp)[1], data, path, meta, errors)
    raise TypeError(f"unsupported schema type {tp!r}")


def _parse_list(
    item: Any, data: Any, path: str, meta: Mapping[str, Any], errors: list[FieldError]
) -> Any:
    if not _expect(isinstance(data, list), "array", data, path, errors):
        return data
    if meta.get("max_items") is not None and len(data) > meta["max_items"]:
        errors.append(FieldError(path, f"must have at most {meta['max_items']} items"))
    if meta.get("min_items") is not None and len(data) < meta["min_items"]:
        errors.append(FieldError(path, f"must have at least {meta['min_items']} items"))
    item_meta = {"pattern": meta.get("item_pattern"), "max_length": meta.get("item_max_length")}
    return [_parse_value(item, v, f"{path}[{i}]", item_meta, errors) for i, v in enumerate(data)]


def _parse_map(
    value: Any, data: Any, path: str, meta: Mapping[str, Any], errors: list[FieldError]
) -> Any:
    if not _expect(isinstance(data, dict), "object", data, path, errors):
        return data
    if meta.get("max_properties") is not None and len(data) > meta["max_properties"]:
        errors.append(FieldError(path, f"must have at most {meta['max_properties']} entries"))
    key_pattern = meta.get("key_pattern")
    out = {}
    for k, v in data.items():
        if key_pattern and not re.fullmatch(key_pattern, k):
            errors.append(FieldError(f"{path}.{k}", f"key must match {key_pattern!r}"))
        item_meta = {"max_length": meta.get("item_max_length")}
        out[k] = _parse_value(value, v, f"{path}.{k}", item_meta, errors)
    return out


def _expect(ok: bool, wanted: str, data: Any, path: str, errors: list[FieldError]) -> bool:
    if not ok:
        errors.append(FieldError(path, f"must be of type {wanted}, not {_json_type(data)}"))
    return ok


def _check_number(
    data: float, path: str, meta: Mapping[str, Any], errors: list[FieldError]
) -> None:
    lo, hi = meta.get("minimum"), meta.get("maximum")
    if lo is not None and (data <= lo if meta.get("exclusive_minimum") else data < lo):
        op = ">" if meta.get("exclusive_minimum") else ">="
        errors.append(FieldError(path, f"must be {op} {_num(lo)} (got {_num(data)})"))
    if hi is not None and (data >= hi if meta.get("exclusive_maximum") else data > hi):
        op = "<" if meta.get("exclusive_maximum") else "<="
        errors.append(FieldError(path, f"must be {op} {_num(hi)} (got {_num(data)})"))


def _check_string(data: str, path: str, meta: Mapping[str, Any], errors: list[FieldError]) -> None:
    if meta.get("min_length") is not None and len(data) < meta["min_length"]:
        errors.append(FieldError(path, f"must be at least {meta['min_length']} characters"))
    if meta.get("max_length") is not None and len(data) > meta["max_length"]:
        errors.append(FieldError(path, f"must be at most {meta['max_length']} characters"))
    pattern = meta.get("pattern")
    if pattern and not re.search(pattern, data):
        errors.append(FieldError(path, meta.get("pattern_message") or f"must match {pattern!r}"))


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _json_type(data: Any) -> str:
    if data is None:
        return "null"
    if isinstance(data, bool):
        return "boolean"
    if isinstance(data, (int, float)):
        return "number"
    if isinstance(data, str):
        return "string"
    if isinstance(data, list):
        return "array"
    return "object"


# --------------------------------------------------------------------------- serialisation


def dump(instance: Any) -> Any:
    """The manifest (camelCase, JSON-ready) form of a spec instance; None fields are omitted."""
    if dataclasses.is_dataclass(instance) and not isinstance(instance, type):
        out = {}
        for f in dataclasses.fields(instance):
            v = getattr(instance, f.name)
            if v is not None:
                out[wire_name(f)] = dump(v)
        return out
    if isinstance(instance, list):
        return [dump(v) for v in instance]
    if isinstance(instance, dict):
        return {k: dump(v) for k, v in instance.items()}
    return instance
