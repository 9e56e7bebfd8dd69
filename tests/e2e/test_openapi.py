"""schemathesis against the gateway's own OpenAPI document (``GET /openapi.json``), on a real
``klambda up`` over loopback: generated requests, signed with SigV4 like a real client's where
the operation needs it, must get documented statuses and Lambda-shaped errors: no crash, no
hang (each request has a timeout), no unshaped 500. Bounded: ``OPENAPI_EXAMPLES`` per
operation (default 12)."""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
import schemathesis
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, given, settings

from tests.e2e.conftest import Platform

EXAMPLES = int(os.environ.get("OPENAPI_EXAMPLES", "12"))


def signed(platform: Platform, kwargs: dict[str, Any], service: str = "lambda") -> dict[str, Any]:
    """The request with a SigV4 signature by the admin key (botocore's signer)."""
    state = platform.state()
    url = kwargs["url"]
    if kwargs.get("params"):
        url += "?" + urlencode(kwargs["params"], doseq=True)
    body = kwargs.get("data") or kwargs.get("json")
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    headers = {k: str(v) for k, v in (kwargs.get("headers") or {}).items()}
    req = AWSRequest(method=kwargs["method"], url=url, data=body or b"", headers=headers)
    creds = Credentials(state["access_key_id"], state["secret_access_key"])
    SigV4Auth(creds, service, state["region"]).add_auth(req)
    return {"method": kwargs["method"], "url": url, "data": req.body, "headers": dict(req.headers)}


def test_generated_requests_get_documented_lambda_shaped_answers(platform: Platform) -> None:
    document = requests.get(f"{platform.url}/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(document)
    failures: list[str] = []
    seen = 0

    def check(case: Any) -> None:
        nonlocal seen
        kwargs = case.as_transport_kwargs(base_url=platform.url)
        path = urlsplit(kwargs["url"]).path
        api = path.startswith("/20")
        target = str((kwargs.get("headers") or {}).get("X-Amz-Target", ""))
        if api:
            kwargs = signed(platform, kwargs)
        elif path == "/" and target:  # the producers' SQS and Kinesis APIs
            kwargs = signed(
                platform, kwargs, "sqs" if target.startswith("AmazonSQS") else "kinesis"
            )
        response = requests.request(**kwargs, timeout=30, allow_redirects=False)
        seen += 1
        where = f"{kwargs['method']} {path} -> {response.status_code}"
        if path == "/" and response.status_code >= 400 and "__type" not in response.text:
            failures.append(f"{where}: not an AWS JSON error: {response.text[:200]}")
        if api and response.status_code >= 400:
            if "x-amzn-ErrorType" not in response.headers:
                failures.append(f"{where}: no x-amzn-ErrorType")
            elif not response.headers.get("Content-Type", "").startswith("application/json"):
                failures.append(f"{where}: error body is not JSON")
        if response.status_code >= 500 and response.status_code != 502:
            failures.append(f"{where}: {response.text[:200]}")
        if "Traceback" in response.text:
            failures.append(f"{where}: a traceback reached the caller")

    bounded = settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    for result in schema.get_all_operations():
        operation = result.ok()
        bounded(given(operation.as_strategy())(check))()
    print(f"{seen} generated requests")
    assert seen >= EXAMPLES, "schemathesis generated too few requests"
    assert failures == []
