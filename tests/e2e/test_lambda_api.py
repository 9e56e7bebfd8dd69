"""The Lambda API as AWS's own clients use it: boto3 and the AWS CLI against ``klambda up``."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from klambda.api import sigv4
from klambda.api.arn import account_for
from tests.e2e.conftest import Platform

ACCOUNT = account_for("default")


def client(
    platform: Platform,
    key: str | None = None,
    secret: str | None = None,
    read_timeout: float = 30,
    service: str = "lambda",
) -> Any:
    """A boto3 client of ``service`` for the gateway, signed by ``key`` (default the admin's)."""
    state = platform.state()
    return boto3.client(
        service,
        endpoint_url=platform.url,
        region_name="us-east-1",
        aws_access_key_id=key or state["access_key_id"],
        aws_secret_access_key=secret or state["secret_access_key"],
        config=Config(retries={"max_attempts": 1}, read_timeout=read_timeout),
    )


def code(e: pytest.ExceptionInfo[ClientError]) -> str:
    return str(e.value.response["Error"]["Code"])


def new_key(
    platform: Platform,
    tmp: Path,
    name: str,
    policy: dict[str, Any] | None,
    namespace: str = "default",
) -> tuple[str, str]:
    args = ["keys", "create", name, "-n", namespace]
    if policy is not None:
        path = tmp / f"{name}.json"
        path.write_text(json.dumps(policy))
        args += ["--policy", str(path)]
    r = platform.cli(*args)
    assert r.returncode == 0, r.stderr
    values = dict(
        line.removeprefix("export ").split("=", 1)
        for line in r.stdout.splitlines()
        if line.startswith("export ")
    )
    return values["AWS_ACCESS_KEY_ID"], values["AWS_SECRET_ACCESS_KEY"]


def allow(action: str | list[str], resource: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": action, "Resource": resource}],
    }


# --------------------------------------------------------------------------- invocation types


def test_request_response_with_tail_and_client_context(platform: Platform) -> None:
    ctx = base64.b64encode(json.dumps({"custom": {"k": "v"}}).encode()).decode()
    r = client(platform).invoke(
        FunctionName="greeter", Payload=b'{"name": "Ada"}', LogType="Tail", ClientContext=ctx
    )
    assert r["StatusCode"] == 200
    assert json.loads(r["Payload"].read())["greeting"] == "Bonjour, Ada!"
    assert r["ExecutedVersion"] == "$LATEST"
    assert "FunctionError" not in r
    log = base64.b64decode(r["LogResult"]).decode()
    assert log.startswith("START RequestId:") and "REPORT RequestId:" in log


def test_function_error(platform: Platform) -> None:
    r = client(platform).invoke(FunctionName="faulty", Payload=b'{"action": "raise"}')
    assert r["FunctionError"] == "Unhandled"
    assert json.loads(r["Payload"].read())["errorType"] == "RuntimeError"


@pytest.mark.parametrize(
    "name",
    [
        "greeter",
        f"{ACCOUNT}:function:greeter",
        f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:greeter",
        "greeter:$LATEST",
    ],
)
def test_function_name_forms(platform: Platform, name: str) -> None:
    r = client(platform).invoke(FunctionName=name, Payload=b"{}")
    assert r["StatusCode"] == 200 and "greeting" in json.loads(r["Payload"].read())


def test_dry_run(platform: Platform) -> None:
    assert (
        client(platform).invoke(FunctionName="greeter", InvocationType="DryRun")["StatusCode"]
        == 204
    )


def test_event_is_queued_and_delivered_once(platform: Platform, tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    c = client(platform)
    ids = []
    for n in range(5):
        r = c.invoke(
            FunctionName="recorder",
            InvocationType="Event",
            Payload=json.dumps({"file": str(out), "n": n}).encode(),
        )
        assert r["StatusCode"] == 202
        ids.append(r["ResponseMetadata"]["RequestId"])
    deadline = time.monotonic() + 30
    while not out.exists() or len(out.read_text().splitlines()) < 5:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(0.5)
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(r["n"] for r in records) == [0, 1, 2, 3, 4]
    assert sorted(r["id"] for r in records) == sorted(ids)  # the 202's request id is the run's


# --------------------------------------------------------------------------- errors


def test_error_classes(platform: Platform) -> None:
    c = client(platform)
    with pytest.raises(c.exceptions.ResourceNotFoundException):
        c.invoke(FunctionName="no-such-function")
    with pytest.raises(c.exceptions.ResourceNotFoundException):
        c.invoke(FunctionName="greeter", Qualifier="nope")
    with pytest.raises(c.exceptions.InvalidRequestContentException):
        c.invoke(FunctionName="greeter", Payload=b"{not json")
    with pytest.raises(c.exceptions.RequestTooLargeException):
        c.invoke(FunctionName="greeter", Payload=b'"' + b"x" * (6 * 1024 * 1024) + b'"')
    with pytest.raises(c.exceptions.RequestTooLargeException):
        c.invoke(
            FunctionName="greeter",
            InvocationType="Event",
            Payload=b'"' + b"x" * (300 * 1024) + b'"',
        )
    with pytest.raises(c.exceptions.TooManyRequestsException) as info:
        c.invoke(FunctionName="disabled-fn")
    assert info.value.response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    with pytest.raises(c.exceptions.InvalidParameterValueException):
        c.invoke(FunctionName="greeter:live", Qualifier="other")


def test_wrong_secret_unknown_key_and_missing_signature(platform: Platform) -> None:
    state = platform.state()
    with pytest.raises(ClientError) as info:
        client(platform, state["access_key_id"], "wrong-secret").invoke(FunctionName="greeter")
    assert code(info) == "InvalidSignatureException"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError) as info:
        client(platform, "AKIANOTAREALKEY00000", "x").invoke(FunctionName="greeter")
    assert code(info) == "UnrecognizedClientException"
    status, headers, _ = platform.http(
        "POST", "/2015-03-31/functions/greeter/invocations", b"{}", sign=False
    )
    assert (status, headers["x-amzn-ErrorType"]) == (403, "MissingAuthenticationTokenException")


def signed_call(
    platform: Platform, body: bytes, signed_body: bytes, now: datetime
) -> tuple[int, str]:
    state = platform.state()
    path = "/2015-03-31/functions/greeter/invocations"
    headers = sigv4.sign(
        "POST",
        path,
        "",
        {"host": f"127.0.0.1:{platform.port}"},
        signed_body,
        access_key_id=state["access_key_id"],
        secret=state["secret_access_key"],
        region="us-east-1",
        now=now,
    )
    status, h, out = platform.http("POST", path, body, headers, sign=False)
    return status, h.get("x-amzn-ErrorType", "") + " " + out.decode()


def test_expired_date_and_tampered_body(platform: Platform) -> None:
    now = datetime.now(UTC)
    assert signed_call(platform, b"{}", b"{}", now)[0] == 200
    status, why = signed_call(platform, b"{}", b"{}", now - timedelta(minutes=10))
    assert status == 403 and "InvalidSignatureException" in why and "Signature expired" in why
    status, why = signed_call(platform, b'{"tampered": 1}', b"{}", now)
    assert status == 403 and "InvalidSignatureException" in why


def test_principal_allowed_on_one_function_only(platform: Platform, tmp_path: Path) -> None:
    arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:greeter"
    key, secret = new_key(platform, tmp_path, "bob", allow("lambda:InvokeFunction", arn))
    bob = client(platform, key, secret)
    assert json.loads(bob.invoke(FunctionName="greeter")["Payload"].read())["greeting"]
    with pytest.raises(ClientError) as info:
        bob.invoke(FunctionName="hello")
    assert code(info) == "AccessDeniedException"
    assert "user/bob is not authorized to perform: lambda:InvokeFunction" in str(info.value)
    with pytest.raises(ClientError) as info:  # an unqualified grant does not cover a qualifier
        bob.invoke(FunctionName="greeter", Qualifier="$LATEST")
    assert code(info) == "AccessDeniedException"
    listed = platform.cli("keys", "list").stdout
    assert key in listed and "bob" in listed and secret not in listed
    assert platform.cli("keys", "delete", key).returncode == 0
    with pytest.raises(ClientError) as info:
        bob.invoke(FunctionName="greeter")
    assert code(info) == "UnrecognizedClientException"


def test_resource_policy_deny_wins(platform: Platform, tmp_path: Path) -> None:
    key, secret = new_key(platform, tmp_path, "mallory", allow("lambda:*", "*"))
    with pytest.raises(ClientError) as info:
        client(platform, key, secret).invoke(FunctionName="private")
    assert code(info) == "AccessDeniedException"
    assert "explicit deny in a resource-based policy" in str(info.value)
    assert client(platform).invoke(FunctionName="private")["StatusCode"] == 200


def test_cross_namespace_needs_both_policies(platform: Platform, tmp_path: Path) -> None:
    other = "team-b"
    arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:greeter"
    r = platform.cli(
        "keys",
        "create",
        "carol",
        "-n",
        other,
        "--policy",
        str(_write(tmp_path / "p.json", allow("lambda:InvokeFunction", arn))),
    )
    assert r.returncode == 0, r.stderr
    env = dict(
        x.removeprefix("export ").split("=", 1)
        for x in r.stdout.splitlines()
        if x.startswith("export ")
    )
    carol = client(platform, env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])
    with pytest.raises(ClientError) as info:  # greeter's resource policy does not allow team-b
        carol.invoke(FunctionName=arn)
    assert code(info) == "AccessDeniedException"
    assert "no resource-based policy allows" in str(info.value)


