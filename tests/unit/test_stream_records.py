"""Kinesis's identities and shapes, as tables: shard ids, the MD5 hash-key ranges, sequence
numbers of Redis entry ids, the event and on-failure records, tumbling windows, IteratorAge.

Expected hash keys and shards are computed here independently (hashlib, int arithmetic, a linear
search over the ranges), beside published values: RFC 1321's MD5 test suite, the hash-key
ranges DescribeStream reports for 2- and 3-shard streams, and the examples of Lambda's
developer guide (with-kinesis.md).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from klambda.gateway.stream_records import (
    HASH_KEY_LIMIT,
    KinesisRecords,
    arrival_time,
    check_partition_key,
    failure_record,
    hash_key,
    hash_key_range,
    iso_ms,
    iterator_age_ms,
    kinesis_record,
    redis_id,
    sequence_number,
    shard_for,
    shard_id,
    shard_index,
    window_fields,
    window_of,
)

M = 2**128
U64 = 2**64
KEYS = ["a", "abc", "message digest", "1", "user-42", "é", "日本語", "x" * 256, "🙂"]


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def md5_int(key: str) -> int:
    return int(hashlib.md5(key.encode("utf-8")).hexdigest(), 16)


def linear_shard(key_hash: int, shards: int) -> int:
    return next(
        i for i in range(shards) if i * M // shards <= key_hash <= (i + 1) * M // shards - 1
    )


@pytest.mark.parametrize(
    ("index", "expected"),
    [
        (0, "shardId-000000000000"),
        (1, "shardId-000000000001"),
        (6, "shardId-000000000006"),
        (123456, "shardId-000000123456"),
        (10**12 - 1, "shardId-999999999999"),
    ],
)
def test_shard_ids_are_kinesis_s_and_reversible(index: int, expected: str) -> None:
    assert shard_id(index) == expected
    assert shard_index(expected) == index


@pytest.mark.parametrize("index", [-1, 10**12])
def test_shard_index_out_of_range_is_refused(index: int) -> None:
    with pytest.raises(ValueError):
        shard_id(index)


@pytest.mark.parametrize("text", ["", "shardId-1", "shardId-0000000000000", "shard-000000000000"])
def test_malformed_shard_ids_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        shard_index(text)


@pytest.mark.parametrize(
    ("key", "published"),
    [  # RFC 1321, A.5 test suite
        ("a", 0x0CC175B9C0F1B6A831C399E269772661),
        ("abc", 0x900150983CD24FB0D6963F7D28E17F72),
        ("message digest", 0xF96B697D7CB7938D525A2F31AAF161D0),
    ],
)
def test_hash_key_is_the_md5_of_the_key_as_an_unsigned_128_bit_integer(
    key: str, published: int
) -> None:
    assert hash_key(key) == published == md5_int(key)


@pytest.mark.parametrize("key", KEYS)
def test_hash_key_hashes_the_utf8_bytes(key: str) -> None:
    assert hash_key(key) == md5_int(key)
    assert 0 <= hash_key(key) < HASH_KEY_LIMIT


@pytest.mark.parametrize(
    ("index", "shards", "published"),
    [  # DescribeStream of new streams (and kinesalite's tests)
        (0, 1, (0, 340282366920938463463374607431768211455)),
        (0, 2, (0, 170141183460469231731687303715884105727)),
        (
            1,
            2,
            (170141183460469231731687303715884105728, 340282366920938463463374607431768211455),
        ),
        (0, 3, (0, 113427455640312821154458202477256070484)),
        (
            1,
            3,
            (113427455640312821154458202477256070485, 226854911280625642308916404954512140969),
        ),
    ],
)
def test_hash_key_ranges_match_kinesis_s(
    index: int, shards: int, published: tuple[int, int]
) -> None:
    assert hash_key_range(index, shards) == published


@pytest.mark.parametrize("shards", [1, 2, 3, 4, 7, 10, 13, 100, 1000])
def test_hash_key_ranges_tile_the_whole_space(shards: int) -> None:
    ranges = [hash_key_range(i, shards) for i in range(shards)]
    assert ranges[0][0] == 0
    assert ranges[-1][1] == M - 1
    for (_, end), (start, _) in itertools.pairwise(ranges):
        assert start == end + 1


@pytest.mark.parametrize(("index", "shards"), [(0, 0), (-1, 2), (2, 2)])
def test_hash_key_range_of_no_shard_is_refused(index: int, shards: int) -> None:
    with pytest.raises(ValueError):
        hash_key_range(index, shards)


@pytest.mark.parametrize("shards", [1, 2, 3, 4, 5, 7, 10, 16, 100])
@pytest.mark.parametrize("key", KEYS)
def test_shard_for_is_the_shard_whose_range_holds_the_md5(key: str, shards: int) -> None:
    assert shard_for(key, shards) == linear_shard(md5_int(key), shards)


@pytest.mark.parametrize(
    ("key", "shards", "expected"),
    [  # from the RFC 1321 digests: 0x0c..., 0x90..., 0xf9...
        ("a", 2, 0),
        ("abc", 2, 1),
        ("message digest", 2, 1),
        ("a", 4, 0),
        ("abc", 4, 2),
        ("message digest", 4, 3),
        ("a", 16, 0),
        ("abc", 16, 9),
        ("message digest", 16, 15),
    ],
)
def test_shard_for_known_keys(key: str, shards: int, expected: int) -> None:
    assert shard_for(key, shards) == expected


@pytest.mark.parametrize(
    ("explicit", "shards", "expected"),
    [
        ("0", 3, 0),
        ("113427455640312821154458202477256070484", 3, 0),  # shard 0's EndingHashKey
        ("113427455640312821154458202477256070485", 3, 1),  # shard 1's StartingHashKey
        ("226854911280625642308916404954512140969", 3, 1),
        ("226854911280625642308916404954512140970", 3, 2),
        ("170141183460469231731687303715884105727", 2, 0),
        ("170141183460469231731687303715884105728", 2, 1),
        (str(M - 1), 7, 6),
        (str(M - 1), 1, 0),
    ],
)
def test_explicit_hash_key_overrides_the_partition_key(
    explicit: str, shards: int, expected: int
) -> None:
    assert shard_for("abc", shards, explicit_hash_key=explicit) == expected
    assert shard_for("abc", shards, explicit_hash_key=explicit) == linear_shard(
        int(explicit), shards
    )


@pytest.mark.parametrize("explicit", ["", "-1", "01", "1.0", " 1", "abc", str(M), "9" * 40])
def test_invalid_explicit_hash_keys_are_refused_with_kinesis_s_message(explicit: str) -> None:
    with pytest.raises(ValueError) as caught:
        shard_for("abc", 2, explicit_hash_key=explicit)
    assert str(caught.value) == (
        "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. "
        f"Specified value was {explicit}"
    )


def test_a_stream_without_shards_is_refused() -> None:
    with pytest.raises(ValueError):
        shard_for("abc", 0)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (
            "",
            "1 validation error detected: Value '' at 'partitionKey' failed to satisfy "
            "constraint: Member must have length greater than or equal to 1",
        ),
        (
            "k" * 257,
            f"1 validation error detected: Value '{'k' * 257}' at 'partitionKey' failed to "
            "satisfy constraint: Member must have length less than or equal to 256",
        ),
    ],
)
def test_partition_key_length_is_checked_with_kinesis_s_message(key: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        check_partition_key(key)
    assert str(caught.value) == message
    with pytest.raises(ValueError):
        shard_for(key, 2)


@pytest.mark.parametrize("key", ["k", "k" * 256, "é" * 256, "🙂" * 256])
def test_partition_keys_of_1_to_256_characters_are_taken(key: str) -> None:
    check_partition_key(key)  # characters, not bytes: "é" * 256 is 512 bytes


@pytest.mark.parametrize(
    ("rid", "sequence"),
    [
        ("0-0", "49" + "0" * 54),
        ("0-1", "49" + "0" * 53 + "1"),
        ("1-0", "49" + "0" * 26 + "1" + "0" * 27),
        ("1545084650987-0", "49" + "1545084650987".zfill(27) + "0" * 27),
        ("1545084650987-12", "49" + "1545084650987".zfill(27) + "12".zfill(27)),
        (f"{U64 - 1}-{U64 - 1}", "49" + str(U64 - 1).zfill(27) + str(U64 - 1).zfill(27)),
    ],
)
def test_sequence_numbers_of_redis_ids(rid: str, sequence: str) -> None:
    assert sequence_number(rid) == sequence
    assert len(sequence) == 56  # as Kinesis's
    assert redis_id(sequence) == rid


@pytest.mark.parametrize(
    "rid",
    [
        *["", "1", "1-", "-1", "01-1", "1-01", "1-2-3", " 1-2", "1-2 ", "1.0-2", "a-b", "+1-2"],
        "\u0661-\u0662",  # Arabic-Indic digits: digits, but not ASCII ones
        f"{U64}-0",
        f"0-{U64}",
    ],
)
def test_malformed_redis_ids_are_refused(rid: str) -> None:
    with pytest.raises(ValueError):
        sequence_number(rid)


@pytest.mark.parametrize(
    "sequence",
    [
        "",
        "49",
        "49" + "0" * 53,  # 55 digits
        "49" + "0" * 55,  # 57 digits
        "50" + "0" * 54,  # another prefix
        "4" + "0" * 55,
        "49" + "0" * 53 + "x",
        "49" + "0" * 53 + "\u0661",  # a digit, but not an ASCII one
        "49" + str(U64).zfill(27) + "0" * 27,  # ms of 2^64
        "49" + "0" * 27 + str(U64).zfill(27),
        "49590338271490256608559692538361571095921575989136588898",  # a real Kinesis one
    ],
)
def test_what_is_no_sequence_number_of_this_stream_is_refused(sequence: str) -> None:
    with pytest.raises(ValueError):
        redis_id(sequence)


redis_ids = st.tuples(st.integers(0, U64 - 1), st.integers(0, U64 - 1))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(redis_ids, min_size=1, max_size=30))
def test_sequence_numbers_sort_as_the_redis_ids_both_as_text_and_as_numbers(
    ids: list[tuple[int, int]],
) -> None:
    by_id = [sequence_number(f"{ms}-{seq}") for ms, seq in sorted(ids)]
    sequences = [sequence_number(f"{ms}-{seq}") for ms, seq in ids]
    assert sorted(sequences) == by_id
    assert sorted(sequences, key=int) == by_id
    for (ms, seq), sequence in zip(ids, sequences, strict=True):
        assert redis_id(sequence) == f"{ms}-{seq}"


@pytest.mark.parametrize(
    ("rid", "expected"), [("1545084650987-0", 1545084650.987), ("0-5", 0.0), ("1000-1", 1.0)]
)
def test_arrival_time_is_the_ms_part_of_the_id(rid: str, expected: float) -> None:
    assert arrival_time(rid) == expected


def test_arrival_time_of_no_id_is_refused() -> None:
    with pytest.raises(ValueError):
        arrival_time("1545084650987")


def test_kinesis_record_is_the_guide_s_example() -> None:
    sequence = "49590338271490256608559692538361571095921575989136588898"
    record = kinesis_record(
        data=b"Hello, this is a test.",
        partition_key="1",
        sequence=sequence,
        arrival=1545084650.987,
        shard="shardId-000000000006",
        stream_arn="arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream",
        region="us-east-2",
        role_arn="arn:aws:iam::123456789012:role/lambda-role",
    )
    assert record == {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": "1",
            "sequenceNumber": sequence,
            "data": "SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==",
            "approximateArrivalTimestamp": 1545084650.987,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": "shardId-000000000006:" + sequence,
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::123456789012:role/lambda-role",
        "awsRegion": "us-east-2",
        "eventSourceARN": "arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream",
    }
    assert list(record) == [
        "kinesis",
        "eventSource",
        "eventVersion",
        "eventID",
        "eventName",
        "invokeIdentityArn",
        "awsRegion",
        "eventSourceARN",
    ]


@pytest.mark.parametrize(
    ("data", "arrival", "encoded", "stamp"),
    [
        (b"", 1.0, "", 1.0),
        (b"\x00\xff\xfe", 1545084711.1664, "AP/+", 1545084711.166),  # ms, as Kinesis keeps
        ('{"k": "é"}'.encode(), 0.0, "eyJrIjogIsOpIn0=", 0.0),
    ],
)
def test_kinesis_record_data_is_base64_and_arrival_epoch_seconds(
    data: bytes, arrival: float, encoded: str, stamp: float
) -> None:
    record = kinesis_record(
        data=data,
        partition_key="k",
        sequence=sequence_number("1-0"),
        arrival=arrival,
        shard=shard_id(0),
        stream_arn="arn",
        region="r",
        role_arn="role",
    )
    assert record["kinesis"]["data"] == encoded
    assert record["kinesis"]["approximateArrivalTimestamp"] == stamp
    assert isinstance(record["kinesis"]["approximateArrivalTimestamp"], float)


def test_failure_record_is_the_guide_s_example() -> None:
    record = failure_record(
        request_id="c9b8fa9f-5a7f-xmpl-af9c-0c604cde93a5",
        function_arn="arn:aws:lambda:us-east-2:123456789012:function:myfunction",
        condition="RetryAttemptsExhausted",
        invocations=1,
        now=epoch("2019-11-14T00:38:06.021Z"),
        shard="shardId-000000000001",
        stream_arn="arn:aws:kinesis:us-east-2:123456789012:stream/mystream",
        first_sequence="49601189658422359378836298521827638475320189012309704722",
        last_sequence="49601189658422359378836298522902373528957594348623495186",
        first_arrival=epoch("2019-11-14T00:38:04.835Z"),
        last_arrival=epoch("2019-11-14T00:38:05.580Z"),
        batch_size=500,
        status_code=200,
        executed_version="$LATEST",
        function_error="Unhandled",
    )
    assert record == {
        "requestContext": {
            "requestId": "c9b8fa9f-5a7f-xmpl-af9c-0c604cde93a5",
            "functionArn": "arn:aws:lambda:us-east-2:123456789012:function:myfunction",
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 1,
        },
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "version": "1.0",
        "timestamp": "2019-11-14T00:38:06.021Z",
        "KinesisBatchInfo": {
            "shardId": "shardId-000000000001",
            "startSequenceNumber": "49601189658422359378836298521827638475320189012309704722",
            "endSequenceNumber": "49601189658422359378836298522902373528957594348623495186",
            "approximateArrivalOfFirstRecord": "2019-11-14T00:38:04.835Z",
            "approximateArrivalOfLastRecord": "2019-11-14T00:38:05.580Z",
            "batchSize": 500,
            "streamArn": "arn:aws:kinesis:us-east-2:123456789012:stream/mystream",
        },
    }


@pytest.mark.parametrize(
    ("status_code", "executed_version", "function_error", "context"),
    [
        (
            200,
            "$LATEST",
            "Unhandled",
            {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        ),
        (200, "3", None, {"statusCode": 200, "executedVersion": "3"}),  # partial-batch response
        (200, "3", "", {"statusCode": 200, "executedVersion": "3"}),
        (None, None, None, {}),  # never delivered (RecordAgeExceeded)
    ],
)
def test_failure_record_response_context_holds_what_there_was(
    status_code: int | None,
    executed_version: str | None,
    function_error: str | None,
    context: dict[str, object],
) -> None:
    record = failure_record(
        request_id="r",
        function_arn="f",
        condition="RecordAgeExceeded",
        invocations=0,
        now=0.0,
        shard=shard_id(2),
        stream_arn="s",
        first_sequence=sequence_number("1-0"),
        last_sequence=sequence_number("2-0"),
        first_arrival=0.001,
        last_arrival=0.002,
        batch_size=2,
        status_code=status_code,
        executed_version=executed_version,
        function_error=function_error,
    )
    assert record["responseContext"] == context
    assert record["requestContext"]["condition"] == "RecordAgeExceeded"
    assert record["requestContext"]["approximateInvokeCount"] == 0
    assert record["timestamp"] == "1970-01-01T00:00:00.000Z"
    assert record["KinesisBatchInfo"]["approximateArrivalOfFirstRecord"] == (
        "1970-01-01T00:00:00.001Z"
    )
    assert record["KinesisBatchInfo"]["batchSize"] == 2


@pytest.mark.parametrize(
    ("stamp", "text"),
    [
        (0.0, "1970-01-01T00:00:00.000Z"),
        (1545084650.987, "2018-12-17T22:10:50.987Z"),
        (1545084650.9876, "2018-12-17T22:10:50.987Z"),  # milliseconds, not rounded up
    ],
)
def test_iso_ms(stamp: float, text: str) -> None:
    assert iso_ms(stamp) == text


@pytest.mark.parametrize(
    ("arrival", "seconds", "window"),
    [
        (1607497475.0, 120, (1607497440.0, 1607497560.0)),  # the guide's 07:04:00-07:06:00
        (1607497440.0, 120, (1607497440.0, 1607497560.0)),  # the start belongs to the window
        (1607497559.999, 120, (1607497440.0, 1607497560.0)),
        (1607497560.0, 120, (1607497560.0, 1607497680.0)),  # the end to the next one
        (0.0, 900, (0.0, 900.0)),
        (899.5, 900, (0.0, 900.0)),
        (59.25, 1, (59.0, 60.0)),
        (61.0, 60, (60.0, 120.0)),
        (1000.0, 7, (994.0, 1001.0)),  # aligned to the epoch, not to 0:00 of the day
    ],
)
def test_tumbling_windows_are_aligned_to_the_epoch(
    arrival: float, seconds: int, window: tuple[float, float]
) -> None:
    assert window_of(arrival, seconds) == window


@pytest.mark.parametrize("seconds", [0, -1, 901])
def test_window_lengths_outside_1_to_900_are_refused(seconds: int) -> None:
    with pytest.raises(ValueError):
        window_of(0.0, seconds)


def test_window_fields_are_the_guide_s_example() -> None:
    start, end = window_of(1607497475.0, 120)
    fields = window_fields(
        start=start,
        end=end,
        state={"1": 282, "2": 715},
        shard="shardId-000000000006",
        stream_arn="arn:aws:kinesis:us-east-1:123456789012:stream/lambda-stream",
        final=False,
        terminated_early=False,
    )
    assert fields == {
        "window": {"start": "2020-12-09T07:04:00Z", "end": "2020-12-09T07:06:00Z"},
        "state": {"1": 282, "2": 715},
        "shardId": "shardId-000000000006",
        "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/lambda-stream",
        "isFinalInvokeForWindow": False,
        "isWindowTerminatedEarly": False,
    }


@pytest.mark.parametrize(
    ("final", "early"), [(True, False), (False, True), (True, True), (False, False)]
)
def test_window_flags_are_passed_through(final: bool, early: bool) -> None:
    fields = window_fields(
        start=0.0,
        end=60.0,
        state={},
        shard="s",
        stream_arn="a",
        final=final,
        terminated_early=early,
    )
    assert fields["isFinalInvokeForWindow"] is final
    assert fields["isWindowTerminatedEarly"] is early
    assert fields["window"] == {"start": "1970-01-01T00:00:00Z", "end": "1970-01-01T00:01:00Z"}


@pytest.mark.parametrize(
    ("last_arrival", "now", "age"),
    [
        (100.0, 100.0, 0.0),
        (100.0, 100.5, 500.0),
        (1545084650.987, 1545084651.987, 1000.0),
        (100.0, 99.0, 0.0),  # a clock behind the stream's: no negative age
    ],
)
def test_iterator_age_is_the_age_of_the_batch_s_last_record_in_ms(
    last_arrival: float, now: float, age: float
) -> None:
    assert iterator_age_ms(last_arrival, now) == pytest.approx(age)


@given(
    data=st.binary(max_size=64),
    key=st.text(max_size=40),
    ms=st.integers(0, 2**48),
    n=st.integers(0, 2**20),
)
def test_the_fast_record_text_is_the_record_as_json(data: bytes, key: str, ms: int, n: int) -> None:
    """The poller's hot path writes records as text; it must be the same record."""
    common = {
        "shard": "shardId-000000000003",
        "stream_arn": 'arn:aws:kinesis:us-east-1:000000000000:stream/c"icks',
        "region": "us-east-1",
        "role_arn": "arn:aws:iam::000000000000:role/fn",
    }
    sequence = sequence_number(f"{ms}-{n}")
    fields = {"data": data, "partition_key": key, "sequence": sequence, "arrival": ms / 1000}
    text = KinesisRecords(**common).encode(**fields)
    assert json.loads(text) == kinesis_record(**fields, **common)
