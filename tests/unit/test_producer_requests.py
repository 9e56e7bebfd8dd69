"""SQS's and Kinesis's request rules (pure): what each refuses, with AWS's error names."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from klambda.api.routes import Intake
from klambda.gateway.producer_requests import (
    MAX_MESSAGE_SIZE,
    ProducerError,
    batch_entries,
    kinesis_records,
    sqs_message,
)

STANDARD = Intake("Queue", "default", "q", "arn:aws:sqs:us-east-1:1:q", "klambda:queue:default:q")
DELAYED = Intake("Queue", "default", "d", "arn", "k", delay_seconds=7)
FIFO = Intake("Queue", "default", "q.fifo", "arn", "k", fifo=True)
FIFO_CONTENT = Intake(
    "Queue", "default", "q.fifo", "arn", "k", fifo=True, content_based_deduplication=True
)


@pytest.mark.parametrize(
    ("queue", "entry", "code"),
    [
        (STANDARD, {}, "MissingParameter"),
        (STANDARD, {"MessageBody": ""}, "MissingParameter"),
        (STANDARD, {"MessageBody": "a\x00b"}, "InvalidMessageContents"),
        (STANDARD, {"MessageBody": "x" * (MAX_MESSAGE_SIZE + 1)}, "InvalidParameterValue"),
        (STANDARD, {"MessageBody": "x", "DelaySeconds": 901}, "InvalidParameterValue"),
        (STANDARD, {"MessageBody": "x", "DelaySeconds": -1}, "InvalidParameterValue"),
        (STANDARD, {"MessageBody": "x", "MessageDeduplicationId": "d"}, "InvalidParameterValue"),
        (FIFO, {"MessageBody": "x", "MessageDeduplicationId": "d"}, "MissingParameter"),
        (FIFO, {"MessageBody": "x", "MessageGroupId": "g"}, "InvalidParameterValue"),
        (FIFO_CONTENT, {"MessageBody": "x", "MessageGroupId": "g", "DelaySeconds": 3},
         "InvalidParameterValue"),
        (FIFO_CONTENT, {"MessageBody": "x", "MessageGroupId": "a b"}, "InvalidParameterValue"),
    ],
)  # fmt: skip
def test_sqs_refuses_what_sqs_refuses(queue: Intake, entry: dict[str, Any], code: str) -> None:
    with pytest.raises(ProducerError) as info:
        sqs_message(queue, entry)
    assert (info.value.query_code or info.value.shape) == code


@pytest.mark.parametrize(
    "attributes",
    [
        {"AWS.x": {"DataType": "String", "StringValue": "v"}},
        {"a..b": {"DataType": "String", "StringValue": "v"}},
        {"n": {"DataType": "Integer", "StringValue": "1"}},
        {"n": {"DataType": "Number", "StringValue": "one"}},
        {"s": {"DataType": "String", "StringValue": ""}},
        {"b": {"DataType": "Binary", "BinaryValue": "not base64!"}},
        {f"a{i}": {"DataType": "String", "StringValue": "v"} for i in range(11)},
    ],
)
def test_bad_message_attributes_are_refused(attributes: dict[str, Any]) -> None:
    with pytest.raises(ProducerError) as info:
        sqs_message(STANDARD, {"MessageBody": "x", "MessageAttributes": attributes})
    assert info.value.query_code == "InvalidParameterValue"


def test_a_message_becomes_the_engines_fields_in_the_shape_a_function_receives() -> None:
    m = sqs_message(
        STANDARD,
        {
            "MessageBody": "hello",
            "MessageAttributes": {
                "color": {"DataType": "String", "StringValue": "blue"},
                "n": {"DataType": "Number.int", "StringValue": "5"},
                "raw": {"DataType": "Binary", "BinaryValue": base64.b64encode(b"\x01").decode()},
            },
        },
    )
    assert m.fields["body"] == "hello"
    assert json.loads(m.fields["attributes"]) == m.attributes
    assert m.attributes["color"] == {
        "stringValue": "blue",
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "String",
    }
    assert m.attributes["raw"]["binaryValue"] == "AQ=="
    assert (m.delay, m.deduplication_id) == (0, None)


@pytest.mark.parametrize(
    ("queue", "entry", "delay", "dedup"),
    [
        (DELAYED, {"MessageBody": "x"}, 7, None),  # the queue's delaySeconds
        (DELAYED, {"MessageBody": "x", "DelaySeconds": 0}, 0, None),  # the message's own
        (STANDARD, {"MessageBody": "x", "MessageGroupId": "g"}, 0, None),  # a fair queue's group
        (FIFO, {"MessageBody": "x", "MessageGroupId": "g", "MessageDeduplicationId": "d"}, 0, "d"),
        (FIFO_CONTENT, {"MessageBody": "x", "MessageGroupId": "g"}, 0,
         "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"),
    ],
)  # fmt: skip
def test_delays_and_deduplication(
    queue: Intake, entry: dict[str, Any], delay: int, dedup: str | None
) -> None:
    m = sqs_message(queue, entry)
    assert (m.delay, m.deduplication_id) == (delay, dedup)
    if queue.fifo:
        assert m.fields["group"] == "g"


@pytest.mark.parametrize(
    ("entries", "code"),
    [
        ([], "AWS.SimpleQueueService.EmptyBatchRequest"),
        (None, "AWS.SimpleQueueService.EmptyBatchRequest"),
        ([{"Id": str(i), "MessageBody": "x"} for i in range(11)],
         "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"),
        ([{"Id": "a b", "MessageBody": "x"}], "AWS.SimpleQueueService.InvalidBatchEntryId"),
        ([{"MessageBody": "x"}], "AWS.SimpleQueueService.InvalidBatchEntryId"),
        ([{"Id": "a", "MessageBody": "x"}, {"Id": "a", "MessageBody": "y"}],
         "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"),
        ([{"Id": "a", "MessageBody": "x" * 600_000}, {"Id": "b", "MessageBody": "x" * 600_000}],
         "AWS.SimpleQueueService.BatchRequestTooLong"),
    ],
)  # fmt: skip
def test_batches_refused_as_a_whole(entries: Any, code: str) -> None:
    with pytest.raises(ProducerError) as info:
        batch_entries(entries)
    assert info.value.query_code == code


def test_kinesis_records_are_decoded_and_checked() -> None:
    data = base64.b64encode(b"payload").decode()
    assert kinesis_records([{"Data": data, "PartitionKey": "k"}]) == [("k", b"payload")]
    for bad, shape in (
        ([], "ValidationException"),
        ([{"Data": data, "PartitionKey": ""}], "ValidationException"),
        ([{"Data": data, "PartitionKey": "k" * 257}], "ValidationException"),
        ([{"PartitionKey": "k"}], "ValidationException"),
        ([{"Data": "%%%", "PartitionKey": "k"}], "SerializationException"),
        ([{"Data": data, "PartitionKey": "k"}] * 501, "ValidationException"),
        ([{"Data": base64.b64encode(b"x" * 1024 * 1024).decode(), "PartitionKey": "k"}],
         "ValidationException"),
        ([{"Data": base64.b64encode(b"x" * 1000_000).decode(), "PartitionKey": "k"}] * 6,
         "InvalidArgumentException"),
    ):  # fmt: skip
        with pytest.raises(ProducerError) as info:
            kinesis_records(bad)
        assert info.value.shape == shape