def _write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


# --------------------------------------------------------------------------- control plane


def test_read_only_control_plane(platform: Platform) -> None:
    c = client(platform)
    names = {f["FunctionName"] for f in c.list_functions()["Functions"]}
    assert {"hello", "greeter", "counter", "shout"} <= names
    f = c.get_function(FunctionName="greeter")
    cfg = f["Configuration"]
    assert (cfg["Runtime"], cfg["Handler"], cfg["MemorySize"], cfg["Timeout"]) == (
        "python3.11",
        "greeter.handler",
        128,
        3,
    )
    assert cfg["Environment"]["Variables"]["GREETING"] == "Bonjour"
    assert cfg["State"] == "Active" and cfg["CodeSha256"] and cfg["CodeSize"] > 0
    assert cfg["FunctionArn"].endswith(":function:greeter")
    versions = c.list_versions_by_function(FunctionName="greeter")["Versions"]
    assert versions[0]["Version"] == "$LATEST"
    url = c.get_function_url_config(FunctionName="hello")
    assert url["AuthType"] == "NONE" and url["FunctionUrl"].endswith("/lambda-url/hello/")
    secured = c.get_function_url_config(FunctionName="secured")
    assert secured["Cors"]["AllowOrigins"] == ["https://app.example.com"]
    with pytest.raises(c.exceptions.ResourceNotFoundException):
        c.get_function_url_config(FunctionName="greeter")
    assert c.list_aliases(FunctionName="greeter")["Aliases"] == []
    assert c.get_account_settings()["AccountLimit"]["ConcurrentExecutions"] == 1000
    with pytest.raises(ClientError) as info:
        c.delete_function(FunctionName="greeter")
    assert "manages functions with manifests" in str(info.value)


