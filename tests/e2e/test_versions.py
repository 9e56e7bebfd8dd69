"""Versions, weighted aliases, reserved and provisioned concurrency through ``klambda up``."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.e2e.conftest import Platform, wait_for_reason

FUNCTION = """apiVersion: klambda.io/v1alpha1
kind: Function
metadata: {{name: {name}}}
spec:
  runtime: python3.11
  handler: app.handler
  timeout: 10
  {extra}
  code:
    inline:
      app.py: |
        import os, time
        def handler(event, context):
            if event.get("sleep"):
                time.sleep(event["sleep"])
            return {{"code": "{label}", "pid": os.getpid(), "version": context.function_version,
                     "arn": context.invoked_function_arn}}
"""


def apply(platform: Platform, tmp: Path, text: str, name: str = "m.yaml") -> None:
    path = tmp / name
    path.write_text(text)
    r = platform.cli("apply", "-f", str(path))
    assert r.returncode == 0, r.stderr


def function(platform: Platform, tmp: Path, name: str, label: str, extra: str = "") -> None:
    apply(platform, tmp, FUNCTION.format(name=name, label=label, extra=extra), f"{name}.yaml")


def alias(name: str, fn: str, to: str, weights: str = "", pc: int = 0) -> str:
    routing = f"\n  routingConfig: {{additionalVersionWeights: {{{weights}}}}}" if weights else ""
    return (
        f"apiVersion: klambda.io/v1alpha1\nkind: Alias\nmetadata: {{name: {name}}}\n"
        f'spec:\n  functionName: {fn}\n  functionVersion: "{to}"\n  provisionedConcurrency: {pc}'
        f"\n  url: {{authType: NONE}}{routing}\n"
    )


def invoke(
    platform: Platform,
    name: str,
    qualifier: str | None = None,
    event: Any = None,
    tail: bool = False,
) -> tuple[int, dict[str, str], Any]:
    path = f"/2015-03-31/functions/{name}/invocations"
    if qualifier:
        path += f"?Qualifier={qualifier}"
    headers = {"X-Amz-Log-Type": "Tail"} if tail else {}
    status, h, body = platform.http("POST", path, json.dumps(event or {}).encode(), headers)
    return status, h, json.loads(body) if body else None


def wait_for(check: Any, timeout: float = 30, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(interval)


def publish(platform: Platform, name: str) -> str:
    def attempt() -> str | None:
        r = platform.cli("publish", name)
        return r.stdout.strip() if r.returncode == 0 else None

    return str(wait_for(attempt))


def code_of(platform: Platform, name: str, qualifier: str | None = None) -> str | None:
    status, _, body = invoke(platform, name, qualifier)
    return body["code"] if status == 200 else None


def test_publish_versions_and_invoke_them(platform: Platform, tmp_path: Path) -> None:
    function(platform, tmp_path, "versioned", "one")
    wait_for(lambda: code_of(platform, "versioned") == "one")
    assert publish(platform, "versioned") == "1"
    assert publish(platform, "versioned") == "1"  # nothing changed: the same version
    function(platform, tmp_path, "versioned", "two")
    wait_for(lambda: code_of(platform, "versioned") == "two")
    assert publish(platform, "versioned") == "2"
    status, headers, body = invoke(platform, "versioned", "1")
    assert status == 200 and body["code"] == "one" and body["version"] == "1"
    assert headers["X-Amz-Executed-Version"] == "1"
    assert body["arn"].endswith(":function:versioned:1")
    status, headers, body = invoke(platform, "versioned")
    assert (body["code"], headers["X-Amz-Executed-Version"]) == ("two", "$LATEST")
    status, headers, body = invoke(platform, "versioned", "7")
    assert status == 404 and headers["x-amzn-ErrorType"] == "ResourceNotFoundException"
    versions = json.loads(platform.cli("get", "versions", "-o", "json").stdout)
    mine = {v["status"]["version"]: v for v in versions if v["spec"]["functionName"] == "versioned"}
    assert set(mine) == {"1", "2"}
    assert mine["1"]["status"]["functionSpec"]["runtime"] == "python3.11"
    # a version is immutable
    name = mine["1"]["metadata"]["name"]
    apply_r = tmp_path / "v.yaml"
    apply_r.write_text(
        f"apiVersion: klambda.io/v1alpha1\nkind: Version\nmetadata: {{name: {name}}}\n"
        "spec: {functionName: versioned, description: changed}\n"
    )
    r = platform.cli("apply", "-f", str(apply_r))
    assert r.returncode == 1 and "spec.description: field is immutable" in r.stderr


def test_weighted_alias_routes_by_weight(platform: Platform, tmp_path: Path) -> None:
    function(platform, tmp_path, "weighted", "one")
    wait_for(lambda: code_of(platform, "weighted") == "one")
    assert publish(platform, "weighted") == "1"
    function(platform, tmp_path, "weighted", "two")
    wait_for(lambda: code_of(platform, "weighted") == "two")
    assert publish(platform, "weighted") == "2"
    apply(platform, tmp_path, alias("weighted-live", "weighted", "1", '"2": 0.2'))
    wait_for(lambda: invoke(platform, "weighted", "weighted-live")[0] == 200)

    def one(_: int) -> str:
        status, headers, body = invoke(platform, "weighted", "weighted-live")
        assert status == 200, body
        assert body["version"] == headers["X-Amz-Executed-Version"]
        assert body["arn"].endswith(":function:weighted:weighted-live")
        return headers["X-Amz-Executed-Version"]

    with ThreadPoolExecutor(8) as pool:
        counts = Counter(pool.map(one, range(2000)))
    assert set(counts) == {"1", "2"}
    share = counts["2"] / 2000
    assert abs(share - 0.2) <= 0.03, counts


def test_moving_an_alias_takes_effect_without_failures(platform: Platform, tmp_path: Path) -> None:
    function(platform, tmp_path, "moving", "one")
    wait_for(lambda: code_of(platform, "moving") == "one")
    assert publish(platform, "moving") == "1"
    function(platform, tmp_path, "moving", "two")
    wait_for(lambda: code_of(platform, "moving") == "two")
    assert publish(platform, "moving") == "2"
    apply(platform, tmp_path, alias("moving-live", "moving", "1"), "a.yaml")
    wait_for(lambda: code_of(platform, "moving", "moving-live") == "one")

    seen: list[tuple[float, int, str]] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            status, _, body = invoke(platform, "moving", "moving-live")
            seen.append(
                (time.monotonic(), status, body.get("code") if status == 200 else str(body))
            )

    workers = [threading.Thread(target=hammer) for _ in range(3)]
    for w in workers:
        w.start()
    try:
        time.sleep(0.5)
        applied = time.monotonic()
        apply(platform, tmp_path, alias("moving-live", "moving", "2"), "a.yaml")
        done = time.monotonic()
        time.sleep(2.0)
    finally:
        stop.set()
        for w in workers:
            w.join()
    assert all(status == 200 for _, status, _ in seen), [s for s in seen if s[1] != 200][:3]
    assert any(code == "one" for t, _, code in seen if t < applied)
    late = [code for t, _, code in seen if t > done + 1.0]
    assert late and set(late) == {"two"}


def test_reserved_concurrency_throttles_exactly_the_excess(
    platform: Platform, tmp_path: Path
) -> None:
    function(platform, tmp_path, "reserved", "r", extra="reservedConcurrency: 2")
    wait_for(lambda: code_of(platform, "reserved") == "r")
    start = threading.Barrier(6)

    def call(_: int) -> tuple[int, dict[str, str], Any]:
        start.wait()
        return invoke(platform, "reserved", event={"sleep": 1.5})

    t0 = time.monotonic()
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(call, range(6)))
    assert time.monotonic() - t0 < 10  # none hang
    statuses = Counter(status for status, _, _ in results)
    assert statuses == {200: 2, 429: 4}, statuses
    for status, headers, body in results:
        if status == 429:
            assert headers["x-amzn-ErrorType"] == "TooManyRequestsException"
            assert body["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    # the function URL is throttled the same way, and 0 disables the function
    function(platform, tmp_path, "disabled", "d", extra="reservedConcurrency: 0")
    wait_for(lambda: invoke(platform, "disabled")[0] == 429)
    ready = wait_for_reason(platform, "disabled", "Throttled")["conditions"][0]
    assert ready["status"] == "False" and "every invocation is throttled" in ready["message"]


def test_provisioned_concurrency(platform: Platform, tmp_path: Path) -> None:
    function(platform, tmp_path, "warm", "w")
    wait_for(lambda: code_of(platform, "warm") == "w")
    assert publish(platform, "warm") == "1"
    apply(platform, tmp_path, alias("warm-live", "warm", "1", pc=3))

    def ready() -> int:
        items = json.loads(platform.cli("get", "aliases", "warm-live", "-o", "json").stdout)
        pc = items.get("status", {}).get("provisionedConcurrency", {})
        return pc.get("ready", 0) if pc.get("requested") == 3 and pc.get("allocated") == 3 else 0

    wait_for(lambda: ready() == 3)
    barrier = threading.Barrier(3)

    def call(_: int) -> tuple[int, str, int]:
        barrier.wait()
        status, headers, body = invoke(platform, "warm", "warm-live", {"sleep": 0.3}, tail=True)
        log = base64.b64decode(headers["X-Amz-Log-Result"]).decode()
        return status, log, body["pid"]

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(call, range(3)))
    assert [s for s, _, _ in results] == [200, 200, 200]
    assert all("REPORT RequestId" in log and "Init Duration" not in log for _, log, _ in results)
    pids = {pid for _, _, pid in results}
    assert len(pids) == 3
    assert set(environments_of("warm", "1")) == pids
    victim = pids.pop()
    os.kill(victim, signal.SIGKILL)
    # the shim replaces the provisioned environment by itself, before any invocation asks
    wait_for(
        lambda: (
            len(environments_of("warm", "1")) == 3 and victim not in environments_of("warm", "1")
        )
    )
    wait_for(lambda: ready() == 3)
    with ThreadPoolExecutor(3) as pool:
        again = list(pool.map(call, range(3)))
    assert all("Init Duration" not in log for _, log, _ in again)
    assert victim not in {pid for _, _, pid in again}


def environments_of(function: str, version: str) -> list[int]:
    """Runtime processes of a version: the children of its shim's zygote (and any the shim
    spawned itself)."""
    found = subprocess.run(
        ["pgrep", "-f", f"shims/default-{function}-{version}-"], capture_output=True, text=True
    ).stdout.split()
    # a runtime being spawned carries the shim's command line until it execs: the shim is
    # the match whose parent is not a match
    parents = {p: _parent(p) for p in found}
    shim = [p for p in found if parents[p] not in found]
    assert len(shim) == 1, found
    out = []
    for kid in _children(shim[0]):
        zygote = "zygote_main.py" in Path(f"/proc/{kid}/cmdline").read_bytes().decode()
        out += _children(kid) if zygote else [kid]
    return [int(p) for p in out]


def _children(pid: str) -> list[str]:
    return subprocess.run(["pgrep", "-P", pid], capture_output=True, text=True).stdout.split()


def _parent(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
    except OSError:
        return ""


def test_deleting_a_function_deletes_its_versions_and_aliases(
    platform: Platform, tmp_path: Path
) -> None:
    function(platform, tmp_path, "doomed", "d")
    wait_for(lambda: code_of(platform, "doomed") == "d")
    assert publish(platform, "doomed") == "1"
    apply(platform, tmp_path, alias("doomed-live", "doomed", "1"))
    wait_for(lambda: code_of(platform, "doomed", "doomed-live") == "d")
    assert platform.cli("delete", "function", "doomed").returncode == 0
    names = lambda kind: {  # noqa: E731
        o["metadata"]["name"] for o in json.loads(platform.cli("get", kind, "-o", "json").stdout)
    }
    assert "doomed-live" not in names("aliases")
    assert not any(n.startswith("doomed-") for n in names("versions"))
    wait_for(lambda: invoke(platform, "doomed", "doomed-live")[0] == 404)
