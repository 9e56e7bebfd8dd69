"""Function URL payload format 2.0, both directions."""

from __future__ import annotations

import base64
import json

import pytest

from klambda.gateway.url_event import (
    BadFunctionResponse,
    HttpRequest,
    build_event,
    build_response,
)


def request(**kw: object) -> HttpRequest:
    base: dict[str, object] = {
        "method": "POST",
        "path": "/my/path",
        "raw_query": "a=1&a=2&b=x%20y",
        "headers": [
            ("Host", "hello.lambda-url.localhost"),
            ("User-Agent", "curl/8"),
            ("X-Multi", "one"),
            ("x-multi", "two"),
            ("Cookie", "k1=v1; k2=v2"),
            ("Content-Type", "application/json"),
        ],
        "body": b'{"x": 1}',
        "source_ip": "127.0.0.1",
        "domain": "hello.lambda-url.localhost",
    }
    base.update(kw)
    return HttpRequest(**base)  # type: ignore[arg-type]


def test_event_has_lambdas_shape() -> None:
    event = build_event(
        request(), request_id="rid", url_id="hello", account_id="123456789012", now=1631055022.677
    )
    assert event["version"] == "2.0"
    assert event["routeKey"] == "$default"
    assert event["rawPath"] == "/my/path"
    assert event["rawQueryString"] == "a=1&a=2&b=x%20y"
    assert event["queryStringParameters"] == {"a": "1,2", "b": "x y"}
    assert event["cookies"] == ["k1=v1", "k2=v2"]
    assert event["headers"]["x-multi"] == "one,two"
    assert "cookie" not in event["headers"]
    assert event["headers"]["user-agent"] == "curl/8"
    assert event["body"] == '{"x": 1}'
    assert event["isBase64Encoded"] is False
    ctx = event["requestContext"]
    assert ctx["http"] == {
        "method": "POST",
        "path": "/my/path",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "curl/8",
    }
    assert ctx["requestId"] == "rid"
    assert ctx["accountId"] == "123456789012"
    assert ctx["domainPrefix"] == "hello"
    assert ctx["time"] == "07/Sep/2021:22:50:22 +0000"
    assert ctx["timeEpoch"] == 1631055022677


def test_binary_body_is_base64() -> None:
    raw = bytes(range(256))
    event = build_event(
        request(body=raw, headers=[("Content-Type", "application/octet-stream")]),
        request_id="r",
        url_id="u",
        account_id="1",
    )
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == raw


def test_empty_request_omits_optional_parts() -> None:
    event = build_event(
        request(body=b"", raw_query="", headers=[]), request_id="r", url_id="u", account_id="1"
    )
    assert "body" not in event and "cookies" not in event
    assert "queryStringParameters" not in event
    assert event["isBase64Encoded"] is False


def test_plain_json_result_is_a_200_json_body_as_returned() -> None:
    resp = build_response(b'"Hello, world!"')
    assert resp.status == 200
    assert resp.body == b'"Hello, world!"'
    assert ("Content-Type", "application/json") in resp.headers
    assert build_response(b'{"a": 1}').body == b'{"a": 1}'


def test_described_response() -> None:
    payload = json.dumps(
        {
            "statusCode": 201,
            "headers": {"content-type": "text/plain", "x-a": "b"},
            "cookies": ["s=1; Path=/", "t=2"],
            "body": "made",
        }
    ).encode()
    resp = build_response(payload)
    assert resp.status == 201
    assert resp.body == b"made"
    assert ("content-type", "text/plain") in resp.headers
    assert [v for k, v in resp.headers if k == "Set-Cookie"] == ["s=1; Path=/", "t=2"]


def test_base64_response_body_is_decoded() -> None:
    payload = json.dumps(
        {"statusCode": 200, "body": base64.b64encode(b"\x00\x01").decode(), "isBase64Encoded": True}
    ).encode()
    assert build_response(payload).body == b"\x00\x01"


@pytest.mark.parametrize(
    "result",
    [
        {"statusCode": "abc"},
        {"statusCode": 99},
        {"statusCode": 200, "headers": []},
        {"statusCode": 200, "body": "***", "isBase64Encoded": True},
    ],
)
def test_malformed_responses_are_refused(result: object) -> None:
    with pytest.raises(BadFunctionResponse):
        build_response(json.dumps(result).encode())


def test_framing_and_hop_by_hop_headers_are_dropped() -> None:
    headers = {
        "Content-Length": "0",
        "Transfer-Encoding": "chunked",
        "Connection": "close",
        "Keep-Alive": "timeout=5",
        "Upgrade": "h2c",
        "X-Mine": "kept",
    }
    r = build_response(json.dumps({"statusCode": 200, "headers": headers, "body": "b"}).encode())
    assert dict(r.headers) == {"X-Mine": "kept", "Content-Type": "application/json"}


@pytest.mark.parametrize(
    "headers", [{"Bad Name": "x"}, {"": "x"}, {"X-Split": "a\r\nInjected: yes"}, {"X": "a\x00"}]
)
def test_invalid_header_names_or_values_are_refused(headers: dict[str, str]) -> None:
    with pytest.raises(BadFunctionResponse):
        build_response(json.dumps({"statusCode": 200, "headers": headers}).encode())