def test_aws_cli(platform: Platform, tmp_path: Path) -> None:
    state = platform.state()
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL_LAMBDA": platform.url,
        "AWS_ACCESS_KEY_ID": state["access_key_id"],
        "AWS_SECRET_ACCESS_KEY": state["secret_access_key"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
    }

    def aws(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "awscli", "lambda", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )

    out = tmp_path / "out.json"
    r = aws("invoke", "--function-name", "greeter", "--payload", '{"name": "CLI"}', str(out))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["StatusCode"] == 200
    assert json.loads(out.read_text())["greeting"] == "Bonjour, CLI!"
    r = aws("list-functions")
    assert r.returncode == 0 and "greeter" in {
        f["FunctionName"] for f in json.loads(r.stdout)["Functions"]
    }
    r = aws("get-function", "--function-name", "hello")
    assert r.returncode == 0 and json.loads(r.stdout)["Configuration"]["FunctionName"] == "hello"
    r = aws("get-function", "--function-name", "nope")
    assert r.returncode != 0 and "ResourceNotFoundException" in r.stderr


# --------------------------------------------------------------------------- function URLs


def test_aws_iam_function_url(platform: Platform, tmp_path: Path) -> None:
    status, headers, _ = platform.http("GET", "/lambda-url/secured/", sign=False)
    assert (status, headers["x-amzn-ErrorType"]) == (403, "MissingAuthenticationTokenException")
    status, _, body = platform.http("GET", "/lambda-url/secured/", sign=True)
    assert status == 200
    iam = json.loads(body)["iam"]
    state = platform.state()
    assert iam["accessKey"] == state["access_key_id"]
    assert iam["userArn"] == f"arn:aws:iam::{ACCOUNT}:user/admin"
    assert iam["accountId"] == ACCOUNT
    # a principal allowed to invoke but not to invoke URLs is refused
    arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:secured"
    key, secret = new_key(platform, tmp_path, "dave", allow("lambda:InvokeFunction", arn))
    path = "/lambda-url/secured/"
    headers = platform.signature("GET", path, b"", {}, key, secret)
    status, h, _ = platform.http("GET", path, headers=headers, sign=False)
    assert (status, h["x-amzn-ErrorType"]) == (403, "AccessDeniedException")
    key, secret = new_key(platform, tmp_path, "erin", allow("lambda:InvokeFunctionUrl", arn))
    headers = platform.signature("GET", path, b"", {}, key, secret)
    assert platform.http("GET", path, headers=headers, sign=False)[0] == 200


