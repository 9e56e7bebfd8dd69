"""SQS-shaped records and Lambda's rules for queue batches, as pure functions.

- ``sqs_event``: the batch as Lambda hands SQS messages to a function, with message
  attributes and their MD5 (SQS's algorithm) and, for FIFO queues, MessageGroupId,
  MessageDeduplicationId and SequenceNumber.
- ``failed_items``: which messages a ReportBatchItemFailures response keeps; ``fifo_kept``:
  on a FIFO queue, everything of a group from its first failed message on (a later message
  deleted before an earlier one would break the group's order).
- ``attribute``: a message attribute in SQS's shape, from what ``klambda queue send`` takes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as _quote  # C: json.dumps of a str
from typing import Any

from klambda.api.routes import EventSourceRoute

ATTRIBUTE_TYPES = ("String", "Number", "Binary")


@dataclass(slots=True)  # not frozen: made per message on the hot path, 5x faster
class Message:
    """One received queue message."""

    message_id: str
    body: str
    receive_count: int
    first_receive_ms: int
    attributes: dict[str, Any] = field(default_factory=dict, compare=False)
    """SQS message attributes (``--attribute``, or those Lambda sets on dead-letter messages)."""
    lineage: int = 0
    """Hops through klambda that led to it (a destination's record: the event's + 1)."""
    group: str = ""
    """FIFO: its MessageGroupId."""
    deduplication_id: str = ""


def sqs_event(route: EventSourceRoute, messages: list[Message]) -> dict[str, Any]:
    """The batch as Lambda hands SQS messages to a function."""
    return {"Records": [_record(route, m) for m in messages]}


def sqs_event_json(route: EventSourceRoute, messages: list[Message]) -> bytes:
    """``sqs_event`` as JSON, written as text without building the dicts: a batch is a string
    join, the poller's hot path (a 100-message batch costs a fraction of json.dumps)."""
    tail = (
        ',"eventSource":"aws:sqs","eventSourceARN":'
        + _quote(route.source_arn)
        + ',"awsRegion":'
        + _quote(route.region)
        + "}"
    )
    return ('{"Records":[' + ",".join(_record_text(m, tail) for m in messages) + "]}").encode()


def _record_text(m: Message, tail: str) -> str:
    ident = _quote(m.message_id)
    sent = _quote(m.message_id.split("-", 1)[0])
    attributes = (
        f'{{"ApproximateReceiveCount":"{m.receive_count}","SentTimestamp":{sent},'
        f'"SenderId":"klambda","ApproximateFirstReceiveTimestamp":"{m.first_receive_ms}"'
    )
    if m.group:
        attributes += (
            f',"SequenceNumber":"{sequence_number(m.message_id)}",'
            f'"MessageGroupId":{_quote(m.group)},'
            f'"MessageDeduplicationId":{_quote(m.deduplication_id)}'
        )
    md5 = hashlib.md5(m.body.encode(), usedforsecurity=False).hexdigest()
    extra, message_attributes = "", "{}"
    if m.attributes:
        message_attributes = json.dumps(m.attributes)
        extra = f',"md5OfMessageAttributes":"{md5_of_attributes(m.attributes)}"'
    return (
        f'{{"messageId":{ident},"receiptHandle":{ident},"body":{_quote(m.body)},'
        f'"attributes":{attributes}}},"messageAttributes":{message_attributes},'
        f'"md5OfBody":"{md5}"{extra}{tail}'
    )


def _record(route: EventSourceRoute, m: Message) -> dict[str, Any]:
    attributes = {
        "ApproximateReceiveCount": str(m.receive_count),
        "SentTimestamp": m.message_id.split("-", 1)[0],
        "SenderId": "klambda",
        "ApproximateFirstReceiveTimestamp": str(m.first_receive_ms),
    }
    if m.group:
        attributes["SequenceNumber"] = sequence_number(m.message_id)
        attributes["MessageGroupId"] = m.group
        attributes["MessageDeduplicationId"] = m.deduplication_id
    out: dict[str, Any] = {
        "messageId": m.message_id,
        "receiptHandle": m.message_id,
        "body": m.body,
        "attributes": attributes,
        "messageAttributes": m.attributes,
        "md5OfBody": hashlib.md5(m.body.encode(), usedforsecurity=False).hexdigest(),
    }
    if m.attributes:
        out["md5OfMessageAttributes"] = md5_of_attributes(m.attributes)
    out |= {"eventSource": "aws:sqs", "eventSourceARN": route.source_arn, "awsRegion": route.region}
    return out


