"""Bounded fuzzing (hypothesis) of what parses untrusted input: SigV4 canonicalisation against
botocore's own signer, the URL event (payload 2.0) mapping, the function response mapping and
manifest validation. Each either answers or refuses in its documented way; nothing else may
escape. CI-sized runs (``FUZZ_EXAMPLES``, default 150 per property); a longer run is
``FUZZ_EXAMPLES=5000 python -m pytest tests/unit/test_fuzz.py`` (see docs/security.md).
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any
from unittest import mock
from urllib.parse import quote

import botocore.auth
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from klambda.api import sigv4
from klambda.api.objects import parse_object
from klambda.api.schema import ValidationError
from klambda.gateway.url_event import BadFunctionResponse, HttpRequest, build_event, build_response
from tests.unit.test_sigv4 import KEY, NOW, SECRET

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=os.environ.get("FUZZ_RANDOM") is None,  # CI: the same examples every run
)

segment = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12
).map(lambda s: quote(s, safe=""))
path = st.lists(segment, min_size=1, max_size=4).map(lambda parts: "/" + "/".join(parts))
query_pair = st.tuples(
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=8),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8),
)
query = st.lists(query_pair, max_size=4).map(
    lambda pairs: "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)
)
header_name = st.from_regex(r"x-[a-z0-9-]{1,12}", fullmatch=True)
header_value = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20)


@FUZZ
@given(
    path=path,
    query=query,
    headers=st.dictionaries(header_name, header_value, max_size=3),
    body=st.binary(max_size=64),
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
)
def test_what_botocore_signs_verifies_and_any_change_does_not(
    path: str, query: str, headers: dict[str, str], body: bytes, method: str
) -> None:
    url = f"http://127.0.0.1:8080{path}" + (f"?{query}" if query else "")
    req = AWSRequest(method=method, url=url, data=body, headers=headers)
    auth = SigV4Auth(Credentials(KEY, SECRET), "lambda", "us-east-1")
    with mock.patch.object(botocore.auth, "get_current_datetime", lambda: NOW.replace(tzinfo=None)):
        auth.add_auth(req)
    hdrs = {k.lower(): v for k, v in req.headers.items()}
    hdrs["host"] = "127.0.0.1:8080"
    signed = sigv4.Request(method, path, query, hdrs, body)
    sigv4.verify(signed, sigv4.parse(signed), SECRET, "us-east-1", NOW)
    tampered = sigv4.Request(method, path, query, hdrs, body + b"x")
    try:
        sigv4.verify(tampered, sigv4.parse(tampered), SECRET, "us-east-1", NOW)
    except sigv4.SignatureError as e:
        assert e.code == "InvalidSignatureException"
    else:
        raise AssertionError("a changed body verified")


@FUZZ
@given(
    headers=st.lists(
        st.tuples(
            st.text(min_size=1, max_size=10),
            st.text(max_size=20),
        ),
        max_size=6,
    ),
    body=st.binary(max_size=200),
    raw_query=st.text(max_size=30),
    path=st.text(max_size=30),
)
def test_any_request_maps_to_a_json_event(
    headers: list[tuple[str, str]], body: bytes, raw_query: str, path: str
) -> None:
    req = HttpRequest("POST", "/" + path, raw_query, headers, body, "10.0.0.1")
    event = build_event(
        req, request_id="r", url_id="u", account_id="1", authorizer={"iam": {"x": 1}}
    )
    json.dumps(event)  # what the runtime receives must be JSON
    assert "authorization" not in event["headers"]
    if body:
        raw = event["body"]
        got = base64.b64decode(raw) if event["isBase64Encoded"] else raw.encode()
        assert got == body


json_value: Any = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
described = st.fixed_dictionaries(
    {"statusCode": st.one_of(st.integers(0, 700), st.text(max_size=4), st.none())},
    optional={
        "headers": st.dictionaries(st.text(max_size=12), json_value, max_size=3) | json_value,
        "multiValueHeaders": st.dictionaries(st.text(max_size=8), json_value, max_size=2),
        "cookies": st.lists(st.text(max_size=10), max_size=2),
        "body": json_value,
        "isBase64Encoded": st.booleans(),
    },
)


@FUZZ
@given(payload=st.one_of(st.binary(max_size=100), described.map(lambda d: json.dumps(d).encode())))
def test_any_function_result_maps_to_a_safe_response_or_a_502(payload: bytes) -> None:
    try:
        response = build_response(payload)
    except BadFunctionResponse:
        return  # the gateway answers 502, as Lambda does
    assert 100 <= response.status <= 599
    for name, value in response.headers:
        assert "\r" not in value and "\n" not in value and "\r" not in name
        assert name.lower() not in ("content-length", "transfer-encoding", "connection")


manifest = st.fixed_dictionaries(
    {
        "apiVersion": st.sampled_from(["klambda.io/v1alpha1", "v1", "x"]),
        "kind": st.sampled_from(["Function", "Version", "Alias", "EventSourceMapping", "Nope"]),
        "metadata": st.fixed_dictionaries({"name": st.text(max_size=20)}) | json_value,
    },
    optional={"spec": st.dictionaries(st.text(max_size=12), json_value, max_size=5) | json_value},
)


@FUZZ
@given(doc=st.one_of(manifest, json_value))
def test_any_manifest_is_accepted_or_refused_with_field_errors(doc: Any) -> None:
    try:
        parse_object(doc)
    except ValidationError as e:
        assert str(e)  # says what is wrong
