"""What SQS's SendMessage and Kinesis's PutRecord(s) accept, as pure functions: each request
is checked with the services' own rules and error names before anything is written.

- ``sqs_message``: one SendMessage (or one SendMessageBatch entry) as the queue engine's
  fields, its delay and its FIFO deduplication id.
- ``batch_entries``: SendMessageBatch's own rules (ids, count, total size).
- ``kinesis_records``: PutRecord/PutRecords records as (partition key, data) pairs.

Errors are ``ProducerError``: the shape name botocore maps onto its exception class, the
query-protocol code SQS still reports (``x-amzn-query-error``), the status and AWS's message.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from klambda.api.routes import Intake
from klambda.gateway.fifo_queues import deduplication_id, fifo_fields
from klambda.gateway.sqs_records import ATTRIBUTE_TYPES, attribute_value
from klambda.gateway.stream_records import check_partition_key

MAX_MESSAGE_SIZE = 1024 * 1024
"""SQS's limit on a message, body and attributes together (1 MiB since August 2025), and on a
whole SendMessageBatch."""
MAX_DELAY = 900
MAX_ATTRIBUTES = 10
MAX_BATCH = 10
MAX_RECORD_SIZE = 1024 * 1024
"""Kinesis: a record's data and partition key together."""
MAX_PUT_RECORDS = 500
MAX_PUT_RECORDS_SIZE = 5 * 1024 * 1024

_BODY_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ATTRIBUTE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,256}")
_ENTRY_ID = re.compile(r"[A-Za-z0-9_-]{1,80}")
_GROUP = re.compile(r"[\x21-\x7e]{1,128}")


@dataclass
class ProducerError(Exception):
    shape: str
    """The modelled error's shape name (botocore's exception class)."""
    message: str
    status: int = 400
    query_code: str = ""
    """SQS's code from its query protocol (empty: the shape name)."""
    sender_fault: bool = True

    def __str__(self) -> str:
        return self.message


def missing(parameter: str) -> ProducerError:
    return ProducerError(
        "MissingRequiredParameterException",
        f"The request must contain the parameter {parameter}.",
        query_code="MissingParameter",
    )


def invalid(message: str) -> ProducerError:
    return ProducerError(
        "InvalidParameterValueException", message, query_code="InvalidParameterValue"
    )


@dataclass(frozen=True)
class SqsMessage:
    """One checked message: the engine's fields, its delay, its deduplication id (FIFO)."""

    fields: dict[str, str]
    delay: int
    deduplication_id: str | None
    attributes: dict[str, Any]


def sqs_message(queue: Intake, entry: dict[str, Any]) -> SqsMessage:
    """One SendMessage request (or batch entry) for ``queue``, checked as SQS checks it."""
    body = entry.get("MessageBody")
    if not isinstance(body, str) or body == "":
        raise missing("MessageBody")
    if _BODY_INVALID.search(body):
        raise ProducerError(
            "InvalidMessageContents",
            "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | "
            "#x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF",
            query_code="InvalidMessageContents",
        )
    attributes, size = message_attributes(entry.get("MessageAttributes"))
    size += len(body.encode())
    if size > MAX_MESSAGE_SIZE:
        raise invalid(
            f"One or more parameters are invalid. Reason: Message must be shorter than "
            f"{MAX_MESSAGE_SIZE} bytes."
        )
    delay = entry.get("DelaySeconds")
    if delay is not None and (not isinstance(delay, int) or not 0 <= delay <= MAX_DELAY):
        raise invalid(
            f"Value {delay} for parameter DelaySeconds is invalid. Reason: DelaySeconds must "
            f"be >= 0 and <= {MAX_DELAY}."
        )
    fields = {"body": body}
    if attributes:
        fields["attributes"] = json.dumps(attributes)
    return _ordered(queue, entry, fields, attributes)


def _ordered(
    queue: Intake, entry: dict[str, Any], fields: dict[str, str], attributes: dict[str, Any]
) -> SqsMessage:
    """A standard queue's delay, or a FIFO queue's group and deduplication id."""
    body = fields["body"]
    delay = entry.get("DelaySeconds")
    group = entry.get("MessageGroupId")
    dedup = entry.get("MessageDeduplicationId")
    if not queue.fifo:
        if dedup is not None:
            raise invalid(
                f"Value {dedup} for parameter MessageDeduplicationId is invalid. Reason: The "
                "request includes a parameter that is not valid for this queue type."
            )
        return SqsMessage(fields, queue.delay_seconds if delay is None else delay, None, attributes)
    if delay:
        raise invalid(
            f"Value {delay} for parameter DelaySeconds is invalid. Reason: The request include "
            "parameter that is not valid for this queue type."
        )
    if group is None:
        raise missing("MessageGroupId")
    if not isinstance(group, str) or not _GROUP.fullmatch(group):
        raise invalid(f"Value {group} for parameter MessageGroupId is invalid.")
    if dedup is not None and (not isinstance(dedup, str) or not _GROUP.fullmatch(dedup)):
        raise invalid(f"Value {dedup} for parameter MessageDeduplicationId is invalid.")
    try:
        dedup_id = deduplication_id(body, dedup, queue.content_based_deduplication)
    except ValueError:
        raise invalid(
            "The queue should either have ContentBasedDeduplication enabled or "
            "MessageDeduplicationId provided explicitly"
        ) from None
    return SqsMessage({**fields, **fifo_fields(body, group, dedup_id)}, 0, dedup_id, attributes)


