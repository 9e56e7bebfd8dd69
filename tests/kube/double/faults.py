"""Injected failures and the request log.

A :class:`Fault` answers the next ``times`` matching requests with an error ``Status`` (and
``Retry-After`` for 429/503 when asked) instead of serving them, optionally after a delay; the
request log lets tests assert what a client sent (method, path, query, content type).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .errors import STALE, ApiError

_DEFAULTS: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "injected bad request"),
    401: ("Unauthorized", "Unauthorized"),
    403: ("Forbidden", "forbidden: injected fault"),
    404: ("NotFound", "the server could not find the requested resource"),
    409: ("Conflict", f"Operation cannot be fulfilled: {STALE}"),
    410: ("Expired", "too old resource version"),
    422: ("Invalid", "injected validation failure"),
    429: ("TooManyRequests", "Too many requests, please try again later."),
    500: ("InternalError", "Internal error occurred: injected fault"),
    503: ("ServiceUnavailable", "the server is currently unable to handle the request"),
    504: ("Timeout", "Timeout: request did not complete within the allotted timeout"),
}  # fmt: skip


@dataclass
class Fault:
    """Fail ``times`` requests whose path matches ``path`` (exact string or regex)."""

    status: int
    path: str | re.Pattern[str]
    method: str | None = None
    times: int = 1
    retry_after: int | None = None
    reason: str | None = None
    message: str | None = None
    delay: float = 0.0
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times <= 0 or (self.method and self.method.upper() != method):
            return False
        if isinstance(self.path, re.Pattern):
            return self.path.fullmatch(path) is not None
        return self.path == path

    def error(self) -> ApiError:
        reason, message = _DEFAULTS.get(self.status, ("", "injected fault"))
        details: dict[str, Any] | None = None
        headers: dict[str, str] = {}
        if self.retry_after is not None:
            details = {"retryAfterSeconds": self.retry_after}
            headers["Retry-After"] = str(self.retry_after)
        return ApiError(
            self.status, self.reason or reason, self.message or message, details, headers
        )


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    query: dict[str, str]
    content_type: str
    accept: str
    user_agent: str


@dataclass
class Faults:
    _faults: list[Fault] = field(default_factory=list)
    requests: list[RequestRecord] = field(default_factory=list)

    def add(self, fault: Fault) -> Fault:
        self._faults.append(fault)
        return fault

    def clear(self) -> None:
        self._faults.clear()

    def take(self, method: str, path: str) -> Fault | None:
        for fault in self._faults:
            if fault.matches(method, path):
                fault.times -= 1
                fault.hits += 1
                return fault
        return None
