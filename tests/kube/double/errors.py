"""Kubernetes ``Status`` errors, shaped and worded as the API server sends them.

One exception class (:class:`ApiError`) carries a complete ``Status`` body; the constructors
below copy apimachinery's ``k8s.io/apimachinery/pkg/api/errors`` messages, and
:class:`FieldError` copies ``field.Error`` (``util/validation/field/errors.go``), whose text ends
up in ``Invalid`` messages and ``details.causes``. ``server.py`` turns any ``ApiError`` into the
HTTP response; nothing else builds error bodies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .kinds import ResourceType

# field.ErrorType -> (text shown in messages, cause reason)
_FIELD_TYPES: dict[str, tuple[str, str]] = {
    "Required": ("Required value", "FieldValueRequired"),
    "Invalid": ("Invalid value", "FieldValueInvalid"),
    "TypeInvalid": ("Invalid value", "FieldValueTypeInvalid"),
    "NotSupported": ("Unsupported value", "FieldValueNotSupported"),
    "Duplicate": ("Duplicate value", "FieldValueDuplicate"),
    "TooLong": ("Too long", "FieldValueTooLong"),
    "TooMany": ("Too many", "FieldValueTooMany"),
    "Forbidden": ("Forbidden", "FieldValueForbidden"),
    "NotFound": ("Not found", "FieldValueNotFound"),
    "Internal": ("Internal error", "InternalError"),
}
_NO_VALUE_SHOWN = {"Required", "Forbidden", "TooLong", "Internal"}
OMIT = object()
"""A ``bad_value`` that is not shown, like Go's ``omitValue``."""


class GoLiteral(str):
    """A value shown as is (Go's ``%#v`` of a non-JSON value, such as ``0x0``)."""


def go_value(value: Any) -> str:
    """Format a JSON value the way ``fmt`` prints it in ``field.Error`` bodies."""
    if isinstance(value, GoLiteral):
        return str(value)
    if value is None:
        return '"null"'  # Go turns a nil value into the string "null", then quotes it
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return go_number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        inner = ", ".join(f"{json.dumps(k)}:{go_value(v)}" for k, v in value.items())
        return "map[string]interface {}{" + inner + "}"
    if isinstance(value, list):
        return "[]interface {}{" + ", ".join(go_value(v) for v in value) + "}"
    return str(value)


def go_number(value: int | float) -> str:
    """``%v`` of a JSON number: integers plain, floats in Go's shortest form."""
    if isinstance(value, int) or (
        isinstance(value, float) and value.is_integer() and abs(value) < 1e21
    ):
        return str(int(value))
    text = repr(value)
    if "e" in text:
        mantissa, exp = text.split("e")
        sign = "-" if exp.startswith("-") else "+"
        text = f"{mantissa}e{sign}{exp.lstrip('+-').zfill(2)}"
    return text


@dataclass(frozen=True)
class FieldError:
    """One ``field.Error``: a path, an error type, the offending value and a detail."""

    type: str
    field: str
    bad_value: Any = OMIT
    detail: str = ""

    def body(self) -> str:
        """``ErrorBody()``: the message without the field path."""
        text, _ = _FIELD_TYPES[self.type]
        if self.type not in _NO_VALUE_SHOWN and self.bad_value is not OMIT:
            text = f"{text}: {go_value(self.bad_value)}"
        if self.detail:
            text = f"{text}: {self.detail}"
        return text

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"

    def cause(self) -> dict[str, str]:
        return {"reason": _FIELD_TYPES[self.type][1], "message": self.body(), "field": self.field}


def required(path: str, detail: str = "") -> FieldError:
    return FieldError("Required", path, detail=detail)


def invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError("Invalid", path, value, detail)


def forbidden(path: str, detail: str) -> FieldError:
    return FieldError("Forbidden", path, detail=detail)


def aggregate(errors: list[FieldError]) -> str:
    """``ErrorList.ToAggregate().Error()``: one message, or ``[a, b]`` for several."""
    texts = list(dict.fromkeys(str(e) for e in errors))
    return texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"


@dataclass
class ApiError(Exception):
    """An error answer: the HTTP code and a ``Status`` object."""

    code: int
    reason: str
    message: str
    details: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code} {self.reason}: {self.message}"

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
        }
        if self.reason:
            body["reason"] = self.reason
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def _details(rtype: ResourceType | None, name: str, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if name:
        out["name"] = name
    if rtype is not None:
        if rtype.group:
            out["group"] = rtype.group
        out["kind"] = rtype.plural
    out.update(extra)
    return out


def not_found(rtype: ResourceType, name: str) -> ApiError:
    return ApiError(
        404, "NotFound", f'{rtype.group_resource} "{name}" not found', _details(rtype, name)
    )


def namespace_not_found(name: str) -> ApiError:
    return ApiError(
        404, "NotFound", f'namespaces "{name}" not found', {"name": name, "kind": "namespaces"}
    )


def path_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def already_exists(rtype: ResourceType, name: str) -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{rtype.group_resource} "{name}" already exists',
        _details(rtype, name),
    )


def conflict(rtype: ResourceType, name: str, why: str) -> ApiError:
    message = f'Operation cannot be fulfilled on {rtype.group_resource} "{name}": {why}'
    return ApiError(409, "Conflict", message, _details(rtype, name))


STALE = (
    "the object has been modified; please apply your changes to the latest version and try again"
)


def stale(rtype: ResourceType, name: str) -> ApiError:
    return conflict(rtype, name, STALE)


def invalid_object(rtype: ResourceType, name: str, errors: list[FieldError]) -> ApiError:
    """``NewInvalid``: 422 with one cause per field error."""
    return invalid_kind(rtype.kind, rtype.group, name, errors)


def invalid_kind(kind: str, group: str, name: str, errors: list[FieldError]) -> ApiError:
    qualified = f"{kind}.{group}" if group else kind
    message = f'{qualified} "{name}" is invalid: {aggregate(errors)}'
    details: dict[str, Any] = {"name": name}
    if group:
        details["group"] = group
    details["kind"] = kind
    details["causes"] = [e.cause() for e in errors]
    return ApiError(422, "Invalid", message, details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed() -> ApiError:
    return ApiError(
        405,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource",
        {},
    )


def unsupported_media_type(accepted: list[str]) -> ApiError:
    message = "the body of the request was in an unknown format - accepted media types include: "
    return ApiError(415, "UnsupportedMediaType", message + ", ".join(accepted))


def not_acceptable(accepted: list[str]) -> ApiError:
    message = "only the following media types are accepted: " + ", ".join(accepted)
    return ApiError(406, "NotAcceptable", message)


def expired(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def forbidden_error(rtype: ResourceType, name: str, why: str) -> ApiError:
    text = f'{rtype.group_resource} "{name}" is forbidden: {why}'
    return ApiError(403, "Forbidden", text, _details(rtype, name))


def too_large_rv(requested: int, current: int) -> ApiError:
    message = f"Too large resource version: {requested}, current: {current}"
    details = {
        "causes": [{"reason": "ResourceVersionTooLarge", "message": message}],
        "retryAfterSeconds": 1,
    }
    return ApiError(504, "Timeout", f"Timeout: {message}", details)


def internal(message: str) -> ApiError:
    return ApiError(
        500,
        "InternalError",
        f"Internal error occurred: {message}",
        {"causes": [{"message": message}]},
    )