def message_attributes(given: object) -> tuple[dict[str, Any], int]:
    """SendMessage's MessageAttributes in the shape a function receives them, and their size
    as SQS counts it (names, types and values)."""
    if given is None:
        return {}, 0
    if not isinstance(given, dict):
        raise invalid("MessageAttributes must be a map.")
    if len(given) > MAX_ATTRIBUTES:
        raise invalid(
            f"Number of message attributes [{len(given)}] exceeds the allowed maximum "
            f"[{MAX_ATTRIBUTES}]."
        )
    out: dict[str, Any] = {}
    size = 0
    for name, value in given.items():
        if (
            not _ATTRIBUTE_NAME.fullmatch(name)
            or ".." in name
            or name.startswith((".", "AWS.", "Amazon."))
            or name.endswith(".")
        ):
            raise invalid(f"Message attribute name '{name}' is invalid.")
        shaped, length = _attribute(name, value)
        size += length + len(name.encode()) + len(shaped["dataType"].encode())
        out[name] = shaped
    return out, size


def _attribute(name: str, value: object) -> tuple[dict[str, Any], int]:
    """One message attribute in the shape a function receives it, and its value's size."""
    if not isinstance(value, dict):
        raise invalid(f"The message attribute '{name}' must contain a value.")
    data_type = value.get("DataType")
    if not isinstance(data_type, str) or data_type.split(".", 1)[0] not in ATTRIBUTE_TYPES:
        raise invalid(
            f"The type of message (user) attribute '{name}' is invalid. You must use only "
            "the following supported type prefixes: Binary, Number, String."
        )
    if data_type.startswith("Binary"):
        try:
            data = base64.b64decode(value.get("BinaryValue") or "", validate=True)
        except (binascii.Error, TypeError):
            data = b""
        if not data:
            raise invalid(f"The message attribute '{name}' must contain a binary value.")
        return attribute_value(data_type, binary=base64.b64encode(data).decode()), len(data)
    text = value.get("StringValue")
    if not isinstance(text, str) or text == "":
        raise invalid(f"The message attribute '{name}' must contain a non-empty value.")
    if data_type.startswith("Number") and not _is_number(text):
        raise invalid(f"Can't cast the value of message (user) attribute '{name}' to a number.")
    return attribute_value(data_type, string=text), len(text.encode())


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def batch_entries(entries: object) -> list[dict[str, Any]]:
    """SendMessageBatch's entries, checked for what SQS refuses as a whole batch."""
    if not isinstance(entries, list) or not entries:
        raise ProducerError(
            "EmptyBatchRequest",
            "There should be at least one SendMessageBatchRequestEntry in the request.",
            query_code="AWS.SimpleQueueService.EmptyBatchRequest",
        )
    if len(entries) > MAX_BATCH:
        raise ProducerError(
            "TooManyEntriesInBatchRequest",
            f"Maximum number of entries per request are {MAX_BATCH}. You have sent {len(entries)}.",
            query_code="AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
        )
    ids = []
    size = 0
    for entry in entries:
        ident = entry.get("Id") if isinstance(entry, dict) else None
        if not isinstance(ident, str) or not _ENTRY_ID.fullmatch(ident):
            raise ProducerError(
                "InvalidBatchEntryId",
                "A batch entry id can only contain alphanumeric characters, hyphens and "
                "underscores. It can be at most 80 letters long.",
                query_code="AWS.SimpleQueueService.InvalidBatchEntryId",
            )
        ids.append(ident)
        size += len(str(entry.get("MessageBody", "")).encode())
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise ProducerError(
            "BatchEntryIdsNotDistinct",
            f"Id {duplicate} repeated.",
            query_code="AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
        )
    if size > MAX_MESSAGE_SIZE:
        raise ProducerError(
            "BatchRequestTooLong",
            f"Batch requests cannot be longer than {MAX_MESSAGE_SIZE} bytes. You have sent "
            f"{size} bytes.",
            query_code="AWS.SimpleQueueService.BatchRequestTooLong",
        )
    return entries


def kinesis_records(records: object) -> list[tuple[str, bytes]]:
    """PutRecords' records (or one PutRecord's, as a list of one) as (partition key, data)."""
    if not isinstance(records, list) or not records:
        raise validation("records", "Member must have length greater than or equal to 1")
    if len(records) > MAX_PUT_RECORDS:
        raise validation(
            "records", f"Member must have length less than or equal to {MAX_PUT_RECORDS}"
        )
    out = []
    total = 0
    for record in records:
        if not isinstance(record, dict):
            raise validation("records", "Member must not be null")
        key = record.get("PartitionKey")
        if not isinstance(key, str):
            raise validation("partitionKey", "Member must not be null")
        try:
            check_partition_key(key)
        except ValueError as e:
            raise ProducerError("ValidationException", str(e)) from None
        raw = record.get("Data")
        if not isinstance(raw, str):
            raise validation("data", "Member must not be null")
        try:
            data = base64.b64decode(raw, validate=True)
        except binascii.Error:
            raise ProducerError(
                "SerializationException", "Data is not a valid base64 string."
            ) from None
        size = len(data) + len(key.encode())
        if size > MAX_RECORD_SIZE:
            raise validation(
                "data", f"Member must have length less than or equal to {MAX_RECORD_SIZE}"
            )
        total += size
        out.append((key, data))
    if total > MAX_PUT_RECORDS_SIZE:
        raise ProducerError(
            "InvalidArgumentException",
            f"Records size exceeds {MAX_PUT_RECORDS_SIZE // (1024 * 1024)} MB limit",
        )
    return out


def validation(member: str, constraint: str) -> ProducerError:
    return ProducerError(
        "ValidationException",
        f"1 validation error detected: Value at '{member}' failed to satisfy constraint: "
        f"{constraint}",
    )
