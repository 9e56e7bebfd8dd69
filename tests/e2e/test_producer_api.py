"""Producers send to klambda's queues and streams with AWS's own clients (boto3's ``sqs`` and
``kinesis``, the AWS CLI), signed with a principal's key: the messages reach the function that
reads the queue, and a principal reaches only what its namespace and policy allow."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from klambda.api.arn import account_for
from tests.e2e.conftest import Platform, wait_for_reason
from tests.e2e.test_lambda_api import allow, client, new_key
from tests.e2e.test_queues_streams import lines, until

ACCOUNT = account_for("default")

MANIFEST = """apiVersion: klambda.io/v1alpha1
kind: Function
metadata: {name: inbox-reader}
spec:
  runtime: python3.11
  handler: app.handler
  environment: {variables: {OUT: "%(out)s"}}
  code:
    inline:
      app.py: |
        import base64, json, os

        def handler(event, context):
            with open(os.environ["OUT"], "a") as f:
                for r in event["Records"]:
                    if r.get("eventSource") == "aws:sqs":
                        seen = {"body": r["body"], "attributes": r["messageAttributes"],
                                "md5": r["md5OfBody"],
                                "group": r["attributes"].get("MessageGroupId")}
                    else:
                        seen = {"key": r["kinesis"]["partitionKey"],
                                "shard": r["eventID"].split(":")[0],
                                "data": base64.b64decode(r["kinesis"]["data"]).decode()}
                    f.write(json.dumps(seen) + "\\n")
