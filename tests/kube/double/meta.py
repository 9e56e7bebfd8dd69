"""Object metadata rules: timestamps, uids, name validation, ``Age`` formatting.

Messages are apimachinery's (``util/validation``); ``writes.py`` and ``crd.py`` use them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .errors import FieldError, invalid, required

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def new_uid() -> str:
    return str(uuid.uuid4())


_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = _DNS1123_LABEL + r"(\." + _DNS1123_LABEL + r")*"
_DNS1035_LABEL = r"[a-z]([-a-z0-9]*[a-z0-9])?"


def _pattern_error(
    path: str, value: str, what: str, regex: str, example: str, limit: int
) -> list[FieldError]:
    errors = []
    if len(value) > limit:
        errors.append(invalid(path, value, f"must be no more than {limit} characters"))
    if not re.fullmatch(regex, value):
        errors.append(
            invalid(path, value, f"{what} (e.g. {example}, regex used for validation is '{regex}')")
        )
    return errors


def dns_subdomain_errors(path: str, value: str) -> list[FieldError]:
    what = (
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
        "'.', and must start and end with an alphanumeric character"
    )
    return _pattern_error(path, value, what, _DNS1123_SUBDOMAIN, "'example.com'", 253)


def dns_label_errors(path: str, value: str) -> list[FieldError]:
    what = (
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
        "must start and end with an alphanumeric character"
    )
    return _pattern_error(path, value, what, _DNS1123_LABEL, "'my-name',  or '123-abc'", 63)


def dns1035_label_errors(path: str, value: str) -> list[FieldError]:
    what = (
        "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
        "alphabetic character, and end with an alphanumeric character"
    )
    return _pattern_error(path, value, what, _DNS1035_LABEL, "'my-name',  or 'abc-123'", 63)


NAME_RULES: dict[str, Callable[[str, str], list[FieldError]]] = {
    "namespaces": dns_label_errors,
    "services": dns1035_label_errors,
}


def name_errors(plural: str, name: str) -> list[FieldError]:
    return NAME_RULES.get(plural, dns_subdomain_errors)("metadata.name", name)


_QUALIFIED_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"


def label_errors(labels: Any) -> list[FieldError]:
    """``ValidateLabels``: qualified-name keys, values of at most 63 safe characters."""
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [invalid("metadata.labels", labels, "must be a map of strings")]
    errors: list[FieldError] = []
    for key, value in labels.items():
        name = key.rsplit("/", 1)[-1]
        prefix = key[: -len(name) - 1] if "/" in key else ""
        if (
            not re.fullmatch(_QUALIFIED_NAME, name)
            or len(name) > 63
            or (prefix and dns_subdomain_errors("", prefix))
        ):
            detail = (
                "name part must consist of alphanumeric characters, '-', '_' or '.', and must "
                "start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
                f"'123-abc', regex used for validation is '{_QUALIFIED_NAME}')"
            )
            errors.append(invalid("metadata.labels", key, detail))
        if not isinstance(value, str) or len(value) > 63 or not re.fullmatch(_LABEL_VALUE, value):
            detail = (
                "a valid label must be an empty string or consist of alphanumeric characters, "
                "'-', '_' or '.', and must start and end with an alphanumeric character (e.g. "
                f"'MyValue',  or 'my_value',  or '12345', regex used for validation is "
                f"'{_LABEL_VALUE}')"
            )
            errors.append(invalid("metadata.labels", value, detail))
    return errors


_OMIT_EMPTY = (
    "labels",
    "annotations",
    "finalizers",
    "ownerReferences",
    "managedFields",
    "generateName",
)


def normalize_metadata(meta: dict[str, Any]) -> None:
    """Drop empty fields, as Go's ``omitempty`` on ObjectMeta does (custom resources' metadata
    goes through ObjectMeta too)."""
    for key in _OMIT_EMPTY:
        if key in meta and meta[key] in (None, {}, [], ""):
            del meta[key]


def metadata_errors(plural: str, meta: dict[str, Any]) -> list[FieldError]:
    name = meta.get("name")
    if not name:
        return [required("metadata.name", "name or generateName is required")]
    return name_errors(plural, name) + label_errors(meta.get("labels"))


def human_duration(seconds: float) -> str:
    """``duration.HumanDuration``, which ``kubectl get`` shows in AGE columns."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    years, days = hours // 24 // 365, (hours // 24) % 365
    if hours < 24 * 365 * 8:
        return f"{years}y{days}d" if days else f"{years}y"
    return f"{years}y"
