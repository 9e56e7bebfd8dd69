"""The EventSourceMapping kind: a queue feeding a function."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from klambda.api.schema import prop
from klambda.api.types.common import (
    FUNCTION_NAME_MAX,
    FUNCTION_NAME_PATTERN,
    Condition,
    Problems,
)

QUEUE_NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,80}$"
DEFAULT_BATCHES_IN_FLIGHT = 5


@dataclass(frozen=True)
class QueueSource:
    """A Redis-backed queue with SQS semantics (key ``klambda:queue:<namespace>:<name>``)."""

    __cel__ = (
        (
            "has(self.maxReceiveCount) == has(self.deadLetterQueue)",
            "maxReceiveCount and deadLetterQueue go together (SQS's redrive policy)",
        ),
    )

    name: str = prop(pattern=QUEUE_NAME_PATTERN, max_length=80, doc="The queue's name.")
    visibility_timeout: int = prop(
        default=30,
        minimum=0,
        maximum=43200,
        doc="Seconds a received message stays hidden before it is delivered again (SQS's "
        "VisibilityTimeout); make it at least 6 times the function's timeout.",
    )
    max_receive_count: int | None = prop(
        default=None,
        minimum=1,
        maximum=1000,
        doc="Receives after which a message goes to deadLetterQueue instead of the function.",
    )
    dead_letter_queue: str | None = prop(
        default=None,
        pattern=QUEUE_NAME_PATTERN,
        max_length=80,
        doc="Queue (same namespace) that takes messages received maxReceiveCount times.",
    )

    def check(self) -> Problems:
        if (self.max_receive_count is None) != (self.dead_letter_queue is None):
            yield (
                "",
                "maxReceiveCount and deadLetterQueue go together (SQS's redrive policy)",
            )
        if self.dead_letter_queue == self.name:
            yield ".deadLetterQueue", "must differ from the queue itself"


@dataclass(frozen=True)
class ScalingConfig:
    """How many batches of one mapping may run at once (Lambda's ScalingConfig)."""

    maximum_concurrency: int = prop(
        default=DEFAULT_BATCHES_IN_FLIGHT,
        minimum=2,
        maximum=1000,
        doc="Batches in flight at once, per gateway replica.",
    )


@dataclass(frozen=True)
class EventSourceMappingSpec:
    """A queue feeding a function in batches (Lambda's CreateEventSourceMapping for SQS)."""

    __cel__ = (
        (
            "self.batchSize <= 10 || self.maximumBatchingWindowInSeconds >= 1",
            "a batchSize over 10 needs maximumBatchingWindowInSeconds of at least 1",
        ),
    )

    function_name: str = prop(
        pattern=FUNCTION_NAME_PATTERN,
        max_length=FUNCTION_NAME_MAX,
        doc="The Function invoked.",
    )
    queue: QueueSource = prop(doc="The queue read.")
    qualifier: str | None = prop(
        default=None,
        pattern=r"^(\$LATEST|[a-zA-Z0-9_-]+)$",
        max_length=128,
        doc="Version or alias invoked; $LATEST when omitted.",
    )
    batch_size: int = prop(
        default=10, minimum=1, maximum=10000, doc="Most messages per invocation."
    )
    maximum_batching_window_in_seconds: int = prop(
        default=0,
        minimum=0,
        maximum=300,
        doc="Seconds to wait for a batch to fill before invoking with what has come.",
    )
    enabled: bool = prop(default=True, doc="False pauses polling; messages wait in the queue.")
    scaling_config: ScalingConfig | None = prop(
        default=None,
        name="scalingConfig",
        doc=f"Concurrent batches; {DEFAULT_BATCHES_IN_FLIGHT} when omitted (Lambda's pollers "
        "start with 5).",
    )
    function_response_types: list[Literal["ReportBatchItemFailures"]] = prop(
        default_factory=list,
        max_items=1,
        doc="[ReportBatchItemFailures]: the function returns batchItemFailures and only those "
        "messages stay in the queue.",
    )

    def check(self) -> Problems:
        if self.batch_size > 10 and self.maximum_batching_window_in_seconds < 1:
            yield (
                ".batchSize",
                "a batchSize over 10 needs maximumBatchingWindowInSeconds of at least 1",
            )


@dataclass(frozen=True)
class EventSourceMappingStatus:
    """Whether the mapping delivers, and to what."""

    observed_generation: int = prop(default=0, doc="Generation last reconciled.")
    conditions: list[Condition] = prop(default_factory=list, doc="Ready and why not.")
    state: str = prop(default="", doc="Enabled or Disabled (Lambda's State).")
    event_source_arn: str = prop(default="", doc="ARN of the queue (arn:aws:sqs:...).")
    function_arn: str = prop(default="", doc="ARN of the function (and qualifier) invoked.")
