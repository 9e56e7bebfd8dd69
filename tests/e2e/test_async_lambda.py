"""Asynchronous invocation as Lambda does it, through ``klambda up`` and boto3
(``InvocationType='Event'``): retries, destination records, the dead-letter queue, a throttled
function, event invoke configs, and a function -> queue -> function loop stopped at 16 hops."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from klambda.api.arn import account_for
from tests.e2e.conftest import Platform, start_platform, stop_platform, wait_for_reason
from tests.e2e.test_lambda_api import client

ACCOUNT = account_for("default")
FUNCTIONS = """apiVersion: klambda.io/v1alpha1
kind: Function
metadata: {name: flaky}
spec:
  runtime: python3.11
  handler: app.handler
  asyncConfig:
    maximumRetryAttempts: 2
    destinations:
      onSuccess: {queue: successes}
      onFailure: {queue: failures}
  code:
    inline:
      app.py: |
        def handler(event, context):
            raise RuntimeError("flaky failed on " + str(event["n"]))
---
apiVersion: klambda.io/v1alpha1
kind: Function
metadata: {name: steady}
spec:
  runtime: python3.11
  handler: app.handler
  asyncConfig:
    destinations: {onSuccess: {queue: successes}}
  code:
    inline:
      app.py: |
        def handler(event, context):
            return {"doubled": event["n"] * 2}
---
apiVersion: klambda.io/v1alpha1
kind: Function
metadata: {name: doomed}
spec:
  runtime: python3.11
  handler: app.handler
  asyncConfig: {maximumRetryAttempts: 0}
  deadLetterConfig: {queue: dead}
  code:
    inline:
      app.py: |
        def handler(event, context):
            raise ValueError("doomed")
---
apiVersion: klambda.io/v1alpha1
kind: Function
metadata: {name: frozen}
spec:
  runtime: python3.11
  handler: app.handler
  reservedConcurrency: 0
  asyncConfig:
    destinations: {onFailure: {queue: failures}}
  code:
    inline:
      app.py: |
        def handler(event, context):
            return "never"
---
apiVersion: klambda.io/v1alpha1
kind: Function
metadata: {name: looper}
spec:
  runtime: python3.11
  handler: app.handler
  asyncConfig:
    destinations:
      onSuccess: {queue: loop}
      onFailure: {queue: stopped}
  code:
    inline:
      app.py: |
        def handler(event, context):
            return {"round": event.get("round", 0) + 1}
---
apiVersion: klambda.io/v1alpha1
kind: Function
metadata: {name: relay}
spec:
  runtime: python3.11
  handler: app.handler
  timeout: 10
  environment:
    variables: {GATEWAY: "%(gateway)s", KEY_ID: "%(key)s", KEY_SECRET: "%(secret)s"}
  code:
    inline:
      app.py: |
        import json, os
        import boto3
        def handler(event, context):
            # boto3 passes on this invocation's trace header (_X_AMZN_TRACE_ID), as in Lambda
            lam = boto3.client("lambda", endpoint_url=os.environ["GATEWAY"],
                               region_name="us-east-1",
                               aws_access_key_id=os.environ["KEY_ID"],
                               aws_secret_access_key=os.environ["KEY_SECRET"])
            for record in event["Records"]:
                done = json.loads(record["body"])["responsePayload"]
                lam.invoke(FunctionName="looper", InvocationType="Event",
                           Payload=json.dumps({"round": done["round"]}))
            return {}
---
apiVersion: klambda.io/v1alpha1
kind: Function
metadata: {name: narrow}
spec:
  runtime: python3.11
  handler: app.handler
  timeout: 60
  reservedConcurrency: 1
  asyncConfig:
    maximumEventAgeInSeconds: 60
    destinations: {onFailure: {queue: failures}}
  code:
    inline:
      app.py: |
        import time
        def handler(event, context):
            time.sleep(event.get("hold", 0))
            return "ran"
---
apiVersion: klambda.io/v1alpha1
kind: Function
metadata: {name: streamer}
spec:
  runtime: python3.11
  handler: app.handler
  asyncConfig:
    maximumRetryAttempts: 0
    destinations: {onFailure: {stream: errors}}
  code:
    inline:
      app.py: |
        def handler(event, context):
            raise RuntimeError("to the stream")
---
apiVersion: klambda.io/v1alpha1
kind: Stream
metadata: {name: errors}
spec: {shards: 2}
---
apiVersion: klambda.io/v1alpha1
kind: EventSourceMapping
metadata: {name: relay-loop}
spec:
  functionName: relay
  batchSize: 1
  source: {queue: loop}
