"""Asynchronous invocations survive a restart, and an external Redis can be used (and lost)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from klambda.controller.platform.redis_server import redis_binary
from tests.e2e.conftest import start_platform, stop_platform
from tests.e2e.test_lambda_api import client
from tests.helpers import free_port, wait_until

SLOW = """apiVersion: klambda.io/v1alpha1
kind: Function
metadata: {name: slow-recorder}
spec:
  runtime: python3.11
  handler: app.handler
  timeout: 30
  code:
    inline:
      app.py: |
        import json, time
        def handler(event, context):
            time.sleep(event["sleep"])
            with open(event["file"], "a") as f:
                f.write(json.dumps({"n": event["n"]}) + "\\n")
"""


def test_accepted_events_survive_a_restart(tmp_path: Path) -> None:
    manifest = tmp_path / "slow.yaml"
    manifest.write_text(SLOW)
    out = tmp_path / "out.jsonl"
    first = start_platform(tmp_path, str(manifest))
    try:
        c = client(first)
        for n in range(8):
            payload = {"sleep": 3, "file": str(out), "n": n}
            r = c.invoke(
                FunctionName="slow-recorder",
                InvocationType="Event",
                Payload=json.dumps(payload).encode(),
            )
            assert r["StatusCode"] == 202
        time.sleep(1.0)  # deliveries are in flight, none finished
    finally:
        stop_platform(first)
    done_before = out.read_text().splitlines() if out.exists() else []
    assert len(done_before) < 8
    second = start_platform(tmp_path, str(manifest))
    try:
        wait_until(
            lambda: (
                out.exists()
                and len({json.loads(x)["n"] for x in out.read_text().splitlines()}) == 8
            ),
            timeout=60,
        )
    finally:
        stop_platform(second)


@pytest.fixture
def external_redis(tmp_path: Path):  # type: ignore[no-untyped-def]
    port = free_port()
    proc = subprocess.Popen(
        [
            redis_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    yield proc, f"redis://127.0.0.1:{port}/0"
    if proc.poll() is None:
        proc.terminate()
        proc.wait(10)


def test_external_redis_and_losing_it(tmp_path: Path, repo_root: Path, external_redis) -> None:  # type: ignore[no-untyped-def]
    proc, url = external_redis
    time.sleep(0.3)
    platform = start_platform(
        tmp_path, str(repo_root / "examples" / "greeter.yaml"), extra=("--redis-url", url)
    )
    try:
        assert platform.state()["redis_url"] == url
        c = client(platform)
        assert c.invoke(FunctionName="greeter", InvocationType="Event")["StatusCode"] == 202
        proc.terminate()
        proc.wait(10)
        with pytest.raises(c.exceptions.ServiceException):
            c.invoke(FunctionName="greeter", InvocationType="Event")
        assert c.invoke(FunctionName="greeter")["StatusCode"] == 200
    finally:
        stop_platform(platform)
