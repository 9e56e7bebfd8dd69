"""Event source mappings: records, response rules, redrive and what the pollers run (pure)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from klambda.api import event_sources
from klambda.api import world as world_mod
from klambda.api.objects import parse_object
from klambda.api.routes import EventSourceRoute, QueueRoute
from klambda.api.schema import ValidationError
from klambda.gateway.sqs_records import (
    Message,
    attribute,
    failed_items,
    fifo_kept,
    md5_of_attributes,
    sqs_event,
    sqs_event_json,
    to_dead_letter,
)

ROUTE = EventSourceRoute(
    "default", "m", "fn", None, QueueRoute("klambda:queue:default:q", "arn:aws:sqs:us-east-1:1:q")
)
IDS = ["1-0", "2-0"]


def test_records_have_sqs_shape() -> None:
    event = sqs_event(ROUTE, [Message("1700000000000-0", "hello", 2, 1700000000500)])
    (record,) = event["Records"]
    assert record["messageId"] == record["receiptHandle"] == "1700000000000-0"
    assert record["body"] == "hello"
    assert record["attributes"]["ApproximateReceiveCount"] == "2"
    assert record["attributes"]["SentTimestamp"] == "1700000000000"
    assert record["attributes"]["ApproximateFirstReceiveTimestamp"] == "1700000000500"
    assert record["md5OfBody"] == "5d41402abc4b2a76b9719d911017c592"
    assert (record["eventSource"], record["eventSourceARN"], record["awsRegion"]) == (
        "aws:sqs",
        "arn:aws:sqs:us-east-1:1:q",
        "us-east-1",
    )


@pytest.mark.parametrize(
    ("response", "keep"),
    [
        (b"", set()),
        (b"null", set()),
        (b"{}", set()),
        (b'{"batchItemFailures": []}', set()),
        (b'{"batchItemFailures": null}', set()),
        (b'{"batchItemFailures": [{"itemIdentifier": "2-0"}]}', {"2-0"}),
        (b'{"batchItemFailures": [{"itemIdentifier": "9-9"}]}', set(IDS)),  # unknown id
        (b'{"batchItemFailures": [{"itemIdentifier": ""}]}', set(IDS)),
        (b'{"batchItemFailures": [{"id": "1-0"}]}', set(IDS)),  # wrong key
        (b'{"batchItemFailures": "1-0"}', set(IDS)),
        (b"not json", set(IDS)),
        (b"[1]", set(IDS)),
    ],
)
def test_batch_item_failures_follow_lambdas_rules(response: bytes, keep: set[str]) -> None:
    assert failed_items(response, IDS) == keep


def test_redrive_after_max_receive_count() -> None:
    messages = [Message("1-0", "a", 3, 0), Message("2-0", "b", 4, 0)]
    assert to_dead_letter(messages, 3) == [messages[1]]
    assert to_dead_letter(messages, None) == []


ESM: dict[str, Any] = {
    "apiVersion": "klambda.io/v1alpha1",
    "kind": "EventSourceMapping",
    "metadata": {"name": "m"},
    "spec": {"functionName": "fn", "source": {"queue": "q"}},
}
FN: dict[str, Any] = {
    "apiVersion": "klambda.io/v1alpha1",
    "kind": "Function",
    "metadata": {"name": "fn"},
    "spec": {"runtime": "python3.11", "handler": "app.h", "code": {"inline": {"app.py": ""}}},
}


def esm(**spec: Any) -> Any:
    doc = copy.deepcopy(ESM)
    doc["spec"].update(spec)
    return parse_object(doc)


def source(kind: str, name: str, **spec: Any) -> Any:
    doc = {"apiVersion": "klambda.io/v1alpha1", "kind": kind, "metadata": {"name": name}}
    return parse_object(doc | {"spec": spec})


def world(*mappings: Any, fn: dict[str, Any] = FN, sources: Any = None) -> world_mod.World:
    return world_mod.World.of(
        [parse_object(fn)],
        [],
        [],
        [],
        event_sources=list(mappings),
        sources=[source("Queue", "q")] if sources is None else sources,
    )


def test_pollers_run_enabled_mappings_of_existing_functions() -> None:
    w = world(esm(), esm(enabled=False), esm(functionName="nobody"), esm(qualifier="live"))
    sources = event_sources.event_sources(w, "eu-west-1")
    (route,) = [s.route for s in sources if s.route is not None]
    assert route.queue is not None and route.stream is None
    assert route.queue.key == "klambda:queue:default:q"
    assert route.source_arn.startswith("arn:aws:sqs:eu-west-1:")
    assert route.batch_size == 10  # a queue's default
    problems = [s.problem for s in sources]
    assert problems[2] == ("FunctionNotFound", 'Function "nobody" not found')
    assert problems[3] == ("QualifierNotFound", "fn has no version or alias 'live'")
    configs = [s.configuration for s in sources]
    assert [c["State"] for c in configs] == ["Enabled", "Disabled", "Enabled", "Enabled"]
    assert configs[2]["LastProcessingResult"] == 'PROBLEM: Function "nobody" not found'
    assert configs[0]["EventSourceArn"] == route.source_arn


def test_the_queue_attributes_come_from_the_queue() -> None:
    dlq = source("Queue", "dlq")
    q = source(
        "Queue",
        "q",
        visibilityTimeout=90,
        redrivePolicy={"deadLetterQueue": "dlq", "maxReceiveCount": 4},
    )
    (found,) = event_sources.event_sources(world(esm(), sources=[q, dlq]), "us-east-1")
    assert found.route is not None and found.route.queue is not None
    assert found.route.queue.visibility_timeout == 90.0
    assert found.route.queue.max_receive_count == 4
    assert found.route.queue.dead_letter_key == "klambda:queue:default:dlq"


def test_a_stream_mapping_gets_the_streams_shards_and_its_own_settings() -> None:
    m = esm(
        source={"stream": "s"},
        startingPosition="TRIM_HORIZON",
        parallelizationFactor=3,
        bisectBatchOnFunctionError=True,
        maximumRetryAttempts=2,
        destinationConfig={"onFailure": {"queue": "failed"}},
    )
    w = world(m, sources=[source("Stream", "s", shards=4)])
    (found,) = event_sources.event_sources(w, "us-east-1")
    assert found.problem is None and found.route is not None
    route = found.route
    stream = route.stream
    assert stream is not None and route.queue is None
    assert (stream.key, stream.shards, stream.parallelization_factor) == (
        "klambda:stream:default:s",
        4,
        3,
    )
    assert stream.bisect and stream.maximum_retry_attempts == 2
    assert stream.on_failure is not None and stream.on_failure.name == "failed"
    assert route.batch_size == 100  # a stream's default
    assert found.configuration["EventSourceArn"].startswith("arn:aws:kinesis:us-east-1:")
    assert found.configuration["EventSourceArn"].endswith(":stream/s")
    assert found.configuration["StartingPosition"] == "TRIM_HORIZON"


@pytest.mark.parametrize(
    ("mapping", "sources", "problem"),
    [
        ({}, [], ("QueueNotFound", 'Queue "q" not found')),
        (
            {"source": {"stream": "s"}, "startingPosition": "LATEST"},
            [],
            ("StreamNotFound", 'Stream "s" not found'),
        ),
        (
            {"batchSize": 11, "maximumBatchingWindowInSeconds": 1},
            [("Queue", "q", {"fifo": True})],
            ("InvalidSource", "Batch size must be between 1 and 10 for a FIFO queue (queue q)"),
        ),
        (
            {"maximumBatchingWindowInSeconds": 1},
            [("Queue", "q", {"fifo": True})],
            ("InvalidSource", "Batching window is not supported for FIFO queues (queue q)"),
        ),
        ({"batchSize": 10}, [("Queue", "q", {"fifo": True})], None),
        (
            {
                "source": {"stream": "s"},
                "startingPosition": "LATEST",
                "tumblingWindowInSeconds": 60,
            },
            [("Stream", "s", {})],
            None,
        ),
        (
            {
                "source": {"stream": "s"},
                "startingPosition": "LATEST",
                "tumblingWindowInSeconds": 60,
                "parallelizationFactor": 2,
            },
            [("Stream", "s", {})],
            (
                "InvalidSource",
                "a tumbling window keeps one state per shard: it needs parallelizationFactor 1",
            ),
        ),
    ],
)
def test_a_mapping_needs_a_source_that_fits(
    mapping: dict[str, Any], sources: list[Any], problem: tuple[str, str] | None
) -> None:
    objects = [source(kind, name, **spec) for kind, name, spec in sources]
    (found,) = event_sources.event_sources(world(esm(**mapping), sources=objects), "us-east-1")
    assert found.problem == problem
    assert (found.route is None) == (problem is not None)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"batchSize": 11}, "a queue's batchSize over 10 needs maximumBatchingWindowInSeconds"),
        ({"source": {"queue": "bad name"}}, "spec.source.queue"),
        ({"source": {"queue": "Upper"}}, "spec.source.queue"),
        ({"source": {}}, "exactly one of queue or stream"),
        ({"source": {"queue": "q", "stream": "s"}}, "exactly one of queue or stream"),
        ({"queue": {"name": "q"}}, "spec.queue"),  # the old inline form: an unknown field
        ({"startingPosition": "LATEST"}, "is a stream setting"),
        ({"parallelizationFactor": 2}, "is a stream setting"),
        ({"source": {"stream": "s"}}, "needs startingPosition"),
        (
            {"source": {"stream": "s"}, "startingPosition": "AT_TIMESTAMP"},
            "needs startingPositionTimestamp",
        ),
        (
            {
                "source": {"stream": "s"},
                "startingPosition": "AT_TIMESTAMP",
                "startingPositionTimestamp": "yesterday",
            },
            "must be an RFC 3339 time",
        ),
        (
            {"source": {"stream": "s"}, "startingPosition": "LATEST", "scalingConfig": {}},
            "scalingConfig is for queues",
        ),
        (
            {
                "source": {"stream": "s"},
                "startingPosition": "LATEST",
                "maximumRecordAgeInSeconds": 30,
            },
            "must be -1 or at least 60",
        ),
        ({"filterCriteria": {"filters": [{"pattern": "{}"}] * 6}}, "spec.filterCriteria"),
        (
            {"filterCriteria": {"filters": [{"pattern": "{}"}, {"pattern": "not json"}]}},
            "spec.filterCriteria.filters[1].pattern: Invalid filter pattern definition.",
        ),
        (
            {"filterCriteria": {"filters": [{"pattern": '{"body": {"n": [{"numeric": 5}]}}'}]}},
            "spec.filterCriteria.filters[0].pattern",
        ),
    ],
)
def test_invalid_mappings(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        esm(**spec)
    assert message in json.dumps([str(e) for e in info.value.errors])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"redrivePolicy": {"maxReceiveCount": 3}}, "spec.redrivePolicy.deadLetterQueue"),
        ({"contentBasedDeduplication": True}, "contentBasedDeduplication needs fifo: true"),
        ({"visibilityTimeout": 43201}, "spec.visibilityTimeout"),
        ({"messageRetentionPeriod": 59}, "spec.messageRetentionPeriod"),
        ({"delaySeconds": 901}, "spec.delaySeconds"),
    ],
)
def test_invalid_queues(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        source("Queue", "q", **spec)
    assert message in json.dumps([str(e) for e in info.value.errors])


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("orders.fifo", None),  # a DNS subdomain, as Kubernetes names custom resources
        ("Orders", "must consist of lower case alphanumeric characters, '-' or '.'"),
        ("q" * 81, "queue and stream names are at most 80 characters"),
        ("-q", "must start and end with an alphanumeric character"),
    ],
)
def test_queue_and_stream_names(name: str, message: str | None) -> None:
    for kind in ("Queue", "Stream"):
        if message is None:
            assert source(kind, name).name == name
            continue
        with pytest.raises(ValidationError) as info:
            source(kind, name)
        assert message in str(info.value)


@pytest.mark.parametrize(
    ("queue", "dead_letter", "problem"),
    [
        ({}, None, None),
        ({"redrivePolicy": {"deadLetterQueue": "d", "maxReceiveCount": 2}}, {}, None),
        (
            {"redrivePolicy": {"deadLetterQueue": "d", "maxReceiveCount": 2}},
            None,
            ("QueueNotFound", 'dead-letter queue "d" not found'),
        ),
        (
            {"redrivePolicy": {"deadLetterQueue": "q", "maxReceiveCount": 2}},
            None,
            ("InvalidSource", "a queue cannot be its own dead-letter queue"),
        ),
        (
            {"fifo": True, "redrivePolicy": {"deadLetterQueue": "d", "maxReceiveCount": 2}},
            {},
            (
                "InvalidSource",
                'the dead-letter queue of a FIFO queue must be a FIFO queue ("d" is not)',
            ),
        ),
    ],
)
def test_queue_problems(
    queue: dict[str, Any], dead_letter: dict[str, Any] | None, problem: Any
) -> None:
    dlq = source("Queue", "d", **dead_letter) if dead_letter is not None else None
    assert event_sources.queue_problem(source("Queue", "q", **queue), dlq) == problem


@pytest.mark.parametrize(
    ("visibility", "timeout", "problem"),
    [
        (30, 3, None),
        (30, 30, None),  # equal is allowed, as Lambda allows it
        (
            30,
            60,
            "Queue visibility timeout: 30 seconds is less than Function timeout: 60 seconds",
        ),
    ],
)
def test_visibility_timeout_must_cover_the_function_timeout(
    visibility: int, timeout: int, problem: str | None
) -> None:
    """Lambda refuses such a mapping: a message still being processed would become visible
    again, be delivered twice, or reach the dead-letter queue although it succeeded."""
    fn = copy.deepcopy(FN)
    fn["spec"]["timeout"] = timeout
    w = world(esm(), fn=fn, sources=[source("Queue", "q", visibilityTimeout=visibility)])
    (found,) = event_sources.event_sources(w, "us-east-1")
    if problem is None:
        assert found.problem is None and found.route is not None
    else:
        assert found.problem == ("QueueVisibilityTimeoutTooShort", problem)
        assert found.route is None  # nothing is polled


@pytest.mark.parametrize(
    ("attributes", "md5"),
    [  # published values (AWS's SDK tests and LocalStack's)
        (
            {"SellerName": {"dataType": "String", "stringValue": "Example Store"}},
            "cd28f3b68aeee4b2eac9c66f2f694b58",
        ),
        (
            {"timestamp": {"dataType": "Number", "stringValue": "1493147359900"}},
            "235c5c510d26fb653d073faed50ae77c",
        ),
    ],
)
def test_md5_of_message_attributes_is_sqss(attributes: dict[str, Any], md5: str) -> None:
    assert md5_of_attributes(attributes) == md5
    (record,) = sqs_event(ROUTE, [Message("1-0", "b", 1, 0, attributes)])["Records"]
    assert record["md5OfMessageAttributes"] == md5 and record["messageAttributes"] == attributes


def test_no_attributes_no_md5_of_them() -> None:
    (record,) = sqs_event(ROUTE, [Message("1-0", "b", 1, 0)])["Records"]
    assert "md5OfMessageAttributes" not in record and record["messageAttributes"] == {}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("color=blue", ("color", {"stringValue": "blue", "dataType": "String"})),
        ("n:Number=5", ("n", {"stringValue": "5", "dataType": "Number"})),
        ("raw:Binary=aGk=", ("raw", {"binaryValue": "aGk=", "dataType": "Binary"})),
        ("a=b=c", ("a", {"stringValue": "b=c", "dataType": "String"})),
    ],
)
def test_attributes_from_the_command_line(spec: str, expected: tuple[str, Any]) -> None:
    name, value = attribute(spec)
    assert (name, {k: v for k, v in value.items() if not k.endswith("ListValues")}) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("novalue", "expected NAME=VALUE"),
        ("n:Number=five", "is not a number"),
        ("x:Blob=1", "String, Number or Binary"),
        ("b:Binary=%%%", "base64"),
    ],
)
def test_bad_attributes(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        attribute(spec)


def test_fifo_records_carry_group_deduplication_and_sequence() -> None:
    m = Message("1700000000000-3", "b", 1, 0, group="g1", deduplication_id="d1")
    (record,) = sqs_event(ROUTE, [m])["Records"]
    assert record["attributes"]["MessageGroupId"] == "g1"
    assert record["attributes"]["MessageDeduplicationId"] == "d1"
    assert record["attributes"]["SequenceNumber"] == "17000000000000000003"


def test_a_fifo_groups_messages_after_a_failure_stay_too() -> None:
    """A function that reports only its first failure: the rest of that group stays (deleting
    them would let them overtake it); other groups go on."""
    batch = [Message(f"{i}-0", "", 1, 0, group=g) for i, g in enumerate("aabab")]
    assert fifo_kept(batch, {"1-0"}) == {"1-0", "3-0"}
    assert fifo_kept(batch, set()) == set()


@given(
    body=st.text(max_size=60),
    group=st.text(max_size=8),
    attributes=st.dictionaries(
        st.text(min_size=1, max_size=8),
        st.fixed_dictionaries({"stringValue": st.text(max_size=8), "dataType": st.just("String")}),
        max_size=2,
    ),
    ms=st.integers(0, 2**45),
)
def test_the_fast_batch_text_is_the_batch_as_json(
    body: str, group: str, attributes: dict[str, Any], ms: int
) -> None:
    """The poller writes a batch as text; it must be the same event."""
    messages = [
        Message(f"{ms}-0", body, 1, ms + 5, attributes, 0, group, "d" if group else ""),
        Message(f"{ms}-1", body[::-1], 3, ms + 9),
    ]
    assert json.loads(sqs_event_json(ROUTE, messages)) == sqs_event(ROUTE, messages)
