"""What becomes of an asynchronous event after each attempt: Lambda's rules, as pure functions.

- Function errors (unhandled or handled, timeouts, runtime exits) are retried up to
  ``maximumRetryAttempts`` times, the first after ``base`` seconds (Lambda: about a minute), the
  second after twice that.
- Throttles and platform errors are retried with exponential backoff (1 s doubling to 5 min)
  until the event's age limit, without using up retry attempts; with a reserved concurrency of 0
  nothing would ever run, so the event fails at once.
- An event older than ``maximumEventAgeInSeconds``, or one that has gone round
  ``MAX_LINEAGE`` times through klambda (with ``recursiveLoop: Terminate``), is not invoked.
- A failed event goes to the onFailure destination, else the dead-letter queue, else it is
  dropped with a log line and a metric; a successful one to the onSuccess destination.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from klambda.api.async_settings import AsyncSettings, Target

MAX_LINEAGE = 16
"""Hops after which an event is taken for a recursive loop (Lambda's limit)."""
BACKOFF_CAP = 300.0


class Result(enum.Enum):
    SUCCESS = "success"
    FUNCTION_ERROR = "function error"
    THROTTLED = "throttled"
    PLATFORM_ERROR = "platform error"
    """The invocation did not run or its outcome is unknown (5xx): not the function's fault."""
    GONE = "gone"
    """The function (or qualifier) no longer exists: nothing can run it."""


class Condition(enum.StrEnum):
    SUCCESS = "Success"
    RETRIES_EXHAUSTED = "RetriesExhausted"
    EVENT_AGE_EXCEEDED = "EventAgeExceeded"
    RECURSIVE_LOOP = "RecursiveInvocationException"


@dataclass(frozen=True)
class Retry:
    delay: float
    counts: bool
    """The retry uses one of the event's retry attempts (a function error)."""


@dataclass(frozen=True)
class Finish:
    condition: Condition


@dataclass(frozen=True)
class Drop:
    reason: str


Next = Retry | Finish | Drop


def retry_delay(invocations: int, base: float) -> float:
    """Seconds before retry number ``invocations`` after a function error: base, 2 x base."""
    return base * max(1, invocations)


def backoff(throttles: int) -> float:
    """Seconds before redelivering after throttle number ``throttles``: 1, 2, 4, ... 300."""
    return min(BACKOFF_CAP, float(2 ** max(0, throttles - 1)))


def before_invoke(settings: AsyncSettings, age: float, lineage: int) -> Finish | None:
    """Why an event is not invoked at all (None: invoke it)."""
    if age > settings.maximum_event_age:
        return Finish(Condition.EVENT_AGE_EXCEEDED)
    if lineage >= MAX_LINEAGE and settings.recursive_loop == "Terminate":
        return Finish(Condition.RECURSIVE_LOOP)
    return None


def after_invoke(
    settings: AsyncSettings,
    result: Result,
    invocations: int,
    throttles: int,
    age: float,
    base_delay: float,
    reserved_zero: bool = False,
) -> Next:
    """What follows an attempt. ``invocations``: times the function ran, this one included;
    ``throttles``: earlier attempts that did not run it; ``age``: seconds since intake."""
    if result is Result.SUCCESS:
        return Finish(Condition.SUCCESS)
    if result is Result.GONE:
        return Drop("the function no longer exists")
    if result is Result.FUNCTION_ERROR:
        if invocations > settings.maximum_retry_attempts:
            return Finish(Condition.RETRIES_EXHAUSTED)
        delay = retry_delay(invocations, base_delay)
        if age + delay > settings.maximum_event_age:
            return Finish(Condition.EVENT_AGE_EXCEEDED)
        return Retry(delay, counts=True)
    if reserved_zero:  # throttled for good: Lambda sends it on at once
        return Finish(Condition.RETRIES_EXHAUSTED)
    delay = backoff(throttles + 1)
    if age + delay > settings.maximum_event_age:
        return Finish(Condition.EVENT_AGE_EXCEEDED)
    return Retry(delay, counts=False)


def failure_target(settings: AsyncSettings) -> tuple[str, Target | None]:
    """Where a failed event goes: ("destination", t), ("dead-letter", t) or ("drop", None)."""
    if settings.on_failure is not None:
        return "destination", settings.on_failure
    if settings.dead_letter is not None:
        return "dead-letter", settings.dead_letter
    return "drop", None


@dataclass(frozen=True)
class Response:
    """What the last invocation answered, for the record."""

    status_code: int
    executed_version: str
    function_error: str | None
    payload: bytes


def record(
    request_id: str,
    function_arn: str,
    condition: Condition,
    invocations: int,
    payload: str,
    response: Response | None,
    now: float,
) -> dict[str, Any]:
    """A destination record, in Lambda's shape (no response parts for an event never run)."""
    out: dict[str, Any] = {
        "version": "1.0",
        "timestamp": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
        "requestContext": {
            "requestId": request_id,
            "functionArn": function_arn,
            "condition": str(condition),
            "approximateInvokeCount": invocations,
        },
        "requestPayload": _json_or_text(payload),
    }
    if response is not None:
        context: dict[str, Any] = {
            "statusCode": response.status_code,
            "executedVersion": response.executed_version,
        }
        if response.function_error:
            context["functionError"] = response.function_error
        out["responseContext"] = context
        out["responsePayload"] = _json_or_text(response.payload.decode(errors="replace"))
    return out


def dead_letter_attributes(
    request_id: str, condition: Condition, response: Response | None
) -> dict[str, dict[str, str]]:
    """The message attributes Lambda sets on a dead-letter queue message."""
    if response is not None and response.function_error:
        code, message = str(response.status_code), _error_message(response.payload)
    else:
        code, message = "200" if response else "429", str(condition)
    return {
        "RequestID": {"dataType": "String", "stringValue": request_id},
        "ErrorCode": {"dataType": "Number", "stringValue": code},
        "ErrorMessage": {"dataType": "String", "stringValue": message[:1024]},
    }


def _error_message(payload: bytes) -> str:
    try:
        doc = json.loads(payload)
    except ValueError:
        return payload.decode(errors="replace")
    if isinstance(doc, dict) and "errorMessage" in doc:
        return str(doc["errorMessage"])
    return payload.decode(errors="replace")


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def trace_header(request_id: str, lineage: int) -> str:
    """The X-Ray trace header a function gets (``_X_AMZN_TRACE_ID``), carrying how many hops
    through klambda led to this invocation, so that the function's own calls pass it on."""
    digest = request_id.replace("-", "")[:32].ljust(32, "0")
    return f"Root=1-{digest[:8]}-{digest[8:32]};Sampled=0;Lineage={digest[:8]}:{lineage}"


def lineage_of(header: str | None) -> int | None:
    """The hop count of an ``X-Amzn-Trace-Id`` header (None: it carries none)."""
    for part in (header or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == "Lineage":
            count = value.rpartition(":")[2]
            if count.isdigit() and len(count) <= 6:
                return int(count)
    return None
