"""What a stream poller does with a batch of a shard, by Lambda's rules for Kinesis event source
mappings, as pure functions: the Redis adapter reads, invokes, checkpoints and reports; this
decides.

One shard's records are delivered in order. A batch that fails blocks its shard (its lane, with
a parallelization factor) until it succeeds, its retries run out or its records grow too old:

- ``before_invoke``: records older than maximumRecordAgeInSeconds (-1: no limit; 60..604800)
  are not delivered but reported (RecordAgeExceeded) and passed. "Discard records older than the
  specified age" (API CreateEventSourceMapping); records of one shard arrive in order, so the
  old ones are a prefix of the batch (LocalStack's ``bisect_events_by_record_age`` too).
- ``after_invoke``: success checkpoints the batch. A function error (or an invalid partial-batch
  response, or a tumbling-window response without ``state``) is retried, each retry counting
  towards maximumRetryAttempts (-1: no limit; 0..10000): once the retries are used up the batch
  is reported (RetryAttemptsExhausted) and passed, so a batch runs at most N+1 times. With
  bisectBatchOnFunctionError a failed batch of two or more records is split in two and the
  halves retried in order, which "does not count towards the retry quota" (with-kinesis.md,
  "Error handling"; kinesis-on-failure-destination.html); a single poison record ends up alone,
  using up its retries while the rest go through. The retry attempts do not apply "to service
  errors or throttles where the batch didn't reach the function": those are retried with
  backoff until the records expire (same pages).
- ReportBatchItemFailures (services-kinesis-batchfailurereporting.html): the response
  ``{"batchItemFailures": [{"itemIdentifier": "<sequenceNumber>"}]}`` names failed records;
  Lambda checkpoints before the lowest one and retries from it. An empty or null response, an
  empty object or an empty or null list mean success; invalid JSON, another shape, an entry
  without itemIdentifier, an empty or null one, or one not in the batch fail the whole batch
  (LocalStack's ``parse_batch_item_failures`` also refuses unknown identifiers). With bisection
  on, "the batch is bisected at the returned sequence number and Lambda retries only the
  remaining records": the records before it are checkpointed and the rest retried, as a split
  (not counted). When the lowest reported record is the batch's first nothing was gained, and
  the batch is treated as failed whole (split in halves, or retried, counting).
- Delays: AWS documents none for stream retries. Throttles and platform errors back off
  exponentially from 1 s, capped at 60 s (LocalStack's stream poller backs off exponentially,
  capped at 60 s); a function-error retry waits 1 s, one poll interval ("Lambda polls each shard
  ... at a base rate of once per second"), so that a failing function is not hammered for a
  week; halves of a split run at once.
- Parallelization (ParallelizationFactor 1..10): concurrent batches per shard, in order per
  partition key (current guide; 2022 guide: "Lambda still ensures in-order processing at the
  shard level"; as answered on Stack Overflow, "records with the same partition key will not be
  processed concurrently"). Here a key's lane is its MD5 hash key modulo the factor (stable
  across processes, unlike ``hash()``), and the shard's checkpoint is the end of the run of
  records every lane has settled.
- Tumbling windows (tumblingWindowInSeconds 0..900): each invoke carries the window's state;
  "your Lambda function response must contain a state property. If the response does not
  contain a state property, Lambda considers this a failed invocation"; a state over 1 MB per
  shard ends the window early (services-kinesis-windows.html). A batch never spans windows.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from typing import Any

from klambda.gateway.stream_records import hash_key, window_of

BACKOFF_CAP = 60.0
FUNCTION_ERROR_DELAY = 1.0
"""Seconds before a counted retry: one poll interval of a standard iterator."""
STATE_LIMIT = 1024 * 1024
"""Bytes of a window's state (JSON, UTF-8) past which the window ends early: "1 MB per shard"."""


class Result(enum.Enum):
    SUCCESS = "success"
    """The function returned; its payload may still report failures."""
    FUNCTION_ERROR = "function error"
    """Handled or unhandled error, timeout, runtime exit: the function ran and failed."""
    THROTTLED = "throttled"
    PLATFORM_ERROR = "platform error"
    """The invocation did not reach the function, or its outcome is unknown: not its fault."""


