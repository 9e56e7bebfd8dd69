"""Event source mappings under ``klambda up``: a Redis queue with SQS semantics feeding a
function in batches (delete on success, redelivery after the visibility timeout, dead-letter
queue after maxReceiveCount, ReportBatchItemFailures)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.e2e.conftest import Platform, start_platform, stop_platform, wait_for_reason
from tests.e2e.test_lambda_api import client

CONSUMER = """apiVersion: klambda.io/v1alpha1
kind: Function
metadata: {name: %(fn)s}
spec:
  runtime: python3.11
  handler: app.handler
  timeout: 1  # within the short visibility timeouts these tests use (Lambda's rule)
  environment: {variables: {OUT: "%(out)s"}}
  code:
    inline:
      app.py: |
        import json, os
        def handler(event, context):
            failures = []
            for r in event["Records"]:
                body, count = r["body"], r["attributes"]["ApproximateReceiveCount"]
                seen = {"body": body, "count": count, "arn": r["eventSourceARN"],
                        "n": len(event["Records"])}
                with open(os.environ["OUT"], "a") as f:
                    f.write(json.dumps(seen) + "\\n")
                if body == "poison":
                    raise ValueError("cannot digest " + body)
                if body.startswith("retry-once") and count == "1":
                    failures.append({"itemIdentifier": r["messageId"]})
            return {"batchItemFailures": failures}
---
apiVersion: klambda.io/v1alpha1
kind: EventSourceMapping
metadata: {name: %(fn)s-queue}
spec:
  functionName: %(fn)s
  batchSize: %(batch)d
  maximumBatchingWindowInSeconds: %(window)d
  functionResponseTypes: %(types)s
  source: {queue: %(queue_name)s}
---
apiVersion: klambda.io/v1alpha1
kind: Queue
metadata: {name: %(queue_name)s}
spec: %(queue)s
"""


def deploy(platform: Platform, tmp: Path, fn: str, queue: dict[str, Any], **kw: Any) -> Path:
    out = tmp / f"{fn}.jsonl"
    manifest = tmp / f"{fn}.yaml"
    values = {
        "fn": fn,
        "out": out,
        "batch": 10,
        "window": 0,
        "types": "[]",
        "queue_name": queue.pop("name"),
        "queue": json.dumps(queue),
    }
    manifest.write_text(CONSUMER % {**values, **kw})
    r = platform.cli("apply", "-f", str(manifest))
    assert r.returncode == 0, r.stderr
    wait_for_reason(platform, fn, "EnvironmentReady")
    return out


def seen(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def until(check: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)
    return value


def queue_client(platform: Platform) -> redis.Redis:
    return redis.Redis.from_url(platform.state()["redis_url"])


def test_messages_are_delivered_in_batches_and_deleted(platform: Platform, tmp_path: Path) -> None:
    r = queue_client(platform)
    key = "klambda:queue:default:purchases"  # (examples/ has a queue "orders")
    r.xadd(key, {"body": "early"})  # sent before any mapping reads the queue
    out = deploy(platform, tmp_path, "batcher", {"name": "purchases"}, batch=20, window=1)
    for i in range(12):
        r.xadd(key, {"body": f"order-{i}"})
    records = until(lambda: len(seen(out)) >= 13 and seen(out))
    assert sorted(x["body"] for x in records) == sorted(
        ["early", *(f"order-{i}" for i in range(12))]
    )
    assert max(x["n"] for x in records) > 1  # batched (the window let them gather)
    assert records[0]["arn"].startswith("arn:aws:sqs:us-east-1:") and records[0]["arn"].endswith(
        ":purchases"
    )
    until(lambda: r.xlen(key) == 0)  # deleted once the function succeeded
    status = json.loads(platform.cli("get", "esm", "batcher-queue", "-o", "json").stdout)["status"]
    assert status["state"] == "Enabled"
    assert status["conditions"][0]["reason"] == "Polling"


def test_failures_come_back_and_poison_goes_to_the_dead_letter_queue(
    platform: Platform, tmp_path: Path
) -> None:
    queue = {
        "name": "jobs",
        "visibilityTimeout": 1,
        "redrivePolicy": {"maxReceiveCount": 2, "deadLetterQueue": "jobs-dlq"},
    }
    out = deploy(platform, tmp_path, "worker", queue, batch=1, types='["ReportBatchItemFailures"]')
    r = queue_client(platform)
    r.xadd("klambda:queue:default:jobs", {"body": "poison"})
    r.xadd("klambda:queue:default:jobs", {"body": "retry-once-a"})
    r.xadd("klambda:queue:default:jobs", {"body": "fine"})
    dead = until(lambda: r.xrange("klambda:queue:default:jobs-dlq"), timeout=40)
    assert [fields[b"body"] for _, fields in dead] == [b"poison"]
    records = until(lambda: len(seen(out)) >= 5 and seen(out))
    by_body: dict[str, list[str]] = {}
    for x in records:
        by_body.setdefault(x["body"], []).append(x["count"])
    assert by_body["poison"] == ["1", "2"]  # received twice, then redriven
    assert by_body["retry-once-a"] == ["1", "2"]  # reported as failed once, then done
    assert by_body["fine"] == ["1"]
    until(lambda: r.xlen("klambda:queue:default:jobs") == 0)


def test_a_mapping_to_a_missing_function_says_so(platform: Platform, tmp_path: Path) -> None:
    (tmp_path / "esm.yaml").write_text(
        "apiVersion: klambda.io/v1alpha1\nkind: EventSourceMapping\nmetadata: {name: orphan}\n"
        "spec: {functionName: nobody, source: {queue: lonely}}\n"
    )
    assert platform.cli("apply", "-f", str(tmp_path / "esm.yaml")).returncode == 0

    def reason() -> str | None:
        raw = platform.cli("get", "esm", "orphan", "-o", "json").stdout
        conditions = json.loads(raw).get("status", {}).get("conditions", [])
        return conditions[0]["reason"] if conditions else None

    assert until(lambda: reason() == "FunctionNotFound")
    table = platform.cli("get", "esm").stdout
    assert "orphan" in table and "lonely" in table


SLOW = """apiVersion: klambda.io/v1alpha1
kind: Function
metadata: {name: slowpoke}
spec:
  runtime: python3.11
  handler: app.handler
  environment: {variables: {OUT: "%(out)s"}}
  code:
    inline:
      app.py: |
        import json, os, time
        def handler(event, context):
            start = time.time()
            time.sleep(0.5)
            with open(os.environ["OUT"], "a") as f:
                f.write(json.dumps([start, time.time()]) + "\\n")
