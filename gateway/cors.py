"""CORS for function URLs (pure): preflight answers and response headers from ``url.cors``.

The gateway answers preflight ``OPTIONS`` itself (the function is not invoked), and on actual
responses its configured headers replace any CORS headers the function set, as Lambda does.
Per the Fetch standard, a wildcard cannot be combined with credentials: with
``allowCredentials`` the allowed origin is echoed instead of ``*`` (and ``*`` in allowMethods /
allowHeaders lists what was asked for rather than a literal ``*``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from klambda.api.types import Cors

CORS_HEADERS = (
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-expose-headers",
    "access-control-max-age",
)


@dataclass(frozen=True)
class Preflight:
    status: int
    headers: dict[str, str]


def is_preflight(method: str, headers: Mapping[str, str]) -> bool:
    return (
        method == "OPTIONS" and "origin" in headers and ("access-control-request-method" in headers)
    )


def _origin_allowed(cors: Cors, origin: str) -> str | None:
    """The Access-Control-Allow-Origin value for ``origin``, or None when not allowed."""
    lowered = origin.lower()
    for allowed in cors.allow_origins:
        if allowed == "*":
            return origin if cors.allow_credentials else "*"
        if allowed.lower() == lowered:
            return origin
        if "*" in allowed:  # e.g. https://*.example.com
            head, _, tail = allowed.lower().partition("*")
            if (
                lowered.startswith(head)
                and lowered.endswith(tail)
                and len(lowered) > len(allowed) - 1
            ):
                return origin
    return None


def _base(cors: Cors, allow_origin: str) -> dict[str, str]:
    headers = {"Access-Control-Allow-Origin": allow_origin}
    if allow_origin != "*":
        headers["Vary"] = "Origin"
    if cors.allow_credentials:
        headers["Access-Control-Allow-Credentials"] = "true"
    return headers


def preflight(cors: Cors, headers: Mapping[str, str]) -> Preflight:
    """The answer to a preflight (``headers``: request headers by lower-case name).

    A disallowed origin, method or header gets a 200 without CORS headers: the browser then
    refuses the actual request, which is the point.
    """
    origin = headers.get("origin", "")
    allow_origin = _origin_allowed(cors, origin)
    method = headers.get("access-control-request-method", "").upper()
    asked = [
        h.strip().lower()
        for h in headers.get("access-control-request-headers", "").split(",")
        if h.strip()
    ]
    methods = {m.upper() for m in cors.allow_methods}
    allowed_headers = {h.lower() for h in cors.allow_headers}
    method_ok = "*" in methods or method in methods
    headers_ok = "*" in allowed_headers or all(h in allowed_headers for h in asked)
    if allow_origin is None or not method_ok or not headers_ok:
        return Preflight(200, {"Vary": "Origin"})
    out = _base(cors, allow_origin)
    if "*" in methods:
        out["Access-Control-Allow-Methods"] = method if cors.allow_credentials else "*"
    else:
        out["Access-Control-Allow-Methods"] = ", ".join(sorted(methods))
    if asked:
        wildcard = "*" in allowed_headers and not cors.allow_credentials
        out["Access-Control-Allow-Headers"] = "*" if wildcard else ", ".join(asked)
    if cors.max_age:
        out["Access-Control-Max-Age"] = str(cors.max_age)
    return Preflight(200, out)


def response_headers(cors: Cors, origin: str | None) -> dict[str, str]:
    """CORS headers for an actual response; they replace the function's own."""
    if not origin:
        return {}
    allow_origin = _origin_allowed(cors, origin)
    if allow_origin is None:
        return {}
    out = _base(cors, allow_origin)
    if cors.expose_headers:
        out["Access-Control-Expose-Headers"] = ", ".join(cors.expose_headers)
    return out
