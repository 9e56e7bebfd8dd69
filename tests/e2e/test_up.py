"""``klambda up`` end to end: examples served over HTTP, the CLI, negative cases."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from klambda.api.isolation import UID_BASE
from tests.e2e.conftest import Platform, start_platform, stop_platform, wait_gone
from tests.helpers import free_port, python_for_others


def test_up_prints_every_function_url(platform: Platform) -> None:
    state = platform.state()
    assert state["gateway_url"] == platform.url
    for name in ("hello", "counter", "shout", "faulty"):
        url = platform.cli("url", name)
        assert url.returncode == 0, url.stderr
        assert url.stdout.strip() == f"{platform.url}/lambda-url/{name}/"
    missing = platform.cli("url", "greeter")
    assert missing.returncode == 1 and "has no URL" in missing.stderr


def test_function_url_path_form(platform: Platform) -> None:
    status, headers, body = platform.http("GET", "/lambda-url/hello/some/path?name=ada&x=1")
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    data = json.loads(body)
    assert data["message"] == "hello, ada!"
    assert data["path"] == "/some/path"
    assert data["query"] == {"name": "ada", "x": "1"}
    assert re.fullmatch(r"[0-9a-f-]{36}", data["requestId"])
    assert headers["x-amzn-RequestId"] == data["requestId"]


def test_function_url_host_form_and_post_body(platform: Platform) -> None:
    status, _, body = platform.http(
        "POST",
        "/echo?name=bob",
        body=b'{"x": 1}',
        headers={
            "Host": f"hello.lambda-url.localhost:{platform.port}",
            "Content-Type": "application/json",
        },
    )
    assert status == 200
    data = json.loads(body)
    assert (data["message"], data["method"], data["path"]) == ("hello, bob!", "POST", "/echo")
    assert data["body"] == '{"x": 1}'


def test_binary_response_and_provided_runtime_url(platform: Platform) -> None:
    status, headers, body = platform.http("POST", "/lambda-url/faulty/", b'{"action": "binary"}')
    assert (status, body) == (200, b"\x00\x01\x02\xff")
    assert headers["Content-Type"] == "application/octet-stream"
    status, _, body = platform.http("GET", "/lambda-url/shout/?hey")
    assert (status, json.loads(body)) == (200, {"shouted": "HEY!"})


def test_invoke_keeps_module_state(platform: Platform) -> None:
    first = platform.cli("invoke", "counter")
    second = platform.cli("invoke", "counter")
    assert first.returncode == second.returncode == 0, first.stderr
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    assert b["count"] == a["count"] + 1


def test_invoke_environment_variables_and_payload_file(platform: Platform, tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text('{"name": "Grace"}')
    r = platform.cli("invoke", "greeter", "--payload", f"@{event}")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["greeting"] == "Bonjour, Grace!"


def test_invoke_function_error_exits_1(platform: Platform) -> None:
    r = platform.cli("invoke", "faulty", "--payload", '{"action": "raise"}')
    assert r.returncode == 1
    body = json.loads(r.stdout)
    assert (body["errorType"], body["errorMessage"]) == ("RuntimeError", "it broke")
    assert "Traceback" not in r.stderr


def test_invoke_bad_json_is_refused_clearly(platform: Platform) -> None:
    r = platform.cli("invoke", "hello", "--payload", "{not json")
    assert r.returncode == 2
    assert r.stderr.startswith("error: invalid JSON payload")
    assert "Traceback" not in r.stderr
    status, headers, body = platform.http(
        "POST", "/2015-03-31/functions/hello/invocations", b"{not json"
    )
    assert status == 400
    assert headers["x-amzn-ErrorType"] == "InvalidRequestContentException"
    assert json.loads(body)["Message"].startswith("Could not parse request body into json")
    # JSON, but not UTF-8 (Python's json would take UTF-16): refused the same way, both
    # synchronously and as an Event, never an unshaped 500
    utf16 = '{"name": "ada"}'.encode("utf-16")
    for extra in ({}, {"X-Amz-Invocation-Type": "Event"}):
        status, headers, body = platform.http(
            "POST", "/2015-03-31/functions/hello/invocations", utf16, extra
        )
        assert status == 400, (extra, body)
        assert headers["x-amzn-ErrorType"] == "InvalidRequestContentException"
        assert json.loads(body)["Message"].startswith("Could not parse request body into json")


def test_function_errors_through_urls_are_a_plain_502(platform: Platform) -> None:
    """As Lambda answers: ``502 Internal Server Error``, nothing of the error for the caller
    (a stack trace names server paths); the detail is in the function's log."""
    status, headers, body = platform.http("POST", "/lambda-url/faulty/", b'{"action": "raise"}')
    assert (status, body) == (502, b"Internal Server Error")
    assert "X-Amz-Function-Error" not in headers and b"it broke" not in body
    status, _, body = platform.http("POST", "/lambda-url/faulty/", b'{"action": "bad-response"}')
    assert (status, body) == (502, b"Internal Server Error")
    assert "it broke" in platform.cli("logs", "faulty").stdout


