"""SigV4, negative: a request botocore signed, changed in one way an attacker (or a broken
client) would, must be refused with the error AWS gives; the unchanged baseline verifies.

The baseline is signed by botocore's own SigV4Auth, so the suite tests verification against
the real signer, not against ours.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from unittest import mock
from urllib.parse import urlsplit

import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from klambda.api import sigv4
from tests.unit.test_sigv4 import KEY, NOW, SECRET

URL = "http://127.0.0.1:8080/2015-03-31/functions/hello/invocations?Qualifier=live"
BAD_SIGNATURE = "InvalidSignatureException"


def signed(
    *,
    region: str = "us-east-1",
    service: str = "lambda",
    at: timedelta = timedelta(0),
    method: str = "POST",
    headers: dict[str, str] | None = None,
    body: bytes = b'{"n": 1}',
) -> sigv4.Request:
    req = AWSRequest(method=method, url=URL, data=body, headers=headers or {})
    auth = SigV4Auth(Credentials(KEY, SECRET), service, region)
    when = (NOW + at).replace(tzinfo=None)
    with mock.patch.object(botocore.auth, "get_current_datetime", lambda: when):
        auth.add_auth(req)
    parts = urlsplit(URL)
    hdrs = {k.lower(): v for k, v in req.headers.items()}
    hdrs["host"] = parts.netloc
    return sigv4.Request(method, parts.path, parts.query, hdrs, body)


def verify(req: sigv4.Request) -> None:
    sigv4.verify(req, sigv4.parse(req), SECRET, "us-east-1", NOW)


def with_header(req: sigv4.Request, name: str, value: str | None) -> sigv4.Request:
    headers = dict(req.headers)
    if value is None:
        headers.pop(name, None)
    else:
        headers[name] = value
    return replace(req, headers=headers)


def signature_swapped(req: sigv4.Request, signature: str) -> sigv4.Request:
    auth = req.headers["authorization"]
    head, _, _ = auth.rpartition("Signature=")
    return with_header(req, "authorization", f"{head}Signature={signature}")


Tamper = Callable[[], sigv4.Request]
CASES: list[tuple[str, Tamper, str, str]] = [
    ("body", lambda: replace(signed(), body=b'{"n": 2}'), BAD_SIGNATURE, "does not match"),
    ("empty body", lambda: replace(signed(), body=b""), BAD_SIGNATURE, "does not match"),
    (
        "path",
        lambda: replace(signed(), raw_path=signed().raw_path.replace("hello", "payroll")),
        BAD_SIGNATURE,
        "does not match",
    ),
    (
        "query value",
        lambda: replace(signed(), raw_query="Qualifier=prod"),
        BAD_SIGNATURE,
        "does not match",
    ),
    (
        "query added",
        lambda: replace(signed(), raw_query="Qualifier=live&x=1"),
        BAD_SIGNATURE,
        "does not match",
    ),
    ("method", lambda: replace(signed(), method="PUT"), BAD_SIGNATURE, "does not match"),
    (
        "signed header value",
        lambda: with_header(
            signed(headers={"X-Amz-Invocation-Type": "Event"}),
            "x-amz-invocation-type",
            "RequestResponse",
        ),
        BAD_SIGNATURE,
        "does not match",
    ),
    (
        "signed header removed",
        lambda: with_header(
            signed(headers={"X-Amz-Invocation-Type": "Event"}), "x-amz-invocation-type", None
        ),
        BAD_SIGNATURE,
        "Signed header 'x-amz-invocation-type' is missing",
    ),
    (
        "host",
        lambda: with_header(signed(), "host", "evil.example:8080"),
        BAD_SIGNATURE,
        "does not match",
    ),
    (
        "date header",
        lambda: with_header(signed(), "x-amz-date", "20261122T100100Z"),
        BAD_SIGNATURE,
        "does not match",
    ),
    (
        "date outside the scope's day",
        lambda: with_header(signed(), "x-amz-date", "20261123T100000Z"),
        BAD_SIGNATURE,
        "Date in Credential scope does not match",
    ),
    ("region", lambda: signed(region="eu-west-1"), BAD_SIGNATURE, "valid region"),
    ("service", lambda: signed(service="s3"), BAD_SIGNATURE, "correct service: 'lambda'"),
    ("expired", lambda: signed(at=-timedelta(minutes=5, seconds=1)), BAD_SIGNATURE, "expired"),
    ("from the future", lambda: signed(at=timedelta(minutes=6)), BAD_SIGNATURE, "not yet current"),
    (
        "signature garbage",
        lambda: signature_swapped(signed(), "0" * 64),
        BAD_SIGNATURE,
        "does not match",
    ),
    (
        "signature of another request",
        lambda: signature_swapped(
            signed(), signed(body=b"{}").headers["authorization"].rpartition("=")[2]
        ),
        BAD_SIGNATURE,
        "does not match",
    ),
    (
        "content hash lies",
        lambda: with_header(signed(), "x-amz-content-sha256", "0" * 64),
        BAD_SIGNATURE,
        "x-amz-content-sha256",
    ),
    (
        "no date",
        lambda: with_header(signed(), "x-amz-date", None),
        BAD_SIGNATURE,
        "Signed header 'x-amz-date' is missing",
    ),
    (
        "truncated authorization",
        lambda: with_header(signed(), "authorization", "AWS4-HMAC-SHA256 Credential=AKIA"),
        "IncompleteSignatureException",
        "",
    ),
    (
        "another algorithm",
        lambda: with_header(
            signed(),
            "authorization",
            signed().headers["authorization"].replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA1"),
        ),
        "IncompleteSignatureException",
        "",
    ),
    (
        "no authorization",
        lambda: with_header(signed(), "authorization", None),
        "MissingAuthenticationTokenException",
        "Missing Authentication Token",
    ),
]


def test_the_baseline_verifies() -> None:
    verify(signed())
    verify(signed(at=timedelta(minutes=4, seconds=59)))  # skew within 5 min either way
    verify(signed(at=-timedelta(minutes=4, seconds=59)))
    verify(with_header(signed(), "x-unsigned", "anything"))  # unsigned headers are not covered


@pytest.mark.parametrize(("case", "tamper", "code", "message"), CASES, ids=[c[0] for c in CASES])
def test_a_tampered_request_is_refused(case: str, tamper: Tamper, code: str, message: str) -> None:
    with pytest.raises(sigv4.SignatureError) as refused:
        verify(tamper())
    assert refused.value.code == code, refused.value.message
    assert message in refused.value.message


def test_a_wrong_secret_is_refused() -> None:
    req = signed()
    with pytest.raises(sigv4.SignatureError, match="does not match"):
        sigv4.verify(req, sigv4.parse(req), SECRET + "x", "us-east-1", NOW)
