"""What a Kinesis-style stream looks like from the outside, as pure functions: shard ids and hash
keys, sequence numbers, and the JSON shapes Lambda hands a function or an on-failure destination.

The stream lives on Redis (one stream key per shard); these functions translate between Redis's
world (entry ids ``MS-SEQ``) and Kinesis's (56-digit sequence numbers, ``shardId-...``), so that
a function written against Lambda's Kinesis events runs unchanged. The decisions taken on top of
them (retries, bisection, lanes) are in ``stream_policy``.

- Shards: Kinesis hashes the partition key (UTF-8) with MD5 into a 128-bit unsigned integer and
  writes the record to the shard whose hash-key range holds it; a new stream of n shards splits
  0..2^128-1 evenly, shard i covering [i*2^128//n, (i+1)*2^128//n - 1] (DescribeStream of a
  3-shard stream ends shard 0 at 113427455640312821154458202477256070484). ExplicitHashKey, a
  decimal string ``0|([1-9]\\d{0,38})``, overrides the hash. Partition keys are 1 to 256 Unicode
  characters (counted here as code points). Sources: Kinesis API PutRecordsRequestEntry
  (docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecordsRequestEntry.html), "Split a
  shard" (docs.aws.amazon.com/kinesis/latest/dev/kinesis-using-sdk-java-resharding-split.html);
  the error wording is AWS's validation text as kinesalite (mhart/kinesalite) reproduces it.
- Sequence numbers: ``"49" + ms (27 digits) + seq (27 digits)`` -- 56 digits like Kinesis's,
  fixed width so that numeric, lexicographic and Redis-id order agree (both parts of a Redis id
  are below 2^64, 20 digits), and reversible. The ms part of a Redis id is the time the entry was
  added, so it is also the record's approximateArrivalTimestamp.
- Event record and on-failure record: the shapes of "Using Lambda with Kinesis" (aws-lambda-
  developer-guide doc_source/with-kinesis.md, "Example Kinesis record event", "Example
  invocation record") and LocalStack's stream poller (localstack
  .../event_source_mapping/pollers/stream_poller.py ``create_dlq_event``, kinesis_poller.py).
- Tumbling windows: boundaries come from the records' arrival times ("Lambda determines tumbling
  window boundaries based on the time when records were inserted into the stream"); windows are
  aligned to multiples of their length since the epoch, as the guide's example window
  07:04:00-07:06:00 of a 120 s window is (the alignment is inferred, not stated). The event
  additions are those of the guide's KinesisTimeWindowEvent (services-kinesis-windows.html).
- IteratorAge: "how old the last record in the batch was when processing finished" (with-kinesis
  .md, "Amazon CloudWatch metrics").
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii as _quote  # C: json.dumps of a str
from typing import Any

HASH_KEY_LIMIT = 2**128
"""Hash keys are 0..2^128-1: the 128 bits of an MD5 digest."""
PARTITION_KEY_MAX = 256
SHARD_INDEX_LIMIT = 10**12
"""Shard ids carry 12 digits (shardId-000000000000)."""
SEQUENCE_PREFIX = "49"
"""Every sequence number starts so: a non-zero lead digit, as Kinesis's (4959..., 4960...)."""
PART_WIDTH = 27
SEQUENCE_LENGTH = len(SEQUENCE_PREFIX) + 2 * PART_WIDTH  # 56, as Kinesis's
REDIS_PART_LIMIT = 2**64
"""Both halves of a Redis stream entry id are unsigned 64-bit integers."""

_EXPLICIT_HASH_KEY = re.compile(r"0|[1-9][0-9]{0,38}")
_REDIS_ID = re.compile(r"(0|[1-9][0-9]*)-(0|[1-9][0-9]*)")
_SHARD_ID = re.compile(r"shardId-([0-9]{12})")


def shard_id(index: int) -> str:
    """Kinesis's id of shard ``index``: shardId-000000000000, shardId-000000000001, ..."""
    if not 0 <= index < SHARD_INDEX_LIMIT:
        raise ValueError(f"shard index {index} is not in 0..{SHARD_INDEX_LIMIT - 1}")
    return f"shardId-{index:012d}"


def shard_index(shard: str) -> int:
    """The index in a shard id (the inverse of shard_id)."""
    match = _SHARD_ID.fullmatch(shard)
    if match is None:
        raise ValueError(f"{shard!r} is not a shard id (shardId- and 12 digits)")
    return int(match.group(1))


def check_partition_key(partition_key: str) -> None:
    """Refuse a partition key Kinesis would refuse, with its ValidationException message."""
    if len(partition_key) < 1:
        raise ValueError(_length_error(partition_key, "greater than or equal to 1"))
    if len(partition_key) > PARTITION_KEY_MAX:
        raise ValueError(_length_error(partition_key, f"less than or equal to {PARTITION_KEY_MAX}"))


