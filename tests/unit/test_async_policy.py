"""Lambda's rules for asynchronous events, as tables: retries, age, where failures go, loops."""

from __future__ import annotations

import json

import pytest

from klambda.api.async_settings import AsyncSettings, Target
from klambda.gateway.async_policy import (
    Condition,
    Drop,
    Finish,
    Response,
    Result,
    Retry,
    after_invoke,
    backoff,
    before_invoke,
    dead_letter_attributes,
    failure_target,
    lineage_of,
    record,
    retry_delay,
    trace_header,
)

DEFAULT = AsyncSettings()
NO_RETRIES = AsyncSettings(maximum_retry_attempts=0)
SHORT = AsyncSettings(maximum_event_age=60)
BASE = 60.0


@pytest.mark.parametrize(
    ("settings", "result", "invocations", "throttles", "age", "expected"),
    [
        (DEFAULT, Result.SUCCESS, 1, 0, 0, Finish(Condition.SUCCESS)),
        # function errors: twice retried, a minute then two
        (DEFAULT, Result.FUNCTION_ERROR, 1, 0, 0, Retry(60.0, counts=True)),
        (DEFAULT, Result.FUNCTION_ERROR, 2, 0, 60, Retry(120.0, counts=True)),
        (DEFAULT, Result.FUNCTION_ERROR, 3, 0, 180, Finish(Condition.RETRIES_EXHAUSTED)),
        (NO_RETRIES, Result.FUNCTION_ERROR, 1, 0, 0, Finish(Condition.RETRIES_EXHAUSTED)),
        # a retry that would come after the age limit does not happen
        (SHORT, Result.FUNCTION_ERROR, 1, 0, 10, Finish(Condition.EVENT_AGE_EXCEEDED)),
        # throttles and platform errors: backoff without using retry attempts
        (DEFAULT, Result.THROTTLED, 0, 0, 0, Retry(1.0, counts=False)),
        (DEFAULT, Result.THROTTLED, 0, 3, 10, Retry(8.0, counts=False)),
        (DEFAULT, Result.PLATFORM_ERROR, 2, 20, 3600, Retry(300.0, counts=False)),
        (SHORT, Result.THROTTLED, 0, 6, 40, Finish(Condition.EVENT_AGE_EXCEEDED)),
        (DEFAULT, Result.GONE, 0, 0, 0, Drop("the function no longer exists")),
    ],
)
def test_after_an_attempt(
    settings: AsyncSettings,
    result: Result,
    invocations: int,
    throttles: int,
    age: float,
    expected: object,
) -> None:
    assert after_invoke(settings, result, invocations, throttles, age, BASE) == expected


def test_reserved_concurrency_zero_fails_at_once() -> None:
    got = after_invoke(DEFAULT, Result.THROTTLED, 0, 0, 0, BASE, reserved_zero=True)
    assert got == Finish(Condition.RETRIES_EXHAUSTED)


@pytest.mark.parametrize(
    ("settings", "age", "lineage", "expected"),
    [
        (DEFAULT, 0, 0, None),
        (DEFAULT, 21601, 0, Finish(Condition.EVENT_AGE_EXCEEDED)),
        (SHORT, 61, 0, Finish(Condition.EVENT_AGE_EXCEEDED)),
        (DEFAULT, 0, 15, None),
        (DEFAULT, 0, 16, Finish(Condition.RECURSIVE_LOOP)),
        (AsyncSettings(recursive_loop="Allow"), 0, 40, None),
    ],
)
def test_before_an_attempt(
    settings: AsyncSettings, age: float, lineage: int, expected: Finish | None
) -> None:
    assert before_invoke(settings, age, lineage) == expected


def test_schedules() -> None:
    assert [backoff(n) for n in range(1, 12)] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    assert [retry_delay(n, 60) for n in (1, 2)] == [60, 120]
    assert [retry_delay(n, 0.5) for n in (1, 2)] == [0.5, 1.0]


QUEUE = Target("queue", "1", "failed", "default")
FN = Target("function", "1", "handler", "default")


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (DEFAULT, ("drop", None)),
        (AsyncSettings(dead_letter=QUEUE), ("dead-letter", QUEUE)),
        (AsyncSettings(on_failure=FN, dead_letter=QUEUE), ("destination", FN)),
    ],
)
def test_where_a_failed_event_goes(settings: AsyncSettings, expected: object) -> None:
    assert failure_target(settings) == expected


def test_the_record_has_lambdas_shape() -> None:
    response = Response(200, "3", "Unhandled", b'{"errorMessage": "boom"}')
    doc = record("req-1", "arn:fn:live", Condition.RETRIES_EXHAUSTED, 3, '{"a": 1}', response, 0)
    assert doc == {
        "version": "1.0",
        "timestamp": "1970-01-01T00:00:00.000Z",
        "requestContext": {
            "requestId": "req-1",
            "functionArn": "arn:fn:live",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": {"a": 1},
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "3",
            "functionError": "Unhandled",
        },
        "responsePayload": {"errorMessage": "boom"},
    }
    never_run = record("r", "arn", Condition.EVENT_AGE_EXCEEDED, 0, "not json", None, 0)
    assert "responseContext" not in never_run and never_run["requestPayload"] == "not json"
    json.dumps(doc)


def test_dead_letter_attributes() -> None:
    response = Response(200, "$LATEST", "Unhandled", b'{"errorMessage": "' + b"x" * 2000 + b'"}')
    got = dead_letter_attributes("req-1", Condition.RETRIES_EXHAUSTED, response)
    assert got["RequestID"] == {"dataType": "String", "stringValue": "req-1"}
    assert got["ErrorCode"] == {"dataType": "Number", "stringValue": "200"}
    assert got["ErrorMessage"]["stringValue"] == "x" * 1024


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1", None),
        ("Root=1-5759e988-bd862e3fe1be46a994272793;Lineage=a87bb23b:3", 3),
        ("Lineage=1:abc:0", 0),
        ("Lineage=x:99999999", None),  # not a count a loop of ours reaches
    ],
)
def test_lineage_in_trace_headers(header: str | None, expected: int | None) -> None:
    assert lineage_of(header) == expected


def test_the_trace_header_carries_the_lineage() -> None:
    header = trace_header("0f3c7b4e-8a2d-4c1e-9b5a-6d7e8f901234", 7)
    assert header.startswith("Root=1-") and lineage_of(header) == 7