def test_timeout_and_crash_then_recovery(platform: Platform) -> None:
    status, _, body = platform.http(
        "POST", "/lambda-url/faulty/", b'{"action": "sleep", "seconds": 5}'
    )
    assert (status, body) == (502, b"Internal Server Error")
    status, _, body = platform.http("POST", "/lambda-url/faulty/", b'{"action": "exit"}')
    assert (status, body) == (502, b"Internal Server Error")
    logs = platform.cli("logs", "faulty").stdout
    assert "Task timed out after 1.00 seconds" in logs and "Runtime.ExitError" in logs
    status, _, body = platform.http("POST", "/lambda-url/faulty/", b"{}")
    assert status == 200 and "pid" in json.loads(body)


def test_a_functions_framing_headers_cannot_split_the_connection(platform: Platform) -> None:
    """``Content-Length: 0`` with a body sent the body as the start of the next response on a
    kept-alive connection; now framing and hop-by-hop headers are dropped, bad ones are a 502."""
    import contextlib
    import socket

    def raw(headers: dict[str, str]) -> bytes:
        body = json.dumps({"action": "headers", "headers": headers}).encode()
        request = (
            f"POST /lambda-url/faulty/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        got = b""
        with socket.create_connection(("127.0.0.1", platform.port), timeout=30) as s:
            s.sendall(request + request)  # two requests on one kept-alive connection
            s.settimeout(3)  # the answers come at once; then the connection stays open
            with contextlib.suppress(TimeoutError):
                while chunk := s.recv(65536):
                    got += chunk
        return got

    def framed(data: bytes) -> list[tuple[bytes, bytes]]:
        """(head, body) of each response, read as a client does: by its Content-Length."""
        out = []
        while data:
            head, _, rest = data.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 "), data  # a response starts where the last ended
            length = int(re.search(rb"(?im)^content-length: *(\d+)", head)[1])  # type: ignore[index]
            out.append((head, rest[:length]))
            data = rest[length:]
        return out

    answers = framed(raw({"Content-Length": "0", "Connection": "close", "X-Kept": "yes"}))
    assert [body for _, body in answers] == [b"hello", b"hello"]  # two whole responses
    assert all(b"X-Kept: yes" in head for head, _ in answers)
    status, _, body = platform.http(
        "POST",
        "/lambda-url/faulty/",
        json.dumps({"action": "headers", "headers": {"Content-Length": "abc"}}).encode(),
    )
    assert (status, body) == (200, b"hello")  # dropped, not a crash
    for bad in ({"Bad Name": "x"}, {"X-Split": "a\r\nInjected: yes"}):
        body = json.dumps({"action": "headers", "headers": bad}).encode()
        status, _, answer = platform.http("POST", "/lambda-url/faulty/", body)
        assert (status, answer) == (502, b"Internal Server Error"), bad


def test_huge_bodies_get_413(platform: Platform) -> None:
    huge = b'"' + b"x" * (6 * 1024 * 1024 + 10) + b'"'
    status, headers, _ = platform.http("POST", "/lambda-url/hello/", huge)
    assert status == 413
    assert headers["x-amzn-ErrorType"] == "RequestTooLargeException"
    status, _, _ = platform.http("POST", "/2015-03-31/functions/hello/invocations", huge)
    assert status == 413


def test_unknown_function_is_404(platform: Platform) -> None:
    status, headers, body = platform.http("GET", "/lambda-url/nope/")
    assert status == 404
    status, headers, body = platform.http("POST", "/2015-03-31/functions/nope/invocations", b"{}")
    assert status == 404
    assert headers["x-amzn-ErrorType"] == "ResourceNotFoundException"
    assert "Function not found: arn:aws:lambda:us-east-1:" in json.loads(body)["Message"]
    r = platform.cli("invoke", "nope")
    assert r.returncode == 1 and "ResourceNotFoundException" in r.stderr


def test_boto3_invokes_through_klambda_env(platform: Platform) -> None:
    env = dict(
        line.removeprefix("export ").split("=", 1)
        for line in platform.cli("env").stdout.splitlines()
    )
    assert env["AWS_ENDPOINT_URL_LAMBDA"] == platform.url
    url = env["KLAMBDA_REDIS_URL"]  # the embedded Redis asks for the run's password
    assert url.startswith("redis://:") and "@127.0.0.1:" in url
    client = boto3.client(
        "lambda",
        endpoint_url=env["AWS_ENDPOINT_URL_LAMBDA"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"max_attempts": 1}),
    )
    r = client.invoke(FunctionName="greeter", Payload=b'{"name": "Ada"}', LogType="Tail")
    assert json.loads(r["Payload"].read())["greeting"] == "Bonjour, Ada!"
    assert r["ExecutedVersion"] == "$LATEST"
    assert "START RequestId" in base64.b64decode(r["LogResult"]).decode()