class Condition(enum.StrEnum):
    RETRY_ATTEMPTS_EXHAUSTED = "RetryAttemptsExhausted"
    RECORD_AGE_EXCEEDED = "RecordAgeExceeded"


@dataclass(frozen=True)
class StreamSettings:
    """The mapping's settings that decide the fate of a batch (Lambda's names, snake_case)."""

    maximum_retry_attempts: int = -1
    maximum_record_age_in_seconds: int = -1
    bisect_batch_on_function_error: bool = False
    report_batch_item_failures: bool = False
    tumbling_window_in_seconds: int = 0
    parallelization_factor: int = 1
    batch_size: int = 100

    def __post_init__(self) -> None:
        if not -1 <= self.maximum_retry_attempts <= 10000:
            raise ValueError("maximumRetryAttempts must be -1 or 0 to 10000")
        age = self.maximum_record_age_in_seconds
        if age != -1 and not 60 <= age <= 604800:
            raise ValueError("maximumRecordAgeInSeconds must be -1 or 60 to 604800")
        if not 0 <= self.tumbling_window_in_seconds <= 900:
            raise ValueError("tumblingWindowInSeconds must be 0 to 900")
        if not 1 <= self.parallelization_factor <= 10:
            raise ValueError("parallelizationFactor must be 1 to 10")
        if not 1 <= self.batch_size <= 10000:
            raise ValueError("batchSize must be 1 to 10000")


@dataclass(frozen=True)
class Entry:
    """A record as the policy sees it: where it is in the shard, when it came, its key."""

    sequence: str
    arrival: float
    partition_key: str = ""


@dataclass(frozen=True)
class Batch:
    """Records of one shard (or lane), in order, with what has happened to them so far.

    ``retries``: retry attempts used (counted failures after the first); ``invocations``: times
    a batch holding them reached the function (the approximateInvokeCount); ``throttles``:
    consecutive attempts that did not reach it (for the backoff). Halves of a split inherit all
    three.
    """

    entries: tuple[Entry, ...]
    retries: int = 0
    invocations: int = 0
    throttles: int = 0

    def __post_init__(self) -> None:
        if not self.entries:
            raise ValueError("a batch holds at least one record")

    @property
    def sequences(self) -> list[str]:
        return [entry.sequence for entry in self.entries]

    @property
    def first(self) -> Entry:
        return self.entries[0]

    @property
    def last(self) -> Entry:
        return self.entries[-1]


@dataclass(frozen=True)
class Checkpoint:
    """All done: the shard (lane) goes on after ``after``."""

    after: str


@dataclass(frozen=True)
class Retry:
    """Invoke ``batch`` again after ``delay`` seconds (calling before_invoke first).

    ``counts``: this retry used one of the retry attempts. ``checkpoint``: records up to and
    including it succeeded (a partial-batch response): checkpoint there first.
    """

    batch: Batch
    delay: float
    counts: bool
    checkpoint: str | None = None


@dataclass(frozen=True)
class Split:
    """Bisect: invoke ``halves[0]``, and once it is settled (checkpointed or failed),
    ``halves[1]``. Splitting uses no retry attempt."""

    halves: tuple[Batch, Batch]


@dataclass(frozen=True)
class Fail:
    """Give up on ``batch``: send its metadata to the on-failure destination (if any) and
    checkpoint after its last record; then go on with ``then`` (the rest of the batch that was
    not given up on), if any."""

    batch: Batch
    condition: Condition
    then: Batch | None = None


Decision = Checkpoint | Retry | Split | Fail


class InvalidResponse(ValueError):
    """A partial-batch response Lambda takes for the failure of the whole batch."""


def backoff(throttles: int) -> float:
    """Seconds before retrying after throttle (or platform error) number ``throttles``:
    1, 2, 4, ... capped at BACKOFF_CAP."""
    return min(BACKOFF_CAP, float(2 ** min(max(0, throttles - 1), 16)))


def expired(entry: Entry, settings: StreamSettings, now: float) -> bool:
    """The record is older than maximumRecordAgeInSeconds (never, with -1)."""
    limit = settings.maximum_record_age_in_seconds
    return limit != -1 and now - entry.arrival > limit


