"""CORS decisions: preflight answers and response headers."""

from __future__ import annotations

from klambda.api.types import Cors
from klambda.gateway.cors import is_preflight, preflight, response_headers

SITE = "https://app.example.com"


def ask(origin: str = SITE, method: str = "POST", headers: str = "") -> dict[str, str]:
    h = {"origin": origin, "access-control-request-method": method}
    if headers:
        h["access-control-request-headers"] = headers
    return h


def test_allowed_preflight() -> None:
    cors = Cors(
        allow_origins=[SITE],
        allow_methods=["GET", "POST"],
        allow_headers=["content-type"],
        max_age=600,
    )
    r = preflight(cors, ask(headers="Content-Type"))
    assert r.headers["Access-Control-Allow-Origin"] == SITE
    assert r.headers["Access-Control-Allow-Methods"] == "GET, POST"
    assert r.headers["Access-Control-Allow-Headers"] == "content-type"
    assert r.headers["Access-Control-Max-Age"] == "600"
    assert r.headers["Vary"] == "Origin"


def test_disallowed_origin_method_or_header_gets_no_cors_headers() -> None:
    cors = Cors(allow_origins=[SITE], allow_methods=["GET"], allow_headers=["x-a"])
    for h in (ask("https://evil.example"), ask(method="DELETE"), ask(method="GET", headers="x-b")):
        assert "Access-Control-Allow-Origin" not in preflight(cors, h).headers


def test_wildcards_without_credentials() -> None:
    cors = Cors(allow_origins=["*"], allow_methods=["*"], allow_headers=["*"])
    r = preflight(cors, ask(method="PATCH", headers="x-custom"))
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert r.headers["Access-Control-Allow-Methods"] == "*"
    assert r.headers["Access-Control-Allow-Headers"] == "*"
    assert "Access-Control-Allow-Credentials" not in r.headers


def test_wildcards_with_credentials_echo_instead() -> None:
    cors = Cors(
        allow_origins=["*"], allow_methods=["*"], allow_headers=["*"], allow_credentials=True
    )
    r = preflight(cors, ask(method="PATCH", headers="x-custom"))
    assert r.headers["Access-Control-Allow-Origin"] == SITE
    assert r.headers["Access-Control-Allow-Credentials"] == "true"
    assert r.headers["Access-Control-Allow-Methods"] == "PATCH"
    assert r.headers["Access-Control-Allow-Headers"] == "x-custom"


def test_subdomain_wildcard_origin() -> None:
    cors = Cors(allow_origins=["https://*.example.com"], allow_methods=["GET"])
    assert preflight(cors, ask(method="GET")).headers["Access-Control-Allow-Origin"] == SITE
    assert (
        "Access-Control-Allow-Origin"
        not in preflight(cors, ask("https://example.com.evil.io", method="GET")).headers
    )


def test_actual_response_headers() -> None:
    cors = Cors(allow_origins=[SITE], expose_headers=["x-request-id"], allow_credentials=True)
    assert response_headers(cors, SITE) == {
        "Access-Control-Allow-Origin": SITE,
        "Vary": "Origin",
        "Access-Control-Allow-Credentials": "true",
        "Access-Control-Expose-Headers": "x-request-id",
    }
    assert response_headers(cors, "https://other.example") == {}
    assert response_headers(cors, None) == {}


def test_preflight_detection() -> None:
    assert is_preflight("OPTIONS", ask())
    assert not is_preflight("OPTIONS", {"origin": SITE})
    assert not is_preflight("POST", ask())
