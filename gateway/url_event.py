"""Function URL payload format 2.0: HTTP request -> event, function result -> HTTP response.

Pure translation, no I/O: the handler in ``function_urls`` feeds it the request's parts and
sends what it returns. Rules follow Lambda's function URLs (API Gateway HTTP API format 2.0).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

TEXT_TYPES = ("json", "xml", "javascript", "x-www-form-urlencoded", "yaml", "graphql", "csv")


@dataclass(frozen=True)
class HttpRequest:
    """The parts of an HTTP request that the 2.0 event carries."""

    method: str
    path: str
    raw_query: str
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str
    protocol: str = "HTTP/1.1"
    domain: str = ""


@dataclass
class HttpResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


class BadFunctionResponse(ValueError):
    """The function's result cannot be read as an HTTP response (Lambda answers 502)."""


def is_text(content_type: str | None, body: bytes) -> bool:
    """Whether a request body travels as text; anything else is base64-encoded."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    if not content_type:
        return True
    main = content_type.split(";", 1)[0].strip().lower()
    return main.startswith("text/") or any(t in main for t in TEXT_TYPES)


def _query_parameters(raw_query: str) -> dict[str, str]:
    params: dict[str, list[str]] = {}
    for pair in raw_query.split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        params.setdefault(unquote_plus(key), []).append(unquote_plus(value))
    return {k: ",".join(v) for k, v in params.items()}


CREDENTIAL_HEADERS = ("authorization", "x-amz-security-token")
"""What an AWS_IAM caller authenticates with (SigV4's Authorization or a bearer token, and
SigV4's session token)."""


def _join_headers(headers: Iterable[tuple[str, str]]) -> tuple[dict[str, str], list[str]]:
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    return joined, cookies


def build_event(
    req: HttpRequest,
    *,
    request_id: str,
    url_id: str,
    account_id: str,
    now: float | None = None,
    authorizer: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Lambda's 2.0 event for a function URL request.

    ``authorizer``: the caller the gateway authenticated (AWS_IAM URLs). Their credentials
    (the signature, a session token, a bearer token) were for the gateway and never reach the
    function: a token forwarded to another tenant's code could be replayed."""
    now = time.time() if now is None else now
    headers, cookies = _join_headers(req.headers)
    if authorizer is not None:
        for name in CREDENTIAL_HEADERS:
            headers.pop(name, None)
    # The platform's own view of the connection, never the client's claims.
    forwarded = headers.get("x-forwarded-for")
    headers["x-forwarded-for"] = f"{forwarded}, {req.source_ip}" if forwarded else req.source_ip
    headers["x-forwarded-proto"] = "http"
    user_agent = headers.get("user-agent", "")
    context: dict[str, Any] = {
        "accountId": account_id,
        "apiId": url_id,
        "domainName": req.domain,
        "domainPrefix": req.domain.split(".", 1)[0],
        "http": {
            "method": req.method,
            "path": req.path,
            "protocol": req.protocol,
            "sourceIp": req.source_ip,
            "userAgent": user_agent,
        },
        "requestId": request_id,
        "routeKey": "$default",
        "stage": "$default",
        "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
        "timeEpoch": int(now * 1000),
    }
    if authorizer is not None:
        context["authorizer"] = authorizer
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": req.path,
        "rawQueryString": req.raw_query,
        "headers": headers,
    }
    if cookies:
        event["cookies"] = cookies
    if req.raw_query:
        event["queryStringParameters"] = _query_parameters(req.raw_query)
    event["requestContext"] = context
    if req.body:
        if is_text(headers.get("content-type"), req.body):
            event["body"] = req.body.decode("utf-8")
            event["isBase64Encoded"] = False
        else:
            event["body"] = base64.b64encode(req.body).decode("ascii")
            event["isBase64Encoded"] = True
    else:
        event["isBase64Encoded"] = False
    return event


def build_response(payload: bytes) -> HttpResponse:
    """The HTTP response for a function's result, by Lambda's rules.

    A JSON object with ``statusCode`` is an HTTP response description; any other JSON value is
    the body of a 200 ``application/json`` response, exactly as returned.
    """
    try:
        result = json.loads(payload) if payload else None
    except ValueError:
        return HttpResponse(200, [("Content-Type", "application/octet-stream")], payload)
    if not (isinstance(result, dict) and "statusCode" in result):
        return HttpResponse(200, [("Content-Type", "application/json")], payload)
    return _described_response(result)


def _described_response(result: dict[str, Any]) -> HttpResponse:
    status = result["statusCode"]
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise BadFunctionResponse(f"statusCode {result['statusCode']!r} is not an HTTP status")
    headers: list[tuple[str, str]] = []
    raw_headers = result.get("headers")
    raw_headers = {} if raw_headers is None else raw_headers
    if not isinstance(raw_headers, dict):
        raise BadFunctionResponse("headers must be an object")
    for name, value in raw_headers.items():
        headers.append((str(name), _header_value(value)))
    multi = result.get("multiValueHeaders") or {}
    if isinstance(multi, dict):
        for name, values in multi.items():
            for value in values if isinstance(values, list) else [values]:
                headers.append((str(name), _header_value(value)))
    for cookie in result.get("cookies") or []:
        headers.append(("Set-Cookie", str(cookie)))
    headers = _checked(headers)
    if not any(k.lower() == "content-type" for k, _ in headers):
        headers.append(("Content-Type", "application/json"))
    return HttpResponse(status, headers, _body(result))


def _header_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# The gateway frames its own responses: a function's framing or hop-by-hop headers would
# desynchronise the connection (Content-Length: 0 with a body splits the response in two for
# a pooling proxy), so they are dropped, as Lambda drops them (RFC 9110 7.6.1, RFC 9112 6).
DROPPED_HEADERS = frozenset(
    {
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "upgrade",
        "te",
        "trailer",
    }
)
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def _checked(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The headers to send: framing and hop-by-hop ones dropped; a name that is not an HTTP
    token or a value holding a control character makes the response invalid."""
    out = []
    for name, value in headers:
        if not _TOKEN.match(name):
            raise BadFunctionResponse(f"header name {name!r} is not valid")
        if any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in value):
            raise BadFunctionResponse(f"header {name!r} has a control character in its value")
        if name.lower() not in DROPPED_HEADERS:
            out.append((name, value))
    return out


def _body(result: dict[str, Any]) -> bytes:
    body = result.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        body = json.dumps(body)
    if result.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as e:
            raise BadFunctionResponse("body is not valid base64") from e
    return body.encode("utf-8")