def test_logs_show_platform_lines(platform: Platform) -> None:
    platform.cli("invoke", "counter")
    r = platform.cli("logs", "counter")
    assert r.returncode == 0
    assert re.search(r"^START RequestId: \S+ Version: \$LATEST$", r.stdout, re.M)
    assert re.search(r"^invocation \d+ in environment \d+$", r.stdout, re.M)
    assert re.search(r"^REPORT RequestId: .*Init Duration: [\d.]+ ms", r.stdout, re.M)


def test_logs_follow(platform: Platform) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "klambda.cli.main",
            "logs",
            "greeter",
            "-f",
            "--data-dir",
            str(platform.data_dir),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)  # let it print what exists, then follow
        r = platform.cli("invoke", "greeter", "--payload", '{"name": "follow-me"}', "--tail")
        assert r.returncode == 0
        request_id = re.search(r"START RequestId: (\S+)", r.stderr)
        assert request_id, r.stderr
        wanted = f"REPORT RequestId: {request_id[1]}"
        deadline = time.monotonic() + 10
        seen = ""
        assert proc.stdout is not None
        while wanted not in seen:
            assert time.monotonic() < deadline, seen
            seen += proc.stdout.readline()
    finally:
        proc.terminate()
        proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()


def test_metrics(platform: Platform) -> None:
    platform.http("GET", "/lambda-url/hello/")
    platform.http("POST", "/lambda-url/faulty/", b'{"action": "raise"}')
    status, _, body = platform.http("GET", "/metrics")
    text = body.decode()
    assert status == 200
    assert re.search(
        r'klambda_invocations_total\{function="hello",namespace="default",version="\$LATEST"\} \d',
        text,
    )
    assert "klambda_duration_seconds_bucket" in text
    assert re.search(r'klambda_cold_starts_total\{function="hello"', text)
    assert re.search(
        r'klambda_errors_total\{function="faulty",namespace="default",version="\$LATEST"\} [1-9]',
        text,
    )
    assert re.search(r'klambda_init_duration_seconds_count\{function="hello"', text)