---
apiVersion: klambda.io/v1alpha1
kind: Queue
metadata: {name: loop}
spec: {visibilityTimeout: 60}
"""


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    tmp = tmp_path_factory.mktemp("async")
    p = start_platform(tmp, extra=("--async-retry-delay", "0.5"))
    try:
        state = p.state()
        manifest = tmp / "functions.yaml"
        manifest.write_text(
            FUNCTIONS
            % {
                "gateway": p.url,
                "key": state["access_key_id"],
                "secret": state["secret_access_key"],
            }
        )
        r = p.cli("apply", "-f", str(manifest))
        assert r.returncode == 0, r.stderr
        for name in ("flaky", "steady", "doomed", "looper", "relay", "narrow"):
            wait_for_reason(p, name, "EnvironmentReady", timeout=60)
        yield p
    finally:
        stop_platform(p)


def queue(platform: Platform, name: str) -> list[dict[str, str]]:
    r = redis.Redis.from_url(platform.state()["redis_url"])
    try:
        entries = r.xrange(f"klambda:queue:default:{name}")
    finally:
        r.close()
    return [{k.decode(): v.decode() for k, v in f.items()} for _, f in entries]


def records(platform: Platform, name: str, request_id: str) -> list[dict[str, Any]]:
    docs = [json.loads(m["body"]) for m in queue(platform, name)]
    return [d for d in docs if d["requestContext"]["requestId"] == request_id]


def until(check: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)
    return value


def invocations(platform: Platform, name: str) -> float:
    """The klambda_invocations counter of ``name`` on the gateway's /metrics."""
    _, _, body = platform.http("GET", "/metrics")
    pattern = rf'klambda_invocations_total{{function="{name}",namespace="default",[^}}]*}} (\S+)'
    return sum(float(v) for v in re.findall(pattern, body.decode()))


def send(platform: Platform, name: str, payload: dict[str, Any]) -> str:
    answer = client(platform).invoke(
        FunctionName=name, InvocationType="Event", Payload=json.dumps(payload)
    )
    assert answer["StatusCode"] == 202
    return str(answer["ResponseMetadata"]["RequestId"])


