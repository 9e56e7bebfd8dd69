"""Lambda event filtering (klambda.api.event_filter): the operator table and examples quoted
from Lambda's guide, EventBridge/Event Ruler semantics, SQS body and Kinesis data formats,
metadata filters and every refusal."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from klambda.api import event_filter_rules
from klambda.api.event_filter import FilterError, Filters, parse_filters


def sqs_record(body: str, **fields: Any) -> dict[str, Any]:
    """The SQS record of Lambda's guide (with-sqs-filtering), with ``body`` replaced."""
    record: dict[str, Any] = {
        "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
        "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a...",
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1545082649183"},
        "messageAttributes": {"kind": {"stringValue": "order", "dataType": "String"}},
        "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-west-2:123456789012:my-queue",
        "awsRegion": "us-west-2",
    }
    return record | fields


def kinesis_record(data: object, partition_key: str = "1") -> dict[str, Any]:
    """A Kinesis record as the function gets it; ``data`` is JSON-encoded unless bytes."""
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    inner: dict[str, Any] = {"partitionKey": partition_key, "data": base64.b64encode(raw).decode()}
    inner |= {"sequenceNumber": "4959033827149025660855969", "kinesisSchemaVersion": "1.0"}
    inner |= {"approximateArrivalTimestamp": 1545084650.987}
    return {"kinesis": inner, "eventSource": "aws:kinesis", "eventName": "aws:kinesis:record"}


def body_matches(pattern: dict[str, Any], body: object) -> bool:
    text = body if isinstance(body, str) else json.dumps(body)
    return parse_filters([json.dumps({"body": pattern})]).matches_sqs(sqs_record(text))


# "Filter rule syntax": the comparison operators of Lambda's guide, rule syntax as quoted.
@pytest.mark.parametrize(
    ("rule", "matching", "not_matching"),
    [
        ('"UserID": [ null ]', {"UserID": None}, {"UserID": "u-1"}),
        ('"LastName": [""]', {"LastName": ""}, {"LastName": "Doe"}),
        ('"Name": [ "Alice" ]', {"Name": "Alice"}, {"Name": "alice"}),
        ('"Name": [ { "equals-ignore-case": "alice" } ]', {"Name": "ALICE"}, {"Name": "Alicia"}),
        (
            '"Location": [ "New York" ], "Day": ["Monday"]',
            {"Location": "New York", "Day": "Monday"},
            {"Location": "New York", "Day": "Friday"},
        ),
        ('"PaymentType": [ "Credit", "Debit"]', {"PaymentType": "Debit"}, {"PaymentType": "Cash"}),
        (
            '"$or": [ { "Location": [ "New York" ] }, { "Day": [ "Monday" ] } ]',
            {"Location": "Paris", "Day": "Monday"},
            {"Location": "Paris", "Day": "Friday"},
        ),
        (
            '"Weather": [ { "anything-but": [ "Raining" ] } ]',
            {"Weather": "Sun"},
            {"Weather": "Raining"},
        ),
        ('"Price": [ { "numeric": [ "=", 100 ] } ]', {"Price": 100}, {"Price": 101}),
        ('"Price": [ { "numeric": [ ">", 10, "<=", 20 ] } ]', {"Price": 20}, {"Price": 10}),
        ('"ProductName": [ { "exists": true } ]', {"ProductName": "x"}, {"Other": "x"}),
        ('"ProductName": [ { "exists": false } ]', {"Other": "x"}, {"ProductName": "x"}),
        ('"Region": [ {"prefix": "us-" } ]', {"Region": "us-east-1"}, {"Region": "eu-west-1"}),
        ('"FileName": [ { "suffix": ".png" } ]', {"FileName": "cat.png"}, {"FileName": "cat.jpg"}),
    ],
)
def test_lambda_operator_table(rule: str, matching: Any, not_matching: Any) -> None:
    filters = parse_filters(['{"body": {' + rule + "}}"])
    assert filters.matches_sqs(sqs_record(json.dumps(matching)))
    assert not filters.matches_sqs(sqs_record(json.dumps(not_matching)))