def test_get_functions(platform: Platform) -> None:
    r = platform.cli("get", "functions")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NAME", "RUNTIME", "STATE", "READY", "URL", "AGE"]
    hello = next(x for x in lines if x.startswith("hello "))
    assert hello.split()[1:5] == [
        "python3.11",
        "Active",
        "True",
        f"{platform.url}/lambda-url/hello/",
    ]
    wide = platform.cli("get", "functions", "-o", "wide").stdout.splitlines()
    assert "REASON" in wide[0].split()
    assert "EnvironmentReady" in next(x for x in wide if x.startswith("hello ")).split()
    one = json.loads(platform.cli("get", "fn", "hello", "-o", "json").stdout)
    assert one["status"]["observedGeneration"] == 1
    assert one["status"]["codeSha256"]


def test_invalid_manifest_is_rejected_naming_field_and_rule(
    platform: Platform, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: klambda.io/v1alpha1\nkind: Function\nmetadata: {name: bad}\n"
        "spec: {runtime: python3.11, handler: a.h, memorySize: 50, timeout: 1000,"
        " code: {inline: {a.py: ''}}}\n"
    )
    r = platform.cli("apply", "-f", str(bad))
    assert r.returncode == 1
    assert 'Function "bad" is invalid:' in r.stderr
    assert "spec.memorySize: must be >= 128 (got 50)" in r.stderr
    assert "spec.timeout: must be <= 900 (got 1000)" in r.stderr
    assert "Traceback" not in r.stderr
    assert platform.cli("get", "fn", "bad").returncode == 1


MANIFEST = """apiVersion: klambda.io/v1alpha1
kind: Function
metadata: {{name: rolling}}
spec:
  runtime: python3.11
  handler: app.handler
  timeout: 5
  url: {{authType: NONE}}
  code:
    inline:
      app.py: |
        import time
        def handler(event, context):
            time.sleep(0.05)
            return {{"statusCode": 200, "body": "{version}"}}
"""


def test_apply_rolls_without_dropping_requests_then_delete(
    platform: Platform, tmp_path: Path
) -> None:
    manifest = tmp_path / "rolling.yaml"
    manifest.write_text(MANIFEST.format(version="v1"))
    r = platform.cli("apply", "-f", str(manifest))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "function/rolling created"
    # apply answers before the function is ready, as kubectl does: wait for readiness
    deadline = time.monotonic() + 30
    while platform.http("GET", "/lambda-url/rolling/")[2] != b"v1":
        assert time.monotonic() < deadline
        time.sleep(0.1)

    results: list[tuple[int, bytes]] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            status, _, body = platform.http("GET", "/lambda-url/rolling/")
            results.append((status, body))

    workers = [threading.Thread(target=hammer) for _ in range(4)]
    for w in workers:
        w.start()
    try:
        time.sleep(0.5)
        manifest.write_text(MANIFEST.format(version="v2"))
        r = platform.cli("apply", "-f", str(manifest))
        assert r.stdout.strip() == "function/rolling configured"
        deadline = time.monotonic() + 30
        while not results or results[-1][1] != b"v2":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1.5)  # past the old shim's drain
    finally:
        stop.set()
        for w in workers:
            w.join()
    assert all(status == 200 for status, _ in results), [r for r in results if r[0] != 200][:3]
    bodies = [b for _, b in results]
    assert bodies[0] == b"v1" and bodies[-1] == b"v2"
    assert len(results) > 20
    unchanged = platform.cli("apply", "-f", str(manifest))
    assert unchanged.stdout.strip() == "function/rolling unchanged"

    shim = subprocess.run(["pgrep", "-f", "shims/default-rolling-"], capture_output=True, text=True)
    shim_pids = [int(x) for x in shim.stdout.split()]
    assert len(shim_pids) == 1  # the old configuration's shim has drained and exited
    r = platform.cli("delete", "function", "rolling")
    assert r.returncode == 0 and r.stdout.strip() == 'function "rolling" deleted'
    deadline = time.monotonic() + 15
    while platform.http("GET", "/lambda-url/rolling/")[0] != 404:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    wait_gone(shim_pids)
    again = platform.cli("delete", "function", "rolling")
    assert again.returncode == 1 and 'function "rolling" not found' in again.stderr


