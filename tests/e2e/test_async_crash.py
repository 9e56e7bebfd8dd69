"""Crash tests of asynchronous invocation and queues (bounded): ``kill -9`` of the process that
dispatches while 500 events are in flight, of the embedded Redis under load, and of the process
that polls a queue while batches run. Accepted events and messages are delivered at least
once: none lost; duplicates are counted and reported."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from tests.e2e.conftest import start_platform, stop_platform, wait_gone
from tests.e2e.test_lambda_api import client
from tests.helpers import wait_until

EVENTS = 500
TALLY = """apiVersion: klambda.io/v1alpha1
kind: Function
metadata: {name: tally}
spec:
  runtime: python3.11
  handler: app.handler
  timeout: 10
  code:
    inline:
      app.py: |
        import json, os, time
        def handler(event, context):
            for _ in range(100):  # closed: events pile up behind the first few
                if os.path.exists(event["file"] + ".open"):
                    break
                time.sleep(0.05)
            time.sleep(0.02)
            with open(event["file"], "a") as f:  # one short append: whole lines
                f.write(json.dumps({"n": event["n"]}) + "\\n")
"""


def delivered(out: Path) -> Counter[int]:
    if not out.exists():
        return Counter()
    return Counter(json.loads(line)["n"] for line in out.read_text().splitlines() if line)


def report(what: str, seen: Counter[Any], accepted: int) -> None:
    duplicates = sum(seen.values()) - len(seen)
    print(f"{what}: {accepted} accepted, {len(seen)} delivered, {duplicates} duplicate(s)")


def test_kill_9_of_the_dispatching_process_loses_no_accepted_event(tmp_path: Path) -> None:
    manifest = tmp_path / "tally.yaml"
    manifest.write_text(TALLY)
    out = tmp_path / "out.jsonl"
    first = start_platform(tmp_path, str(manifest))
    try:
        c = client(first)
        for n in range(EVENTS):
            payload = json.dumps({"file": str(out), "n": n})
            assert (
                c.invoke(FunctionName="tally", InvocationType="Event", Payload=payload)[
                    "StatusCode"
                ]
                == 202
            )
        time.sleep(1.1)  # past the append-only file's once-a-second sync
        Path(f"{out}.open").touch()  # all 500 accepted: let them flow
        wait_until(lambda: len(delivered(out)) >= 50, timeout=60)
        children = first.children()
        os.kill(first.process.pid, signal.SIGKILL)  # the gateway, its dispatcher, everything
        first.process.wait(10)
        wait_gone(children)  # its shims and its Redis die with it
    finally:
        stop_platform(first)
    assert len(delivered(out)) < EVENTS, "all were delivered before the kill: nothing tested"
    second = start_platform(tmp_path, str(manifest))
    try:
        wait_until(lambda: len(delivered(out)) == EVENTS, timeout=120)
    finally:
        stop_platform(second)
    seen = delivered(out)
    assert set(seen) == set(range(EVENTS))
    report("kill -9 of klambda up", seen, EVENTS)


def test_a_crash_of_the_embedded_redis_under_load_loses_no_accepted_event(
    tmp_path: Path,
) -> None:
    manifest = tmp_path / "tally.yaml"
    manifest.write_text(TALLY)
    out = tmp_path / "out.jsonl"
    Path(f"{out}.open").touch()
    p = start_platform(tmp_path, str(manifest))
    accepted: list[int] = []
    refused = 0

    def produce() -> None:
        nonlocal refused
        c = client(p)
        for n in range(300):
            payload = json.dumps({"file": str(out), "n": n})
            try:
                c.invoke(FunctionName="tally", InvocationType="Event", Payload=payload)
                accepted.append(n)
            except ClientError:  # Redis is down: not accepted, the caller knows
                refused += 1
                time.sleep(0.05)

    try:
        producer = threading.Thread(target=produce)
        producer.start()
        wait_until(lambda: len(accepted) >= 100, timeout=60)
        redis_pid = next(pid for pid in p.children() if "redis-server" in _cmdline(pid))
        os.kill(redis_pid, signal.SIGKILL)
        producer.join(120)
        assert not producer.is_alive()
        wait_until(lambda: set(accepted) <= set(delivered(out)), timeout=120)
    finally:
        stop_platform(p)
    seen = delivered(out)
    report(
        f"kill -9 of the embedded Redis ({refused} refused while it was down)", seen, len(accepted)
    )
    assert len(accepted) > 100  # intake went on after the restart


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


MESSAGES = 150
JOBS = """apiVersion: klambda.io/v1alpha1
kind: Function
metadata: {name: jobs}
spec:
  runtime: python3.11
  handler: app.handler
  timeout: 3
  environment: {variables: {OUT: "%s"}}
  code:
    inline:
      app.py: |
        import os, time
        def handler(event, context):
            time.sleep(0.5)
            with open(os.environ["OUT"], "a") as f:  # one short append: whole lines
                f.write("".join(r["body"] + "\\n" for r in event["Records"]))
---
apiVersion: klambda.io/v1alpha1
kind: Queue
metadata: {name: jobs}
spec: {visibilityTimeout: 5}
---
apiVersion: klambda.io/v1alpha1
kind: EventSourceMapping
metadata: {name: jobs-queue}
spec:
  functionName: jobs
  batchSize: 5
  scalingConfig: {maximumConcurrency: 2}  # 30 batches of 0.5 s: about 8 s in all
  source: {queue: jobs}
"""


def bodies(out: Path) -> Counter[str]:
    return Counter(out.read_text().split()) if out.exists() else Counter()


def test_kill_9_of_the_polling_process_mid_batch_loses_no_queue_message(tmp_path: Path) -> None:
    out = tmp_path / "bodies.txt"
    manifest = tmp_path / "jobs.yaml"
    manifest.write_text(JOBS % out)
    first = start_platform(tmp_path, str(manifest))
    try:
        sent = first.cli("queue", "send", "jobs", input="".join(f"m{i}\n" for i in range(MESSAGES)))
        assert sent.returncode == 0 and len(sent.stdout.split()) == MESSAGES, sent.stderr
        time.sleep(1.1)  # past the append-only file's once-a-second sync
        wait_until(lambda: len(bodies(out)) >= 20, timeout=60)
        children = first.children()
        os.kill(first.process.pid, signal.SIGKILL)  # its pollers, with batches in flight
        first.process.wait(10)
        wait_gone(children)
    finally:
        stop_platform(first)
    assert len(bodies(out)) < MESSAGES, "all were delivered before the kill: nothing tested"
    second = start_platform(tmp_path, str(manifest))
    try:  # the batches cut short come back after their visibility timeout
        wait_until(lambda: len(bodies(out)) == MESSAGES, timeout=120)
    finally:
        stop_platform(second)
    seen = bodies(out)
    assert set(seen) == {f"m{i}" for i in range(MESSAGES)}
    report("kill -9 of klambda up polling a queue", seen, MESSAGES)