def sequence_number(message_id: str) -> str:
    """A FIFO message's SequenceNumber: its entry id as one growing decimal (SQS's are 20+
    digits)."""
    ms, _, seq = message_id.partition("-")
    return f"{int(ms):013d}{int(seq or 0):07d}"


def md5_of_attributes(attributes: dict[str, Any]) -> str:
    """SQS's MD5OfMessageAttributes: per attribute, by name, the length-prefixed name, data
    type, a transport byte (1 string, 2 binary) and length-prefixed value."""
    digest = hashlib.md5(usedforsecurity=False)
    for name in sorted(attributes):
        value = attributes[name]
        data_type = str(value.get("dataType", "String"))
        digest.update(_prefixed(name.encode()) + _prefixed(data_type.encode()))
        if "binaryValue" in value:
            digest.update(b"\x02" + _prefixed(base64.b64decode(value["binaryValue"])))
        else:
            digest.update(b"\x01" + _prefixed(str(value.get("stringValue", "")).encode()))
    return digest.hexdigest()


def _prefixed(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def attribute(spec: str) -> tuple[str, dict[str, Any]]:
    """``NAME=VALUE`` (a String), ``NAME:Number=5`` or ``NAME:Binary=<base64>`` as a message
    attribute; ValueError saying what is wrong."""
    head, sep, value = spec.partition("=")
    if not sep:
        raise ValueError(f"attribute {spec!r}: expected NAME=VALUE or NAME:TYPE=VALUE")
    name, _, data_type = head.partition(":")
    data_type = data_type or "String"
    if not name or data_type.split(".", 1)[0] not in ATTRIBUTE_TYPES:
        raise ValueError(f"attribute {spec!r}: the type must be String, Number or Binary")
    if data_type.startswith("Binary"):
        try:
            base64.b64decode(value, validate=True)
        except binascii.Error as e:
            raise ValueError(f"attribute {name}: a Binary value is base64") from e
        return name, attribute_value(data_type, binary=value)
    if data_type.startswith("Number"):
        try:
            float(value)
        except ValueError as e:
            raise ValueError(f"attribute {name}: {value!r} is not a number") from e
    return name, attribute_value(data_type, string=value)


def attribute_value(
    data_type: str, *, string: str | None = None, binary: str | None = None
) -> dict[str, Any]:
    """A message attribute as a function receives it (``binary``: base64)."""
    value = {"binaryValue": binary} if binary is not None else {"stringValue": string}
    return {**value, "stringListValues": [], "binaryListValues": [], "dataType": data_type}


def failed_items(payload: bytes, ids: list[str]) -> set[str]:
    """Messages to keep after a successful invocation with ReportBatchItemFailures.

    Lambda's rules: an empty or null response, or an empty list, keeps none; a response it
    cannot read (not JSON, no such key, an empty or unknown itemIdentifier) keeps the batch.
    """
    if not payload.strip():
        return set()
    try:
        response = json.loads(payload)
    except ValueError:
        return set(ids)
    if response is None:
        return set()
    if not isinstance(response, dict):
        return set(ids)
    failures = response.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return set(ids)
    keep = set()
    for item in failures:
        ident = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(ident, str) or ident not in ids:
            return set(ids)
        keep.add(ident)
    return keep


def fifo_kept(messages: Iterable[Message], failed: set[str]) -> set[str]:
    """FIFO: the messages to keep when ``failed`` failed: in each group, the first failed
    message and every one after it (Lambda: stop at the first failure, return it and the
    rest)."""
    keep: set[str] = set()
    blocked: set[str] = set()
    for m in messages:
        if m.group in blocked or m.message_id in failed:
            blocked.add(m.group)
            keep.add(m.message_id)
    return keep


def to_dead_letter(messages: list[Message], max_receive_count: int | None) -> list[Message]:
    """Messages received more often than the redrive policy allows."""
    if max_receive_count is None:
        return []
    return [m for m in messages if m.receive_count > max_receive_count]