def _length_error(value: str, bound: str) -> str:
    return (
        f"1 validation error detected: Value '{value}' at 'partitionKey' failed to satisfy "
        f"constraint: Member must have length {bound}"
    )


def hash_key(partition_key: str, explicit_hash_key: str | None = None) -> int:
    """The 128-bit hash key of a record: MD5 of the UTF-8 partition key, big-endian, unless an
    ExplicitHashKey (decimal, below 2^128) overrides it."""
    check_partition_key(partition_key)
    if explicit_hash_key is not None:
        if _EXPLICIT_HASH_KEY.fullmatch(explicit_hash_key) is None or (
            int(explicit_hash_key) >= HASH_KEY_LIMIT
        ):
            raise ValueError(
                "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. "
                f"Specified value was {explicit_hash_key}"
            )
        return int(explicit_hash_key)
    return int.from_bytes(hashlib.md5(partition_key.encode("utf-8")).digest(), "big")


def hash_key_range(index: int, shards: int) -> tuple[int, int]:
    """(StartingHashKey, EndingHashKey) of shard ``index`` of a stream of ``shards`` shards, both
    inclusive, as Kinesis lays out a new stream."""
    if shards < 1 or not 0 <= index < shards:
        raise ValueError(f"shard {index} is not one of {shards} shards")
    return index * HASH_KEY_LIMIT // shards, (index + 1) * HASH_KEY_LIMIT // shards - 1


def shard_for(partition_key: str, shards: int, explicit_hash_key: str | None = None) -> int:
    """The index of the shard a record is written to: the one whose range holds its hash key."""
    if shards < 1:
        raise ValueError(f"a stream has at least one shard, not {shards}")
    key = hash_key(partition_key, explicit_hash_key)
    index = key * shards // HASH_KEY_LIMIT  # at most one below the answer: floors at boundaries
    if index + 1 < shards and key >= hash_key_range(index + 1, shards)[0]:
        index += 1
    return index


def sequence_number(redis_id: str) -> str:
    """The Kinesis-like sequence number of a Redis stream entry id ``MS-SEQ``."""
    left, _, right = redis_id.partition("-")
    if not (left.isascii() and left.isdigit() and right.isascii() and right.isdigit()):
        raise ValueError(f"{redis_id!r} is not a Redis stream entry id (MS-SEQ, decimal)")
    if (left[0] == "0" and left != "0") or (right[0] == "0" and right != "0"):
        raise ValueError(f"{redis_id!r} is not a Redis stream entry id (MS-SEQ, decimal)")
    ms, seq = int(left), int(right)
    if ms >= REDIS_PART_LIMIT or seq >= REDIS_PART_LIMIT:
        raise ValueError(f"{redis_id!r} has a part of 2^64 or more")
    return f"{SEQUENCE_PREFIX}{ms:0{PART_WIDTH}d}{seq:0{PART_WIDTH}d}"


def redis_id(sequence: str) -> str:
    """The Redis stream entry id of a sequence number (the inverse of sequence_number)."""
    if (
        len(sequence) != SEQUENCE_LENGTH
        or not sequence.startswith(SEQUENCE_PREFIX)
        or not sequence.isascii()
        or not sequence.isdigit()
    ):
        raise ValueError(f"{sequence!r} is not a sequence number of this stream")
    body = sequence[len(SEQUENCE_PREFIX) :]
    ms, seq = int(body[:PART_WIDTH]), int(body[PART_WIDTH:])
    if ms >= REDIS_PART_LIMIT or seq >= REDIS_PART_LIMIT:
        raise ValueError(f"{sequence!r} is not a sequence number of this stream")
    return f"{ms}-{seq}"


def arrival_time(redis_id: str) -> float:
    """Epoch seconds at which Redis added the entry (the ms part of its id): Kinesis's
    approximateArrivalTimestamp, which also has millisecond precision."""
    match = _REDIS_ID.fullmatch(redis_id)
    if match is None:
        raise ValueError(f"{redis_id!r} is not a Redis stream entry id (MS-SEQ, decimal)")
    return int(match.group(1)) / 1000


def iso_ms(epoch: float) -> str:
    """2019-11-14T00:38:06.021Z: the timestamps of an on-failure record."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def iso_seconds(epoch: float) -> str:
    """2020-12-09T07:04:00Z: the window boundaries of a tumbling-window event."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")[:-6] + "Z"