---
apiVersion: klambda.io/v1alpha1
kind: EventSourceMapping
metadata: {name: slowpoke-queue}
spec:
  functionName: slowpoke
  batchSize: 1
  scalingConfig: {maximumConcurrency: %(concurrency)d}
  source: {queue: slow}
---
apiVersion: klambda.io/v1alpha1
kind: Queue
metadata: {name: slow}
spec: {}
"""


def test_batches_run_concurrently_up_to_the_scaling_limit(
    platform: Platform, tmp_path: Path
) -> None:
    out = tmp_path / "spans.jsonl"
    (tmp_path / "slow.yaml").write_text(SLOW % {"out": out, "concurrency": 3})
    assert platform.cli("apply", "-f", str(tmp_path / "slow.yaml")).returncode == 0
    wait_for_reason(platform, "slowpoke", "EnvironmentReady")
    r = queue_client(platform)
    for i in range(6):
        r.xadd("klambda:queue:default:slow", {"body": str(i)})
    spans = until(lambda: len(seen(out)) >= 6 and seen(out))

    def overlapping(at: float) -> int:
        return sum(1 for start, end in spans if start <= at < end)

    most = max(overlapping(start) for start, _ in spans)
    assert 2 <= most <= 3, spans  # several batches at once, never more than the limit


DURABLE = """apiVersion: klambda.io/v1alpha1
kind: Function
metadata: {name: durable}
spec:
  runtime: python3.11
  handler: app.handler
  timeout: 4
  environment: {variables: {OUT: "%s"}}
  code:
    inline:
      app.py: |
        import os, time
        def handler(event, context):
            time.sleep(3)
            with open(os.environ["OUT"], "a") as f:
                for record in event["Records"]:
                    f.write(record["body"] + "\\n")
---
apiVersion: klambda.io/v1alpha1
kind: EventSourceMapping
metadata: {name: durable-queue}
spec:
  functionName: durable
  batchSize: 1
  scalingConfig: {maximumConcurrency: 2}
  source: {queue: durable}
---
apiVersion: klambda.io/v1alpha1
kind: Queue
metadata: {name: durable}
spec: {visibilityTimeout: 4}
"""


def test_messages_in_flight_survive_a_restart(tmp_path: Path) -> None:
    """klambda up stops (its shims killed) while batches run: nothing is lost; after the restart
    the unfinished messages come back once their visibility timeout has passed."""
    out = tmp_path / "bodies.txt"
    manifest = tmp_path / "durable.yaml"
    manifest.write_text(DURABLE % out)
    first = start_platform(tmp_path, str(manifest))
    try:
        wait_for_reason(first, "durable", "EnvironmentReady")
        r = queue_client(first)
        for i in range(4):
            r.xadd("klambda:queue:default:durable", {"body": f"m{i}"})
        until(lambda: r.xpending("klambda:queue:default:durable", "klambda")["pending"] > 0)
    finally:
        stop_platform(first)
    done_before = out.read_text().split() if out.exists() else []
    assert len(done_before) < 4  # stopped while batches ran
    second = start_platform(tmp_path, str(manifest))
    try:
        until(lambda: out.exists() and set(out.read_text().split()) == {"m0", "m1", "m2", "m3"}, 60)
    finally:
        stop_platform(second)


def test_mappings_are_listed_by_the_lambda_api(platform: Platform, tmp_path: Path) -> None:
    deploy(platform, tmp_path, "listed", {"name": "listed-q"}, batch=5)
    lam = client(platform)
    mappings = lam.list_event_source_mappings(FunctionName="listed")["EventSourceMappings"]
    assert len(mappings) == 1
    (m,) = mappings
    assert m["BatchSize"] == 5 and m["State"] == "Enabled"
    assert m["EventSourceArn"].endswith(":listed-q")
    assert m["FunctionArn"].endswith(":function:listed")
    assert lam.get_event_source_mapping(UUID=m["UUID"])["UUID"] == m["UUID"]
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_event_source_mapping(UUID="00000000-0000-0000-0000-000000000000")