def test_a_failing_function_runs_three_times_then_its_record_is_on_failure(
    platform: Platform,
) -> None:
    request_id = send(platform, "flaky", {"n": 7})
    (doc,) = until(lambda: records(platform, "failures", request_id))
    assert invocations(platform, "flaky") == 3  # 1 + maximumRetryAttempts
    assert doc["version"] == "1.0"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", doc["timestamp"])
    assert doc["requestContext"] == {
        "requestId": request_id,
        "functionArn": f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:flaky:$LATEST",
        "condition": "RetriesExhausted",
        "approximateInvokeCount": 3,
    }
    assert doc["requestPayload"] == {"n": 7}
    assert doc["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    assert doc["responsePayload"]["errorMessage"] == "flaky failed on 7"
    assert records(platform, "successes", request_id) == []


def test_a_success_record_goes_on_success(platform: Platform) -> None:
    request_id = send(platform, "steady", {"n": 21})
    (doc,) = until(lambda: records(platform, "successes", request_id))
    assert doc["requestContext"]["condition"] == "Success"
    assert doc["requestContext"]["approximateInvokeCount"] == 1
    assert doc["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    assert doc["responsePayload"] == {"doubled": 42}


def test_without_a_destination_the_event_goes_to_the_dead_letter_queue(
    platform: Platform,
) -> None:
    request_id = send(platform, "doomed", {"n": 1})
    message = until(
        lambda: next(
            (
                m
                for m in queue(platform, "dead")
                if json.loads(m["attributes"])["RequestID"]["stringValue"] == request_id
            ),
            None,
        )
    )
    assert json.loads(message["body"]) == {"n": 1}  # the original event
    attributes = json.loads(message["attributes"])
    assert attributes["ErrorCode"] == {"dataType": "Number", "stringValue": "200"}
    assert attributes["ErrorMessage"] == {"dataType": "String", "stringValue": "doomed"}


def test_a_function_reserved_at_zero_fails_its_events_at_once(platform: Platform) -> None:
    request_id = send(platform, "frozen", {"n": 1})
    (doc,) = until(lambda: records(platform, "failures", request_id))
    assert doc["requestContext"]["condition"] == "RetriesExhausted"
    assert doc["requestContext"]["approximateInvokeCount"] == 0
    assert "responseContext" not in doc  # it never ran


def test_event_invoke_configs_read_through_boto3(platform: Platform) -> None:
    lam = client(platform)
    config = lam.get_function_event_invoke_config(FunctionName="flaky")
    assert config["FunctionArn"] == f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:flaky:$LATEST"
    assert config["MaximumRetryAttempts"] == 2
    assert config["MaximumEventAgeInSeconds"] == 21600
    assert config["DestinationConfig"] == {
        "OnSuccess": {"Destination": f"arn:aws:sqs:us-east-1:{ACCOUNT}:successes"},
        "OnFailure": {"Destination": f"arn:aws:sqs:us-east-1:{ACCOUNT}:failures"},
    }
    listed = lam.list_function_event_invoke_configs(FunctionName="flaky")
    assert [c["FunctionArn"] for c in listed["FunctionEventInvokeConfigs"]] == [
        config["FunctionArn"]
    ]
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_event_invoke_config(FunctionName="relay")  # none configured


def test_a_function_queue_function_loop_stops_at_16_hops(platform: Platform) -> None:
    """looper (async) -> its success record on queue 'loop' -> relay (through the mapping),
    whose boto3 invokes looper again passing on the trace header: two hops a round."""
    request_id = send(platform, "looper", {"round": 0})
    stopped = until(lambda: [json.loads(m["body"]) for m in queue(platform, "stopped")], 90)
    (doc,) = stopped
    assert doc["requestContext"]["condition"] == "RecursiveInvocationException"
    assert doc["requestPayload"] == {"round": 8}  # 8 rounds ran: lineage 0, 2, ..., 14
    assert invocations(platform, "looper") == 8
    assert request_id not in {d["requestContext"]["requestId"] for d in stopped}
    _, _, body = platform.http("GET", "/metrics")
    assert 'klambda_recursive_invocations_dropped_total{function="looper"' in body.decode()


def test_cli_invoke_async_prints_the_request_id(platform: Platform) -> None:
    r = platform.cli("invoke", "steady", "--async", "--payload", '{"n": 5}')
    assert r.returncode == 0, r.stderr
    request_id = r.stdout.strip()
    (doc,) = until(lambda: records(platform, "successes", request_id))
    assert doc["responsePayload"] == {"doubled": 10}


def test_cli_lists_a_dead_letter_queue_and_redrives_it_once(platform: Platform) -> None:
    request_id = send(platform, "doomed", {"n": 4})
    until(lambda: request_id in platform.cli("dlq", "list", "dead").stdout)
    listed = platform.cli("dlq", "list", "dead").stdout
    assert "ErrorMessage=doomed" in listed and '{"n": 4}' in listed

    missing = platform.cli("dlq", "redrive", "dead", "--to", "nobody")
    assert missing.returncode == 1 and 'function "nobody" not found' in missing.stderr
    assert "Traceback" not in missing.stderr
    assert request_id in platform.cli("dlq", "list", "dead").stdout  # nothing moved

    before = len(queue(platform, "successes"))
    r = platform.cli("dlq", "redrive", "dead", "--to", "steady")
    assert r.returncode == 0, r.stderr
    moved = int(r.stdout.split()[1])
    assert moved >= 1 and r.stdout.endswith("from dead to steady\n")
    assert platform.cli("dlq", "list", "dead").stdout == "queue dead is empty\n"
    again = platform.cli("dlq", "redrive", "dead", "--to", "steady")
    assert again.stdout == "redrove 0 message(s) from dead to steady\n"  # idempotent
    redriven = until(
        lambda: len(queue(platform, "successes")) >= before + moved and queue(platform, "successes")
    )
    payloads = [json.loads(m["body"])["requestPayload"] for m in redriven[before:]]
    assert {"n": 4} in payloads


def test_a_failure_record_goes_to_a_stream_destination(platform: Platform) -> None:
    wait_for_reason(platform, "streamer", "EnvironmentReady")
    request_id = send(platform, "streamer", {"n": 9})
    r = redis.Redis.from_url(platform.state()["redis_url"])
    shards = [f"klambda:stream:default:errors:{i}" for i in range(2)]

    def records() -> list[dict[str, Any]]:
        found = [f for key in shards for _, f in r.xrange(key)]
        return [json.loads(base64.b64decode(f[b"data"])) for f in found]

    (record,) = until(records)
    assert record["requestContext"]["requestId"] == request_id
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestPayload"] == {"n": 9}
    assert record["responseContext"]["functionError"] == "Unhandled"


def test_an_event_throttled_past_its_age_fails_with_event_age_exceeded(
    platform: Platform,
) -> None:
    """narrow's one reserved environment is held by a 34 s call, so its event is throttled,
    retried after 1, 2, 4, 8, 16 s; the next wait (32 s) would pass its 60 s age."""
    lam = client(platform, read_timeout=70)  # the hold outlasts the usual 30 s
    hog = threading.Thread(
        target=lambda: lam.invoke(FunctionName="narrow", Payload=json.dumps({"hold": 34}))
    )
    hog.start()
    try:
        time.sleep(1.0)  # the hold has begun
        started = time.monotonic()
        request_id = send(platform, "narrow", {"n": 1})
        (doc,) = until(lambda: records(platform, "failures", request_id), timeout=50)
        waited = time.monotonic() - started
    finally:
        hog.join(60)
    assert doc["requestContext"]["condition"] == "EventAgeExceeded"
    assert doc["requestContext"]["approximateInvokeCount"] == 0
    assert "responseContext" not in doc and doc["requestPayload"] == {"n": 1}
    assert 25 < waited < 45  # 1 + 2 + 4 + 8 + 16 s of backoff, not its full 60 s