---
apiVersion: klambda.io/v1alpha1
kind: Queue
metadata: {name: inbox}
spec: {visibilityTimeout: 30}
---
apiVersion: klambda.io/v1alpha1
kind: Queue
metadata: {name: inbox.fifo}
spec: {fifo: true, contentBasedDeduplication: true}
---
apiVersion: klambda.io/v1alpha1
kind: Stream
metadata: {name: feed}
spec: {shards: 2}
---
apiVersion: klambda.io/v1alpha1
kind: EventSourceMapping
metadata: {name: inbox}
spec: {functionName: inbox-reader, source: {queue: inbox}, batchSize: 10}
---
apiVersion: klambda.io/v1alpha1
kind: EventSourceMapping
metadata: {name: inbox-fifo}
spec: {functionName: inbox-reader, source: {queue: inbox.fifo}, batchSize: 10}
---
apiVersion: klambda.io/v1alpha1
kind: EventSourceMapping
metadata: {name: feed}
spec: {functionName: inbox-reader, source: {stream: feed}, startingPosition: TRIM_HORIZON}
"""


@pytest.fixture(scope="module")
def out(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("producers")
    path = tmp / "inbox.jsonl"
    manifest = tmp / "inbox.yaml"
    manifest.write_text(MANIFEST % {"out": path})
    r = platform.cli("apply", "-f", str(manifest))
    assert r.returncode == 0, r.stderr
    wait_for_reason(platform, "inbox-reader", "EnvironmentReady")
    for kind, name in (("kq", "inbox"), ("kq", "inbox.fifo"), ("ks", "feed")):
        until(lambda k=kind, n=name: _ready(platform, k, n), 30)  # type: ignore[misc]
    return path


def _ready(platform: Platform, kind: str, name: str) -> bool:
    r = platform.cli("get", kind, name, "-o", "json")
    conditions = json.loads(r.stdout).get("status", {}).get("conditions", []) if r.stdout else []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def aws(platform: Platform, service: str, key: tuple[str, str] | None = None) -> Any:
    return client(platform, *(key or (None, None)), service=service)


def error_code(e: pytest.ExceptionInfo[ClientError]) -> str:
    return str(e.value.response["Error"]["Code"])


def test_boto3_sqs_sends_reach_the_function_that_reads_the_queue(
    platform: Platform, out: Path
) -> None:
    sqs = aws(platform, "sqs")
    url = sqs.get_queue_url(QueueName="inbox")["QueueUrl"]
    assert url == f"{platform.url}/{ACCOUNT}/inbox"
    assert url in sqs.list_queues(QueueNamePrefix="inb")["QueueUrls"]
    sent = sqs.send_message(
        QueueUrl=url,
        MessageBody='{"order": 1}',
        MessageAttributes={"color": {"DataType": "String", "StringValue": "blue"}},
    )
    assert sent["MD5OfMessageBody"] == hashlib.md5(b'{"order": 1}').hexdigest()
    batch = sqs.send_message_batch(
        QueueUrl=url,
        Entries=[
            {"Id": "a", "MessageBody": "second"},
            {"Id": "b", "MessageBody": "late", "DelaySeconds": 1},
            {"Id": "c", "MessageBody": "bad", "DelaySeconds": 5000},
        ],
    )
    assert [s["Id"] for s in batch["Successful"]] == ["a", "b"]
    assert [(f["Id"], f["Code"], f["SenderFault"]) for f in batch["Failed"]] == [
        ("c", "InvalidParameterValue", True)
    ]
    seen = until(lambda: (s := [x for x in lines(out) if "body" in x]) and len(s) >= 3 and s)
    by_body = {x["body"]: x for x in seen}
    assert set(by_body) == {'{"order": 1}', "second", "late"}  # "bad" was never written
    assert by_body['{"order": 1}']["attributes"]["color"]["stringValue"] == "blue"
    assert by_body['{"order": 1}']["md5"] == sent["MD5OfMessageBody"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["QueueArn"] == f"arn:aws:sqs:us-east-1:{ACCOUNT}:inbox"


def test_fifo_sends_follow_sqs_rules(platform: Platform, out: Path) -> None:
    sqs = aws(platform, "sqs")
    url = sqs.get_queue_url(QueueName="inbox.fifo")["QueueUrl"]
    with pytest.raises(ClientError) as info:
        sqs.send_message(QueueUrl=url, MessageBody="no group")
    assert error_code(info) == "MissingParameter"
    first = sqs.send_message(QueueUrl=url, MessageBody="once", MessageGroupId="g")
    again = sqs.send_message(QueueUrl=url, MessageBody="once", MessageGroupId="g")
    assert again["MessageId"] == first["MessageId"]  # content-based deduplication
    until(lambda: any(x.get("body") == "once" and x["group"] == "g" for x in lines(out)))
    assert sum(x.get("body") == "once" for x in lines(out)) == 1


def test_boto3_kinesis_records_reach_the_function_by_shard(platform: Platform, out: Path) -> None:
    kinesis = aws(platform, "kinesis")
    one = kinesis.put_record(StreamName="feed", Data=b"first", PartitionKey="user-1")
    many = kinesis.put_records(
        StreamName="feed",
        Records=[{"Data": f"r{i}".encode(), "PartitionKey": f"user-{i}"} for i in range(6)],
    )
    assert many["FailedRecordCount"] == 0
    placed = {f"r{i}": r["ShardId"] for i, r in enumerate(many["Records"])}
    placed["first"] = one["ShardId"]
    seen = until(lambda: (s := [x for x in lines(out) if "key" in x]) and len(s) >= 7 and s)
    assert {x["data"]: x["shard"] for x in seen} == placed
    assert len(set(placed.values())) == 2  # six keys over two shards use both


def test_a_principal_reaches_only_its_own_namespace_and_what_its_policy_allows(
    platform: Platform, out: Path, tmp_path: Path
) -> None:
    url = f"{platform.url}/{ACCOUNT}/inbox"
    # another namespace's principal, allowed every SQS and Kinesis action on everything
    mallory = new_key(platform, tmp_path, "mallory", allow(["sqs:*", "kinesis:*"], "*"), "team-b")
    with pytest.raises(ClientError) as info:
        aws(platform, "sqs", mallory).send_message(QueueUrl=url, MessageBody="stolen")
    assert error_code(info) == "AccessDenied"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError) as info:
        aws(platform, "kinesis", mallory).put_record(
            StreamARN=f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/feed",
            Data=b"stolen",
            PartitionKey="k",
        )
    assert error_code(info) == "AccessDeniedException"
    # her own namespace has no such queue (and the other's is not listed)
    sqs_b = aws(platform, "sqs", mallory)
    with pytest.raises(sqs_b.exceptions.QueueDoesNotExist):
        sqs_b.get_queue_url(QueueName="inbox")
    assert sqs_b.list_queues().get("QueueUrls", []) == []
    # a principal of the queue's namespace allowed only to read attributes cannot send
    reader = new_key(
        platform, tmp_path, "reader", allow("sqs:GetQueueAttributes", "arn:aws:sqs:*:*:inbox")
    )
    sqs = aws(platform, "sqs", reader)
    sqs.get_queue_attributes(QueueUrl=url)
    with pytest.raises(ClientError) as info:
        sqs.send_message(QueueUrl=url, MessageBody="not allowed")
    assert error_code(info) == "AccessDenied"
    assert "sqs:SendMessage" in str(info.value)
    assert not any(x.get("body") in ("stolen", "not allowed") for x in lines(out))


def test_requests_signed_for_another_service_or_unknown_operations_are_refused(
    platform: Platform,
) -> None:
    state = platform.state()
    status, _, body = platform.http(
        "POST",
        "/",
        b'{"QueueName": "inbox"}',
        {"X-Amz-Target": "AmazonSQS.GetQueueUrl", "Content-Type": "application/x-amz-json-1.0"},
        sign=True,  # signed for service lambda
    )
    assert status == 403
    assert json.loads(body)["__type"].endswith("InvalidSignatureException")
    assert "'sqs'" in json.loads(body)["message"]
    sqs = aws(platform, "sqs")
    with pytest.raises(ClientError) as info:
        sqs.purge_queue(QueueUrl=f"{platform.url}/{ACCOUNT}/inbox")
    assert error_code(info) == "UnknownOperationException"
    assert state["access_key_id"] not in str(info.value)


def test_the_aws_cli_sends_a_message(platform: Platform, out: Path) -> None:
    state = platform.state()
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": state["access_key_id"],
        "AWS_SECRET_ACCESS_KEY": state["secret_access_key"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }
    r = subprocess.run(
        ["aws", "sqs", "send-message", "--endpoint-url", platform.url, "--queue-url",
         f"{platform.url}/{ACCOUNT}/inbox", "--message-body", "from the cli"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["MD5OfMessageBody"] == hashlib.md5(b"from the cli").hexdigest()
    until(lambda: any(x.get("body") == "from the cli" for x in lines(out)))
