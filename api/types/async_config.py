"""Asynchronous invocation settings: retries, event age, destinations, the dead-letter queue.

Lambda's FunctionEventInvokeConfig (per function, version or alias) and DeadLetterConfig,
with klambda's own targets: a function, a queue (the Redis queues event sources read) or a
stream. A Version or Alias's ``asyncConfig`` replaces the Function's for invocations through it.
"""

from __future__ import annotations

from dataclasses import dataclass

from klambda.api.schema import prop
from klambda.api.types.common import Problems
from klambda.api.types.queue import QUEUE_NAME_MAX, QUEUE_NAME_PATTERN

MAX_RETRY_ATTEMPTS = 2
MAX_EVENT_AGE = 21600
DESTINATION_FUNCTION_PATTERN = (
    r"^(arn:aws:lambda:[a-z0-9-]+:[0-9]{12}:function:)?[a-zA-Z0-9_-]{1,64}(:[a-zA-Z0-9_$-]+)?$"
)


@dataclass(frozen=True)
class Destination:
    """Where an invocation record goes: exactly one of function, queue or stream."""

    __cel__ = (
        (
            "[has(self.function), has(self.queue), has(self.stream)].filter(x, x).size() == 1",
            "exactly one of function, queue or stream must be set",
        ),
    )

    function: str | None = prop(
        default=None,
        max_length=170,
        pattern=DESTINATION_FUNCTION_PATTERN,
        pattern_message="must be NAME, NAME:QUALIFIER or a function ARN",
        doc="A function, invoked asynchronously with the record as its event: NAME[:QUALIFIER] "
        "in this namespace, or a function ARN (another namespace's function must allow it in "
        "its policy).",
    )
    queue: str | None = prop(
        default=None,
        pattern=QUEUE_NAME_PATTERN,
        max_length=QUEUE_NAME_MAX,
        doc="A queue of this namespace: the record is a message's body.",
    )
    stream: str | None = prop(
        default=None,
        pattern=QUEUE_NAME_PATTERN,
        max_length=QUEUE_NAME_MAX,
        doc="A stream of this namespace: the record is a record's data (partition key: the "
        "request id).",
    )

    def check(self) -> Problems:
        if len([t for t in (self.function, self.queue, self.stream) if t is not None]) != 1:
            yield "", "exactly one of function, queue or stream must be set"


@dataclass(frozen=True)
class Destinations:
    """Targets for records of asynchronous invocations (Lambda's DestinationConfig)."""

    on_success: Destination | None = prop(
        default=None, name="onSuccess", doc="Gets a record of each successful invocation."
    )
    on_failure: Destination | None = prop(
        default=None,
        name="onFailure",
        doc="Gets a record of each event whose retries ran out or that grew too old.",
    )


@dataclass(frozen=True)
class AsyncConfig:
    """How asynchronous invocations are retried and where their outcome goes."""

    maximum_retry_attempts: int = prop(
        default=MAX_RETRY_ATTEMPTS,
        minimum=0,
        maximum=MAX_RETRY_ATTEMPTS,
        doc="Retries after a function error (the first after about a minute, the second after "
        "two more).",
    )
    maximum_event_age_in_seconds: int = prop(
        default=MAX_EVENT_AGE,
        minimum=60,
        maximum=MAX_EVENT_AGE,
        doc="Seconds an event may wait, throttled or failing, before it is given up on.",
    )
    destinations: Destinations | None = prop(default=None, doc="Where records go.")


@dataclass(frozen=True)
class DeadLetterConfig:
    """Where events that failed go when no onFailure destination takes them."""

    queue: str = prop(
        pattern=QUEUE_NAME_PATTERN,
        max_length=QUEUE_NAME_MAX,
        doc="A queue of this namespace: the message is the original event, with attributes "
        "RequestID, ErrorCode and ErrorMessage.",
    )