EMPLOYEES = {
    "employees": [
        {"firstName": f, "lastName": n}
        for f, n in (("John", "Doe"), ("Anna", "Smith"), ("Peter", "Jones"))
    ]
}
OR_AND = {"src": ["cw"], "$or": [{"m": ["cpu"]}, {"t": ["T"], "ns": ["ec2"]}]}


@pytest.mark.parametrize(
    ("pattern", "body", "expected"),
    [
        # Exact numbers compare as text: "300, 300.0, and 3.0e2 are not considered equal".
        ({"n": [300]}, '{"n": 300}', True),
        ({"n": [300]}, '{"n": 300.0}', False),
        ({"n": [300]}, '{"n": 3.0e2}', False),
        ({"n": [{"numeric": ["=", 300]}]}, '{"n": 3.0e2}', True),
        ({"n": [300]}, {"n": "300"}, False),
        ({"n": ["300"]}, {"n": 300}, False),
        ({"b": [True]}, {"b": True}, True),
        ({"b": [True]}, {"b": 1}, False),
        ({"u": [None]}, {}, False),
        ({"u": [""]}, {"u": None}, False),
        ({"s": ["x", {"prefix": "ab"}]}, {"s": "abc"}, True),
        ({"n": [{"prefix": "3"}]}, {"n": 300}, False),
        ({"s": [{"prefix": {"equals-ignore-case": "EventB"}}]}, {"s": "eventbridge"}, True),
        ({"f": [{"suffix": {"equals-ignore-case": ".PNG"}}]}, {"f": "a.png"}, True),
        ({"f": [{"suffix": ".png"}]}, {"f": "a.PNG"}, False),
        ({"s": [{"equals-ignore-case": "ok"}]}, {"s": "OK!"}, False),
        ({"s": [{"anything-but": "initializing"}]}, {"s": "running"}, True),
        ({"s": [{"anything-but": "initializing"}]}, {"s": "initializing"}, False),
        ({"x": [{"anything-but": [100, 200]}]}, {"x": 150}, True),
        ({"x": [{"anything-but": [100, 200]}]}, {"x": 200}, False),
        ({"s": [{"anything-but": ["a"]}]}, {}, False),
        ({"s": [{"anything-but": ["a"]}]}, {"s": ["a", "b"]}, True),
        ({"s": [{"anything-but": ["a"]}]}, {"s": ["a", "a"]}, False),
        ({"r": [{"anything-but": {"prefix": "us-"}}]}, {"r": "eu-west-1"}, True),
        ({"r": [{"anything-but": {"prefix": "us-"}}]}, {"r": "us-east-1"}, False),
        ({"n": [{"numeric": [">", 0, "<=", 5]}]}, {"n": 0}, False),
        ({"n": [{"numeric": [">", 0, "<=", 5]}]}, {"n": 5}, True),
        ({"n": [{"numeric": [">", 0, "<=", 5]}]}, {"n": 5.5}, False),
        ({"n": [{"numeric": ["<", 10, ">=", 1]}]}, {"n": 1}, True),
        ({"n": [{"numeric": ["<", 10]}]}, {"n": -3}, True),
        ({"n": [{"numeric": [">", 0]}]}, {"n": "5"}, False),
        ({"n": [{"numeric": [">", 0]}]}, {"n": True}, False),
        ({"u": [{"exists": True}]}, {"u": None}, True),
        # "Exists match only works on the leaf nodes" (Event Ruler).
        ({"c": [{"exists": True}]}, {"c": {"c1": 100}}, False),
        ({"c": [{"exists": False}]}, {"c": {"c1": 100}}, True),
        ({"c": [{"exists": True}]}, {"c": []}, False),
        ({"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": "10.0.0.11"}, True),
        ({"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": "10.0.1.11"}, False),
        ({"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": "ten"}, False),
        ({"ip": [{"cidr": "2001:db8::/32"}]}, {"ip": "2001:db8::1"}, True),
        ({"a": {"b": {"c": ["x"]}}}, {"a": {"b": {"c": "x"}}}, True),
        ({"a": {"b": {"c": ["x"]}}}, {"a": {"b": "x"}}, False),
        ({"a": ["x"]}, {"a": {"b": "x"}}, False),
        ({"tags": ["b"]}, {"tags": ["a", "b"]}, True),
        ({"t": ["c"]}, {"t": [["a"], ["b", "c"]]}, True),
        ({"employees": {"firstName": ["Anna"]}}, EMPLOYEES, True),
        ({"employees": {"firstName": ["Anna"], "lastName": ["Smith"]}}, EMPLOYEES, True),
        ({"employees": {"firstName": ["Anna"], "lastName": ["Jones"]}}, EMPLOYEES, False),
        ({"d": {"$or": [{"a": ["1"]}, {"b": ["2"]}]}}, {"d": {"b": "2"}}, True),
        ({"d": {"$or": [{"a": ["1"]}, {"b": ["2"]}]}}, {"d": {"a": "2"}}, False),
        (OR_AND, {"src": "cw", "t": "T", "ns": "ec2"}, True),
        (OR_AND, {"src": "cw", "t": "T"}, False),
        (OR_AND, {"src": "other", "m": "cpu"}, False),
    ],
)
def test_operators(pattern: dict[str, Any], body: object, expected: bool) -> None:
    assert body_matches(pattern, body) is expected


