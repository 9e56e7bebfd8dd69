"""The EventSourceMapping kind: a Queue or a Stream feeding a function.

The mapping holds Lambda's EventSourceMapping fields (batching, filters, scaling; for streams the
starting position, parallelization, retries, bisection, the on-failure destination and tumbling
windows); what it reads is a Queue or Stream object named in ``source``, whose own attributes
(visibility timeout, redrive, shards) every mapping of it shares.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from klambda.api.event_filter import FilterError, parse_filters
from klambda.api.schema import prop
from klambda.api.types.async_config import Destination
from klambda.api.types.common import (
    FUNCTION_NAME_MAX,
    FUNCTION_NAME_PATTERN,
    Condition,
    Problems,
)
from klambda.api.types.queue import QUEUE_NAME_MAX, QUEUE_NAME_PATTERN

START_BATCHES = 5
"""Batches a queue mapping starts with (Lambda's SQS scaling)."""
MOST_BATCHES = 1000
"""Most batches a queue mapping has in flight (Lambda's SQS scaling)."""
QUEUE_BATCH_SIZE = 10
STREAM_BATCH_SIZE = 100
FIFO_BATCH_MAX = 10
MAX_FILTERS = 5
FILTER_PATTERN_MAX = 4096
StartingPosition = Literal["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"]


@dataclass(frozen=True)
class SourceRef:
    """What the mapping reads: exactly one of a Queue or a Stream of its namespace."""

    __cel__ = (
        ("has(self.queue) != has(self.stream)", "exactly one of queue or stream must be set"),
    )

    queue: str | None = prop(
        default=None,
        pattern=QUEUE_NAME_PATTERN,
        max_length=QUEUE_NAME_MAX,
        doc="A Queue of this namespace.",
    )
    stream: str | None = prop(
        default=None,
        pattern=QUEUE_NAME_PATTERN,
        max_length=QUEUE_NAME_MAX,
        doc="A Stream of this namespace.",
    )

    def check(self) -> Problems:
        if (self.queue is None) == (self.stream is None):
            yield "", "exactly one of queue or stream must be set"


@dataclass(frozen=True)
class ScalingConfig:
    """How many batches of one queue mapping may run at once (Lambda's ScalingConfig)."""

    maximum_concurrency: int = prop(
        default=MOST_BATCHES,
        minimum=2,
        maximum=MOST_BATCHES,
        doc=f"Most batches in flight at once; pollers start with {START_BATCHES} and add up to "
        "300 a minute while messages wait (Lambda's rule).",
    )


@dataclass(frozen=True)
class Filter:
    """One filter (Lambda's event-filtering pattern syntax)."""

    pattern: str = prop(
        max_length=FILTER_PATTERN_MAX,
        doc='A JSON pattern, e.g. {"body": {"kind": ["order"]}}: records matching no filter '
        "are not delivered (a queue's are deleted, a stream's skipped).",
    )


@dataclass(frozen=True)
class FilterCriteria:
    """Which records reach the function (Lambda's FilterCriteria)."""

    filters: list[Filter] = prop(
        default_factory=list, max_items=MAX_FILTERS, doc="A record matching any one is delivered."
    )


@dataclass(frozen=True)
class DestinationConfig:
    """Where a stream batch that could not be processed is reported."""

    on_failure: Destination | None = prop(
        default=None,
        name="onFailure",
        doc="Gets the batch's metadata (shard, sequence numbers) when its retries ran out or "
        "its records grew too old.",
    )


STREAM_ONLY = (
    "startingPosition",
    "startingPositionTimestamp",
    "parallelizationFactor",
    "bisectBatchOnFunctionError",
    "maximumRetryAttempts",
    "maximumRecordAgeInSeconds",
    "destinationConfig",
    "tumblingWindowInSeconds",
)
_UNSET = (  # CEL: each stream setting absent or at its default (the API server fills defaults)
    "!has(self.startingPosition)",
    "!has(self.startingPositionTimestamp)",
    "(!has(self.parallelizationFactor) || self.parallelizationFactor == 1)",
    "(!has(self.bisectBatchOnFunctionError) || !self.bisectBatchOnFunctionError)",
    "(!has(self.maximumRetryAttempts) || self.maximumRetryAttempts == -1)",
    "(!has(self.maximumRecordAgeInSeconds) || self.maximumRecordAgeInSeconds == -1)",
    "!has(self.destinationConfig)",
    "(!has(self.tumblingWindowInSeconds) || self.tumblingWindowInSeconds == 0)",
)


@dataclass(frozen=True)
class EventSourceMappingSpec:
    """A queue or stream feeding a function in batches (Lambda's CreateEventSourceMapping)."""

    __cel__ = (
        (
            "!has(self.batchSize) || self.batchSize <= 10 || has(self.source.stream) "
            "|| (has(self.maximumBatchingWindowInSeconds) "
            "&& self.maximumBatchingWindowInSeconds >= 1)",
            "a queue's batchSize over 10 needs maximumBatchingWindowInSeconds of at least 1",
        ),
        (
            "!has(self.source.stream) || has(self.startingPosition)",
            "a stream's mapping needs startingPosition",
        ),
        (
            "!has(self.startingPosition) || self.startingPosition != 'AT_TIMESTAMP' "
            "|| has(self.startingPositionTimestamp)",
            "startingPosition AT_TIMESTAMP needs startingPositionTimestamp",
        ),
        (
            "!has(self.source.queue) || (" + " && ".join(_UNSET) + ")",
            "a queue's mapping takes none of the stream settings (" + ", ".join(STREAM_ONLY) + ")",
        ),
        (
            "!has(self.source.stream) || !has(self.scalingConfig)",
            "scalingConfig is for queues; a stream scales with parallelizationFactor",
        ),
    )

    function_name: str = prop(
        pattern=FUNCTION_NAME_PATTERN,
        max_length=FUNCTION_NAME_MAX,
        doc="The Function invoked.",
    )
    source: SourceRef = prop(doc="The Queue or Stream read.")
    qualifier: str | None = prop(
        default=None,
        pattern=r"^(\$LATEST|[a-zA-Z0-9_-]+)$",
        max_length=128,
        doc="Version or alias invoked; $LATEST when omitted.",
    )
    batch_size: int | None = prop(
        default=None,
        minimum=1,
        maximum=10000,
        doc=f"Most records per invocation; {QUEUE_BATCH_SIZE} for a queue and "
        f"{STREAM_BATCH_SIZE} for a stream when omitted (a FIFO queue: at most "
        f"{FIFO_BATCH_MAX}).",
    )
    maximum_batching_window_in_seconds: int = prop(
        default=0,
        minimum=0,
        maximum=300,
        doc="Seconds to wait for a batch to fill before invoking with what has come.",
    )
    enabled: bool = prop(default=True, doc="False pauses polling; records wait.")
    scaling_config: ScalingConfig | None = prop(
        default=None,
        name="scalingConfig",
        doc=f"Queues: most concurrent batches ({MOST_BATCHES} when omitted; never more than "
        "the function's reserved concurrency).",
    )
    function_response_types: list[Literal["ReportBatchItemFailures"]] = prop(
        default_factory=list,
        max_items=1,
        doc="[ReportBatchItemFailures]: the function returns batchItemFailures; a queue keeps "
        "only those messages, a stream retries from the first failed record.",
    )
    filter_criteria: FilterCriteria | None = prop(
        default=None, doc="Which records are delivered; all when omitted."
    )
    starting_position: StartingPosition | None = prop(
        default=None,
        doc="Streams (required): where a new mapping starts reading: TRIM_HORIZON (the oldest "
        "record kept), LATEST (records put from now on) or AT_TIMESTAMP.",
    )
    starting_position_timestamp: str | None = prop(
        default=None,
        max_length=40,
        doc="Streams, AT_TIMESTAMP: an RFC 3339 time; reading starts at the first record that "
        "arrived at or after it.",
    )
    parallelization_factor: int = prop(
        default=1,
        minimum=1,
        maximum=10,
        doc="Streams: concurrent batches per shard; records of one partition key stay in order.",
    )
    bisect_batch_on_function_error: bool = prop(
        default=False,
        doc="Streams: a failing batch is split in two and each half retried, to isolate a "
        "poison record.",
    )
    maximum_retry_attempts: int = prop(
        default=-1,
        minimum=-1,
        maximum=10000,
        doc="Streams: retries of a failing batch (-1: until the records expire).",
    )
    maximum_record_age_in_seconds: int = prop(
        default=-1,
        minimum=-1,
        maximum=604800,
        doc="Streams: records older than this are not delivered but reported on failure "
        "(-1: no limit; otherwise at least 60).",
    )
    destination_config: DestinationConfig | None = prop(
        default=None, doc="Streams: where a failed batch is reported."
    )
    tumbling_window_in_seconds: int = prop(
        default=0,
        minimum=0,
        maximum=900,
        doc="Streams: windows of this many seconds whose state the function carries from batch "
        "to batch (0: none).",
    )

    @property
    def effective_batch_size(self) -> int:
        if self.batch_size is not None:
            return self.batch_size
        return STREAM_BATCH_SIZE if self.source.stream else QUEUE_BATCH_SIZE

    def check(self) -> Problems:
        stream = self.source.stream is not None
        short_window = self.maximum_batching_window_in_seconds < 1
        if not stream and self.effective_batch_size > 10 and short_window:
            yield (
                ".batchSize",
                "a queue's batchSize over 10 needs maximumBatchingWindowInSeconds of at least 1",
            )
        if stream:
            if self.starting_position is None:
                yield ".startingPosition", "a stream's mapping needs startingPosition"
            if self.scaling_config is not None:
                yield (
                    ".scalingConfig",
                    "scalingConfig is for queues; a stream scales with parallelizationFactor",
                )
        else:
            for name in self._stream_settings():
                yield f".{name}", "is a stream setting; a queue's mapping cannot take it"
        if 0 < self.maximum_record_age_in_seconds < 60:
            yield ".maximumRecordAgeInSeconds", "must be -1 or at least 60"
        yield from self._timestamp_problems()
        yield from self._filter_problems()

    def _filter_problems(self) -> Problems:
        """Lambda refuses a mapping whose patterns it cannot read (CreateEventSourceMapping's
        InvalidParameterValueException), so the model does too."""
        if self.filter_criteria is None:
            return
        source: Literal["sqs", "kinesis"] = "kinesis" if self.source.stream else "sqs"
        for i, f in enumerate(self.filter_criteria.filters):
            try:
                parse_filters([f.pattern], source=source)
            except FilterError as e:
                yield f".filterCriteria.filters[{i}].pattern", str(e).replace("Filter 0: ", "")

    def _stream_settings(self) -> list[str]:
        """The stream-only settings given a value other than their default."""
        given = {
            "startingPosition": self.starting_position is not None,
            "startingPositionTimestamp": self.starting_position_timestamp is not None,
            "parallelizationFactor": self.parallelization_factor != 1,
            "bisectBatchOnFunctionError": self.bisect_batch_on_function_error,
            "maximumRetryAttempts": self.maximum_retry_attempts != -1,
            "maximumRecordAgeInSeconds": self.maximum_record_age_in_seconds != -1,
            "destinationConfig": self.destination_config is not None,
            "tumblingWindowInSeconds": self.tumbling_window_in_seconds != 0,
        }
        return [name for name in STREAM_ONLY if given[name]]

    def _timestamp_problems(self) -> Problems:
        if self.starting_position == "AT_TIMESTAMP" and self.starting_position_timestamp is None:
            yield (
                ".startingPositionTimestamp",
                "startingPosition AT_TIMESTAMP needs startingPositionTimestamp",
            )
        stamp = self.starting_position_timestamp
        if stamp is not None and starting_timestamp(stamp) is None:
            yield (
                ".startingPositionTimestamp",
                "must be an RFC 3339 time with a zone, e.g. 2026-12-01T12:00:00Z",
            )


def starting_timestamp(value: str) -> float | None:
    """Epoch seconds of an RFC 3339 time with a zone; None when it is not one."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.timestamp() if parsed.tzinfo is not None else None


@dataclass(frozen=True)
class EventSourceMappingStatus:
    """Whether the mapping delivers, and to what."""

    observed_generation: int = prop(default=0, doc="Generation last reconciled.")
    conditions: list[Condition] = prop(default_factory=list, doc="Ready and why not.")
    state: str = prop(default="", doc="Enabled or Disabled (Lambda's State).")
    event_source_arn: str = prop(
        default="", doc="ARN of the queue (arn:aws:sqs:...) or stream (arn:aws:kinesis:...)."
    )
    function_arn: str = prop(default="", doc="ARN of the function (and qualifier) invoked.")