def test_cli_without_platform_says_so(tmp_path: Path) -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "klambda.cli.main",
            "get",
            "functions",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 1
    assert "klambda is not running" in r.stderr and "klambda up" in r.stderr


def test_ctrl_c_stops_every_process_started(tmp_path: Path, repo_root: Path) -> None:
    p = start_platform(tmp_path, str(repo_root / "examples" / "counter.yaml"))
    assert p.cli("invoke", "counter").returncode == 0
    children = p.children()
    assert len(children) >= 3  # redis, the shim, the counter's environment
    out = stop_platform(p)
    assert p.process.returncode == 0
    assert "stopping klambda" in out
    wait_gone(children)
    assert not (p.data_dir / "run" / "platform.json").exists()


def test_port_in_use_is_a_clear_error(tmp_path: Path, repo_root: Path) -> None:
    import socket

    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "klambda.cli.main",
                "up",
                "--data-dir",
                str(tmp_path),
                "--port",
                str(port),
                "-f",
                str(repo_root / "examples" / "hello.yaml"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert r.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr
    assert "Traceback" not in r.stderr
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", "the embedded Redis was left running"


def test_the_embedded_redis_refuses_clients_without_the_runs_password(platform: Platform) -> None:
    """Attack: a function's code XADDs to the async stream to invoke what it may not."""
    from urllib.parse import urlparse

    import redis

    url = urlparse(platform.state()["redis_url"])
    assert url.password
    anonymous = redis.Redis(host=url.hostname, port=url.port)
    with pytest.raises(redis.exceptions.AuthenticationError):
        anonymous.xadd("klambda:async", {"namespace": "default", "function": "greeter"})
    anonymous.close()
    data = Path(platform.state()["data_dir"])
    assert (data / "redis" / "redis.conf").stat().st_mode & 0o777 == 0o600
    # other users see nothing of it (as root, functions' users pass through to their code)
    assert data.stat().st_mode & 0o777 == (0o711 if os.geteuid() == 0 else 0o700)
    assert (data / "redis").stat().st_mode & 0o777 == 0o700


@pytest.mark.skipif(os.geteuid() != 0, reason="functions get users of their own only under root")
@pytest.mark.skipif(not python_for_others(), reason="no python3 on PATH other users can run")
def test_as_root_each_function_runs_as_a_user_of_its_own(open_dir: Path, repo_root: Path) -> None:
    """The shout example (a provided runtime any user can run) under a data dir other users
    can pass: its runtime is not root, and the data dir shows them nothing but the way to
    their code."""
    p = start_platform(open_dir, str(repo_root / "examples" / "bootstrap.yaml"))
    try:
        r = p.cli("invoke", "shout", "--payload", '{"text": "hi"}')
        assert r.returncode == 0, r.stderr
        uids = {pid: _uid(pid) for pid in p.children()}
        runtime = [pid for pid in uids if "bootstrap" in _cmdline(pid)]
        assert runtime and all(uids[pid] >= UID_BASE for pid in runtime)
        modes = {d: oct(os.stat(p.data_dir / d).st_mode & 0o777) for d in ("", "code", "run")}
        assert modes == {"": "0o711", "code": "0o711", "run": "0o700"}
    finally:
        out = stop_platform(p)
    assert "users    each" in out


def _uid(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