class KinesisRecords:
    """Writes a shard's records as the JSON text of ``kinesis_record`` without building each
    dict and encoding it: a batch is then one string join, the poller's hot path (a 100-record
    batch costs a tenth of json.dumps of the dicts). The parts common to the shard are escaped
    once."""

    def __init__(self, *, shard: str, stream_arn: str, region: str, role_arn: str) -> None:
        self._head = '{"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":'
        self._tail = (
            '"eventSource":"aws:kinesis","eventVersion":"1.0","eventID":'
            + json.dumps(shard + ":")[:-1]
        )
        self._end = (
            '","eventName":"aws:kinesis:record","invokeIdentityArn":'
            + json.dumps(role_arn)
            + ',"awsRegion":'
            + json.dumps(region)
            + ',"eventSourceARN":'
            + json.dumps(stream_arn)
            + "}"
        )

    def encode(self, *, data: bytes, partition_key: str, sequence: str, arrival: float) -> str:
        return (
            f'{self._head}{_quote(partition_key)},"sequenceNumber":"{sequence}",'
            f'"data":"{base64.b64encode(data).decode("ascii")}",'
            f'"approximateArrivalTimestamp":{round(arrival, 3)!r}}},'
            f"{self._tail}{sequence}{self._end}"
        )


def kinesis_record(
    *,
    data: bytes,
    partition_key: str,
    sequence: str,
    arrival: float,
    shard: str,
    stream_arn: str,
    region: str,
    role_arn: str,
) -> dict[str, Any]:
    """One element of the event's ``Records``, in Lambda's Kinesis shape (and key order)."""
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": partition_key,
            "sequenceNumber": sequence,
            "data": base64.b64encode(data).decode("ascii"),
            "approximateArrivalTimestamp": round(arrival, 3),
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{shard}:{sequence}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": role_arn,
        "awsRegion": region,
        "eventSourceARN": stream_arn,
    }


def failure_record(
    *,
    request_id: str,
    function_arn: str,
    condition: str,
    invocations: int,
    now: float,
    shard: str,
    stream_arn: str,
    first_sequence: str,
    last_sequence: str,
    first_arrival: float,
    last_arrival: float,
    batch_size: int,
    status_code: int | None = None,
    executed_version: str | None = None,
    function_error: str | None = None,
) -> dict[str, Any]:
    """The document an on-failure destination gets for records Lambda gave up on: metadata to
    find them in the stream, not the records themselves.

    ``condition`` is RetryAttemptsExhausted or RecordAgeExceeded; ``invocations`` is the
    approximateInvokeCount. The responseContext describes the last invocation and leaves out
    what there was none of (no functionError after a partial-batch response; nothing at all for
    records that were never delivered).
    """
    response: dict[str, Any] = {}
    if status_code is not None:
        response["statusCode"] = status_code
    if executed_version is not None:
        response["executedVersion"] = executed_version
    if function_error:
        response["functionError"] = function_error
    return {
        "requestContext": {
            "requestId": request_id,
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": invocations,
        },
        "responseContext": response,
        "version": "1.0",
        "timestamp": iso_ms(now),
        "KinesisBatchInfo": {
            "shardId": shard,
            "startSequenceNumber": first_sequence,
            "endSequenceNumber": last_sequence,
            "approximateArrivalOfFirstRecord": iso_ms(first_arrival),
            "approximateArrivalOfLastRecord": iso_ms(last_arrival),
            "batchSize": batch_size,
            "streamArn": stream_arn,
        },
    }


def window_of(arrival: float, seconds: int) -> tuple[float, float]:
    """The tumbling window [start, end) a record that arrived at ``arrival`` belongs to: windows
    of ``seconds`` (1..900) aligned to the epoch, so every poller cuts them alike."""
    if not 1 <= seconds <= 900:
        raise ValueError(f"a tumbling window is 1 to 900 seconds, not {seconds}")
    start = (arrival // seconds) * seconds
    return float(start), float(start + seconds)


def window_fields(
    *,
    start: float,
    end: float,
    state: dict[str, Any],
    shard: str,
    stream_arn: str,
    final: bool,
    terminated_early: bool,
) -> dict[str, Any]:
    """What a tumbling-window invocation's event carries beside ``Records``.

    ``final`` (isFinalInvokeForWindow): the last invoke of the window, whose state is complete;
    the next invoke starts a new window with a fresh state. ``terminated_early``
    (isWindowTerminatedEarly): the window was cut short (its state grew past 1 MB); the next
    invoke continues the same window with a fresh state.
    """
    return {
        "window": {"start": iso_seconds(start), "end": iso_seconds(end)},
        "state": state,
        "shardId": shard,
        "eventSourceARN": stream_arn,
        "isFinalInvokeForWindow": final,
        "isWindowTerminatedEarly": terminated_early,
    }


def iterator_age_ms(last_arrival: float, now: float) -> float:
    """IteratorAge: milliseconds between the arrival of the batch's last record and ``now``
    (when processing finished); never negative, whatever the clocks say."""
    return max(0.0, (now - last_arrival) * 1000)


def response_fields(response: dict[str, Any] | None) -> dict[str, Any]:
    """failure_record's response fields from an invocation's outcome (Lambda's
    ``responseContext``); none when the batch never reached the function."""
    if not response:
        return {}
    return {
        "status_code": response.get("statusCode"),
        "executed_version": response.get("executedVersion"),
        "function_error": response.get("functionError"),
    }
