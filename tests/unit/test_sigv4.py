"""SigV4 against botocore's own signer: what boto3 signs, we verify; what we sign, boto3 would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from unittest import mock
from urllib.parse import urlsplit

import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from klambda.api import sigv4

KEY, SECRET = "AKIAEXAMPLE123456789", "s3cr3t/EXAMPLE+key"
NOW = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)


def botocore_signed(
    url: str, body: bytes = b"{}", headers: dict[str, str] | None = None
) -> sigv4.Request:
    req = AWSRequest(method="POST", url=url, data=body, headers=headers or {})
    auth = SigV4Auth(Credentials(KEY, SECRET), "lambda", "us-east-1")
    with mock.patch.object(botocore.auth, "get_current_datetime", lambda: NOW.replace(tzinfo=None)):
        auth.add_auth(req)
    parts = urlsplit(url)
    hdrs = {k.lower(): v for k, v in req.headers.items()}
    hdrs["host"] = parts.netloc
    return sigv4.Request("POST", parts.path, parts.query, hdrs, body)


def check(req: sigv4.Request, now: datetime = NOW, secret: str = SECRET) -> None:
    sigv4.verify(req, sigv4.parse(req), secret, "us-east-1", now)


URLS = [
    "http://127.0.0.1:8080/2015-03-31/functions/hello/invocations",
    "http://127.0.0.1:8080/2015-03-31/functions/hello%3Alive/invocations",
    "http://localhost:9000/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012"
    "%3Afunction%3Ahello/invocations?Qualifier=%24LATEST",
    "http://127.0.0.1:8080/2015-03-31/functions/?MaxItems=10&Marker=a%2Fb",
]


@pytest.mark.parametrize("url", URLS)
def test_botocore_signatures_verify(url: str) -> None:
    check(botocore_signed(url, headers={"X-Amz-Invocation-Type": "Event"}))


def test_our_signatures_match_botocores() -> None:
    url = URLS[2]
    theirs = botocore_signed(url, headers={"Content-Type": "application/json"})
    parts = urlsplit(url)
    ours = sigv4.sign(
        "POST",
        parts.path,
        parts.query,
        {"host": parts.netloc, "content-type": "application/json"},
        b"{}",
        access_key_id=KEY,
        secret=SECRET,
        region="us-east-1",
        now=NOW,
    )
    assert ours["Authorization"] == theirs.headers["authorization"]


def test_tampering_is_detected() -> None:
    req = botocore_signed(URLS[0])
    for changed in (
        sigv4.Request(req.method, req.raw_path, req.raw_query, req.headers, b'{"x": 1}'),
        sigv4.Request(
            req.method, req.raw_path.replace("hello", "other"), "", req.headers, req.body
        ),
        sigv4.Request("PUT", req.raw_path, req.raw_query, req.headers, req.body),
    ):
        with pytest.raises(sigv4.SignatureError) as info:
            check(changed)
        assert info.value.code == "InvalidSignatureException"
    with pytest.raises(sigv4.SignatureError, match="does not match"):
        check(req, secret="wrong")


def test_clock_skew_is_refused_both_ways() -> None:
    req = botocore_signed(URLS[0])
    with pytest.raises(sigv4.SignatureError, match="Signature expired: 20261122T100000Z"):
        check(req, now=NOW + timedelta(minutes=6))
    with pytest.raises(sigv4.SignatureError, match="Signature not yet current"):
        check(req, now=NOW - timedelta(minutes=6))
    check(req, now=NOW + timedelta(minutes=4))


def test_missing_and_malformed_authorization() -> None:
    plain = sigv4.Request("POST", "/", "", {"host": "h"}, b"")
    with pytest.raises(sigv4.SignatureError) as info:
        sigv4.parse(plain)
    assert info.value.code == "MissingAuthenticationTokenException"
    bad = sigv4.Request("POST", "/", "", {"host": "h", "authorization": "AWS4-HMAC-SHA256 x"}, b"")
    with pytest.raises(sigv4.SignatureError) as info:
        sigv4.parse(bad)
    assert info.value.code == "IncompleteSignatureException"


def test_scope_must_be_lambda_in_our_region() -> None:
    req = botocore_signed(URLS[0])
    with pytest.raises(sigv4.SignatureError, match="valid region"):
        sigv4.verify(req, sigv4.parse(req), SECRET, "eu-west-1", NOW)