# "Properly filtering Amazon SQS messages": the body's format against the pattern's.
@pytest.mark.parametrize(
    ("pattern", "body", "expected"),
    [
        ({"body": [{"prefix": "Result: "}]}, "Result: ok", True),
        ({"body": [{"prefix": "Result: "}]}, "Error: no", False),
        ({"body": ["hello"]}, "hello", True),
        ({"attributes": {"ApproximateReceiveCount": ["1"]}}, "hello", True),
        ({"attributes": {"ApproximateReceiveCount": ["2"]}}, "hello", False),
        ({"body": {"a": ["x"]}}, "hello", False),
        ({"body": {"a": [{"exists": False}]}}, "hello", False),
        ({"body": [{"prefix": "{"}]}, '{"a": "x"}', False),
        ({"body": [{"exists": True}]}, '{"a": "x"}', False),
        ({"messageAttributes": {"kind": {"stringValue": ["order"]}}}, '{"a": "x"}', True),
        ({"messageAttributes": {"kind": {"stringValue": ["refund"]}}}, '{"a": "x"}', False),
        ({"body": {"a": ["x"]}}, '{"a": "x"}', True),
        ({"body": [{"prefix": "["}]}, "[1, 2]", True),
        ({"body": {"a": ["x"]}}, '[{"a": "x"}]', False),
        ({"$or": [{"body": {"a": ["x"]}}, {"eventSource": ["aws:sqs"]}]}, "plain", True),
        ({"$or": [{"body": {"a": ["x"]}}, {"eventSource": ["aws:mq"]}]}, "plain", False),
    ],
)
def test_sqs_body_formats(pattern: dict[str, Any], body: str, expected: bool) -> None:
    assert parse_filters([json.dumps(pattern)]).matches_sqs(sqs_record(body)) is expected


GUIDE_BODY = (
    '{\n "RecordNumber": 1234,\n "TimeStamp": "yyyy-mm-ddThh:mm:ss",\n "RequestCode": "AAAA"\n}'
)


@pytest.mark.parametrize(
    ("pattern", "body", "expected"),
    [
        ('{ "body" : { "RequestCode" : [ "BBBB" ] } }', GUIDE_BODY, False),
        ('{ "body" : { "RequestCode" : [ "BBBB" ] } }', GUIDE_BODY.replace("AAAA", "BBBB"), True),
        ('{ "body" : { "RecordNumber" : [ { "numeric": [ ">", 9999 ] } ] } }', GUIDE_BODY, False),
        (
            '{ "body" : { "RecordNumber" : [ { "numeric": [ ">", 9999 ] } ] } }',
            GUIDE_BODY.replace("1234", "12345"),
            True,
        ),
    ],
)
def test_sqs_guide_examples(pattern: str, body: str, expected: bool) -> None:
    assert parse_filters([pattern]).matches_sqs(sqs_record(body)) is expected