def test_public_url_resource_policy_deny(platform: Platform) -> None:
    assert platform.http("GET", "/lambda-url/private/")[0] == 200
    status, _, _ = platform.http(
        "GET", "/lambda-url/private/", headers={"X-Forwarded-For": "10.9.9.9"}
    )
    assert status == 200  # the client's claimed address is not its source IP


# --------------------------------------------------------------------------- CORS


ORIGIN = "https://app.example.com"


def preflight(platform: Platform, path: str, origin: str, method: str, headers: str = "") -> Any:
    h = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        h["Access-Control-Request-Headers"] = headers
    return platform.http("OPTIONS", path, headers=h, sign=False)


def test_cors_preflight_is_answered_without_invoking_or_auth(platform: Platform) -> None:
    before = _invocations(platform, "secured")
    status, h, body = preflight(
        platform, "/lambda-url/secured/", ORIGIN, "POST", "Content-Type, Authorization, X-Amz-Date"
    )
    assert status == 200 and body == b""
    assert h["Access-Control-Allow-Origin"] == ORIGIN
    assert h["Access-Control-Allow-Credentials"] == "true"
    assert h["Access-Control-Allow-Methods"] == "GET, POST"
    assert h["Access-Control-Allow-Headers"] == "content-type, authorization, x-amz-date"
    assert h["Access-Control-Max-Age"] == "300"
    for bad in (
        preflight(platform, "/lambda-url/secured/", "https://evil.example", "POST"),
        preflight(platform, "/lambda-url/secured/", ORIGIN, "DELETE"),
        preflight(platform, "/lambda-url/secured/", ORIGIN, "GET", "X-Secret"),
    ):
        assert bad[0] == 200 and "Access-Control-Allow-Origin" not in bad[1]
    assert _invocations(platform, "secured") == before


def test_cors_headers_on_actual_responses_replace_the_functions(platform: Platform) -> None:
    status, h, body = platform.http("GET", "/lambda-url/cors-demo/", headers={"Origin": ORIGIN})
    assert (status, body) == (200, b"GET")
    assert h["Access-Control-Allow-Origin"] == ORIGIN  # not the function's "*"
    assert "Origin" in h["Vary"]
    status, h, _ = platform.http(
        "GET", "/lambda-url/cors-demo/", headers={"Origin": "https://evil.example"}
    )
    assert status == 200 and "Access-Control-Allow-Origin" not in h
    status, h, body = platform.http(
        "GET", "/lambda-url/secured/", headers={"Origin": ORIGIN}, sign=True
    )
    assert h["Access-Control-Allow-Origin"] == ORIGIN
    assert h["Access-Control-Expose-Headers"] == "x-request-id"


def _invocations(platform: Platform, name: str) -> float:
    _, _, body = platform.http("GET", "/metrics")
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith("klambda_invocations_total{") and f'function="{name}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total
