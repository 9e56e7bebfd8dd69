"""Event source mappings: records, response rules, redrive and what the pollers run (pure)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from klambda.api import event_sources
from klambda.api import world as world_mod
from klambda.api.objects import parse_object
from klambda.api.routes import EventSourceRoute
from klambda.api.schema import ValidationError
from klambda.gateway.event_sources import Message, failed_items, sqs_event, to_dead_letter

ROUTE = EventSourceRoute(
    "default", "m", "fn", None, "klambda:queue:default:q", "arn:aws:sqs:us-east-1:1:q"
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
    "spec": {"functionName": "fn", "queue": {"name": "q"}},
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


def test_pollers_run_enabled_mappings_of_existing_functions() -> None:
    world = world_mod.World.of(
        [parse_object(FN)],
        [],
        [],
        [],
        event_sources=[
            esm(),
            esm(enabled=False),
            esm(functionName="nobody"),
            esm(qualifier="live"),
        ],
    )
    sources = event_sources.event_sources(world, "eu-west-1")
    (route,) = [s.route for s in sources if s.route is not None]
    assert route.queue_key == "klambda:queue:default:q"
    assert route.queue_arn.startswith("arn:aws:sqs:eu-west-1:")
    problems = [s.problem for s in sources]
    assert problems[2] == ("FunctionNotFound", 'Function "nobody" not found')
    assert problems[3] == ("QualifierNotFound", "fn has no version or alias 'live'")
    configs = [s.configuration for s in sources]
    assert [c["State"] for c in configs] == ["Enabled", "Disabled", "Enabled", "Enabled"]
    assert configs[2]["LastProcessingResult"] == 'PROBLEM: Function "nobody" not found'
    assert configs[0]["EventSourceArn"] == route.queue_arn


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"batchSize": 11}, "a batchSize over 10 needs maximumBatchingWindowInSeconds"),
        ({"queue": {"name": "q", "maxReceiveCount": 3}}, "go together"),
        ({"queue": {"name": "q", "maxReceiveCount": 3, "deadLetterQueue": "q"}}, "must differ"),
        ({"queue": {"name": "bad name"}}, "spec.queue.name"),
    ],
)
def test_invalid_mappings(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        esm(**spec)
    assert message in json.dumps([str(e) for e in info.value.errors])


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
    world = world_mod.World.of(
        [parse_object(fn)],
        [],
        [],
        [],
        event_sources=[esm(queue={"name": "q", "visibilityTimeout": visibility})],
    )
    (source,) = event_sources.event_sources(world, "us-east-1")
    if problem is None:
        assert source.problem is None and source.route is not None
    else:
        assert source.problem == ("QueueVisibilityTimeoutTooShort", problem)
        assert source.route is None  # nothing is polled