SAMPLE_MESSAGE = {
    "region": "us-east-1",
    "sourceIPAddress": "10.0.0.11",
    "rating": 4,
    "fileName": "metadata.txt",
    "address": {"country": "USA", "street": "56 Fox Dr", "city": "Boston", "state": "MA"},
}


@pytest.mark.parametrize(
    "patterns",
    [  # AWS's sample lambda-esm-sqs-filters-sam: its test message passes every mapping.
        ['{"body":{"region":[{"prefix":"us-"}]}}'],
        ['{"body":{"address":{"state":[{"anything-but":"GA"}]}}}'],
        ['{"body":{"sourceIPAddress":[{ "cidr":"10.0.0.0/24"}]}}'],
        [
            '{"body":{"rating":[{"numeric":[">",0,"<=",5]}],'
            '"address":{"country":["USA"],"street":[{"exists":true}]}}}'
        ],
        [
            '{"body":{"rating":[4,5]}}',
            '{"body":{"fileName": ["metadata.txt"]}}',
            '{"body":{"address":{"country":["USA"],"street":[{"exists":true}]}}}',
        ],
    ],
)
def test_aws_sqs_sample_patterns(patterns: list[str]) -> None:
    filters = parse_filters(patterns, source="sqs")
    assert filters.matches_sqs(sqs_record(json.dumps(SAMPLE_MESSAGE)))
    assert not filters.matches_sqs(sqs_record(json.dumps({"rating": 0, "region": "eu-west-1"})))


GUIDE_DATA = {"RecordNumber": "0001", "TimeStamp": "yyyy-mm-ddThh:mm:ss", "RequestCode": "AAAA"}
ORDER = {"record": 12345, "order": {"type": "buy", "stock": "ANYCO", "quantity": 1000}}
LOS_ANGELES = '{ "partitionKey": [ "1" ], "data": { "Location": [ "Los Angeles" ] }}'
TEMPERATURE = '{ "data": { "Temperature": [ {"numeric": [ ">", 50, "<=", 60 ] } ] } }'


@pytest.mark.parametrize(
    ("pattern", "data", "partition_key", "expected"),
    [  # Lambda's guide (invocation-eventfiltering, with-kinesis-filtering), then formats.
        (LOS_ANGELES, {"Location": "Los Angeles"}, "1", True),
        (LOS_ANGELES, {"Location": "Los Angeles"}, "2", False),
        (LOS_ANGELES, {"Location": "Seattle"}, "1", False),
        (TEMPERATURE, {"Temperature": 60}, "1", True),
        (TEMPERATURE, {"Temperature": 50}, "1", False),
        ('{ "data" : { "order" : { "type" : [ "buy" ] } } }', ORDER, "1", True),
        ('{ "data" : { "order" : { "type" : [ "sell" ] } } }', ORDER, "1", False),
        ('{"data": {"RequestCode": ["AAAA"]}}', GUIDE_DATA, "1", True),
        ('{"data": {"a": [{"exists": false}]}}', b"not json", "1", False),
        ('{"data": {"a": [{"exists": false}]}}', b"42", "1", False),
        ('{"data": {"a": [{"exists": false}]}}', b"\xff\xfe", "1", False),
        ('{"partitionKey": ["1"]}', b"not json", "1", True),
        ('{"partitionKey": [{"prefix": "shard-"}]}', b"not json", "1", False),
        ('{"approximateArrivalTimestamp": [{"numeric": [">", 1545084650]}]}', {}, "1", True),
        ('{"approximateArrivalTimestamp": [1545084650.987]}', {}, "1", True),
        ('{"eventSource": ["aws:kinesis"]}', {}, "1", False),  # outside the kinesis object
    ],
)
def test_kinesis(pattern: str, data: object, partition_key: str, expected: bool) -> None:
    filters = parse_filters([pattern], source="kinesis")
    assert filters.matches_kinesis(kinesis_record(data, partition_key)) is expected