def before_invoke(batch: Batch, settings: StreamSettings, now: float) -> Fail | None:
    """Records too old to deliver: Fail(RecordAgeExceeded) for the leading ones past
    maximumRecordAgeInSeconds, ``then`` the rest; None: invoke the batch as it is.

    Called before every invocation, retries included: "Lambda retries until the records expire
    or exceed the maximum age". Only a prefix goes, since a checkpoint can only pass a prefix and
    arrival times grow along a shard (Redis ids are time-ordered).
    """
    count = 0
    while count < len(batch.entries) and expired(batch.entries[count], settings, now):
        count += 1
    if count == 0:
        return None
    rest = batch.entries[count:]
    return Fail(
        replace(batch, entries=batch.entries[:count]),
        Condition.RECORD_AGE_EXCEEDED,
        then=replace(batch, entries=rest) if rest else None,
    )


def parse_item_failures(payload: bytes | None, sequences: Sequence[str]) -> int | None:
    """Where in the batch the lowest reported failure is (None: the whole batch succeeded), from
    a ReportBatchItemFailures response; InvalidResponse when Lambda would fail the whole batch.

    A response without batchItemFailures (or with it null or empty) is a success, even one whose
    key is misspelt: Lambda reads a missing list as a null one.
    """
    if payload is None or not payload.strip():
        return None
    try:
        response = json.loads(payload)
    except ValueError as exc:  # UnicodeDecodeError is one
        raise InvalidResponse("the response is not JSON") from exc
    if response is None:
        return None
    if not isinstance(response, dict):
        raise InvalidResponse("the response is not a JSON object")
    failures = response.get("batchItemFailures")
    if failures is None:
        return None
    if not isinstance(failures, list):
        raise InvalidResponse("batchItemFailures is not a list")
    positions = {sequence: index for index, sequence in enumerate(sequences)}
    lowest: int | None = None
    for item in failures:
        if not isinstance(item, dict) or "itemIdentifier" not in item:
            raise InvalidResponse("an entry of batchItemFailures has no itemIdentifier")
        identifier = item["itemIdentifier"]
        if not isinstance(identifier, str) or not identifier:
            raise InvalidResponse("an itemIdentifier is null, empty or not a string")
        if identifier not in positions:
            raise InvalidResponse(f"itemIdentifier {identifier!r} is not a record of the batch")
        position = positions[identifier]
        lowest = position if lowest is None else min(lowest, position)
    return lowest


def window_response(payload: bytes | None) -> tuple[dict[str, Any] | None, list[Any]]:
    """(state, batchItemFailures) of a tumbling-window invocation's response.

    state None: the response holds no ``state`` object, and Lambda counts the invocation as
    failed. The list is the response's batchItemFailures as given ([] when absent); its
    entries are checked by parse_item_failures when ReportBatchItemFailures is on.
    """
    if payload is None:
        return None, []
    try:
        response = json.loads(payload)
    except ValueError:
        return None, []
    if not isinstance(response, dict):
        return None, []
    state, failures = response.get("state"), response.get("batchItemFailures")
    return (state if isinstance(state, dict) else None), (
        failures if isinstance(failures, list) else []
    )