def test_kinesis_guide_record_and_bad_base64() -> None:
    record = kinesis_record({})
    record["kinesis"]["data"] = (
        "eyJSZWNvcmROdW1iZXIiOiAiMDAwMSIsICJUaW1lU3RhbXAiOiAieXl5eS1tbS1kZFRoaDptbTpzcyIsICJSZX"
        "F1ZXN0Q29kZSI6ICJBQUFBIn0="
    )
    assert parse_filters(['{"data": {"RecordNumber": ["0001"]}}']).matches_kinesis(record)
    record["kinesis"]["data"] = "not base64!"
    assert not parse_filters(['{"data": {"RecordNumber": ["0001"]}}']).matches_kinesis(record)
    assert parse_filters(['{"partitionKey": ["1"]}']).matches_kinesis(record)
    # A plain pattern on data is refused for streams; unchecked, it matches nothing.
    assert not parse_filters(['{"data": [{"exists": true}]}']).matches_kinesis(record)
    assert not parse_filters(['{"partitionKey": ["1"]}']).matches_kinesis({"eventSource": "x"})


def test_no_filters_match_everything_and_filters_are_ored() -> None:
    for empty in (parse_filters([]), Filters()):
        assert empty.matches_sqs(sqs_record("x")) and empty.matches_kinesis({})
    filters = parse_filters(['{"body": ["a"]}', '{"body": ["b"]}'])
    assert filters.matches_sqs(sqs_record("b")) and not filters.matches_sqs(sqs_record("c"))
    # The console example '{ "a" : [ 1, 2 ] }': fields of the record itself match as they are.
    console = parse_filters(['{ "a" : [ 1, 2 ] }'])
    assert console.matches_sqs(sqs_record("x", a=2)) and not console.matches_sqs(sqs_record("x"))


def test_duplicate_keys_keep_the_last_value() -> None:
    """The guide's "Duplicate keys" example: Lambda reads only the last duplicateKey."""
    pattern = (
        '{"attributes": {"SentTimestamp": ["1545082649183"]}, "body": {"duplicateKey": ["hello"],'
        ' "uniqueKey": ["test123"], "duplicateKey": ["world"]}}'
    )
    filters = parse_filters([pattern])
    world = sqs_record(json.dumps({"duplicateKey": "world", "uniqueKey": "test123"}))
    hello = sqs_record(json.dumps({"duplicateKey": "hello", "uniqueKey": "test123"}))
    assert filters.matches_sqs(world) and not filters.matches_sqs(hello)


def test_payload_is_decoded_once_per_call(monkeypatch: pytest.MonkeyPatch) -> None:
    filters = parse_filters([json.dumps({"body": {"k": [n]}}) for n in range(5)])
    no_body = parse_filters(['{"attributes": {"ApproximateReceiveCount": ["1"]}}'])
    calls: list[str] = []
    real = event_filter_rules.loads

    def counting(text: str) -> Any:
        calls.append(text)
        return real(text)

    monkeypatch.setattr(event_filter_rules, "loads", counting)
    assert filters.matches_sqs(sqs_record('{"k": 4}'))
    assert not filters.matches_sqs(sqs_record('{"k": 9}'))
    assert no_body.matches_sqs(sqs_record('{"k": 4}'))
    assert calls == ['{"k": 4}', '{"k": 9}']


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("{", "the pattern is not valid JSON"),
        ('{"a": [NaN]}', "the pattern is not valid JSON"),
        ("[1]", "a filter pattern must be a JSON object"),
        ("{}", "empty objects are not allowed"),
        ('{"a": {}}', "at 'a': empty objects are not allowed"),
        ('{"a": "x"}', "at 'a': a field needs an array of match values or an object"),
        ('{"a": []}', "at 'a': empty arrays are not allowed"),
        ('{"a": [["x"]]}', "match values must be strings, numbers, booleans or null"),
        ('{"a": [{"prefix": "x", "suffix": "y"}]}', "a match expression needs exactly one"),
        ('{"a": [{"like": "x"}]}', "unrecognized match type 'like'"),
        ('{"a": [{"prefix": 1}]}', "prefix needs a string or an equals-ignore-case object"),
        ('{"a": [{"suffix": {"equals-ignore-case": 1}}]}', "suffix equals-ignore-case needs a"),
        ('{"a": [{"equals-ignore-case": 5}]}', "equals-ignore-case needs a string"),
        ('{"a": [{"wildcard": "*.png"}]}', "wildcard matching is not supported by Lambda"),
        ('{"a": [{"anything-but": {"suffix": "x"}}]}', "anything-but with suffix is not supp"),
        ('{"a": [{"anything-but": {"prefix": 1}}]}', "anything-but prefix needs a string"),
        ('{"a": [{"anything-but": []}]}', "anything-but needs at least one value"),
        ('{"a": [{"anything-but": [true]}]}', "anything-but values must be all strings or all"),
        ('{"a": [{"anything-but": ["x", 1]}]}', "anything-but values must be all strings or"),
        ('{"a": [{"numeric": [">"]}]}', "numeric needs [operator, number] pairs"),
        ('{"a": [{"numeric": 5}]}', "numeric needs [operator, number] pairs"),
        ('{"a": [{"numeric": ["!=", 1]}]}', "unknown numeric operator '!='"),
        ('{"a": [{"numeric": [">", "1"]}]}', "numeric operands must be finite numbers"),
        ('{"a": [{"numeric": [">", 1e999]}]}', "numeric operands must be finite numbers"),
        ('{"a": [{"numeric": ["=", 1, "<", 2]}]}', "numeric '=' cannot be combined"),
        ('{"a": [{"numeric": [">", 1, ">=", 2]}]}', "numeric allows one lower bound"),
        ('{"a": [{"numeric": ["<", 1, "<=", 2]}]}', "numeric allows one upper bound"),
        ('{"a": [{"numeric": [">", 5, "<", 1]}]}', "numeric lower bound must be below its upper"),
        ('{"a": [{"exists": "yes"}]}', "exists needs true or false"),
        ('{"a": [{"cidr": "10.0.0.0/33"}]}', "cidr '10.0.0.0/33' is not an IP network"),
        ('{"$or": [{"a": ["x"]}]}', "$or needs an array of at least two pattern objects"),
        ('{"$or": [{"a": ["x"]}, "b"]}', "at '$or[1]': each $or branch must be a pattern object"),
        ('{"body": {"x": {"y": [{"exists": 1}]}}}', "at 'body.x.y': exists needs true or false"),
    ],
)
def test_refused_patterns(pattern: str, reason: str) -> None:
    with pytest.raises(FilterError) as caught:
        parse_filters(['{"ok": ["x"]}', pattern])
    assert str(caught.value).startswith("Invalid filter pattern definition. Filter 1: ")
    assert reason in str(caught.value)
    assert caught.value.index == 1


@pytest.mark.parametrize(
    ("patterns", "options", "message", "index"),
    [
        (['{"a": ["x"]}'] * 6, {}, "6 filters exceed the limit of 5", None),
        ('{"a": ["x"]}', {}, "Filters must be a list of pattern strings", None),
        ([{"a": ["x"]}], {}, "Filter 0: the pattern must be a string, not dict", 0),
        (['{"a": ["' + "x" * 4086 + '"]}'], {}, "Filter 0: the pattern has 4097 characters", 0),
        (
            ['{"partitionKey": ["1"]}', '{"$or": [{"data": ["x"]}, {"partitionKey": ["2"]}]}'],
            {"source": "kinesis"},
            "Filter 1: the filter pattern for data properties must be in a valid JSON format",
            1,
        ),
    ],
)
def test_refused_criteria(patterns: Any, options: Any, message: str, index: int | None) -> None:
    with pytest.raises(FilterError, match=r"^Invalid filter pattern definition\.") as caught:
        parse_filters(patterns, **options)
    assert message in str(caught.value) and caught.value.index == index


def test_quota_and_source_options() -> None:
    assert len(parse_filters(['{"a": ["x"]}'] * 10, max_filters=10).patterns) == 10
    assert parse_filters(['{"a": ["' + "x" * 4085 + '"]}']).patterns  # 4096 characters: allowed
    assert parse_filters(['{"data": ["x"]}'], source="sqs").patterns == ('{"data": ["x"]}',)
    for options in ({"max_filters": 11}, {"max_filters": 0}, {"source": "dynamodb"}):
        with pytest.raises(ValueError, match=r"max_filters|source"):
            parse_filters([], **options)