def state_too_large(state: dict[str, Any]) -> bool:
    """The window's state is past 1 MB (as JSON): Lambda ends the window early, and the next
    invoke continues the window with a fresh state and isWindowTerminatedEarly."""
    size = len(json.dumps(state, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    return size > STATE_LIMIT


def after_invoke(
    batch: Batch, settings: StreamSettings, result: Result, payload: bytes | None = None
) -> Decision:
    """What follows an invocation of ``batch`` that ended with ``result`` (and, on success,
    answered ``payload``). See the module's docstring for the rules and their sources."""
    if result in (Result.THROTTLED, Result.PLATFORM_ERROR):
        throttled = replace(batch, throttles=batch.throttles + 1)
        return Retry(throttled, delay=backoff(throttled.throttles), counts=False)
    ran = replace(batch, invocations=batch.invocations + 1, throttles=0)
    if result is Result.FUNCTION_ERROR:
        return _failed(ran, settings)
    if settings.tumbling_window_in_seconds and window_response(payload)[0] is None:
        return _failed(ran, settings)
    if not settings.report_batch_item_failures:
        return Checkpoint(after=batch.last.sequence)
    try:
        lowest = parse_item_failures(payload, batch.sequences)
    except InvalidResponse:
        return _failed(ran, settings)
    if lowest is None:
        return Checkpoint(after=batch.last.sequence)
    if lowest == 0:  # nothing went through: the batch failed whole
        return _failed(ran, settings)
    rest = replace(ran, entries=batch.entries[lowest:])
    done = batch.entries[lowest - 1].sequence
    if settings.bisect_batch_on_function_error:  # "bisected at the returned sequence number"
        return Retry(rest, delay=0.0, counts=False, checkpoint=done)
    return _retry(rest, settings, checkpoint=done)


def _failed(batch: Batch, settings: StreamSettings) -> Decision:
    """A batch that failed whole: split it if bisection is on and it can be, else retry it."""
    if settings.bisect_batch_on_function_error and len(batch.entries) > 1:
        middle = (len(batch.entries) + 1) // 2
        return Split(
            (
                replace(batch, entries=batch.entries[:middle]),
                replace(batch, entries=batch.entries[middle:]),
            )
        )
    return _retry(batch, settings)


def _retry(batch: Batch, settings: StreamSettings, checkpoint: str | None = None) -> Decision:
    """A counted retry, or the end of the batch when the retry attempts are used up."""
    retries = batch.retries + 1
    limit = settings.maximum_retry_attempts
    if limit != -1 and retries > limit:
        return Fail(batch, Condition.RETRY_ATTEMPTS_EXHAUSTED)
    return Retry(
        replace(batch, retries=retries),
        delay=FUNCTION_ERROR_DELAY,
        counts=True,
        checkpoint=checkpoint,
    )


def lane_for(partition_key: str, factor: int) -> int:
    """Which of a shard's ``factor`` concurrent lanes a key's records go to, the same in every
    process: the MD5 hash key modulo the factor (the shard is picked by its high bits, the lane
    by its low ones, so a shard's keys spread over all its lanes)."""
    if not 1 <= factor <= 10:
        raise ValueError(f"parallelizationFactor must be 1 to 10, not {factor}")
    return hash_key(partition_key) % factor


def plan_lanes(records: Sequence[Entry], factor: int, batch_size: int) -> list[list[Entry]]:
    """The next batch of each lane from an ordered run of one shard's unprocessed records: up to
    ``batch_size`` records of the lane's keys, in shard order. Lanes without records get []."""
    if not 1 <= factor <= 10:
        raise ValueError(f"parallelizationFactor must be 1 to 10, not {factor}")
    if batch_size < 1:
        raise ValueError(f"batchSize must be at least 1, not {batch_size}")
    lanes: list[list[Entry]] = [[] for _ in range(factor)]
    if factor == 1:
        lanes[0] = list(records[:batch_size])
        return lanes
    for entry in records:
        lane = lanes[lane_for(entry.partition_key, factor)]
        if len(lane) < batch_size:
            lane.append(entry)
    return lanes


def shard_checkpoint(records: Sequence[Entry], done: Collection[str]) -> str | None:
    """The shard's checkpoint when its lanes have settled (checkpointed or failed) the sequence
    numbers in ``done``: the last record of the leading run of settled records of ``records``
    (the shard's run in order); None when its first record is not settled yet. Restarting from
    there redoes nothing unsettled and skips nothing."""
    checkpoint: str | None = None
    for entry in records:
        if entry.sequence not in done:
            break
        checkpoint = entry.sequence
    return checkpoint


def window_batch(records: Sequence[Entry], seconds: int) -> list[Entry]:
    """The leading records of ``records`` in the first one's tumbling window: an invocation
    carries one window's state, so its batch stays in one window."""
    if not records:
        return []
    _, end = window_of(records[0].arrival, seconds)
    count = 0
    while count < len(records) and records[count].arrival < end:
        count += 1
    return list(records[:count])
